"""`atlasgen figure`: a publication panel from a real atlas, read back with real parsers (pypdf for
the PDF, xml.etree for the SVG, PIL for the PNG); one-line errors that write nothing; SPEC parsing;
and the command each filter page shows."""

from __future__ import annotations

import base64
import io
import json
import os
import shlex
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from atlasgen.errors import AtlasgenError
from atlasgen.site.figure import DEFAULT_COLUMNS, Spec, figure_command, make_figure, parse_columns, parse_spec
from support import HED_ATLAS

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}href"
ROWS = ["block1_conv1/0-1", "block2_conv1/3"]  # 3 filters: a range and a single one
LABELS = [("block1_conv1", "filter 0"), ("block1_conv1", "filter 1"), ("block2_conv1", "filter 3")]
HEADERS = ["whole filter", "centre neuron", "receptive field", "(zoomed)"]


@pytest.fixture(scope="module")
def site(figure_atlas) -> Path:
    """The site of conftest's `figure_atlas` (filters 0-3 of block1_conv1 and block2_conv1, built
    once for the run). Never change it; copy it with `shutil.copytree` to change it."""
    return figure_atlas.out


def unit(site: Path, layer: str, index: int) -> dict:
    atlas = json.loads((site / HED_ATLAS / "atlas.json").read_text())
    (record,) = [u for l in atlas["layers"] if l["name"] == layer for u in l["units"] if u["index"] == index]
    return record


def source_sizes(site: Path, views=("channel", "neuron", "rf_crop")) -> list[tuple[int, int]]:
    """The pixel sizes of the images the panel's rows show, row by row."""
    sizes = []
    for layer, index in [("block1_conv1", 0), ("block1_conv1", 1), ("block2_conv1", 3)]:
        for view in views:
            with Image.open(site / unit(site, layer, index)["images"][view]) as image:
                sizes.append(image.size)
    return sizes


def embedded_truetype(font) -> bool:
    """A PDF font dict (or a Type0 font's descendant) whose descriptor embeds a TrueType program."""
    if "/DescendantFonts" in font:
        return all(embedded_truetype(d.get_object()) for d in font["/DescendantFonts"])
    return "/FontFile2" in font["/FontDescriptor"].get_object()


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folders` (hidden ones too) with its size and mtime."""
    seen = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                info = path.lstat()
                seen[str(path)] = (info.st_size, info.st_mtime_ns)
    return seen


# --- the three formats -------------------------------------------------------------------------


def test_pdf_has_the_labels_as_text_and_one_embedded_image_per_cell(cli, site, tmp_path):
    from pypdf import PdfReader

    target = tmp_path / "panel.pdf"
    result = cli("figure", "--out", site, *ROWS, "-o", target)
    assert result.returncode == 0, result.stderr
    assert "3 filters × 3 views" in result.stdout and "9 images" in result.stdout
    reader = PdfReader(target)
    (page,) = reader.pages
    text = page.extract_text()
    for layer, number in LABELS:
        assert layer in text and number in text, text
    assert text.count("block1_conv1") == 2 and text.count("block2_conv1") == 1
    for header in HEADERS:
        assert header in text, text
    # The text is TrueType (pdf.fonttype 42) with its font embedded, not outlines.
    fonts = [font.get_object() for font in page["/Resources"]["/Font"].values()]
    assert fonts and all(embedded_truetype(font) for font in fonts)
    images = page.images
    assert len(images) == 9
    # Each image embedded at its own pixels, not resampled: the same sizes as the site's files.
    assert sorted(image.image.size for image in images) == sorted(source_sizes(site))


def test_svg_has_text_elements_and_one_image_element_per_cell(cli, site, tmp_path):
    target = tmp_path / "panel.svg"
    result = cli("figure", "--out", site, *ROWS, "-o", target, "--dpi", "150")
    assert result.returncode == 0, result.stderr
    root = ET.parse(target).getroot()
    assert root.tag == f"{SVG}svg"
    texts = ["".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")]
    assert sorted(texts) == sorted(HEADERS + [line for label in LABELS for line in label])
    # No glyph outlines (matplotlib names them after the font, e.g. DejaVuSans-62): text stays text.
    assert not any((e.get("id") or "").startswith("DejaVu") for e in root.iter())
    images = list(root.iter(f"{SVG}image"))
    assert len(images) == 9
    sizes = []
    for element in images:
        href = element.get(XLINK) or element.get("href")
        assert href.startswith("data:image/png;base64,")  # embedded, not linked
        assert "pixelated" in element.get("style", "")
        with Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))) as image:
            sizes.append(image.size)
    assert sorted(sizes) == sorted(source_sizes(site))


def test_png_is_white_at_the_dpi_and_the_size_of_the_pdf_page(site, tmp_path):
    from pypdf import PdfReader

    pdf = make_figure(site, ROWS, tmp_path / "panel.pdf")
    png = make_figure(site, ROWS, tmp_path / "panel.png")
    low = make_figure(site, ROWS, tmp_path / "low.png", dpi=100)
    assert (pdf.images, png.images, pdf.dpi, png.format) == (9, 9, 300, "png")
    page = PdfReader(tmp_path / "panel.pdf").pages[0]
    inches = (float(page.mediabox.width) / 72, float(page.mediabox.height) / 72)
    with Image.open(tmp_path / "panel.png") as image:
        assert image.size == png.pixels
        assert image.size == (round(inches[0] * 300), round(inches[1] * 300))
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        rgba = image.convert("RGBA")
    with Image.open(tmp_path / "low.png") as image:
        assert abs(image.width * 3 - png.pixels[0]) <= 3 and abs(image.height * 3 - png.pixels[1]) <= 3
    # A white, opaque background: the margin all round and every alpha.
    width, height = rgba.size
    assert rgba.getchannel("A").getextrema() == (255, 255)
    for box in [(0, 0, width, 20), (0, height - 20, width, height), (0, 0, 20, height), (width - 20, 0, width, height)]:
        assert rgba.crop(box).convert("RGB").getextrema() == ((255, 255),) * 3, box
    assert low.pixels == (round(inches[0] * 100), round(inches[1] * 100))


def test_png_pixels_are_the_images_own_nearest_neighbour(site, tmp_path):
    """Nearest-neighbour: every colour inside the whole-filter cell is one of its image's own."""
    import numpy as np

    result = make_figure(site, ["block2_conv1/3"], tmp_path / "one.png", columns="channel", dpi=200)
    with Image.open(site / unit(site, "block2_conv1", 3)["images"]["channel"]) as source:
        own = {tuple(c) for c in np.asarray(source.convert("RGB")).reshape(-1, 3)}
    with Image.open(result.path) as panel:
        pixels = np.asarray(panel.convert("RGB"))
    ink = (pixels != 255).any(axis=2)
    # The cell is the right-most thing drawn: its column of ink gives its rows, its row gives its columns.
    right = int(np.nonzero(ink.any(axis=0))[0].max())
    rows = np.nonzero(ink[:, right - 10])[0]
    top, bottom = int(rows.min()), int(rows.max())
    row = ink[(top + bottom) // 2, : right + 1]
    left = right - int(np.argmin(row[::-1]))  # the run of ink that ends at `right`
    assert right - left > 150  # an inch at 200 dpi, less the frame
    inner = pixels[top + 5: bottom - 4, left + 5: right - 4].reshape(-1, 3)  # off the frame and its antialiasing
    colours = {tuple(c) for c in inner}
    assert colours <= own, len(colours - own)
    assert len(colours) > 10  # the image itself, not a blank


def test_every_view_with_examples_and_maps(site, tmp_path):
    columns = "channel,neuron,rf-crop,examples,maps"
    result = make_figure(site, ["block1_conv1/0-3", "block2_conv1/0-3"], tmp_path / "all.svg", columns)
    assert result.columns == ("channel", "neuron", "rf-crop", "examples", "maps")
    assert len(result.rows) == 8
    examples = sum(min(3, len(unit(site, r.layer, r.filter)["dataset_examples"])) for r in result.rows)
    assert result.images == 8 * 4 + examples
    root = ET.parse(result.path).getroot()
    assert len(list(root.iter(f"{SVG}image"))) == result.images
    texts = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    assert {"top dataset", "examples", "activation map", "(astronaut)"} <= texts


def test_the_negative_columns_draw_the_negative_image_and_the_lowest_examples(site, tmp_path):
    columns = "channel,negative,examples,examples-negative"
    result = make_figure(site, ["block1_conv1/0-1", "block2_conv1/3"], tmp_path / "sides.svg", columns)
    assert result.columns == ("channel", "negative", "examples", "examples-negative")
    records = [unit(site, r.layer, r.filter) for r in result.rows]
    lowest = [min(3, len(u["dataset_examples_negative"])) for u in records]
    assert lowest == [3, 3, 3]
    assert result.images == 3 * 2 + sum(min(3, len(u["dataset_examples"])) for u in records) + sum(lowest)
    root = ET.parse(result.path).getroot()
    texts = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    assert {"most negative", "(whole filter)", "lowest dataset", "examples"} <= texts
    embedded = set()
    for element in root.iter(f"{SVG}image"):
        href = element.get(XLINK) or element.get("href")
        with Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))) as image:
            embedded.add(image.convert("RGB").tobytes())
    for record in records:  # each negative image and each lowest crop, pixel for pixel
        for path in [record["images"]["channel_negative"]] + [e["image"] for e in record["dataset_examples_negative"][:3]]:
            with Image.open(site / path) as source:
                assert source.convert("RGB").tobytes() in embedded, path
    assert parse_columns("negative,examples-negative") == ("negative", "examples-negative")


def test_the_diversity_column_draws_every_image_of_each_set(site, tmp_path):
    result = make_figure(site, ["block1_conv1/0", "block2_conv1/2-3"], tmp_path / "faces.svg", "channel,diversity")
    assert result.columns == ("channel", "diversity")
    records = [unit(site, r.layer, r.filter) for r in result.rows]
    assert [len(u["images"]["diversity"]) for u in records] == [2, 2, 2]  # the quick preset's sets
    assert result.images == 3 + 3 * 2
    root = ET.parse(result.path).getroot()
    assert "diversity" in {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    embedded = []
    for element in root.iter(f"{SVG}image"):
        href = element.get(XLINK) or element.get("href")
        with Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))) as image:
            embedded.append(image.convert("RGB").tobytes())
    for record in records:
        for path in record["images"]["diversity"]:
            with Image.open(site / path) as source:
                assert source.convert("RGB").tobytes() in embedded, path


def test_the_figure_help_lists_the_negative_columns(cli):
    shown = cli("figure", "--help")
    listed = "".join(shown.stdout.split())  # click wraps the list, at hyphens too
    assert shown.returncode == 0 and "channel,negative,diversity," in listed and "examples,examples-negative," in listed


def test_the_kernel_column_embeds_each_first_layer_kernel_pixel_for_pixel(site, tmp_path):
    import numpy as np

    result = make_figure(site, ["block1_conv1/0-1"], tmp_path / "kernels.svg", "channel,kernel")
    assert result.columns == ("channel", "kernel") and result.images == 4
    root = ET.parse(result.path).getroot()
    assert {"kernel", "(RGB)"} <= {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    embedded = []
    for element in root.iter(f"{SVG}image"):
        href = element.get(XLINK) or element.get("href")
        with Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))) as image:
            embedded.append(np.asarray(image.convert("RGB")))
    for index in (0, 1):
        with Image.open(site / unit(site, "block1_conv1", index)["images"]["kernel"]) as source:
            kernel = np.asarray(source.convert("RGB"))
        assert kernel.shape == (96, 96, 3) and any(np.array_equal(kernel, e) for e in embedded), index


def test_the_same_panel_gives_the_same_bytes(site, tmp_path):
    for suffix in ("pdf", "svg", "png"):
        make_figure(site, ROWS, tmp_path / f"a.{suffix}")
        make_figure(site, ROWS, tmp_path / f"b.{suffix}")
        assert (tmp_path / f"a.{suffix}").read_bytes() == (tmp_path / f"b.{suffix}").read_bytes(), suffix


def test_urls_and_paths_name_the_same_rows(site, tmp_path):
    specs = [
        f"https://user.github.io/repo/{HED_ATLAS}/block1_conv1/0/",
        f"site/{HED_ATLAS}/block1_conv1/1/index.html",
        f"{HED_ATLAS}/block2_conv1/3/",
    ]
    result = make_figure(site, specs, tmp_path / "p.svg")
    assert [(r.atlas, r.layer, r.filter) for r in result.rows] == [
        (HED_ATLAS, "block1_conv1", 0), (HED_ATLAS, "block1_conv1", 1), (HED_ATLAS, "block2_conv1", 3)]
    assert result.labels[-6:] == [line for label in LABELS for line in label]


def test_only_the_target_is_written(site, tmp_path):
    before = snapshot(site)
    out = tmp_path / "figs"
    out.mkdir()
    make_figure(site, ROWS, out / "p.pdf")
    assert sorted(p.name for p in out.iterdir()) == ["p.pdf"]  # the temp file was renamed into place
    assert snapshot(site) == before


# --- several atlases -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_atlases(site, tmp_path_factory) -> Path:
    """The site's atlas twice in one folder: as it is, and as `other` (its atlas.json re-pointed)."""
    root = tmp_path_factory.mktemp("two") / "site"
    shutil.copytree(site, root, symlinks=True)
    shutil.copytree(site / HED_ATLAS, root / "other", symlinks=True)

    def moved(value):
        if isinstance(value, str):
            return "other/" + value[len(HED_ATLAS) + 1:] if value.startswith(HED_ATLAS + "/") else value
        if isinstance(value, list):
            return [moved(v) for v in value]
        if isinstance(value, dict):
            return {k: moved(v) for k, v in value.items()}
        return value

    document = moved(json.loads((root / "other" / "atlas.json").read_text()))
    document["name"] = "other"
    (root / "other" / "atlas.json").write_text(json.dumps(document))
    return root


def test_several_atlases_need_the_atlas_named(cli, one_line_error, two_atlases, tmp_path):
    target = tmp_path / "p.pdf"
    result = cli("figure", "--out", two_atlases, "block1_conv1/0", "-o", target)
    one_line_error(result, "names no atlas", HED_ATLAS, "other", "--atlas")
    assert not target.exists()
    result = cli("figure", "--out", two_atlases, "block1_conv1/0", "--atlas", "nope", "-o", target)
    one_line_error(result, "--atlas 'nope'", HED_ATLAS, "other")

    done = make_figure(two_atlases, ["block1_conv1/0", f"{HED_ATLAS}/block1_conv1/1/"], tmp_path / "p.svg",
                       atlas="other")
    assert [(r.atlas, r.filter) for r in done.rows] == [("other", 0), (HED_ATLAS, 1)]
    # Rows of different atlases say which atlas they are from.
    assert done.labels[-6:] == ["other", "block1_conv1", "filter 0", HED_ATLAS, "block1_conv1", "filter 1"]


# --- errors: one line, exit 2, nothing written ---------------------------------------------------


@pytest.fixture
def maco_only(site, tmp_path) -> Path:
    """A copy of the site whose block1_conv1/0 has no Lucid images and no examples or maps."""
    root = tmp_path / "maco"
    shutil.copytree(site, root, symlinks=True)
    path = root / HED_ATLAS / "atlas.json"
    document = json.loads(path.read_text())
    record = document["layers"][0]["units"][0]
    record["images"] = {"maco_channel": record["images"]["channel"]}
    record["dataset_examples"] = []
    record["dataset_examples_negative"] = []
    record["activation_maps"] = []
    path.write_text(json.dumps(document))
    return root


ERRORS = [
    # (arguments after `figure --out SITE`, fragments of the one line)
    (["block1_conv1/7", "-o", "{t}/p.pdf"], ["filter 7 of block1_conv1 is not in the atlas", "built: 0-3"]),
    (["block1_conv1/2-5", "-o", "{t}/p.pdf"], ["filter 4 of block1_conv1"]),
    (["block1_conv1/64", "-o", "{t}/p.pdf"], ["block1_conv1 has 64 filters", "no filter 64"]),
    (["block9_conv1/0", "-o", "{t}/p.pdf"], ["no layer 'block9_conv1'", "block1_conv1, block2_conv1"]),
    (["nope/block1_conv1/0/", "-o", "{t}/p.pdf"], ["names the atlas 'nope'", HED_ATLAS]),
    (["block1_conv1/0", "-o", "{t}/p.jpg"], ["unknown extension '.jpg'", ".pdf, .svg or .png"]),
    (["block1_conv1/0", "-o", "{t}/p"], ["unknown extension '(none)'"]),
    (["block1_conv1/0", "-o", "{t}/missing/p.pdf"], ["does not exist"]),
    (["block1_conv1/0", "-o", "{t}"], ["unknown extension"]),
    (["block1_conv1", "-o", "{t}/p.pdf"], ["is not layer/filter"]),
    (["block1_conv1/x", "-o", "{t}/p.pdf"], ["'x' is not a filter number"]),
    (["block1_conv1/3-1", "-o", "{t}/p.pdf"], ["runs backwards"]),
    (["block1_conv1/-1", "-o", "{t}/p.pdf"], ["is not a filter number"]),
    (["", "-o", "{t}/p.pdf"], ["SPEC is empty"]),
    (["https://user.github.io/block1_conv1/0/", "-o", "{t}/p.pdf"], ["<atlas>/<layer>/<filter>"]),
    (["ftp://host/a/block1_conv1/0/", "-o", "{t}/p.pdf"], ["ftp: URL"]),
    (["block1_conv1/0", "-o", "{t}/p.pdf", "--dpi", "0"], ["--dpi 0"]),
    (["block1_conv1/0", "-o", "{t}/p.pdf", "--dpi", "-300"], ["--dpi -300"]),
    (["block1_conv1/0", "-o", "{t}/p.pdf", "--dpi", ""], ["--dpi"]),
    (["block1_conv1/0", "-o", "{t}/p.png", "--dpi", "9600", "--columns", "channel,examples,maps"], ["the PNG would be"]),
    (["block1_conv1/0", "-o", "{t}/p.pdf", "--columns", ""], ["--columns", "empty"]),
    (["block1_conv1/0", "-o", "{t}/p.pdf", "--columns", "channel,,neuron"], ["--columns has an empty item"]),
    (["block1_conv1/0", "-o", "{t}/p.pdf", "--columns", "channel,rf_crop"], ["unknown view 'rf_crop'"]),
    (["block1_conv1/0", "-o", "{t}/p.pdf", "--columns", "maco"], ["the view maco was not built"]),
    (["block2_conv1/0", "-o", "{t}/p.pdf", "--columns", "kernel"], ["the view kernel was not built", "reads the image"]),
    (["block1_conv1/0", "-o", "{t}/p.pdf", "--atlas", ""], ["--atlas", "empty"]),
    (["block1_conv1/0", "-o", ""], ["-o", "empty"]),
    (["-o", "{t}/p.pdf"], ["Missing argument 'SPEC...'"]),
    (["block1_conv1/0"], ["Missing option '-o'"]),
]


@pytest.mark.parametrize("args, fragments", ERRORS, ids=[" ".join(a)[:60] for a, _ in ERRORS])
def test_bad_input_is_one_line_and_writes_nothing(cli, one_line_error, site, tmp_path, args, fragments):
    before = snapshot(site, tmp_path)
    result = cli("figure", "--out", site, *[a.replace("{t}", str(tmp_path)) for a in args])
    one_line_error(result, *fragments)
    assert snapshot(site, tmp_path) == before


@pytest.mark.parametrize("columns, fragment", [
    ("channel", "(it has maco); build with --method lucid (or use the view maco)"),
    ("negative", "the view negative was not built"),
    ("examples-negative", "the view examples-negative was not built"),
    ("examples", "the view examples was not built"),
    ("maps", "the view maps was not built"),
])
def test_a_view_that_was_not_built(cli, one_line_error, maco_only, tmp_path, columns, fragment):
    before = snapshot(maco_only, tmp_path)
    result = cli("figure", "--out", maco_only, "block1_conv1/0-1", "--columns", columns, "-o", tmp_path / "p.pdf")
    one_line_error(result, fragment, "block1_conv1/0")
    assert snapshot(maco_only, tmp_path) == before
    assert make_figure(maco_only, ["block1_conv1/0"], tmp_path / "ok.pdf", "maco").images == 1


def test_an_empty_or_missing_out_folder(cli, one_line_error, tmp_path):
    result = cli("figure", "--out", "", "block1_conv1/0", "-o", tmp_path / "p.pdf")
    one_line_error(result, "--out", "empty")
    result = cli("figure", "--out", tmp_path / "nothing", "block1_conv1/0", "-o", tmp_path / "p.pdf")
    one_line_error(result, "is not a folder of atlases")
    (tmp_path / "empty").mkdir()
    result = cli("figure", "--out", tmp_path / "empty", "block1_conv1/0", "-o", tmp_path / "p.pdf")
    one_line_error(result, "holds no atlas")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_an_output_that_is_a_folder(cli, one_line_error, site, tmp_path):
    (tmp_path / "panel.pdf").mkdir()
    (tmp_path / "file").write_text("")
    one_line_error(cli("figure", "--out", site, "block1_conv1/0", "-o", tmp_path / "panel.pdf"), "is a folder")
    one_line_error(cli("figure", "--out", site, "block1_conv1/0", "-o", tmp_path / "file" / "p.pdf"), "is not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "panel.pdf"]
    assert not any((tmp_path / "panel.pdf").iterdir())


def test_images_are_read_only_from_inside_the_site(cli, one_line_error, site, tmp_path):
    root = tmp_path / "site"
    shutil.copytree(site, root, symlinks=True)
    image = root / unit(site, "block1_conv1", 0)["images"]["channel"]
    outside = tmp_path / "secret.webp"
    shutil.copy(image, outside)
    image.unlink()
    image.symlink_to(outside)
    result = cli("figure", "--out", root, "block1_conv1/0", "-o", tmp_path / "p.pdf")
    one_line_error(result, "leads outside --out", "refusing")
    assert not (tmp_path / "p.pdf").exists()
    # A link that stays inside the site is read.
    image.unlink()
    image.symlink_to(root / unit(site, "block1_conv1", 1)["images"]["channel"])
    assert make_figure(root, ["block1_conv1/0"], tmp_path / "p.pdf").images == 3
    # A listed image that is gone, or that is not an image, is one line too.
    image.unlink()
    one_line_error(cli("figure", "--out", root, "block1_conv1/0", "-o", tmp_path / "q.pdf"), "missing")
    image.write_bytes(b"not an image")
    one_line_error(cli("figure", "--out", root, "block1_conv1/0", "-o", tmp_path / "q.pdf"), "not a readable image")
    assert not (tmp_path / "q.pdf").exists()


# --- SPEC parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("block2_conv1/3", (None, "block2_conv1", 3, 3)),
    ("block2_conv1/3/", (None, "block2_conv1", 3, 3)),
    ("block2_conv1/0-7", (None, "block2_conv1", 0, 7)),
    ("block2_conv1/5-5", (None, "block2_conv1", 5, 5)),
    ("  block2_conv1/3  ", (None, "block2_conv1", 3, 3)),
    ("vgg16-hed-bsds500/block2_conv1/3/", ("vgg16-hed-bsds500", "block2_conv1", 3, 3)),
    ("vgg16/block2_conv1/3", ("vgg16", "block2_conv1", 3, 3)),
    ("site/vgg16-hed-bsds500/block2_conv1/3/index.html", ("vgg16-hed-bsds500", "block2_conv1", 3, 3)),
    ("./site/vgg16/block4_conv2/137/index.html", ("vgg16", "block4_conv2", 137, 137)),
    ("/home/me/site/vgg16/block4_conv2/137", ("vgg16", "block4_conv2", 137, 137)),
    ("https://user.github.io/repo/vgg16-hed-bsds500/block2_conv1/3/", ("vgg16-hed-bsds500", "block2_conv1", 3, 3)),
    ("https://user.github.io/repo/vgg16/block2_conv1/3/index.html", ("vgg16", "block2_conv1", 3, 3)),
    ("http://127.0.0.1:8000/vgg16/block2_conv1/3/?x=1#cite", ("vgg16", "block2_conv1", 3, 3)),
    ("https://example.org/vgg16/block2_conv1/3", ("vgg16", "block2_conv1", 3, 3)),
    ("https://example.org/vgg16/my%20layer-a1b2c3/3/", ("vgg16", "my layer-a1b2c3", 3, 3)),
    ("file:///tmp/site/vgg16/block1_conv1/0/index.html", ("vgg16", "block1_conv1", 0, 0)),
])
def test_specs_that_parse(text, expected):
    spec = parse_spec(text)
    assert isinstance(spec, Spec)
    assert (spec.atlas, spec.layer, spec.first, spec.last) == expected


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("block2_conv1", "is not layer/filter"),
    ("block2_conv1/", "is not layer/filter"),
    ("/3", "is not layer/filter"),
    ("block2_conv1/three", "is not a filter number"),
    ("block2_conv1/3.0", "is not a filter number"),
    ("block2_conv1/-3", "is not a filter number"),
    ("block2_conv1/3-", "is not a filter number"),
    ("block2_conv1/3-1", "runs backwards"),
    ("block2_conv1/" + "9" * 5000, "is not a filter number"),
    ("block2_conv1/3/index.htm", "is not a filter number"),
    ("https://user.github.io/block2_conv1/3/", "<atlas>/<layer>/<filter>"),
    ("https://user.github.io/", "<atlas>/<layer>/<filter>"),
    ("javascript://x/vgg16/block2_conv1/3", "javascript: URL"),
    ("a/b\0/3", "NUL"),
])
def test_specs_that_do_not_parse(text, fragment):
    with pytest.raises(AtlasgenError) as caught:
        parse_spec(text)
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_columns_parse():
    assert parse_columns("channel,neuron,rf-crop") == DEFAULT_COLUMNS
    assert parse_columns(" examples , maps ") == ("examples", "maps")
    assert parse_columns(["maco"]) == ("maco",)
    for bad in ("", ",", "channel,", "whole"):
        with pytest.raises(AtlasgenError):
            parse_columns(bad)


# --- the command a filter page shows --------------------------------------------------------------


def test_figure_command_text():
    assert figure_command(HED_ATLAS, "block2_conv1", 3) == (
        "atlasgen figure --out site vgg16-hed-bsds500/block2_conv1/3/ -o block2_conv1-3.pdf")
    assert figure_command("vgg16", "block4_conv2", 137, out="my site", columns=["channel", "maps"], suffix="svg") == (
        "atlasgen figure --out 'my site' vgg16/block4_conv2/137/ --columns channel,maps -o block4_conv2-137.svg")
    # A layer name that is not URL-safe is written as its page's folder, which the SPEC finds.
    command = figure_command("vgg16", "my layer", 0)
    assert shlex.split(command)[4].startswith("vgg16/my-layer-") and "'" not in command
    for bad in (-1, True, "3"):
        with pytest.raises(ValueError):
            figure_command("vgg16", "block1_conv1", bad)


def test_figure_command_reproduces_the_row(cli, site, tmp_path, monkeypatch):
    command = figure_command(HED_ATLAS, "block2_conv1", 3, out=str(site))
    words = shlex.split(command)
    assert words[:2] == ["atlasgen", "figure"]
    monkeypatch.chdir(tmp_path)
    result = cli(*words[1:])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block2_conv1-3.pdf"]
    direct = make_figure(site, ["block2_conv1/3"], tmp_path / "direct.pdf")
    assert (tmp_path / "block2_conv1-3.pdf").read_bytes() == direct.path.read_bytes()
