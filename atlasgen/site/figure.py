"""`atlasgen figure`: a publication panel from a built atlas.

One row per chosen filter, one column per chosen view, each row labelled with its layer and filter
and each column with its view, on a white background. The images are drawn pixel for pixel: PDF and
SVG embed each image's own pixels unresampled (the PDF's images carry no /Interpolate, so viewers do
not smooth them; the SVG's carry `image-rendering: pixelated`), and the PNG draws them with
nearest-neighbour at `dpi`. PDF and SVG keep every label as text (TrueType in the PDF, `<text>` in
the SVG). matplotlib writes all three formats.

Read top to bottom: check the target, the dpi and the views -> parse every SPEC -> find each filter
in its atlas (atlas.json, checked against its schema) and each view among what was built -> read
every image from inside the output folder -> draw the panel in memory -> write the one file,
atomically. Any bad input stops with one line before anything is written.

`figure_command` gives the shell command that reproduces one filter's row, for its page.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from atlasgen.codec import MAX_IMAGE_BYTES, TooManyPixels, Undecodable, decode_rgb
from atlasgen.errors import AtlasgenError
from atlasgen.fs import atomic_write, read_regular
from atlasgen.manifest import MANIFEST, Manifest
from atlasgen.site.atlases import atlas_folders, load_atlas
from atlasgen.site.views import COLUMNS, DEFAULT_COLUMNS, EXAMPLES_IN_CELL, cell_images, has_view, thumbnail, unit_views
from atlasgen.site.wiring import built_units
from atlasgen.names import safe_name, unit_folder

FORMATS = ("pdf", "svg", "png")
DEFAULT_DPI = 300
MAX_DPI = 9600
#: A PNG larger than this is refused (Agg draws at most 2^16 - 1 pixels a side; the area bounds memory).
MAX_PNG_SIDE = 65_535
MAX_PNG_PIXELS = 100_000_000
# Layout, in inches and points.
CELL = 1.0  # a single-image cell's height and least width
EXAMPLES_WIDTH = 2.0  # the examples column's least width
GAP = 0.08  # between cells
SUBGAP = 0.04  # between the crops inside an examples cell
#: The views whose cells draw several images side by side: dataset examples, a diversity set.
SIDE_BY_SIDE = ("examples", "faces")
MARGIN = 0.1
HEADER = 0.34  # the row of column headers
FONT_SIZE = 7.0
CHAR_WIDTH = 0.62 * FONT_SIZE / 72  # a generous average advance of DejaVu Sans, for sizing the label column
LINE_HEIGHT = 1.25 * FONT_SIZE / 72

SPEC_HELP = "layer/filter, layer/a-b, or a filter page's URL or path (e.g. vgg16/block2_conv1/3/)"
_FILTER = re.compile(r"(\d{1,9})(?:-(\d{1,9}))?")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Spec:
    """One SPEC as given: an atlas (None when the SPEC does not name one), a layer (its Keras name
    or its URL segment) and the filters first..last, both included."""

    text: str
    atlas: str | None
    layer: str
    first: int
    last: int


@dataclass(frozen=True)
class Row:
    atlas: str
    layer: str  # the Keras layer name
    filter: int


@dataclass(frozen=True)
class FigureResult:
    path: Path
    format: str  # pdf, svg or png
    rows: list[Row]
    columns: tuple[str, ...]
    images: int  # images drawn (and, in PDF and SVG, embedded)
    labels: list[str]  # every text drawn: the column headers, then each row's label
    width_in: float
    height_in: float
    dpi: int
    pixels: tuple[int, int]  # (width, height) of the PNG at `dpi`; the page's size in pixels at `dpi` otherwise


def parse_spec(text: str) -> Spec:
    """A SPEC: `layer/filter`, `layer/a-b`, or a filter page's URL or path, whose last segments are
    `<atlas>/<layer>/<filter>/` (an `index.html` after them is dropped). A path of two segments is
    `layer/filter`; of three or more, `…/atlas/layer/filter`. A URL always names its atlas."""
    if not isinstance(text, str) or not text.strip():
        raise AtlasgenError(f"a SPEC is empty; give {SPEC_HELP}")
    given = text.strip()
    shown = repr(given[:80])
    if "\0" in given:
        raise AtlasgenError(f"SPEC {shown} holds a NUL character; give {SPEC_HELP}")
    is_url = bool(_URL_SCHEME.match(given))
    if is_url:
        parts = urlsplit(given)
        if parts.scheme.lower() not in ("http", "https", "file"):
            raise AtlasgenError(f"SPEC {shown} is a {parts.scheme}: URL; give an http(s) URL of a filter page, or {SPEC_HELP}")
        segments = [unquote(s) for s in parts.path.split("/")]
    else:
        segments = given.replace("\\", "/").split("/")
    segments = [s for s in segments if s not in ("", ".")]
    if segments and segments[-1] == "index.html":
        segments.pop()
    if len(segments) < (3 if is_url else 2):
        want = "…/<atlas>/<layer>/<filter>/" if is_url else "layer/filter"
        raise AtlasgenError(f"SPEC {shown} is not {want}; give {SPEC_HELP}")
    atlas = segments[-3] if len(segments) >= 3 else None
    layer, filters = segments[-2], segments[-1]
    match = _FILTER.fullmatch(filters)
    if not match:
        raise AtlasgenError(f"SPEC {shown}: {filters[:40]!r} is not a filter number or a range a-b; give {SPEC_HELP}")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise AtlasgenError(f"SPEC {shown}: the range {first}-{last} runs backwards; give it as {last}-{first}")
    return Spec(given, atlas, layer, first, last)


def parse_columns(text: str | Sequence[str]) -> tuple[str, ...]:
    """`channel,neuron,rf-crop` (or a sequence of names) as a tuple of views, each a column of the views table."""
    names = text.split(",") if isinstance(text, str) else list(text)
    if not names or all(not isinstance(n, str) or not n.strip() for n in names):
        raise AtlasgenError(f"--columns is empty; give views from {', '.join(COLUMNS)}")
    columns = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise AtlasgenError(f"--columns has an empty item; give a comma list of {', '.join(COLUMNS)}")
        if name.strip() not in COLUMNS:
            raise AtlasgenError(f"--columns: unknown view {name.strip()[:40]!r}; choose from {', '.join(COLUMNS)}")
        columns.append(name.strip())
    return tuple(columns)


def figure_command(atlas_name: str, layer: str, filter: int, out: str = "site",
                   columns: Sequence[str] | None = None, suffix: str = "pdf") -> str:
    """The shell command that reproduces one filter's row, for its filter page, e.g.
    `atlasgen figure --out site vgg16-hed-bsds500/block2_conv1/3/ -o block2_conv1-3.pdf`.

    The SPEC is the filter page's own path (`<atlas>/<layer>/<filter>/`), so the command works in a
    folder of several atlases; `columns` (default: the figure's default views) is written out only
    when given; `out` is the site folder as the reader has it. Every word is shell-quoted."""
    if isinstance(filter, bool) or not isinstance(filter, int) or filter < 0:
        raise ValueError(f"filter must be a non-negative integer, not {filter!r}")
    if suffix not in FORMATS:
        raise ValueError(f"suffix must be one of {', '.join(FORMATS)}, not {suffix!r}")
    words = ["atlasgen", "figure", "--out", out, unit_folder(atlas_name, layer, filter)]
    if columns is not None:
        words += ["--columns", ",".join(parse_columns(columns))]
    words += ["-o", f"{safe_name(layer)}-{filter}.{suffix}"]
    return " ".join(shlex.quote(w) for w in words)


def make_figure(out: Path, specs: Sequence[str], target: Path, columns: str | Sequence[str] = DEFAULT_COLUMNS,
                dpi: int = DEFAULT_DPI, atlas: str | None = None, wiring: bool = False) -> FigureResult:
    """Draws the rows of `specs` (each parsed by `parse_spec`) with one column per view of `columns`
    from the atlases in `out`, and writes `target` (.pdf, .svg or .png, by its extension) atomically.
    `atlas` names the atlas of a SPEC that does not name its own; it may be left out when `out`
    holds one atlas. Any bad input raises AtlasgenError (one line) before anything is written.

    With `wiring`, `columns` is not drawn: each row is the filter's whole-filter image and its inputs'
    (`wiring.inputs`, strongest first), each input captioned with its layer, filter and weight; an input
    the atlas did not build is an empty box that says so (`_wiring_cells`)."""
    out, target = Path(out), Path(target)
    fmt = _check_target(target)
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 1 <= dpi <= MAX_DPI:
        raise AtlasgenError(f"--dpi {dpi!r} is not a whole number from 1 to {MAX_DPI}; print resolution is usually 300")
    columns = parse_columns(columns)
    if isinstance(specs, str) or not specs:
        raise AtlasgenError(f"no SPEC given; give one or more of {SPEC_HELP}")
    parsed = [parse_spec(s) for s in specs]
    if atlas is not None and (not isinstance(atlas, str) or not atlas.strip()):
        raise AtlasgenError("--atlas is empty; give the name of an atlas in --out, e.g. vgg16")

    names = _atlas_names(out)
    if atlas is not None and atlas not in names:
        raise AtlasgenError(f"--atlas {atlas[:64]!r} is not an atlas in --out {out}; it holds {_listed(names)}")
    manifests: dict[str, Manifest] = {}
    rows: list[tuple[Row, object]] = []
    for spec in parsed:
        name = _atlas_of(spec, names, atlas, out)
        if name not in manifests:
            manifests[name] = load_atlas(out, name)
        rows += _units(manifests[name], spec)
    for row, unit in rows:
        for view in columns if not wiring else ():
            _check_view(row, unit, COLUMNS[view])

    images = _ImageReader(out)
    if wiring:
        columns = ("wiring",)
        headers, cells, captions = _wiring_cells(rows, manifests, images)
        shows = ["image"] * len(headers)
    else:
        cells = [[[images.read(path) for path in cell_images(COLUMNS[view], unit)] for view in columns] for _, unit in rows]
        probes = {unit.activation_maps[0].probe for _, unit in rows if unit.activation_maps}
        headers, captions, shows = [_header(view, probes) for view in columns], None, [COLUMNS[v].shows for v in columns]
    several = len({row.atlas for row, _ in rows}) > 1
    labels = [_row_label(row, several) for row, _ in rows]
    data, size, pixels = _draw(fmt, dpi, headers, labels, cells, shows, captions)
    try:
        atomic_write(target, data)
    except OSError as exc:
        raise AtlasgenError(f"cannot write {target} ({exc.strerror or exc}); check free space and permissions") from None
    return FigureResult(
        path=target, format=fmt, rows=[row for row, _ in rows], columns=columns,
        images=sum(image is not None for row in cells for images in row for image in images),
        labels=[line for text in headers + labels + [c for row in captions or [] for c in row if c]
                for line in text.split("\n")] + ["not built"] * sum(image is None for row in cells for c in row for image in c),
        width_in=size[0], height_in=size[1], dpi=dpi, pixels=pixels,
    )


# --- finding what to draw ---------------------------------------------------------------------


def _check_target(target: Path) -> str:
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise AtlasgenError(f"-o {target}: unknown extension {target.suffix or '(none)'!r}; give a file ending in .pdf, .svg or .png")
    folder = target.parent
    if not folder.exists():
        raise AtlasgenError(f"-o {target}: the folder {folder} does not exist; make it first or choose another")
    if not folder.is_dir():
        raise AtlasgenError(f"-o {target}: {folder} is not a folder; choose a file in a folder")
    if target.is_dir():
        raise AtlasgenError(f"-o {target} is a folder; give a file name ending in .{fmt}")
    return fmt


def _atlas_names(out: Path) -> list[str]:
    if not out.is_dir():
        raise AtlasgenError(f"--out {out} is not a folder of atlases; give the folder `atlasgen build --out` wrote")
    names = atlas_folders(out)
    if not names:
        raise AtlasgenError(f"--out {out} holds no atlas (no <name>/{MANIFEST}); run `atlasgen build --out {out}` first")
    return names


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:12])
    return shown + (f" and {len(names) - 12} more" if len(names) > 12 else "")


def _atlas_of(spec: Spec, names: list[str], default: str | None, out: Path) -> str:
    if spec.atlas is not None:
        if spec.atlas not in names:
            raise AtlasgenError(
                f"SPEC {spec.text[:80]!r} names the atlas {spec.atlas[:64]!r}, which is not in --out {out}; "
                f"it holds {_listed(names)}"
            )
        return spec.atlas
    if default is not None:
        return default
    if len(names) == 1:
        return names[0]
    raise AtlasgenError(
        f"SPEC {spec.text[:80]!r} names no atlas and --out {out} holds several ({_listed(names)}); "
        f"give --atlas NAME, or the page's path such as {names[0]}/{spec.layer[:40]}/{spec.first}/"
    )


def _units(manifest: Manifest, spec: Spec) -> list[tuple[Row, object]]:
    layer = next((l for l in manifest.layers if spec.layer in (l.name, l.path.rstrip("/").rsplit("/", 1)[-1])), None)
    if layer is None:
        raise AtlasgenError(
            f"SPEC {spec.text[:80]!r}: the atlas {manifest.name} has no layer {spec.layer[:64]!r}; "
            f"it has {_listed([l.name for l in manifest.layers]) or 'none'}"
        )
    if spec.last >= layer.filters:
        raise AtlasgenError(
            f"SPEC {spec.text[:80]!r}: {layer.name} has {layer.filters} filters (0-{layer.filters - 1}); "
            f"there is no filter {spec.last}"
        )
    units = {u.index: u for u in layer.units}
    rows = []
    for index in range(spec.first, spec.last + 1):
        if index not in units:
            raise AtlasgenError(
                f"SPEC {spec.text[:80]!r}: filter {index} of {layer.name} is not in the atlas {manifest.name} "
                f"(built: {_ranges(sorted(units)) or 'none'}); build it with --layers {layer.name} --filters {index}"
            )
        rows.append((Row(manifest.name, layer.name, index), units[index]))
    return rows


def _ranges(indices: list[int]) -> str:
    spans: list[list[int]] = []
    for i in indices:
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    text = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans[:8])
    return text + (",…" if len(spans) > 8 else "")


def _wiring_cells(rows: list, manifests: dict, images) -> tuple[list[str], list[list[list]], list[list[str]]]:
    """--wiring: the headers, cells and captions of every row: the filter's whole-filter image, then its
    inputs' (None: not built, an empty box), each captioned `layer/filter` and its weight. A filter
    without wiring, or whose inputs are not claimed (it reads the image, a residual add...), is an error."""
    wired = []
    for row, unit in rows:
        if unit.wiring is None:
            raise AtlasgenError(f"the atlas {row.atlas} has no wiring for {row.layer}/{row.filter} (built before "
                                f"atlasgen computed it); run atlasgen build again to add it")
        if unit.wiring.source is None:
            raise AtlasgenError(f"{row.layer}/{row.filter} has no inputs to draw: {unit.wiring.unclaimed.get('inputs')}; "
                                f"choose filters of a layer that another conv layer feeds, or drop --wiring")
        built = built_units(manifests[row.atlas])
        wired.append((unit, [(link, built.get((link.layer, link.filter))) for link in unit.wiring.inputs]))
    width = max(len(inputs) for _, inputs in wired)
    headers = ["filter"] + [f"input {i + 1}" for i in range(width)]
    cells, captions = [], []
    for unit, inputs in wired:
        blank = width - len(inputs)
        cells.append([[images.read(thumbnail(unit))]]
                     + [[images.read(thumbnail(linked)) if linked else None] for _, linked in inputs] + [[]] * blank)
        captions.append([""] + [f"{link.layer}/{link.filter}\n{link.weight:+.3g}" for link, _ in inputs] + [""] * blank)
    return headers, cells, captions


def _check_view(row: Row, unit, view) -> None:
    if not has_view(view, unit):
        built = ", ".join(v.id for v in unit_views(unit) if v.column) or "none"
        raise AtlasgenError(f"the view {view.id} was not built for {row.layer}/{row.filter} in the atlas {row.atlas} "
                            f"(it has {built}); {view.hint}")


class _ImageReader:
    """Reads the site's images: only regular files inside the output folder (a link that leads out of
    it is refused), decoded to RGB arrays, each read once."""

    def __init__(self, out: Path):
        self.out = out
        self.root = out.resolve()
        self.cache: dict[str, object] = {}

    def read(self, relative: str):
        if relative not in self.cache:
            self.cache[relative] = self._read(relative)
        return self.cache[relative]

    def _read(self, relative: str):
        import numpy as np

        path = self.out / relative
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            raise AtlasgenError(f"{path} is listed in atlas.json but missing; rebuild with atlasgen build") from None
        except (OSError, RuntimeError):
            raise AtlasgenError(f"{path} cannot be followed (a link loop?); rebuild with atlasgen build") from None
        if not real.is_relative_to(self.root):
            raise AtlasgenError(f"{path} is a link that leads outside --out {self.out}; refusing to read it")
        try:
            data = read_regular(real, MAX_IMAGE_BYTES)
        except OSError as exc:
            raise AtlasgenError(f"{path} cannot be read ({exc.strerror or exc}); rebuild with atlasgen build") from None
        try:
            return np.asarray(decode_rgb(data))
        except TooManyPixels as exc:
            raise AtlasgenError(f"{path} is larger than {exc.cap // 1_000_000} megapixels; rebuild with atlasgen build") from None
        except Undecodable:
            raise AtlasgenError(f"{path} is not a readable image; rebuild with atlasgen build") from None


# --- drawing ----------------------------------------------------------------------------------


def _header(view: str, probes: set[str]) -> str:
    header = COLUMNS[view].header
    if COLUMNS[view].shows == "maps" and len(probes) == 1:
        return f"{header}\n({next(iter(probes))})"
    return header


def _row_label(row: Row, several_atlases: bool) -> str:
    lines = ([row.atlas] if several_atlases else []) + [row.layer, f"filter {row.filter}"]
    return "\n".join(lines)


def _text_width(text: str) -> float:
    return max(len(line) for line in text.split("\n")) * CHAR_WIDTH


def _draw(fmt: str, dpi: int, headers: list[str], labels: list[str], cells: list[list[list]],
          shows: list[str], captions: list[list[str]] | None = None) -> tuple[bytes, tuple[float, float], tuple[int, int]]:
    """The panel as the bytes of a `fmt` file, its size in inches, and its size in pixels at `dpi`;
    `shows` says what each column's cells draw (a view's `shows`), `captions` a text under each cell
    (rows of columns, "" for none); a cell's image None is an empty box that says "not built"."""
    import matplotlib
    from matplotlib.figure import Figure

    label_w = max(_text_width(label) for label in labels) + 2 * GAP
    widths = [max(EXAMPLES_WIDTH if view in SIDE_BY_SIDE else CELL, _text_width(h) + GAP,
                  *(_text_width(row[c]) + GAP for row in captions or [] if row[c]))
              for c, (view, h) in enumerate(zip(shows, headers))]
    caption_h = max((LINE_HEIGHT * (c.count("\n") + 1) + SUBGAP for row in captions or [] for c in row if c), default=0)
    rows = len(labels)
    header_h = max(HEADER, LINE_HEIGHT * max(h.count("\n") + 1 for h in headers) + GAP)
    row_h = max(CELL + caption_h, LINE_HEIGHT * max(label.count("\n") + 1 for label in labels))
    width = 2 * MARGIN + label_w + sum(widths) + GAP * (len(widths) - 1)
    height = 2 * MARGIN + header_h + rows * row_h + GAP * (rows - 1)
    pixels = (round(width * dpi), round(height * dpi))
    if fmt == "png" and (max(pixels) > MAX_PNG_SIDE or pixels[0] * pixels[1] > MAX_PNG_PIXELS):
        raise AtlasgenError(
            f"the PNG would be {pixels[0]}×{pixels[1]} pixels (at most {MAX_PNG_SIDE} a side and "
            f"{MAX_PNG_PIXELS // 1_000_000} megapixels); lower --dpi, choose fewer filters, or write a .pdf or .svg"
        )
    # Whole pixels at this dpi, so the PNG is exactly pixels[0] × pixels[1] and the page the same size.
    width, height = pixels[0] / dpi, pixels[1] / dpi

    style = {
        "svg.fonttype": "none",  # SVG text stays <text>, not paths
        "pdf.fonttype": 42,  # PDF text is TrueType text, searchable and copyable
        "text.parse_math": False,  # a layer name with '$' is text, not mathtext
        "text.usetex": False,
        "font.size": FONT_SIZE,
        "image.composite_image": False,  # one embedded image per image drawn
        "svg.hashsalt": "atlasgen-figure",  # the same panel gives the same SVG
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
        "savefig.transparent": False,
        "text.color": "black",
    }
    with matplotlib.rc_context(style):
        fig = Figure(figsize=(width, height), dpi=dpi)

        def rect(left: float, top: float, w: float, h: float) -> list[float]:
            """An axes rectangle in figure fractions from inches measured from the top left."""
            return [left / width, 1 - (top + h) / height, w / width, h / height]

        x = MARGIN + label_w
        lefts = []
        for w in widths:
            lefts.append(x)
            x += w + GAP
        for left, w, header in zip(lefts, widths, headers):
            fig.text((left + w / 2) / width, 1 - (MARGIN + header_h - GAP / 2) / height, header,
                     ha="center", va="bottom", multialignment="center")
        for r, (label, row) in enumerate(zip(labels, cells)):
            top = MARGIN + header_h + r * (row_h + GAP)
            fig.text((MARGIN + label_w - GAP) / width, 1 - (top + row_h / 2) / height, label,
                     ha="right", va="center", multialignment="right")
            for c, (left, w, view, images) in enumerate(zip(lefts, widths, shows, row)):
                _draw_cell(fig, rect, left, top, w, row_h - caption_h, view, images)
                if captions and captions[r][c]:
                    fig.text((left + w / 2) / width, 1 - (top + row_h - caption_h + SUBGAP) / height, captions[r][c],
                             ha="center", va="top", multialignment="center")
        buffer = io.BytesIO()
        metadata = {
            "pdf": {"Creator": "atlasgen figure", "CreationDate": None},
            "svg": {"Creator": "atlasgen figure", "Date": None},
            "png": {"Software": "atlasgen figure"},
        }[fmt]
        fig.savefig(buffer, format=fmt, dpi=dpi, facecolor="white", metadata=metadata)
    return buffer.getvalue(), (width, height), pixels


def _draw_cell(fig, rect, left: float, top: float, w: float, h: float, view: str, images: list) -> None:
    """One cell's images, `w` × `h` inches at (left, top): an examples cell's side by side (room for
    EXAMPLES_IN_CELL), a diversity set's side by side (room for all of them), else its one image
    (None: an empty box that says "not built"; no image at all: nothing)."""
    if view in SIDE_BY_SIDE and not (images and images[0] is None):
        slots = EXAMPLES_IN_CELL if view == "examples" else max(len(images), 1)
        slot = (w - SUBGAP * (slots - 1)) / slots
        for k, image in enumerate(images):
            _image_axes(fig, rect(left + k * (slot + SUBGAP), top, slot, h), image)
    elif images and images[0] is None:
        _empty_box(fig, rect(left, top, w, h))
    elif images:
        _image_axes(fig, rect(left, top, w, h), images[0])


def _empty_box(fig, rect: list[float]) -> None:
    """A square dashed frame centred in `rect`, saying "not built": a filter the atlas does not have."""
    ax = fig.add_axes(rect)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, "not built", ha="center", va="center", color="#666666")
    for spine in ax.spines.values():
        spine.set_linewidth(0.4)
        spine.set_linestyle((0, (2, 2)))
        spine.set_color("#999999")


def _image_axes(fig, rect: list[float], image) -> None:
    """One image in its own axes, centred in `rect` at its own aspect, framed by a hairline."""
    ax = fig.add_axes(rect)
    # 'none': PDF and SVG embed the image's own pixels, unresampled; Agg (PNG) draws it nearest-neighbour.
    ax.imshow(image, interpolation="none", resample=False, aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_linewidth(0.4)
        spine.set_color("#999999")
