"""Site rendering from a manifest: links, escaping, GitHub Pages details, the typed manifest, pruning."""

import json
import re
import stat
from html.parser import HTMLParser
from pathlib import Path

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.site.render import render_site
from support import synthetic_manifest, write_manifest


HOSTILE = '<b onmouseover="x">evil</b>'


def write_atlas(out: Path, layers=(("block1_conv1", 3), ("block2_conv1", 2))) -> dict:
    manifest = synthetic_manifest(layers=list(layers))
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)
    return manifest


def test_pages_use_page_relative_links_only(tmp_path):
    write_atlas(tmp_path)
    result = render_site(tmp_path)
    assert result.pages == 1 + 1 + 2 + 5 + 1  # the list of atlases, the atlas's index, layers, filters, 404
    for page in tmp_path.rglob("*.html"):
        if page.name == "404.html":
            continue
        html = page.read_text()
        for url in re.findall(r'(?:href|src)="([^"]*)"', html):
            assert not url.startswith(("/", "http:", "https:")), (page, url)
            target = (page.parent / url).resolve()
            assert target.is_relative_to(tmp_path.resolve()), (page, url)
    filter_page = (tmp_path / "vgg16/block1_conv1/1/index.html").read_text()
    assert 'href="../../../vgg16/block1_conv1/0/index.html"' in filter_page
    assert 'data-next="../../../vgg16/block1_conv1/2/index.html"' in filter_page
    assert 'data-down="../../../vgg16/block2_conv1/index.html"' in filter_page
    assert "og:url" not in filter_page and not (tmp_path / "sitemap.xml").exists()
    assert (tmp_path / ".nojekyll").exists() and (tmp_path / "static" / "atlas.css").exists()


def test_base_url_gives_canonical_open_graph_sitemap_and_a_404_that_works_at_any_depth(tmp_path):
    write_atlas(tmp_path)
    render_site(tmp_path, base_url="https://user.github.io/repo")
    page = (tmp_path / "vgg16/block2_conv1/1/index.html").read_text()
    assert '<link rel="canonical" href="https://user.github.io/repo/vgg16/block2_conv1/1/">' in page
    assert '<meta property="og:image" content="https://user.github.io/repo/vgg16/block2_conv1/1/channel.webp">' in page
    assert "@misc{atlasgen-vgg16-block2_conv1-1," in page and "\\url{https://user.github.io/repo/vgg16/block2_conv1/1/}" in page
    assert "block2\\_conv1" in page  # BibTeX escaping
    sitemap = (tmp_path / "sitemap.xml").read_text()
    assert sitemap.count("<loc>") == 1 + 1 + 2 + 5 and "<loc>https://user.github.io/repo/vgg16/block1_conv1/2/</loc>" in sitemap
    not_found = (tmp_path / "404.html").read_text()
    assert '<base href="/repo/">' in not_found and 'href="index.html"' in not_found


def test_names_are_escaped_and_paths_are_safe(tmp_path):
    manifest = write_atlas(tmp_path, layers=(("block1_conv1", 2),))
    manifest["layers"][0]["name"] = HOSTILE
    manifest["weights"]["label"] = "<script>alert(1)</script>"
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    for page in tmp_path.rglob("*.html"):
        html = page.read_text()
        assert "<b onmouseover" not in html and "<script>alert" not in html
    assert "&lt;b onmouseover=&#34;x&#34;&gt;evil&lt;/b&gt;" in (tmp_path / "vgg16/block1_conv1/index.html").read_text()


def test_files_are_world_readable(tmp_path):
    write_atlas(tmp_path)
    render_site(tmp_path)
    page = tmp_path / "vgg16/block1_conv1/0/index.html"
    assert stat.S_IMODE(page.stat().st_mode) == 0o644


def test_render_without_a_valid_manifest_is_one_line(tmp_path):
    with pytest.raises(AtlasgenError, match="atlasgen build"):
        render_site(tmp_path)
    manifest = write_atlas(tmp_path)
    del manifest["layers"][0]["units"][1]["page"]
    write_manifest(tmp_path, manifest)
    with pytest.raises(AtlasgenError, match=r"layers\[0\]\.units\[1\]\.page is missing"):
        render_site(tmp_path)


def test_a_rerender_with_fewer_filters_removes_their_pages_and_keeps_other_files(tmp_path):
    write_atlas(tmp_path)
    render_site(tmp_path)
    (tmp_path / "vgg16" / "notes.html").write_text("mine")
    assert (tmp_path / "vgg16/block2_conv1/1/index.html").is_file()
    write_atlas(tmp_path, layers=(("block1_conv1", 3),))
    render_site(tmp_path)
    assert not (tmp_path / "vgg16/block2_conv1").exists()
    assert (tmp_path / "vgg16/block1_conv1/2/index.html").is_file()
    assert (tmp_path / "vgg16" / "notes.html").read_text() == "mine"


def test_render_result_projects_the_models_own_filter_count(tmp_path):
    write_atlas(tmp_path)
    result = render_site(tmp_path)
    assert result.model == "vgg16" and result.model_filters == 4224
    assert result.projected_model_bytes == pytest.approx(result.bytes_per_filter * 4224)


def test_layer_views_show_a_maco_grid_only_when_the_units_have_maco_images():
    from types import SimpleNamespace

    from atlasgen.site.views import layer_tabs as layer_views, thumbnail as whole_filter_image

    lucid = {"channel": "a/channel.webp", "rf_crop": "a/rf-crop.webp"}
    unit = lambda images: SimpleNamespace(images=images, activation_maps=[], dataset_examples=[], rf_box=[0, 0, 8, 4])
    layer = SimpleNamespace(units=[unit(lucid)])
    assert [v["label"] for v in layer_views(layer, [], 64)] == ["Whole filter", "Centre neuron (receptive field)"]
    both = SimpleNamespace(units=[unit({**lucid, "maco_channel": "a/maco-channel.webp"})])
    views = layer_views(both, [], 64)
    assert [v["id"] for v in views] == ["channel", "maco", "rf-crop"]
    assert views[1]["label"] == "Whole filter (MACO)" and views[1]["cells"][0][1] == "a/maco-channel.webp"
    # Each cell knows its image's pixels: the synthesised side, or the zoomed crop's (224 on its longer side).
    assert views[1]["cells"][0][3] == (64, 64) and views[2]["cells"][0][3] == (112, 224)
    maco_only = unit({"maco_channel": "a/maco-channel.webp"})
    assert [v["id"] for v in layer_views(SimpleNamespace(units=[maco_only]), [], 64)] == ["maco"]
    assert whole_filter_image(maco_only) == "a/maco-channel.webp" and whole_filter_image(both.units[0]) == "a/channel.webp"


# --- dataset examples ------------------------------------------------------------------------------


class Node:
    def __init__(self, tag: str, attrs: dict, parent=None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def find_all(self, tag: str | None = None, **attrs) -> list["Node"]:
        """Descendants with this tag and these attribute values (class_ matches one of the classes)."""
        found = []
        for child in self.children:
            if isinstance(child, str):
                continue
            classes = child.attrs.get("class", "").split()
            if (tag is None or child.tag == tag) and all(
                (v in classes) if k == "class_" else child.attrs.get(k) == v for k, v in attrs.items()
            ):
                found.append(child)
            found += child.find_all(tag, **attrs)
        return found

    def find(self, tag: str | None = None, **attrs) -> "Node":
        (found,) = self.find_all(tag, **attrs)
        return found

    @property
    def text(self) -> str:
        return " ".join("".join(c if isinstance(c, str) else c.text for c in self.children).split())


class Page(HTMLParser):
    """A rendered page as a tree of Nodes, enough to ask what is inside what."""

    VOID = {"img", "link", "meta", "br", "hr", "input", "source", "base"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#document", {})
        self.feed(html)
        assert self.current is self.root, f"<{self.current.tag}> is never closed"

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.current.tag == tag, f"</{tag}> closes <{self.current.tag}>"
        self.current = self.current.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(path: Path) -> Node:
    return Page(path.read_text()).root


def box_of(rank: int) -> list[int]:
    """A different box for every rank, so a swapped coordinate shows: [top, left, bottom, right]."""
    return [10 + rank, 20 + 2 * rank, 34 + rank, 50 + 3 * rank]


def add_examples(manifest: dict, k: int = 3, ratio: float | None = 2.4, sources=None) -> dict:
    """The synthetic manifest with a dataset and k examples on every unit (activations 1.25, 0.75, ...)."""
    manifest["dataset"] = {
        "name": "my photos", "images": 120, "short_side": 224, "sha256": "ab" * 32,
        "skipped": [{"file": "broken.jpg", "reason": "truncated file"}, {"file": "empty.png", "reason": "empty file"}],
        "convention": {"resize": "shorter side to short_side with PIL bicubic", "crop": "none: the whole image is fed"},
        "examples": k, "builtin": False,
    }
    sources = sources or [f"holiday/photo {r}.jpg" for r in range(k)]
    for layer in manifest["layers"]:
        for unit in layer["units"]:
            unit["dataset_examples"] = [
                {"source": sources[r], "activation": 1.25 - 0.5 * r, "unit": [5 + r, 7], "box": box_of(r),
                 "image": f"{unit['page']}examples/{r}.webp", "photo": f"vgg16/dataset/{r:020d}.webp",
                 "photo_size": [224, 300 + r]}
                for r in range(k)
            ]
            unit["metrics"]["neuron_vs_best_example"] = ratio
    return manifest


def write_examples_atlas(out: Path, **options) -> dict:
    manifest = add_examples(synthetic_manifest(layers=[("block1_conv1", 2), ("block2_conv1", 2)]), **options)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)
    render_site(out)
    return manifest


def test_filter_page_lists_the_examples_highest_first_with_activation_and_source(tmp_path):
    write_examples_atlas(tmp_path)
    page = parse(tmp_path / "vgg16/block2_conv1/1/index.html")
    section = page.find("section", class_="dataset")
    assert section.find("h3").text == "Dataset examples"  # under the card's "Excites" side
    items = section.find("ol", class_="examples").find_all("li")
    assert len(items) == 3
    for rank, item in enumerate(items):
        link = item.find("a")
        assert link.attrs["href"] == f"#example-{rank + 1}"
        img = link.find("img")
        assert img.attrs["src"] == f"../../../vgg16/block2_conv1/1/examples/{rank}.webp"
        top, left, bottom, right = box_of(rank)
        assert (img.attrs["width"], img.attrs["height"]) == (str(right - left), str(bottom - top))
        assert f"holiday/photo {rank}.jpg" in img.attrs["alt"] and f"({5 + rank}, 7)" in img.attrs["alt"]
        assert item.find("span", class_="activation").text == "%.4g" % (1.25 - 0.5 * rank)
        assert item.find("span", class_="source").text == f"holiday/photo {rank}.jpg"
    note = section.find("p", class_="note").text
    assert "my photos (120 images, shorter side resized to 224 px)" in note


def test_each_example_has_a_context_figure_with_its_box_drawn_in_photo_pixels(tmp_path):
    write_examples_atlas(tmp_path)
    page = parse(tmp_path / "vgg16/block1_conv1/0/index.html")
    figures = page.find("div", class_="contexts").find_all("figure")
    assert [f.attrs["id"] for f in figures] == ["example-1", "example-2", "example-3"]
    for rank, figure in enumerate(figures):
        top, left, bottom, right = box_of(rank)
        width, height = 300 + rank, 224
        img = figure.find("img")
        assert img.attrs["src"] == f"../../../vgg16/dataset/{rank:020d}.webp"
        assert (img.attrs["width"], img.attrs["height"], img.attrs["loading"]) == (str(width), str(height), "lazy")
        assert f"holiday/photo {rank}.jpg" in img.attrs["alt"] and f"rows {top}–{bottom - 1}" in img.attrs["alt"]
        svg = figure.find("svg")
        assert svg.attrs["viewbox"] == f"0 0 {width} {height}" and svg.attrs["aria-hidden"] == "true"  # names lowered
        # The svg lies over the img (static/atlas.css) and scales as it does: its units are the photo's pixels.
        assert img.parent is svg.parent and "photo-frame" in svg.parent.attrs["class"]
        rect = svg.find("rect", class_="box")
        assert [rect.attrs[a] for a in ("x", "y", "width", "height")] == [str(v) for v in (left, top, right - left, bottom - top)]
        caption = figure.find("figcaption").text
        assert f"columns {left}–{right - 1}" in caption and f"of the {width} × {height} px photo" in caption
    section = (tmp_path / "vgg16/block1_conv1/0/index.html").read_text().split('<section class="dataset"')[1]
    assert " style=" not in section.split("</section>")[0]  # html-validate forbids inline styles


def test_filter_page_compares_the_centre_neuron_image_with_the_best_example(tmp_path):
    write_examples_atlas(tmp_path, ratio=2.4)
    versus = parse(tmp_path / "vgg16/block1_conv1/0/index.html").find("p", class_="versus").text
    assert versus == ("The centre-neuron image drives its unit to 2.4× the best dataset example's activation "
                      "(3 against 1.25, pre-ReLU): stronger than every example here.")
    write_examples_atlas(tmp_path, ratio=0.5)
    versus = parse(tmp_path / "vgg16/block1_conv1/0/index.html").find("p", class_="versus").text
    assert "0.5× the best dataset example's activation" in versus and "weaker than the best example" in versus


def test_without_a_ratio_the_filter_page_says_why(tmp_path):
    manifest = add_examples(synthetic_manifest(layers=[("block1_conv1", 2)]), ratio=None)
    unit = manifest["layers"][0]["units"][0]
    for example in unit["dataset_examples"]:
        example["activation"] -= 2.0  # every example below zero: 1.25 - 2 is the best
    manifest["layers"][0]["units"][1]["metrics"]["neuron"] = None
    tmp_path.mkdir(exist_ok=True)
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    versus = parse(tmp_path / "vgg16/block1_conv1/0/index.html").find("p", class_="versus").text
    assert "×" not in versus and "-0.75, is not positive" in versus
    versus = parse(tmp_path / "vgg16/block1_conv1/1/index.html").find("p", class_="versus").text
    assert versus == "There is no centre-neuron image to compare with these examples."


def test_layer_page_has_a_top_example_view_whose_crops_need_no_javascript(tmp_path):
    write_examples_atlas(tmp_path)
    html = (tmp_path / "vgg16/block2_conv1/index.html").read_text()
    page = Page(html).root
    tabs = [b.attrs["data-view"] for b in page.find("div", class_="tabs").find_all("button")]
    assert tabs == ["channel", "rf-crop", "examples", "map-0"]
    grid = page.find("div", class_="grid", **{"data-view": "examples"})
    cells = grid.find_all("a")
    assert [a.attrs["href"] for a in cells] == [f"../../vgg16/block2_conv1/{i}/index.html#example-1" for i in range(2)]
    for i, a in enumerate(cells):
        img = a.find("img")
        assert img.attrs["src"] == f"../../vgg16/block2_conv1/{i}/examples/0.webp"
        assert "top dataset example" in img.attrs["alt"].lower() and "holiday/photo 0.jpg" in img.attrs["alt"]
    # Hidden views are shown by a stylesheet that only loads with JavaScript off, each under its heading.
    assert '<noscript><link rel="stylesheet" href="../../static/nojs.css"></noscript>' in html
    assert "<noscript><h2>Top dataset example</h2></noscript>" in html
    nojs = (tmp_path / "static/nojs.css").read_text()
    assert ".grid[hidden] { display: grid; }" in nojs and ".tabs { display: none; }" in nojs


def test_index_states_the_dataset_truthfully(tmp_path):
    write_examples_atlas(tmp_path)
    page = parse(tmp_path / "vgg16" / "index.html")
    facts = page.find("dl", class_="facts")
    terms = [dt.text for dt in facts.children if not isinstance(dt, str) and dt.tag == "dt"]
    assert "Dataset examples" in terms
    text = facts.text
    assert "my photos: 120 images, shorter side resized to 224 px; up to 3 examples per filter; 2 unreadable files skipped" in text
    assert "sha256:" + "ab" * 32 in text and "broken.jpg: truncated file" in text
    assert "none: the whole image is fed" in text


def test_an_atlas_without_examples_has_no_examples_section_view_or_dataset_facts(tmp_path):
    write_atlas(tmp_path)
    render_site(tmp_path)
    assert "Dataset examples" not in (tmp_path / "vgg16/block1_conv1/0/index.html").read_text()
    assert 'data-view="examples"' not in (tmp_path / "vgg16/block1_conv1/index.html").read_text()
    assert "Dataset examples" not in (tmp_path / "index.html").read_text()


def test_example_sources_are_escaped(tmp_path):
    write_examples_atlas(tmp_path, sources=[HOSTILE, 'a "quoted" name.jpg', "x.jpg"])
    for path in ("vgg16/block1_conv1/0/index.html", "vgg16/block1_conv1/index.html"):
        html = (tmp_path / path).read_text()
        assert "<b onmouseover" not in html and 'a "quoted"' not in html
        assert "&lt;b onmouseover=&#34;x&#34;&gt;evil&lt;/b&gt;" in html


# --- search, evidence, accessibility ---------------------------------------------------------------


def test_search_json_lists_each_layers_filters_as_ranges(tmp_path):
    manifest = synthetic_manifest(layers=[("block1_conv1", 6), ("block2_conv1", 2)])
    units = manifest["layers"][0]["units"]
    manifest["layers"][0]["units"] = [u for u in units if u["index"] in (0, 1, 2, 5)]
    manifest["layers"][0]["filters"] = 64
    manifest["layers"][1]["units"][1]["page"] = "vgg16/block2_conv1/one/"  # not <folder><index>/: listed as it is
    tmp_path.mkdir(exist_ok=True)
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    index = json.loads((tmp_path / "vgg16" / "search.json").read_text())
    assert index == {"atlas": "vgg16", "model": "vgg16", "layers": [
        {"name": "block1_conv1", "path": "vgg16/block1_conv1/", "filters": 64, "built": [[0, 2], [5, 5]]},
        {"name": "block2_conv1", "path": "vgg16/block2_conv1/", "filters": 2, "built": [[0, 0]],
         "pages": {"1": "vgg16/block2_conv1/one/"}},
    ]}
    # Every page's search box knows where the index is and which atlas it is in.
    form = parse(tmp_path / "vgg16/block2_conv1/0/index.html").find("form", **{"data-atlas": "vgg16"})
    assert form.attrs["data-root"] == "../../../" and form.attrs["data-atlases"] == "vgg16"
    assert form.attrs["data-layer"] == "block2_conv1"
    root = parse(tmp_path / "index.html").find("search").find("form")
    assert root.attrs["data-root"] == "" and "data-atlas" not in root.attrs
    label = root.find("label")
    assert label.attrs["for"] == root.find("input").attrs["id"] and root.find("input").attrs["aria-keyshortcuts"] == "/"


def test_a_silent_filter_says_so_in_words_on_its_page_and_in_the_layer_grid(tmp_path):
    manifest = synthetic_manifest(layers=[("block1_conv1", 3)])
    manifest["layers"][0]["units"][1]["metrics"]["silent"] = True
    tmp_path.mkdir(exist_ok=True)
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    silent = parse(tmp_path / "vgg16/block1_conv1/1/index.html")
    assert silent.find("p", class_="silent-note").text.startswith("This filter is silent.")
    assert silent.find("h1").find("span", class_="badge").text == "silent"
    assert "silent" not in parse(tmp_path / "vgg16/block1_conv1/0/index.html").find("h1").text
    layer = parse(tmp_path / "vgg16/block1_conv1/index.html")
    for grid in layer.find_all("div", class_="grid"):
        cells = grid.find_all("a")
        assert [bool(a.find_all("span", class_="badge")) for a in cells] == [False, True, False]
        assert "silent" in cells[1].find("img").attrs["alt"] and "silent" not in cells[0].find("img").attrs["alt"]
    assert "1 filter whose pre-ReLU response is negative everywhere" in layer.find("p", class_="note").text


def test_a_faint_driven_filter_shows_its_evidence_on_its_page_and_a_badge_in_its_grid(tmp_path):
    manifest = synthetic_manifest(layers=[("block1_conv1", 3)])
    response = [[0.5, -1.5], [1.0, -1.25], [1.5, -2.0], [2.0, -3.75]]
    manifest["layers"][0]["units"][2]["metrics"]["channel"].update(contrast_response=response, faint=True)
    manifest["layers"][0]["units"][0]["metrics"]["channel"].update(contrast_response=response, faint=False)
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    faint = parse(tmp_path / "vgg16/block1_conv1/2/index.html")
    note = faint.find("p", class_="faint-note").text
    assert note.startswith("Drawn by faint input.") and "×0.5: -1.5, ×1: -1.25, ×1.5: -2, ×2: -3.75" in note
    rows = {tr.find("th").text: tr.find_all("td")[0].text for tr in faint.find("table", class_="numbers").find_all("tr")[1:]}
    assert rows["whole filter: drawn by faint input"] == "yes"
    assert rows["whole filter: contrast response"] == "×0.5 -1.5, ×1 -1.25, ×1.5 -2, ×2 -3.75"
    assert parse(tmp_path / "vgg16/block1_conv1/0/index.html").find_all("p", class_="faint-note") == []
    layer = parse(tmp_path / "vgg16/block1_conv1/index.html")
    grid = layer.find("div", class_="grid", **{"data-view": "channel"})
    assert [[b.text for b in a.find_all("span", class_="badge")] for a in grid.find_all("a")] == [[], [], ["faint"]]
    # Another view of the same filters carries no faint badge: it is the whole-filter image that is faint.
    other = layer.find("div", class_="grid", **{"data-view": "rf-crop"})
    assert not other.find_all("span", class_="badge")
    assert "1 filter whose whole-filter image is faint" in layer.find_all("p", class_="note")[0].text


def test_every_number_on_the_filter_page_has_a_plain_explanation(tmp_path):
    write_examples_atlas(tmp_path)
    page = parse(tmp_path / "vgg16/block1_conv1/0/index.html")
    table = page.find("table", class_="numbers")
    assert [th.attrs["scope"] for th in table.find("thead").find_all("th")] == ["col"] * 3
    rows = table.find("tbody").find_all("tr")
    assert len(rows) >= 12
    for row in rows:
        (th,) = row.find_all("th")
        value, meaning = row.find_all("td")
        assert th.attrs["scope"] == "row" and value.text and len(meaning.text.split()) >= 6, row.text
    labels = [row.find("th").text for row in rows]
    assert {"receptive field r", "effective stride S", "effective padding P", "whole filter: objective",
            "whole filter: mean activation", "centre neuron: changed pixels outside the box", "silent",
            "centre neuron against the best dataset example"} <= set(labels)
    # Each activation map's numbers are said in words beside them.
    caption = page.find("figure", class_="map").find("figcaption").text
    assert "Peak 1.5: its largest value on this photo; mean 0.25: its average over the photo" in caption


def test_filter_page_links_its_unit_json_and_gives_the_figure_command(tmp_path):
    from atlasgen.site.figure import figure_command

    write_atlas(tmp_path)
    render_site(tmp_path)
    folder = tmp_path / "vgg16/block2_conv1/1"
    page = parse(folder / "index.html")
    links = [a.attrs["href"] for a in page.find("nav", **{"aria-label": "On this page"}).find_all("a")]
    assert links == ["#numbers", "../../../vgg16/block2_conv1/1/unit.json", "#figure", "#cite"]
    assert (folder / links[1]).resolve() == (folder / "unit.json").resolve() and (folder / "unit.json").is_file()
    command = page.find("section", class_="figure-command").find("code").text
    assert command == figure_command("vgg16", "block2_conv1", 1)
    assert command == "atlasgen figure --out site vgg16/block2_conv1/1/ -o block2_conv1-1.pdf"


def test_activation_maps_show_photo_and_heatmap_side_by_side_with_a_colour_bar(tmp_path):
    from atlasgen.codec import VIRIDIS_STOPS

    write_atlas(tmp_path)
    render_site(tmp_path)
    figure = parse(tmp_path / "vgg16/block1_conv1/0/index.html").find("figure", class_="map")
    views = figure.find("div", class_="map-views")
    photo = views.find_all("img")[0]
    assert photo.attrs["src"] == "../../../vgg16/probes/astronaut.webp" and "astronaut" in photo.attrs["alt"]
    heatmap = views.find("a", class_="map-heatmap")
    assert heatmap.find("img").attrs["src"].endswith("maps/astronaut/heatmap.webp") and "hidden" not in heatmap.attrs
    overlay = views.find("a", class_="map-overlay")
    assert overlay.find("img").attrs["src"].endswith("maps/astronaut/overlay.webp") and "hidden" in overlay.attrs
    # The photo is 512 px (its attributes), shown at 256: half its pixels, so smoothed, not drawn as pixels.
    assert (photo.attrs["width"], photo.attrs["height"]) == ("512", "512") and "class" not in photo.attrs
    toggle = figure.find("button", class_="overlay-toggle")
    assert toggle.attrs["type"] == "button" and toggle.attrs["aria-controls"] == "heatmap-1 overlay-1"
    # The colour bar has the heatmap's colours (synthesis.maps) and its scale in activation units: 0 to `scale`.
    bar = figure.find("div", class_="colour-bar")
    stops = bar.find_all("stop")
    assert [s.attrs["stop-color"] for s in stops] == ["#%02x%02x%02x" % tuple(int(c) for c in rgb) for rgb in VIRIDIS_STOPS]
    assert [float(s.attrs["offset"]) for s in stops] == [i / 8 for i in range(9)]
    assert [t.text for t in bar.find("p", class_="ticks").find_all("span")] == ["0", "1", "2"]  # scale 2.0
    assert "yellow is 2" in bar.find("svg").attrs["aria-label"]
    nojs = (tmp_path / "static/nojs.css").read_text()
    assert ".map-views .map-overlay[hidden] { display: block; }" in nojs and ".overlay-toggle { display: none; }" in nojs


def test_the_centre_neuron_box_is_an_svg_in_image_pixels(tmp_path):
    write_atlas(tmp_path)
    render_site(tmp_path)
    boxed = parse(tmp_path / "vgg16/block1_conv1/0/index.html").find("div", class_="boxed")
    svg = boxed.find("svg")
    assert svg.attrs["viewbox"] == "0 0 224 224" and svg.attrs["aria-hidden"] == "true"
    rect = svg.find("rect", class_="box")
    assert [rect.attrs[a] for a in ("x", "y", "width", "height")] == ["100", "100", "24", "24"]  # rf_box [100, 100, 124, 124]


def test_images_are_sized_by_their_pixels_and_enlarged_only_as_pixels(tmp_path):
    from atlasgen.site.render import as_pixels, figure_width, rf_crop_size

    assert not as_pixels(512, 256) and not as_pixels(224, 96)  # 224 px cover a 2x screen's 192
    assert as_pixels(64, 96) and as_pixels(224, 224)
    assert [figure_width(s) for s in (32, 64, 128, 129, 224, 512)] == [256, 256, 256, 129, 224, 512]
    assert rf_crop_size([0, 0, 10, 20]) == (224, 112) and rf_crop_size([5, 5, 8, 8]) == (224, 224)
    # A 224 px atlas: the images keep their size (drawn as pixels for 2x screens); a 64 px one is enlarged.
    for size, enlarged in ((224, False), (64, True)):
        manifest = synthetic_manifest(layers=[("block1_conv1", 1)], size=size)
        write_manifest(tmp_path / str(size), manifest)
        render_site(tmp_path / str(size))
        img = parse(tmp_path / str(size) / "vgg16/block1_conv1/0/index.html").find("div", class_="figures").find_all("img")[0]
        assert (img.attrs["width"], img.attrs["height"]) == (str(size), str(size))
        assert img.attrs["class"].split() == (["enlarged", "pixels"] if enlarged else ["pixels"])
    css = (tmp_path / "64" / "static/atlas.css").read_text()
    assert ".figures img.enlarged { width: 256px; }" in css and ".grid img, .atlases img { width: 96px; }" in css


def test_every_page_is_free_of_what_html_validate_and_lighthouse_flag(tmp_path):
    """Checked on every page without Node (test_site_a11y runs html-validate itself): no inline style,
    every <th> scoped, every <button> typed, every <nav> named, every <img> sized and described."""
    write_examples_atlas(tmp_path)
    pages = sorted(tmp_path.rglob("*.html"))
    assert len(pages) == 1 + 1 + 1 + 2 + 4
    for path in pages:
        html = path.read_text()
        assert html.startswith("<!DOCTYPE html>") and " style=" not in html, path
        page = Page(html).root
        assert all(th.attrs.get("scope") in ("row", "col") for th in page.find_all("th")), path
        assert all(b.attrs.get("type") in ("button", "submit") for b in page.find_all("button")), path
        navs = page.find_all("nav")
        assert all(n.attrs.get("aria-label") for n in navs) and len({n.attrs["aria-label"] for n in navs}) == len(navs), path
        for img in page.find_all("img"):
            assert img.attrs.get("width") and img.attrs.get("height") and len(img.attrs.get("alt", "").split()) >= 3, (path, img.attrs)


# --- how each image was made, and first-layer kernels -----------------------------------------------

CHANNEL_USED = {"pad": 0, "jitter": 1, "scale": [1.0, 1.0], "rotate_degrees": 0.0, "jitter_last": 0, "learning_rate": 0.1,
                "untransformed_from": 384}
NEURON_USED = {"pad": 12, "jitter": 0, "scale": [0.9, 1.1], "rotate_degrees": 10.0, "jitter_last": 0, "learning_rate": 0.05}
CURVE = [[1, -2.0], [4, 0.5], [8, 3.5], [12, 3.0]]  # ends at the stored objective, 3.0


def write_runs_atlas(out: Path) -> dict:
    """Two layers: block1_conv1 with its transforms recorded, curves and kernels; block2_conv1 as an
    atlas.json written before either was recorded."""
    manifest = synthetic_manifest(layers=[("block1_conv1", 2), ("block2_conv1", 1)])
    first = manifest["layers"][0]
    first["synthesis"] = {"channel": CHANNEL_USED, "neuron": NEURON_USED}
    for unit in first["units"]:
        unit["metrics"]["channel"]["curve"] = CURVE
        unit["metrics"]["neuron"]["curve"] = [[1, 1.0], [512, 3.0]]
        unit["images"]["kernel"] = unit["page"] + "kernel.webp"
        unit["kernel"] = {"scale": 0.4375, "taps": [3, 3], "flipped": True}
    write_manifest(out, manifest)
    render_site(out)
    return manifest


def test_each_images_curve_is_a_polyline_of_its_points_ending_at_the_stored_objective(tmp_path):
    from atlasgen.site.runs import CURVE_BOTTOM, CURVE_LEFT, CURVE_RIGHT, CURVE_TOP, curve_plot

    write_runs_atlas(tmp_path)
    section = parse(tmp_path / "vgg16/block1_conv1/0/index.html").find("section", class_="made")
    svg = section.find_all("svg", class_="curve")[0]
    points = [tuple(map(float, p.split(","))) for p in svg.find("polyline").attrs["points"].split()]
    assert len(points) == len(CURVE)  # a point per curve entry
    # x from the first step (left) to the last (right); y from the lowest objective (bottom) to the highest (top).
    assert points[0][0] == CURVE_LEFT and points[-1][0] == CURVE_RIGHT
    expected_y = lambda v: CURVE_BOTTOM - (v - (-2.0)) / (3.5 - (-2.0)) * (CURVE_BOTTOM - CURVE_TOP)
    assert [y for _, y in points] == pytest.approx([expected_y(v) for _, v in CURVE], abs=0.01)
    assert points[-1][1] == pytest.approx(expected_y(3.0), abs=0.01)  # the stored objective, marked by a dot
    dot = svg.find("circle", class_="final")
    assert (float(dot.attrs["cx"]), float(dot.attrs["cy"])) == points[-1]
    # Axes labelled with the first and last step and the objective's range; named and described.
    assert [t.text for t in svg.find_all("text")] == ["3.5", "-2", "1", "12", "step"]
    assert svg.attrs["role"] == "img" and svg.attrs["viewbox"] == "0 0 260 112"
    title, desc = svg.attrs["aria-labelledby"].split()
    assert svg.find("title").attrs["id"] == title and "whole filter" in svg.find("title").text
    assert svg.find("desc").attrs["id"] == desc and "4 points from step 1 to step 12" in svg.find("desc").text
    assert "ends at 3" in svg.find("desc").text
    # One curve per synthesised image; an image without a curve (an older atlas) draws none.
    assert len(section.find_all("svg", class_="curve")) == 2
    assert not parse(tmp_path / "vgg16/block2_conv1/0/index.html").find("section", class_="made").find_all("svg")
    # A flat run is drawn level in the middle; one entry is one point.
    flat = curve_plot([[1, 2.0], [2, 2.0]])
    assert [y for _, y in flat.points] == [(CURVE_TOP + CURVE_BOTTOM) / 2] * 2
    assert len(curve_plot([[5, 1.0]]).points) == 1 and curve_plot(None) is None and curve_plot([]) is None


def settings_of(page: Node) -> dict[str, dict[str, str]]:
    """The filter page's settings of each image: its heading -> {setting: value}."""
    runs = {}
    for run in page.find("section", class_="made").find_all("div", class_="run"):
        dl = run.find("dl", class_="settings")
        runs[run.find("h3").text] = dict(zip((dt.text for dt in dl.find_all("dt")), (dd.text for dd in dl.find_all("dd"))))
    return runs


def test_the_filter_page_states_how_each_image_was_made(tmp_path):
    write_runs_atlas(tmp_path)
    runs = settings_of(parse(tmp_path / "vgg16/block1_conv1/1/index.html"))
    assert list(runs) == ["Whole filter", "Centre neuron"]
    assert runs["Whole filter"] == {
        "Method": "Lucid: Fourier parametrisation with decorrelated colour", "Steps": "512",
        "Learning rate": "0.1 (Adam)", "Seed": "0", "Precision": "float32",
        "Transforms": "no pad, jitter 1, no zoom, no turn, jitter 0; from step 384 on, the bare image, as it is judged"}
    assert runs["Centre neuron"]["Transforms"] == "pad 12, jitter 0, scale 0.9–1.1, rotate ±10°, jitter 0"
    assert runs["Centre neuron"]["Learning rate"] == "0.05 (Adam)"
    # An atlas.json without the record says so rather than state the requested values as used.
    older = settings_of(parse(tmp_path / "vgg16/block2_conv1/0/index.html"))["Whole filter"]
    assert older["Learning rate"] == "not recorded in this atlas (Adam)" and older["Transforms"].startswith("not recorded")


def test_a_maco_image_states_its_own_method_and_parameters(tmp_path):
    manifest = synthetic_manifest(layers=[("block3_conv1", 1)])
    manifest["methods"] = ["lucid", "maco"]
    manifest["method_parameters"] = {"maco": {"size": 224, "steps": 512, "seed": 7, "learning_rate": 0.3, "crops": 4,
                                              "crop_start": 0.9, "crop_end": 0.5, "noise": 0.08, "precision": "mixed"}}
    unit = manifest["layers"][0]["units"][0]
    unit["images"]["maco_channel"] = unit["page"] + "maco-channel.webp"
    unit["metrics"]["maco"] = dict(unit["metrics"]["channel"], steps=256)
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    maco = settings_of(parse(tmp_path / "vgg16/block3_conv1/0/index.html"))["Whole filter (MACO)"]
    assert maco["Method"].startswith("MACO") and maco["Learning rate"] == "0.3 (Adam)" and maco["Seed"] == "7"
    assert maco["Steps"] == "256" and maco["Precision"].startswith("mixed")
    # A MACO record written before algorithm 6 has no settle_start, and the page claims none.
    assert maco["Transforms"] == "4 random crops a step, their side from 0.9 to 0.5 of the image, noise sd 0.08"
    manifest["method_parameters"]["maco"]["settle_start"] = 0.75
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    maco = settings_of(parse(tmp_path / "vgg16/block3_conv1/0/index.html"))["Whole filter (MACO)"]
    assert maco["Transforms"] == ("4 random crops a step, their side from 0.9 to 0.5 of the image, noise sd 0.08; from 75% "
                                  "of the steps on, the whole image, without crops or noise, as it is judged")


def test_the_index_states_the_transforms_as_used_at_each_layer(tmp_path):
    write_runs_atlas(tmp_path)
    index = parse(tmp_path / "vgg16/index.html")
    table = index.find("table", class_="transforms")
    rows = [[c.text for c in tr.find_all()] for tr in table.find("tbody").find_all("tr")]
    assert rows == [["block1_conv1", "3", "whole filter",
                     "no pad, jitter 1, no zoom, no turn, jitter 0; from step 384 on, the bare image, as it is judged", "0.1"],
                    ["block1_conv1", "3", "centre neuron", "pad 12, jitter 0, scale 0.9–1.1, rotate ±10°, jitter 0", "0.05"]]
    facts = {dt.text: dd.text for dt, dd in zip(index.find("dl", class_="facts").find_all("dt"),
                                                  index.find("dl", class_="facts").find_all("dd"))}
    # The requested pad and jitter are not stated as what was used.
    assert "fitted to each layer's receptive field" in facts["Synthesis"] and "pad 12" not in facts["Synthesis"]
    # An atlas.json that records none says the requested values are only that.
    manifest = synthetic_manifest(layers=[("block1_conv1", 1)])
    write_manifest(tmp_path / "old", manifest)
    render_site(tmp_path / "old")
    old = parse(tmp_path / "old/vgg16/index.html")
    assert not old.find_all("table", class_="transforms")
    assert "pad 12, jitter 8, scale 0.9–1.1, rotate ±10°, jitter 4 (as requested" in old.find("dl", class_="facts").text


def test_a_first_layer_filter_shows_its_kernel_and_its_layer_a_kernels_tab(tmp_path):
    write_runs_atlas(tmp_path)
    page = parse(tmp_path / "vgg16/block1_conv1/0/index.html")
    figure = page.find("figure", class_="kernel")
    img = figure.find("img")
    assert img.attrs["src"] == "../../../vgg16/block1_conv1/0/kernel.webp"
    assert (img.attrs["width"], img.attrs["height"], img.attrs["loading"]) == ("96", "96", "lazy")
    assert "pixels" in img.attrs["class"].split() and "3 × 3 kernel" in img.attrs["alt"]
    caption = figure.find("figcaption").text
    assert "mid-grey is 0" in caption and "0.438" in caption and "flipped to RGB" in caption
    layer = parse(tmp_path / "vgg16/block1_conv1/index.html")
    tab = layer.find("button", id="tab-kernel")
    assert tab.text == "Kernels (RGB)"
    cells = layer.find("div", class_="grid", **{"data-view": "kernel"}).find_all("img")
    assert [c.attrs["src"] for c in cells] == [f"../../vgg16/block1_conv1/{i}/kernel.webp" for i in (0, 1)]
    assert all(c.attrs["width"] == "96" and c.attrs["loading"] == "lazy" for c in cells)
    # block2_conv1 reads no image: no kernel on its pages.
    assert not parse(tmp_path / "vgg16/block2_conv1/0/index.html").find_all("figure", class_="kernel")
    assert not parse(tmp_path / "vgg16/block2_conv1/index.html").find_all("button", id="tab-kernel")
    assert json.loads((tmp_path / "vgg16/block1_conv1/0/unit.json").read_text())["unit"]["kernel"]["taps"] == [3, 3]


def test_only_the_first_row_of_figures_loads_at_once(tmp_path):
    """Everything below the fold is lazy: maps, photos, examples, crops, kernels, and every grid and strip."""
    write_runs_atlas(tmp_path)
    add = add_examples(synthetic_manifest(layers=[("block1_conv1", 1)]))
    write_manifest(tmp_path / "ex", add)
    render_site(tmp_path / "ex")
    for page in [tmp_path / "vgg16/block1_conv1/0/index.html", tmp_path / "ex/vgg16/block1_conv1/0/index.html"]:
        eager = [img.attrs["src"].rsplit("/", 1)[-1] for img in parse(page).find_all("img") if img.attrs.get("loading") != "lazy"]
        assert eager and set(eager) <= {"channel.webp", "maco-channel.webp", "neuron.webp"}, eager
    for page in [tmp_path / "vgg16/block1_conv1/index.html", tmp_path / "vgg16/index.html"]:
        assert all(img.attrs.get("loading") == "lazy" for img in parse(page).find_all("img")), page


# --- the negative side: what inhibits a filter ------------------------------------------------------


def add_negative(manifest: dict, k: int = 3) -> dict:
    """Every unit with a negative whole-filter image, its numbers, and k bottom examples (lowest first)."""
    for layer in manifest["layers"]:
        for unit in layer["units"]:
            unit["images"]["channel_negative"] = unit["page"] + "channel-negative.webp"
            unit["metrics"]["channel_negative"] = {"objective": -4.5, "mean_activation": 0.0,
                                                   "activation_vs_best_probe": 0.0, "steps": 512}
            unit["dataset_examples_negative"] = [
                {"source": f"dark/photo {r}.jpg", "activation": -3.0 + 0.5 * r, "unit": [2 + r, 3], "box": box_of(r),
                 "image": f"{unit['page']}examples-negative/{r}.webp", "photo": f"vgg16/dataset/{10 + r:020d}.webp",
                 "photo_size": [224, 280 + r]}
                for r in range(k)
            ]
    return manifest


def write_negative_atlas(out: Path) -> dict:
    manifest = add_negative(add_examples(synthetic_manifest(layers=[("block1_conv1", 2), ("block2_conv1", 2)])))
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)
    render_site(out)
    return manifest


def test_the_filter_page_shows_what_excites_and_what_inhibits_side_by_side(tmp_path):
    write_negative_atlas(tmp_path)
    page = parse(tmp_path / "vgg16/block2_conv1/1/index.html")
    sides = page.find("div", class_="sides").find_all("section", class_="side")
    assert [s.attrs["class"] for s in sides] == ["side excites", "side inhibits"]
    excites, inhibits = sides
    assert [excites.find("h2").text, inhibits.find("h2").text] == ["Excites", "Inhibits"]
    # The positive whole-filter image and the top examples on one side; the negative ones on the other.
    assert [i.attrs["src"] for i in excites.find("div", class_="side-figures").find_all("img")] == [
        "../../../vgg16/block2_conv1/1/channel.webp"]
    negative = inhibits.find("div", class_="side-figures").find("img")
    assert negative.attrs["src"] == "../../../vgg16/block2_conv1/1/channel-negative.webp"
    assert "lowest" in negative.attrs["alt"] and (negative.attrs["width"], negative.attrs["height"]) == ("224", "224")
    caption = inhibits.find("div", class_="side-figures").find("figcaption").text
    assert "minimises the mean of its pre-ReLU map" in caption and "down to -4.5 (low on purpose)" in caption
    assert excites.find("section", class_="dataset").find("h3").text == "Dataset examples"
    bottom = inhibits.find("section", class_="dataset-negative")
    assert bottom.find("h3").text == "Negative dataset examples"
    assert "3 lowest pre-ReLU activations" in bottom.find("p", class_="note").text
    items = bottom.find("ol", class_="examples").find_all("li")
    assert [i.find("span", class_="activation").text for i in items] == ["-3", "-2.5", "-2"]  # lowest first
    assert [i.find("a").attrs["href"] for i in items] == ["#examples-negative-1", "#examples-negative-2",
                                                         "#examples-negative-3"]
    assert [i.find("img").attrs["src"] for i in items] == [
        f"../../../vgg16/block2_conv1/1/examples-negative/{r}.webp" for r in range(3)]
    figures = bottom.find("div", class_="contexts").find_all("figure")
    assert [f.attrs["id"] for f in figures] == ["examples-negative-1", "examples-negative-2", "examples-negative-3"]
    assert figures[0].find("figcaption").text.startswith("Negative example 1 of 3: dark/photo 0.jpg, activation -3")
    # The top examples keep their ids (the layer grid links #example-1), and no id is used twice.
    assert [f.attrs["id"] for f in excites.find("div", class_="contexts").find_all("figure")] == [
        "example-1", "example-2", "example-3"]
    ids = [n.attrs["id"] for n in page.find_all() if "id" in n.attrs]
    assert len(ids) == len(set(ids))
    # Outside the two sides: the centre neuron's row of figures and the maps.
    assert [i.attrs["src"].rsplit("/", 1)[1] for i in page.find("div", class_="figures").find_all("img")] == [
        "neuron.webp", "rf-crop.webp"]


def test_the_negative_images_numbers_say_they_were_lowered(tmp_path):
    write_negative_atlas(tmp_path)
    table = parse(tmp_path / "vgg16/block1_conv1/0/index.html").find("table", class_="numbers")
    rows = {tr.find("th").text: [td.text for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")}
    value, meaning = rows["most negative (whole filter): objective"]
    assert value == "-4.5" and meaning.startswith("What the image was optimised to lower")
    assert "most negative (whole filter): against the best probe photo" not in rows  # a ratio for what it raises
    assert rows["whole filter: objective"][1].startswith("What the image was optimised to raise")


def test_the_layer_page_has_most_negative_and_lowest_example_tabs(tmp_path):
    write_negative_atlas(tmp_path)
    page = parse(tmp_path / "vgg16/block2_conv1/index.html")
    tabs = {b.attrs["data-view"]: b.text for b in page.find("div", class_="tabs").find_all("button")}
    assert list(tabs) == ["channel", "negative", "rf-crop", "examples", "examples-negative", "map-0"]
    assert tabs["negative"] == "Most negative" and tabs["examples-negative"] == "Lowest dataset example"
    cells = page.find("div", class_="grid", **{"data-view": "negative"}).find_all("a")
    assert [a.find("img").attrs["src"] for a in cells] == [f"../../vgg16/block2_conv1/{i}/channel-negative.webp"
                                                           for i in range(2)]
    lowest = page.find("div", class_="grid", **{"data-view": "examples-negative"}).find_all("a")
    assert [a.attrs["href"] for a in lowest] == [f"../../vgg16/block2_conv1/{i}/index.html#examples-negative-1"
                                                 for i in range(2)]
    assert [a.find("img").attrs["src"] for a in lowest] == [f"../../vgg16/block2_conv1/{i}/examples-negative/0.webp"
                                                            for i in range(2)]
    assert "activation -3" in lowest[0].attrs["title"] and "dark/photo 0.jpg" in lowest[0].find("img").attrs["alt"]
    top = page.find("div", class_="grid", **{"data-view": "examples"}).find_all("a")
    assert top[0].attrs["href"].endswith("index.html#example-1")


def test_unit_json_carries_the_negative_records(tmp_path):
    manifest = write_negative_atlas(tmp_path)
    unit = json.loads((tmp_path / "vgg16/block1_conv1/1/unit.json").read_text())["unit"]
    source = manifest["layers"][0]["units"][1]
    assert unit["dataset_examples_negative"] == source["dataset_examples_negative"]
    assert unit["images"]["channel_negative"] == source["images"]["channel_negative"]
    assert unit["metrics"]["channel_negative"]["objective"] == -4.5


def test_an_atlas_without_negatives_has_no_inhibits_side(tmp_path):
    write_examples_atlas(tmp_path)
    page = parse(tmp_path / "vgg16/block1_conv1/0/index.html")
    assert [s.attrs["class"] for s in page.find("div", class_="sides").find_all("section", class_="side")] == [
        "side excites"]
    layer = (tmp_path / "vgg16/block1_conv1/index.html").read_text()
    assert 'data-view="negative"' not in layer and 'data-view="examples-negative"' not in layer


def test_negative_example_paths_are_checked_like_the_others(tmp_path):
    manifest = add_negative(synthetic_manifest(layers=[("block1_conv1", 1)]))
    manifest["layers"][0]["units"][0]["dataset_examples_negative"][1]["photo"] = "../outside.webp"
    write_manifest(tmp_path, manifest)
    with pytest.raises(AtlasgenError, match=r"units\[0\]\.dataset_examples_negative\[1\]\.photo"):
        render_site(tmp_path)


# --- diversity sets -------------------------------------------------------------------------------


def write_diversity_atlas(out: Path) -> dict:
    """block1_conv1 with a diversity set of 3 on filter 0 (and its transforms recorded), none on filter 1."""
    manifest = synthetic_manifest(layers=[("block1_conv1", 2)])
    layer = manifest["layers"][0]
    layer["synthesis"] = {"channel": CHANNEL_USED, "neuron": NEURON_USED, "diversity": CHANNEL_USED}
    unit = layer["units"][0]
    unit["images"]["diversity"] = [unit["page"] + f"diversity/{rank}.webp" for rank in range(3)]
    runs = [dict(unit["metrics"]["channel"], objective=value, curve=[[1, 0.5], [256, value - 0.2], [512, value]])
            for value in (3.25, 2.5, 2.75)]
    unit["metrics"].update(diversity=[r["objective"] for r in runs], diversity_runs=runs, diversity_similarity=0.375)
    write_manifest(out, manifest)
    render_site(out)
    return manifest


def test_the_diversity_set_shows_beside_the_whole_filter_image_with_a_curve_each(tmp_path):
    write_diversity_atlas(tmp_path)
    page = parse(tmp_path / "vgg16/block1_conv1/0/index.html")
    excites = page.find("section", class_="excites") or page
    figure = excites.find("figure", class_="diversity")
    sources = [img.attrs["src"] for img in figure.find_all("img")]
    assert sources == [f"../../../vgg16/block1_conv1/0/diversity/{rank}.webp" for rank in range(3)]
    assert all(img.attrs.get("loading") == "lazy" for img in figure.find_all("img"))
    caption = figure.find("figcaption").text
    assert "3 images of the whole filter optimised together" in caption and "3.25, 2.5, 2.75" in caption
    assert "0.38" in caption  # the set's Gram similarity
    runs = settings_of(page)
    assert [h for h in runs if h.startswith("Diversity")] == [f"Diversity image {i} of 3" for i in (1, 2, 3)]
    assert runs["Diversity image 1 of 3"]["Transforms"] == runs["Whole filter"]["Transforms"]  # fitted alike
    assert runs["Diversity image 2 of 3"]["Steps"] == "512"
    curves = page.find("section", class_="made").find_all("svg", class_="curve")
    assert len(curves) == 3  # one per diversity image (this synthetic whole filter and centre neuron have none)
    assert "ends at 2.75" in curves[-1].find("desc").text
    # A filter without a set has no figure and no runs for it.
    other = parse(tmp_path / "vgg16/block1_conv1/1/index.html")
    assert not other.find_all("figure", class_="diversity")
    assert list(settings_of(other)) == ["Whole filter", "Centre neuron"]


def test_an_exact_extreme_says_so_under_its_image(tmp_path):
    manifest = add_negative(synthetic_manifest(layers=[("block1_conv1", 2)]))
    unit = manifest["layers"][0]["units"][0]
    unit["metrics"]["channel"]["exact"] = True
    unit["metrics"]["channel_negative"]["exact"] = True
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    page = parse(tmp_path / "vgg16/block1_conv1/0/index.html")
    notes = [p.text for p in page.find_all("p", class_="exact-note")]
    assert len(notes) == 2 and "that maximises it over all images is known" in notes[0]
    assert "that minimises it" in notes[1] and "scores below the optimised image" in notes[1]
    assert not parse(tmp_path / "vgg16/block1_conv1/1/index.html").find_all("p", class_="exact-note")


def test_a_global_field_and_the_read_rule_are_stated_on_the_pages(tmp_path):
    """Issue 23: r null with a `global` reason shows as the whole image; every page says what a unit's value is."""
    manifest = synthetic_manifest(layers=[("block1_conv1", 2), ("block2_conv1", 2)])
    gated = manifest["layers"][1]
    gated.update(r=None, P=None, read_after="block2_bn")
    gated["global"] = "every unit depends on the whole image: squeeze (GlobalAveragePooling2D) pools the whole map"
    manifest["preprocessing"] = "tf: pixels scaled to [-1, 1] (keras preprocess_input mode 'tf')"
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    layer = parse(tmp_path / "vgg16/block2_conv1/index.html")
    assert "squeeze (GlobalAveragePooling2D)" in layer.find("p", class_="global-field").text
    assert "after block2_bn" in layer.find("p", class_="read-rule").text
    assert "receptive field: the whole image" in layer.find("p", class_="facts-line").text
    unit = parse(tmp_path / "vgg16/block2_conv1/0/index.html")
    row = unit.find("tr", class_="global-field")
    assert "the whole image" in row.text and "optimises the whole image" in row.text
    assert "read after the batch norm" in unit.find("tr", class_="read-rule").text
    plain = parse(tmp_path / "vgg16/block1_conv1/index.html")
    assert plain.find_all("p", class_="global-field") == [] and "after block" not in plain.find("p", class_="read-rule").text
    index = (tmp_path / "vgg16/index.html").read_text()
    assert "tf: pixels scaled to [-1, 1]" in index and "the whole image (every unit depends" in index
    # A null r without its reason is not a manifest the site renders.
    del gated["global"]
    write_manifest(tmp_path, manifest)
    with pytest.raises(AtlasgenError, match="layers\\[1\\].r"):
        render_site(tmp_path)


def random_atlas(model: str, name: str, layers, source: str = "random") -> dict:
    """A synthetic atlas.json of `model` in folder `name` (VGG16's fields under other layer names is fine
    for the pages), with random weights unless `source` says otherwise."""
    manifest = synthetic_manifest(layers=[(layer, count) for layer, count in layers.values()], model="vgg16")
    text = json.dumps(manifest).replace('"vgg16/', f'"{name}/')
    for new, (old, _) in layers.items():
        text = text.replace(f'"{old}', f'"{new}').replace(f'/{old}/', f'/{new}/')
    manifest = json.loads(text)
    manifest.update(name=name, model=model)
    if source == "random":
        manifest["weights"] = {"source": "random", "spec": "random", "fingerprint": "2" * 64,
                               "label": f"random weights: keras.applications {model}'s initialisers, seed 0"}
    return manifest


def test_the_root_lists_every_atlas_under_its_model_with_random_weights_labelled(tmp_path):
    from atlasgen.site.atlases import by_model, load_atlases

    write_manifest(tmp_path, synthetic_manifest(layers=[("block1_conv1", 2)]))  # vgg16, ImageNet weights
    write_manifest(tmp_path, random_atlas("vgg16", "vgg16-random", {"block1_conv1": ("block1_conv1", 2)}))
    write_manifest(tmp_path, random_atlas("resnet50", "resnet50-random", {"conv1_conv": ("block1_conv1", 2)}))
    write_manifest(tmp_path, random_atlas("ResNet50V2", "resnet50v2-random", {"conv1_conv": ("block1_conv1", 2)}))
    groups = by_model(load_atlases(tmp_path))
    assert [(g.model, [a.name for a in g.atlases], g.random_only) for g in groups] == [
        ("resnet50", ["resnet50-random"], True),
        ("ResNet50V2", ["resnet50v2-random"], True),  # models in name order, whatever their case
        ("vgg16", ["vgg16", "vgg16-random"], False),  # trained weights first, then random
    ]
    render_site(tmp_path)
    root = (tmp_path / "index.html").read_text()
    sections = re.findall(r'<section class="model"[^>]*>\s*<h2[^>]*>(.*?) <span', root)
    assert sections == ["resnet50", "ResNet50V2", "vgg16"]
    vgg16 = root[root.index('<h2 id="model-3">'):]
    assert vgg16.index(">vgg16</a></h3>") < vgg16.index(">vgg16-random</a> <strong class=\"random\">random weights</strong>")
    assert root.count('<strong class="random">random weights</strong>') == 3  # every random atlas, and no other
    assert ">vgg16</a> <strong" not in root
    assert root.count("Untrained: its filters show") == 3
    # Every page's search form knows each atlas's model, for `resnet50/conv1_conv/1`.
    page = (tmp_path / "vgg16/block1_conv1/1/index.html").read_text()
    models = re.search(r'data-models="([^"]*)"', page).group(1).replace("&#34;", '"')
    assert json.loads(models) == {"resnet50-random": "resnet50", "resnet50v2-random": "ResNet50V2", "vgg16": "vgg16",
                                  "vgg16-random": "vgg16"}
