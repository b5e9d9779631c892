"""The static site: Jinja2 pages rendered from atlas.json into the output folder.

Read top to bottom: load the manifest (typed records, checked against their schema) -> copy static
assets -> render index, layer pages, filter pages, 404 and sitemap, each from a page context ->
prune pages an earlier render wrote and this one did not -> report sizes. Every link is
page-relative (`root` is the way back to the site's root), so the site works under /<repo>/ on
GitHub Pages and from any static file server; --base-url is used only for canonical and Open
Graph URLs and the sitemap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlparse, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

import atlasgen
from atlasgen.codec import RF_CROP_DISPLAY, VIRIDIS_STOPS, zoomed_size
from atlasgen.errors import AtlasgenError
from atlasgen.site.figure import figure_command
from atlasgen.fs import OutputFolder, output_folder, progress_lines
from atlasgen.manifest import MANIFEST, Manifest, to_json
from atlasgen.site.atlases import atlas_folders, by_model, is_random, load_atlases
from atlasgen.site.wiring import top_inputs, wiring_view
from atlasgen.params import DIVERSITY_WEIGHT, EXACT_SHARE
from atlasgen.site.runs import curve_plot, image_label, making
from atlasgen.site.views import LAYER_THUMB, example_anchor, faint_units, image_size, layer_tabs, thumbnail, unit_views

# Display widths in CSS px; static/atlas.css sets the same ones (the <img> width and height
# attributes are the image's own pixels, for its aspect ratio, as HTML means them).
#: A filter page's synthesised images, when they are small enough to enlarge.
FIGURE_WIDTH = 256
#: The widest a probe photo and its heatmap are shown, side by side.
MAP_WIDTH = 256
#: An atlas's index shows a strip of thumbnails this wide.
STRIP_THUMB = 64
#: Where the search box finds an atlas's layers and filters: <name>/search.json.
SEARCH_INDEX = "search.json"
STRIP_THUMBS = 16
#: How a character of a value is written in BibTeX. A brace or backslash is never written `\{`, `\}`
#: or `\\`: BibTeX, pybtex and biber (btparse) count every brace, escaped or not, so `{O\}Brien}` ends
#: the field at the `}` and the rest is syntax. A command with an empty group (`\textbraceright{}`)
#: keeps every brace of the entry paired, whatever the value.
BIBTEX_ESCAPES = {"{": r"\textbraceleft{}", "}": r"\textbraceright{}", "\\": r"\textbackslash{}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", **{c: "\\" + c for c in "%$&#_"}}
#: Characters written as a space in BibTeX: control characters, line breaks, other spaces.
BIBTEX_BLANKS = frozenset({"Cc", "Cs", "Zl", "Zp", "Zs"})
#: What a --base-url may not hold: none of these is allowed in a URL (RFC 3986), and each is syntax to
#: HTML, XML, BibTeX or LaTeX. Whitespace and control characters are refused too.
URL_FORBIDDEN = frozenset('"<>\\^`{|}')
MAX_URL = 2000
STAGE = "site"


def templates_dir() -> Path:
    """The templates: inside the installed package (a wheel), or beside it in a source checkout."""
    package = Path(atlasgen.__file__).resolve().parent
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


@dataclass
class RenderResult:
    pages: int
    filters: int
    site_bytes: int
    bytes_per_filter: float
    model: str
    model_filters: int

    @property
    def projected_model_bytes(self) -> float:
        """The site's size for every filter of the model at these settings."""
        return self.bytes_per_filter * self.model_filters


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates_dir()),
        autoescape=select_autoescape(["html", "xml"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["as_pixels"] = as_pixels
    env.globals["thumbnail"] = thumbnail
    env.globals["faint_units"] = faint_units
    env.globals.update(wiring_view=wiring_view, top_inputs=top_inputs)
    env.globals["example_anchor"] = example_anchor
    env.globals.update(by_model=by_model, is_random=is_random)
    env.globals.update(curve_plot=curve_plot, making=making, image_label=image_label, image_size=image_size,
                       diversity_weight=DIVERSITY_WEIGHT, exact_share=EXACT_SHARE)
    return env


def as_pixels(natural_width: int, width: int) -> bool:
    """Whether an image natural_width px wide, shown `width` CSS px wide, is drawn as pixels
    (image-rendering: pixelated). Shown at more than half its width, it is enlarged on a 2x screen:
    the model's pixels, drawn on purpose without smoothing. A smaller one is smoothed as it shrinks."""
    return 2 * width > natural_width


def figure_width(size: int) -> int:
    """How wide a filter page shows its synthesised images (static/atlas.css, `.figures img.enlarged`):
    FIGURE_WIDTH when that at least doubles them, else their own size."""
    return FIGURE_WIDTH if 2 * size <= FIGURE_WIDTH else size


def rf_crop_size(box) -> tuple[int, int]:
    """The zoomed receptive-field crop's size in pixels (synthesis.images.rf_crop): (width, height)."""
    return zoomed_size(box, RF_CROP_DISPLAY)


#: The heatmaps' colours (codec.colour_map): stops at even offsets, interpolated linearly.
COLOUR_SCALE = [(i / (len(VIRIDIS_STOPS) - 1), "#%02x%02x%02x" % tuple(int(c) for c in rgb))
                for i, rgb in enumerate(VIRIDIS_STOPS)]


def render_site(out: Path, base_url: str | None = None, force: bool = False, focus: str | None = None,
                folder: OutputFolder | None = None, log: Callable[[str], None] | None = None,
                atlases: list[Manifest] | None = None) -> RenderResult:
    """Renders every page of every atlas in `out` (each <name>/atlas.json) and the root list of
    atlases, then prunes stale files. Without `force`, a folder that holds files atlasgen did not
    write is refused. `folder` is the writer of `out` whose lock the caller holds (a build's, after
    its export: the pages join its stages, and every stage's stale files go once they are written);
    without it, this takes the lock. `atlases`: those of `out`, as read under that lock. `log` gets
    a few progress lines ("render: N/M pages"). The result's sizes are those of the atlas `focus`
    (the first, if None)."""
    if base_url is not None:
        check_base_url(base_url)  # before anything is read or written
    if folder is None:
        stamps = _manifest_stamps(out)
        atlases = load_atlases(out)  # bad input fails here, before a lock file is made in --out
        with output_folder(out, force, expected=frozenset(a.name for a in atlases), log=log) as folder:
            # Read again only if another writer replaced an atlas.json meanwhile.
            unchanged = _manifest_stamps(out) == stamps
            return render_site(out, base_url, force, focus, folder, log, atlases if unchanged else None)
    atlases = atlases if atlases is not None else load_atlases(out)
    env = environment()
    owned = folder.stage(STAGE)
    tick = progress_lines(log, "render", 2 + sum(1 + len(a.layers) + a.units for a in atlases), "pages")
    base = base_url.rstrip("/") + "/" if base_url else None
    for source in sorted((templates_dir() / "static").iterdir()):
        owned.write(f"static/{source.name}", source.read_bytes())
    common = {"base_href": None, "canonical": None, "og_image": None, "thumb": LAYER_THUMB, "version": atlasgen.__version__,
              "atlas_names": [a.name for a in atlases], "atlas_models": {a.name: a.model for a in atlases}, "layer": None}

    def page(template: str, path: str, depth: int, **context) -> None:
        values = {**common, "root": "../" * depth, **context}
        if base and "canonical" not in context:
            values["canonical"] = base + path.removesuffix("index.html")
        owned.write(path, env.get_template(template).render(**values).encode())
        tick()

    urls = []
    for atlas in atlases:
        urls += _render_atlas(atlas, page, owned.write, base)
        owned.write(f"{atlas.name}/{SEARCH_INDEX}", search_index(atlas))
    first = next((a for a in atlases if a.layers and a.layers[0].units), None)
    preview = base + thumbnail(first.layers[0].units[0]) if base and first else None
    page("atlases.html", "index.html", 0, atlas=None, atlases=atlases, og_image=preview)
    # GitHub Pages serves the root 404.html at any depth, so it links from the site's own root.
    page("404.html", "404.html", 0, atlas=None, base_href=urlparse(base).path if base else "/")
    if base:
        owned.write("sitemap.xml", env.get_template("sitemap.xml").render(urls=[base] + urls).encode())
    owned.write(".nojekyll", b"")
    folder.finish()
    chosen = next((a for a in atlases if a.name == focus), atlases[0])
    home = out / chosen.name
    shared = sum(p.stat().st_size for p in out.iterdir() if p.is_file() and not p.is_symlink())
    shared += sum(p.stat().st_size for p in (out / "static").rglob("*") if p.is_file() and not p.is_symlink())
    total = shared + sum(p.stat().st_size for p in home.rglob("*") if p.is_file() and not p.is_symlink())
    per_filter = total / chosen.units if chosen.units else 0.0
    pages = 2 + sum(1 + len(a.layers) + a.units for a in atlases)
    return RenderResult(pages, chosen.units, total, per_filter, chosen.model, chosen.model_filters)


def _manifest_stamps(out: Path) -> dict[str, tuple[int, int, int]]:
    """Each atlas.json's inode, size and mtime: a writer that replaced one changed its stamp."""
    stamps = {}
    for name in atlas_folders(out):
        with contextlib.suppress(OSError):
            info = (out / name / MANIFEST).stat()
            stamps[name] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return stamps


def _render_atlas(atlas: Manifest, page, write, base: str | None) -> list[str]:
    """One atlas's index, layer and filter pages, and each filter's unit.json; the URLs the sitemap lists."""
    probes = {p.name: p for p in atlas.probes}
    size = atlas.parameters.size
    home = f"{atlas.name}/"
    layers = atlas.layers
    first = thumbnail(layers[0].units[0]) if layers and layers[0].units else None
    page("index.html", home + "index.html", 1, atlas=atlas, strip=STRIP_THUMBS, thumb=STRIP_THUMB,
         og_image=base + first if base and first else None)
    figure = {"width": figure_width(size), "rf_crop": rf_crop_size, "colour_scale": COLOUR_SCALE, "map_width": MAP_WIDTH}
    for li, layer in enumerate(layers):
        prev_layer = layers[li - 1] if li > 0 else None
        next_layer = layers[li + 1] if li + 1 < len(layers) else None
        views = layer_tabs(layer, atlas.probes, size)
        page("layer.html", layer.path + "index.html", 2, atlas=atlas, layer=layer, views=views,
             prev_layer=prev_layer, next_layer=next_layer)
        units = layer.units
        for ui, unit in enumerate(units):
            permalink = base + unit.page if base else unit.page
            citation = bibtex(atlas, layer.name, unit.index, permalink)
            write(unit.page + "unit.json", unit_document(atlas, layer, unit, citation))
            page(
                "filter.html", unit.page + "index.html", 3, atlas=atlas,
                layer=layer, unit=unit, views=unit_views(unit), maps=[(m, probes[m.probe]) for m in unit.activation_maps],
                size=size,
                prev_unit=units[ui - 1] if ui > 0 else None, next_unit=units[ui + 1] if ui + 1 < len(units) else None,
                prev_layer=prev_layer, next_layer=next_layer, permalink=permalink,
                bibtex=citation, figure=figure, figure_command=figure_command(atlas.name, layer.name, unit.index),
                og_image=base + thumbnail(unit) if base else None,
            )
    if not base:
        return []
    return [base + home] + [base + layer.path for layer in layers] + [base + u.page for layer in layers for u in layer.units]


def search_index(atlas: Manifest) -> bytes:
    """<name>/search.json, what the search box (static/atlas.js) needs to turn `block4_conv2/137` into a
    link with no server: each layer's name, folder and filter count, and the filters built, as ranges.
    A filter's page is <folder><index>/ (names.unit_folder); one that is not is listed in `pages`."""
    layers = []
    for layer in atlas.layers:
        ranges: list[list[int]] = []
        pages = {}
        for unit in sorted(layer.units, key=lambda u: u.index):
            if unit.page != f"{layer.path}{unit.index}/":
                pages[str(unit.index)] = unit.page
            elif ranges and ranges[-1][1] == unit.index - 1:
                ranges[-1][1] = unit.index
            else:
                ranges.append([unit.index, unit.index])
        record = {"name": layer.name, "path": layer.path, "filters": layer.filters, "built": ranges}
        if pages:
            record["pages"] = pages
        layers.append(record)
    document = {"atlas": atlas.name, "model": atlas.model, "layers": layers}
    return (json.dumps(document, separators=(",", ":")) + "\n").encode()


def unit_document(atlas: Manifest, layer, unit, citation: str) -> bytes:
    """unit.json beside a filter page: the filter's record from atlas.json, with what names it, for scripts."""
    document = {
        "atlas": atlas.name, "atlas_id": atlas.atlas_id, "model": atlas.model,
        "weights": to_json(atlas.weights), "generator": to_json(atlas.generator),
        "layer": {f.name: to_json(getattr(layer, f.name)) for f in dataclasses.fields(layer) if f.name != "units"},
        "unit": to_json(unit), "bibtex": citation,
    }
    return (json.dumps(document, indent=1, allow_nan=False) + "\n").encode()


def bibtex(atlas: Manifest, layer: str, index: int, url: str) -> str:
    """A filter's BibTeX entry: a key stable across rebuilds and unique in the site (atlas, layer,
    filter), the atlas's authors and title, the year and day it was built, and in the note the
    atlas_id, atlasgen's version and the weights, so that it says which images it points at.

    Every value goes through `tex` (or `bibtex_url`), so the entry parses whatever the manifest holds:
    no value can close its field, add a field or leave a brace unpaired."""
    key = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in f"atlasgen-{atlas.name}-{layer}-{index}")
    authors = " and ".join(bibtex_name(a) for a in atlas.authors) or "{atlasgen}"
    link = bibtex_url(url)
    cited = link.replace("%", "\\%")  # inside \url{} in a field, LaTeX would read % as a comment
    return (
        f"@misc{{{key},\n"
        f"  author = {{{authors}}},\n"
        f"  title = {{{{{tex(atlas.title)}}}: {tex(layer)}, filter {int(index)}}},\n"
        f"  year = {{{tex(atlas.built[:4])}}},\n"
        f"  howpublished = {{\\url{{{cited}}}}},\n"
        f"  url = {{{link}}},\n"
        f"  urldate = {{{tex(atlas.built)}}},\n"
        f"  note = {{Atlas {tex(atlas.atlas_id)}, made with atlasgen {tex(atlas.generator.version)}; weights: "
        f"{tex(atlas.weights.label)}, sha256:{tex(atlas.weights.fingerprint[:16])}}}\n"
        f"}}"
    )


def tex(text) -> str:
    """`text` as the contents of a BibTeX field: LaTeX's special characters escaped (BIBTEX_ESCAPES),
    every brace paired, and a control character, line break or other space written as a space."""
    return "".join(BIBTEX_ESCAPES.get(c) or (" " if unicodedata.category(c) in BIBTEX_BLANKS else c) for c in str(text))


def bibtex_name(author: str) -> str:
    """One author in a BibTeX author list: braced whole (a name BibTeX neither splits nor reorders)
    where BibTeX would read several names ('and' as a word), too many commas, a leading comma or
    nothing; else as it is, for BibTeX to parse ("First Last" or "Last, First")."""
    name = " ".join(tex(author).split())
    if not name or name.count(",") > 1 or re.search(r"(?i)(^|\s)and(\s|$)", name) or name.startswith(","):
        return f"{{{name}}}"
    return name


def bibtex_url(url: str) -> str:
    """A URL as a BibTeX url field holds it: as it is, but every character a URL may not hold and
    BibTeX or LaTeX reads as syntax (URL_FORBIDDEN, whitespace, control characters) percent-encoded.
    A checked --base-url has none; this keeps the entry whole for any other caller."""
    return "".join(quote(c, safe="", errors="replace") if c in URL_FORBIDDEN or not c.isprintable() or c.isspace()
                   else c for c in str(url))


def base_url_problem(url) -> str | None:
    """What is wrong with `url` as the site's public URL (--base-url), or None. It must be an http(s)
    URL with a host, no query or fragment (pages' paths follow it), a % only as a %XX escape, at most
    MAX_URL characters, and none of URL_FORBIDDEN, whitespace or control characters: then it goes
    into HTML, the sitemap's XML and BibTeX as it is ('&', "'" and non-ASCII letters may be in it)."""
    if not isinstance(url, str) or not url.lower().startswith(("https://", "http://")):
        return "is not an http(s) URL"
    if len(url) > MAX_URL:
        return f"is longer than {MAX_URL} characters"
    bad = next((c for c in url if c in URL_FORBIDDEN or not c.isprintable() or c.isspace()), None)
    if bad is not None:
        return f"holds {ascii(bad)}, which a URL may not hold" + (" (write a space as %20)" if bad == " " else "")
    if re.search(r"%(?![0-9A-Fa-f]{2})", url):
        return "holds a % that is not a %XX escape"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return "has a host or port that is not valid"
    if not parts.hostname:
        return "has no host"
    if "?" in url or "#" in url:
        return "has a query (?) or fragment (#), which the pages' paths cannot follow"
    return None


def check_base_url(url) -> str:
    """`url` if it is a usable --base-url (`base_url_problem`); else one line that says why and what to give."""
    problem = base_url_problem(url)
    if problem:
        shown = repr(url[:80]) if isinstance(url, str) else type(url).__name__
        raise AtlasgenError(f"--base-url {shown} {problem}; give the site's public URL, e.g. https://user.github.io/repo/")
    return url
