"""The built site in a real browser: headless Debian Chromium driven by Playwright."""

import json
import shutil
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from atlasgen.site.serve import make_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"

from playwright import sync_api as playwright_api  # noqa: E402  (the dev extra installs it)


@pytest.fixture(scope="module")
def site(built_atlas):
    server = make_server(built_atlas.out, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: apt-get install chromium (.ci/run installs it)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def open_page(browser, errors):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def images_loaded(page) -> list[str]:
    """Shows every view, overlay and example's context, scrolls every lazy image into view, then returns
    the sources that failed to load."""
    page.evaluate("document.querySelectorAll('.grid[hidden], .map-overlay[hidden]').forEach(g => g.hidden = false);"
                  "document.querySelectorAll('figure.context').forEach(f => f.style.display = 'block')")
    for image in page.query_selector_all("img"):
        image.scroll_into_view_if_needed()
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    return page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.src)")


def test_browse_index_layer_filter_next_back(site, browser, tmp_path):
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(site + "index.html")
    assert "HED BSDS500" in page.inner_text("body") and "sha256:" in page.inner_text("body")
    page.click("h3 >> text=vgg16-hed-bsds500")  # the root lists the atlases in the folder, under their model
    page.wait_for_url("**/vgg16-hed-bsds500/index.html")  # a click starts the navigation; wait for it to land
    page.click("h3 a >> text=block2_conv1")  # the layer list's link, not the transforms table's row
    page.wait_for_url("**/vgg16-hed-bsds500/block2_conv1/index.html")
    page.click("button[data-view='rf-crop']")
    assert page.is_visible(".grid[data-view='rf-crop']") and not page.is_visible(".grid[data-view='channel']")
    page.click(".grid[data-view='rf-crop'] a >> nth=1")
    page.wait_for_url("**/vgg16-hed-bsds500/block2_conv1/1/index.html")
    assert page.is_visible(".rf-box") and "@misc{" in page.inner_text("pre.cite")
    page.click("a[rel=next]")
    page.wait_for_url("**/vgg16-hed-bsds500/block2_conv1/2/index.html")
    page.go_back()
    page.wait_for_url("**/vgg16-hed-bsds500/block2_conv1/1/index.html")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/vgg16-hed-bsds500/block2_conv1/0/index.html")
    page.keyboard.press("ArrowUp")
    page.wait_for_url("**/vgg16-hed-bsds500/block1_conv1/index.html")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(site + "vgg16-hed-bsds500/block2_conv1/1/index.html")
    assert images_loaded(page) == []
    page.screenshot(path=str(SCREENSHOTS / "filter-page.png"), full_page=True)
    assert (SCREENSHOTS / "filter-page.png").stat().st_size > 10_000
    assert errors == []


def test_every_page_loads_its_images_and_every_internal_link_resolves(site, browser):
    errors: list[str] = []
    page = open_page(browser, errors)
    queue, seen, checked = [site + "index.html"], set(), set()
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        page.goto(url)
        assert images_loaded(page) == [], url
        links = page.evaluate("Array.from(document.querySelectorAll('a[href], link[href], script[src]'))"
                              ".map(e => e.href || e.src)")
        for link in links:
            target = urljoin(url, link).split("#")[0]
            if not target.startswith(site):
                assert not urlparse(target).netloc or "example" in target, f"external link {target} on {url}"
                continue
            if target not in checked:
                with urllib.request.urlopen(target) as response:
                    assert response.status == 200, (url, target)
                checked.add(target)
            if target.endswith(".html") and target not in seen:
                queue.append(target)
    assert len(seen) == 1 + 1 + 2 + 6  # the list of atlases, the atlas index, two layers, six filters
    assert errors == []


def in_viewport(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect();"
                                           " return r.height > 0 && r.top >= 0 && r.top < innerHeight; }")


def test_dataset_examples_and_their_boxes_show_without_javascript(site, browser, built_atlas):
    atlas = json.loads((built_atlas.out / "vgg16-hed-bsds500" / "atlas.json").read_text())
    examples = atlas["layers"][1]["units"][1]["dataset_examples"]
    assert examples, "the quick preset's atlas should have dataset examples"
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, java_script_enabled=False)
    page = context.new_page()
    page.goto(site + "vgg16-hed-bsds500/block2_conv1/1/index.html")
    crops = page.query_selector_all("section.dataset ol.examples img")  # the top ones ("Excites")
    assert len(crops) == len(examples)
    for crop in crops:
        crop.scroll_into_view_if_needed()
        box = crop.bounding_box()
        assert box["width"] > 0 and box["height"] > 0
    page.wait_for_function("Array.from(document.querySelectorAll('section.dataset ol.examples img')).every(i => i.complete && i.naturalWidth > 0)")
    ratio = atlas["layers"][1]["units"][1]["metrics"]["neuron_vs_best_example"]
    assert (f"{ratio:.3g}× the best dataset example's activation" if ratio is not None else "No ratio") in page.inner_text(".versus")

    def drawn(rank: int) -> None:
        """Example `rank`'s context shows its photo, and the box sits on the receptive field's pixels."""
        figure = f"#example-{rank + 1}"
        assert page.is_visible(figure) and in_viewport(page, figure)
        page.wait_for_function(f"document.querySelector('{figure} img').complete")
        assert page.eval_on_selector(f"{figure} img", "i => i.naturalWidth") > 0
        photo = page.query_selector(f"{figure} img").bounding_box()
        drawn_box = page.query_selector(f"{figure} rect.box").bounding_box()  # stroke included
        assert drawn_box["width"] > 0 and drawn_box["height"] > 0
        # The rectangle's own geometry, on screen, without its stroke.
        rect = page.eval_on_selector(f"{figure} rect.box", "r => { const b = r.getBBox(), m = r.getScreenCTM();"
                                     " return {x: m.a * b.x + m.e, y: m.d * b.y + m.f, width: m.a * b.width, height: m.d * b.height}; }")
        top, left, bottom, right = examples[rank]["box"]
        height, width = examples[rank]["photo_size"]
        # Where the photo's pixels are painted in the img's box (object-fit: contain letterboxes a tall one).
        scale = min(photo["width"] / width, photo["height"] / height)
        x0 = photo["x"] + (photo["width"] - width * scale) / 2
        y0 = photo["y"] + (photo["height"] - height * scale) / 2
        assert abs(rect["x"] - (x0 + left * scale)) < 1 and abs(rect["y"] - (y0 + top * scale)) < 1
        assert abs(rect["width"] - (right - left) * scale) < 1 and abs(rect["height"] - (bottom - top) * scale) < 1

    # Before any is chosen, the best example's context shows.
    page.query_selector("#example-1").scroll_into_view_if_needed()
    drawn(0)
    assert not page.is_visible("#example-2")
    last = len(examples) - 1
    page.evaluate("window.scrollTo(0, 0)")
    page.click(f"a[href='#example-{last + 1}']")
    assert page.url.endswith(f"#example-{last + 1}")
    assert page.evaluate("document.querySelector(':target').id") == f"example-{last + 1}"
    drawn(last)
    assert not page.is_visible("#example-1")
    # The lowest examples beside them ("Inhibits") open the same way, each list on its own.
    negative = atlas["layers"][1]["units"][1]["dataset_examples_negative"]
    assert len(page.query_selector_all("section.dataset-negative ol.examples img")) == len(negative)
    assert page.is_visible("#examples-negative-1") and not page.is_visible("#examples-negative-2")
    page.click("a[href='#examples-negative-2']")
    assert page.is_visible("#examples-negative-2") and not page.is_visible("#examples-negative-1")
    assert page.is_visible("#example-1") and not page.is_visible(f"#example-{last + 1}")  # its first, again

    # Without JavaScript the photo, heatmap and overlay all show, and the search (which needs it) does not.
    assert page.is_visible("#overlay-1") and page.is_visible("#heatmap-1") and not page.is_visible(".overlay-toggle")
    assert not page.is_visible(".search")

    # The layer page without JavaScript: every view shows under its heading, the top examples among them.
    page.goto(site + "vgg16-hed-bsds500/block2_conv1/index.html")
    assert not page.is_visible(".tabs")
    assert page.is_visible("h2:text('Top dataset example')")
    crops = page.query_selector_all(".grid[data-view='examples'] img")
    assert len(crops) == len(atlas["layers"][1]["units"])
    for crop in crops:
        crop.scroll_into_view_if_needed()
        assert crop.is_visible() and crop.bounding_box()["width"] > 0
    context.close()


def test_layer_page_switches_to_the_top_examples_with_javascript(site, browser):
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(site + "vgg16-hed-bsds500/block1_conv1/index.html")
    assert not page.is_visible("h2:text('Top dataset example')")  # the noscript headings stay out
    assert not page.is_visible(".grid[data-view='examples']")
    page.click("button[data-view='examples']")
    assert page.is_visible(".grid[data-view='examples']") and not page.is_visible(".grid[data-view='channel']")
    page.click(".grid[data-view='examples'] a >> nth=1")
    page.wait_for_url("**/vgg16-hed-bsds500/block1_conv1/1/index.html#example-1")
    assert page.is_visible("#example-1 rect.box") and in_viewport(page, "#example-1")
    assert errors == []


# --- search and jump -------------------------------------------------------------------------------


def search_for(page, query: str, box: str = ".search input") -> None:
    page.fill(box, query)
    page.press(box, "Enter")


def test_the_search_box_reaches_every_filter_from_any_page(site, browser, built_atlas):
    atlas = json.loads((built_atlas.out / "vgg16-hed-bsds500" / "atlas.json").read_text())
    units = [(layer["name"], unit["index"]) for layer in atlas["layers"] for unit in layer["units"]]
    assert len(units) == 6
    # Every spelling the issue names, and a few more, each for a different filter.
    spellings = ["{layer}/{i}", "{short}/{i}", "conv{short} {i}", "{layer} {i}", "{short} {i}",
                 "vgg16-hed-bsds500/{layer}/{i}/"]
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(site + "index.html")
    for (layer, index), spelling in zip(units, spellings):
        short = layer.removeprefix("block").replace("_conv", "_")  # block2_conv1 -> 2_1
        page.keyboard.press("/")  # the shortcut focuses the box from anywhere on the page
        assert page.evaluate("document.activeElement.id") == "search-input"
        page.keyboard.type(spelling.format(layer=layer, short=short, i=index))
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/vgg16-hed-bsds500/{layer}/{index}/index.html")
    # A layer alone goes to its page; a pasted URL works too.
    search_for(page, "block1_conv1")
    page.wait_for_url("**/vgg16-hed-bsds500/block1_conv1/index.html")
    search_for(page, site + "vgg16-hed-bsds500/block2_conv1/2/index.html")
    page.wait_for_url("**/vgg16-hed-bsds500/block2_conv1/2/index.html")
    # On a filter page a number alone is a filter of its layer.
    search_for(page, "0")
    page.wait_for_url("**/vgg16-hed-bsds500/block2_conv1/0/index.html")
    assert errors == []


@pytest.mark.parametrize("query,message", [
    ("block9_conv9/1", "No layer “block9_conv9” in vgg16-hed-bsds500; its layers are block1_conv1, block2_conv1."),
    ("block1_conv1/40", "Filter 40 of block1_conv1 is not in this atlas; it shows filters 0–2."),
    ("block1_conv1/64", "block1_conv1 has 64 filters, numbered 0–63."),
    ("1 2", "No layer “1” in vgg16-hed-bsds500; its layers are block1_conv1, block2_conv1."),
    ("   ", "Type a layer and a filter"),
])
def test_unknown_input_shows_a_message_and_stays(site, browser, query, message):
    errors: list[str] = []
    page = open_page(browser, errors)
    url = site + "vgg16-hed-bsds500/index.html"
    page.goto(url)
    search_for(page, query)
    page.wait_for_selector(".search output:not(:empty)")
    assert page.inner_text(".search output").startswith(message)
    assert page.url == url and page.get_attribute(".search input", "aria-invalid") == "true"
    page.fill(".search input", "x")  # typing again clears the message
    assert page.inner_text(".search output") == ""
    assert errors == []


def test_layer_page_filter_box(site, browser):
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(site + "vgg16-hed-bsds500/block2_conv1/index.html")
    assert page.get_attribute("form.jump input", "max") == "127"  # block2_conv1 has 128 filters
    search_for(page, "5", "form.jump input")
    page.wait_for_selector("form.jump output:not(:empty)")
    assert page.inner_text("form.jump output") == "Filter 5 of block2_conv1 is not in this atlas; it shows filters 0–2."
    search_for(page, "2", "form.jump input")
    page.wait_for_url("**/vgg16-hed-bsds500/block2_conv1/2/index.html")
    assert errors == []


def test_the_query_forms_the_parser_reads(site, browser):
    page = browser.new_page()
    page.goto(site + "index.html")
    names = ["vgg16", "vgg16-hed-bsds500"]
    cases = {
        "block4_conv2/137": [None, "block4_conv2", 137],
        "4_2/137": [None, "4_2", 137],
        "conv4_2 137": [None, "conv4_2", 137],
        "block4_conv2 137": [None, "block4_conv2", 137],
        "4_2 137": [None, "4_2", 137],
        "block4 conv2 137": [None, "block4_conv2", 137],
        "block4_conv2 filter 137": [None, "block4_conv2", 137],
        "block4_conv2#137": [None, "block4_conv2", 137],
        "vgg16/block4_conv2/137": ["vgg16", "block4_conv2", 137],
        "https://user.github.io/repo/vgg16-hed-bsds500/block4_conv2/137/index.html": ["vgg16-hed-bsds500", "block4_conv2", 137],
        "block4_conv2": [None, "block4_conv2", None],
        "137": [None, None, 137],
        "vgg16/block4_conv2": ["vgg16", "block4_conv2", None],
    }
    for query, expected in cases.items():
        parsed = page.evaluate("([q, names]) => { const p = atlasgenSearch.parse(q, names); return [p.atlas, p.layer, p.filter]; }",
                               [query, names])
        assert parsed == expected, query
    models = {"vgg16": "vgg16", "resnet50-random": "resnet50", "inception-v3-random": "inception_v3"}
    with_models = {
        "resnet50/conv3_block1_1_conv/5": [None, "resnet50", "conv3_block1_1_conv", 5],
        "resnet50-random/conv3_block1_1_conv/5": ["resnet50-random", None, "conv3_block1_1_conv", 5],
        "Inception-V3/conv2d_3 1": [None, "inception_v3", "conv2d_3", 1],
        "vgg16/block4_conv2/137": ["vgg16", None, "block4_conv2", 137],  # an atlas's name first
        "conv3_block1_1_conv/5": [None, None, "conv3_block1_1_conv", 5],
    }
    for query, expected in with_models.items():
        parsed = page.evaluate("([q, names, models]) => { const p = atlasgenSearch.parse(q, names, models);"
                               " return [p.atlas, p.model, p.layer, p.filter]; }", [query, list(models), models])
        assert parsed == expected, query
    page.close()


def test_search_with_two_atlases_stays_in_the_current_one_and_takes_a_name(tmp_path, browser):
    """Two atlases of the same layers in one folder (synthetic: pages without images)."""
    from support import synthetic_manifest, write_manifest

    from atlasgen.site.render import render_site

    write_manifest(tmp_path, synthetic_manifest(layers=[("block1_conv1", 3)]))
    other = json.loads(json.dumps(synthetic_manifest(layers=[("block1_conv1", 3)])).replace('"vgg16/', '"vgg16-mine/'))
    other["name"] = "vgg16-mine"
    other["layers"][0]["units"][2]["page"] = "vgg16-mine/block1_conv1/two/"  # off the rule: search.json lists it
    write_manifest(tmp_path, other)
    render_site(tmp_path)
    server = make_server(tmp_path, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        page = browser.new_page()
        page.goto(root + "vgg16-mine/index.html")
        search_for(page, "1_1/2")
        page.wait_for_url("**/vgg16-mine/block1_conv1/two/index.html")
        search_for(page, "vgg16/block1_conv1/1")
        page.wait_for_url(root + "vgg16/block1_conv1/1/index.html")
        page.goto(root + "index.html")  # the root searches the first atlas, or the one named
        search_for(page, "block1_conv1 0")
        page.wait_for_url(root + "vgg16/block1_conv1/0/index.html")
        page.goto(root + "index.html")
        search_for(page, "vgg16-mine/block1_conv1/0")
        page.wait_for_url(root + "vgg16-mine/block1_conv1/0/index.html")
        page.close()
    finally:
        server.shutdown()
        server.server_close()


def test_overlay_toggle_swaps_the_heatmap(site, browser):
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(site + "vgg16-hed-bsds500/block1_conv1/1/index.html")
    page.query_selector("figure.map").scroll_into_view_if_needed()
    assert page.is_visible("#heatmap-1") and not page.is_visible("#overlay-1")
    page.click(".overlay-toggle")
    assert page.is_visible("#overlay-1") and not page.is_visible("#heatmap-1")
    assert page.get_attribute(".overlay-toggle", "aria-pressed") == "true"
    page.click(".overlay-toggle")
    assert page.is_visible("#heatmap-1") and not page.is_visible("#overlay-1")
    assert errors == []


def test_search_jumps_across_atlases_by_atlas_or_model_name(atlas_copy, browser):
    """The built atlas and a synthetic random-weights resnet50 atlas in one --out: the search box of any
    page reaches a filter of either, by the atlas's name, by its model's, or by a layer only one atlas has."""
    from support import HED_ATLAS, write_manifest
    from test_site import random_atlas

    from atlasgen.site.render import render_site

    out = atlas_copy.out
    write_manifest(out, random_atlas("resnet50", "resnet50-random", {"conv1_conv": ("block1_conv1", 2),
                                                                     "conv3_block1_1_conv": ("block2_conv1", 8)}))
    render_site(out)
    server = make_server(out, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = f"http://127.0.0.1:{server.server_address[1]}/"
    errors: list[str] = []  # script errors (the synthetic atlas has no images: their 404s are expected)
    try:
        page = browser.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(root + "index.html")  # the root: one section per model, the random one labelled
        first, second = "section[aria-labelledby=model-1]", "section[aria-labelledby=model-2]"
        assert page.inner_text(first).startswith("resnet50") and "random weights" in page.inner_text(f"{first} h3")
        assert page.inner_text(second).startswith("vgg16") and "random weights" not in page.inner_text(f"{second} h3")
        page.goto(root + f"{HED_ATLAS}/block2_conv1/1/index.html")
        search_for(page, "resnet50-random/conv3_block1_1_conv/5")
        page.wait_for_url(root + "resnet50-random/conv3_block1_1_conv/5/index.html")
        search_for(page, f"{HED_ATLAS}/block2_conv1/2")  # and back, from the other atlas
        page.wait_for_url(root + f"{HED_ATLAS}/block2_conv1/2/index.html")
        search_for(page, "resnet50/conv3_block1_1_conv/7")  # the model's name: its one atlas here
        page.wait_for_url(root + "resnet50-random/conv3_block1_1_conv/7/index.html")
        search_for(page, "vgg16/block1_conv1/0")
        page.wait_for_url(root + f"{HED_ATLAS}/block1_conv1/0/index.html")
        search_for(page, "conv3_block1_1_conv 3")  # a layer this atlas lacks and one other atlas has
        page.wait_for_url(root + "resnet50-random/conv3_block1_1_conv/3/index.html")
        search_for(page, "resnet50-random/conv3_block1_1_conv/9")
        page.wait_for_selector(".search output:not(:empty)")
        assert page.inner_text(".search output") == "conv3_block1_1_conv has 8 filters, numbered 0–7."
        search_for(page, "block9_conv9/1")  # in no atlas: the page's own is named
        page.wait_for_selector(".search output:not(:empty)")
        assert page.inner_text(".search output").startswith("No layer “block9_conv9” in resnet50-random;")
        page.close()
    finally:
        server.shutdown()
        server.server_close()
    assert errors == []


def test_a_model_with_several_atlases_is_resolved_or_asked_about(tmp_path, browser):
    from support import synthetic_manifest, write_manifest
    from test_site import random_atlas

    from atlasgen.site.render import render_site

    write_manifest(tmp_path, synthetic_manifest(layers=[("block1_conv1", 3)]))  # vgg16: ImageNet weights
    write_manifest(tmp_path, random_atlas("vgg16", "vgg16-random", {"block1_conv1": ("block1_conv1", 3)}))
    write_manifest(tmp_path, random_atlas("resnet50", "resnet50-a", {"conv1_conv": ("block1_conv1", 3)}))
    write_manifest(tmp_path, random_atlas("resnet50", "resnet50-b", {"conv1_conv": ("block1_conv1", 3)}))
    render_site(tmp_path)
    server = make_server(tmp_path, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        page = browser.new_page()
        page.goto(root + "resnet50-b/index.html")
        search_for(page, "ResNet50/conv1_conv/1")  # the page's own atlas is of that model: it stays
        page.wait_for_url(root + "resnet50-b/conv1_conv/1/index.html")
        page.goto(root + "vgg16-random/index.html")
        search_for(page, "vgg16/block1_conv1/2")  # an atlas's name before a model's
        page.wait_for_url(root + "vgg16/block1_conv1/2/index.html")
        search_for(page, "resnet50/conv1_conv/1")  # two atlases of resnet50, neither this page's
        page.wait_for_selector(".search output:not(:empty)")
        assert page.inner_text(".search output").startswith("This site has 2 atlases of resnet50: resnet50-a, resnet50-b;")
        search_for(page, "conv1_conv/1")  # in two other atlases: not a jump
        page.wait_for_selector(".search output:not(:empty)")
        assert page.inner_text(".search output").startswith("No layer “conv1_conv” in vgg16;")
        page.close()
    finally:
        server.shutdown()
        server.server_close()
