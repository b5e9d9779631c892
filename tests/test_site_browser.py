"""The built site in a real browser: headless Debian Chromium driven by Playwright."""

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
    """Scrolls every lazy image into view, then returns the sources that failed to load."""
    page.evaluate("document.querySelectorAll('.grid[hidden]').forEach(g => g.hidden = false)")
    for image in page.query_selector_all("img"):
        image.scroll_into_view_if_needed()
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    return page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.src)")


def test_browse_index_layer_filter_next_back(site, browser, tmp_path):
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(site + "index.html")
    assert "HED BSDS500" in page.inner_text("body") and "sha256:" in page.inner_text("body")
    page.click("text=block2_conv1")
    assert page.url.endswith("vgg16/block2_conv1/index.html")
    page.click("button[data-view='neuron']")
    assert page.is_visible(".grid[data-view='neuron']") and not page.is_visible(".grid[data-view='channel']")
    page.click(".grid[data-view='neuron'] a >> nth=1")
    assert page.url.endswith("vgg16/block2_conv1/1/index.html")
    assert page.is_visible(".rf-box") and "@misc{" in page.inner_text("pre.cite")
    page.click("a[rel=next]")
    assert page.url.endswith("vgg16/block2_conv1/2/index.html")
    page.go_back()
    assert page.url.endswith("vgg16/block2_conv1/1/index.html")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/vgg16/block2_conv1/0/index.html")
    page.keyboard.press("ArrowUp")
    page.wait_for_url("**/vgg16/block1_conv1/index.html")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(site + "vgg16/block2_conv1/1/index.html")
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
    assert len(seen) == 1 + 2 + 6  # index, two layers, six filters
    assert errors == []
