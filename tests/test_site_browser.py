"""The built site in a real browser: headless Debian Chromium driven by Playwright."""

import json
import shutil
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from atlasgen.serve import make_server

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
    """Shows every view and every example's context, scrolls every lazy image into view, then returns
    the sources that failed to load."""
    page.evaluate("document.querySelectorAll('.grid[hidden]').forEach(g => g.hidden = false);"
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
    page.click("h2 >> text=vgg16-hed-bsds500")  # the root lists the atlases in the folder
    assert page.url.endswith("vgg16-hed-bsds500/index.html")
    page.click("text=block2_conv1")
    assert page.url.endswith("vgg16-hed-bsds500/block2_conv1/index.html")
    page.click("button[data-view='neuron']")
    assert page.is_visible(".grid[data-view='neuron']") and not page.is_visible(".grid[data-view='channel']")
    page.click(".grid[data-view='neuron'] a >> nth=1")
    assert page.url.endswith("vgg16-hed-bsds500/block2_conv1/1/index.html")
    assert page.is_visible(".rf-box") and "@misc{" in page.inner_text("pre.cite")
    page.click("a[rel=next]")
    assert page.url.endswith("vgg16-hed-bsds500/block2_conv1/2/index.html")
    page.go_back()
    assert page.url.endswith("vgg16-hed-bsds500/block2_conv1/1/index.html")
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
    crops = page.query_selector_all("ol.examples img")
    assert len(crops) == len(examples)
    for crop in crops:
        crop.scroll_into_view_if_needed()
        box = crop.bounding_box()
        assert box["width"] > 0 and box["height"] > 0
    page.wait_for_function("Array.from(document.querySelectorAll('ol.examples img')).every(i => i.complete && i.naturalWidth > 0)")
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
    assert page.url.endswith("vgg16-hed-bsds500/block1_conv1/1/index.html#example-1")
    assert page.is_visible("#example-1 rect.box") and in_viewport(page, "#example-1")
    assert errors == []
