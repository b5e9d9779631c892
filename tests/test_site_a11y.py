"""Accessibility and validity of the built site: axe-core in Chromium, html-validate's recommended rules,
images never drawn larger than their pixels unless marked as pixels, every image sized, links underlined.

axe-core and html-validate come from npm at test time, into a cache (never into the site); .ci/run
installs Node and npm when they are missing."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from atlasgen.site.render import render_site
from support import HED_ATLAS, synthetic_manifest, write_manifest
from test_site import add_examples
from test_site_browser import browser, images_loaded, open_page, site  # noqa: F401  (fixtures shared with the browser tests)

#: One page of each kind: the list of atlases, an atlas's index, a layer page, a filter page.
PAGES = ["index.html", f"{HED_ATLAS}/index.html", f"{HED_ATLAS}/block2_conv1/index.html",
         f"{HED_ATLAS}/block2_conv1/1/index.html", f"{HED_ATLAS}/block1_conv1/0/index.html"]  # the last: a kernel


def node_version() -> tuple[int, ...]:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("Node and npm are missing: apt-get install nodejs npm (.ci/run installs them)")
    text = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(part) for part in text.strip().lstrip("v").split("."))


@pytest.fixture(scope="session")
def node_tools(tmp_path_factory) -> Path:
    """node_modules with axe-core and html-validate, installed once into a cache shared by runs and
    workers (under a lock). html-validate 10 needs Node 20.19; Debian 12's Node 18 gets version 9."""
    version = node_version()
    validator = "html-validate@10" if version >= (20, 19) else "html-validate@9"
    try:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "atlasgen-tests" / validator
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = tmp_path_factory.getbasetemp().parent / "atlasgen-tests" / validator
        cache.mkdir(parents=True, exist_ok=True)
    modules = cache / "node_modules"
    with open(cache / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ((modules / "axe-core" / "axe.min.js").is_file() and (modules / "html-validate" / "bin").is_dir()):
            subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--loglevel=error",
                            "axe-core@4", validator], check=True, timeout=600)
    return modules


def html_validate(node_tools: Path, files: list[Path]) -> list[str]:
    """html-validate's recommended preset on the files: one line per problem."""
    command = ["node", str(node_tools / "html-validate" / "bin" / "html-validate.mjs"), "--preset", "recommended",
               "--formatter", "json", *map(str, files)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1) and result.stdout.strip(), result.stderr
    return [f"{Path(report['filePath']).name}:{m['line']}:{m['column']} {m['ruleId']}: {m['message']}"
            for report in json.loads(result.stdout) for m in report["messages"]]


def test_html_validate_finds_nothing_on_the_built_pages(built_atlas, node_tools):
    out = built_atlas.out
    assert html_validate(node_tools, [out / page for page in PAGES] + [out / "404.html"]) == []


def test_html_validate_finds_nothing_on_every_kind_of_filter(tmp_path, node_tools):
    """What the quick atlas lacks: MACO images, silent filters, two atlases, two probes, no examples."""
    manifest = add_examples(synthetic_manifest(layers=[("block1_conv1", 3), ("block2_conv1", 2)], probes=("astronaut", "coffee")))
    for layer in manifest["layers"]:
        for unit in layer["units"]:
            unit["images"]["maco_channel"] = unit["page"] + "maco-channel.webp"
            unit["images"]["maco_transparency"] = unit["page"] + "maco-transparency.webp"
            unit["metrics"]["maco"] = unit["metrics"]["channel"]
            unit["metrics"]["silent"] = unit["index"] == 1
            unit["metrics"]["channel"]["curve"] = [[1, -1.0], [256, 2.5], [512, 3.0]]
            if layer["name"] == "block1_conv1":  # it reads the image: its kernels, as the Kernels (RGB) tab
                unit["images"]["kernel"] = unit["page"] + "kernel.webp"
                unit["kernel"] = {"scale": 0.5, "taps": [3, 3], "flipped": True}
        used = {"pad": 0, "jitter": 1, "scale": [1.0, 1.0], "rotate_degrees": 0.0, "jitter_last": 0, "learning_rate": 0.1}
        layer["synthesis"] = {"channel": used, "neuron": {**used, "pad": 12}}
    write_manifest(tmp_path, manifest)
    other = synthetic_manifest(layers=[("block1_conv1", 1)], model="vgg16")
    other = json.loads(json.dumps(other).replace('"vgg16/', '"other/'))
    other["name"] = "other"
    write_manifest(tmp_path, other)
    render_site(tmp_path, base_url="https://user.github.io/repo/")
    pages = sorted(tmp_path.rglob("*.html"))
    assert len(pages) == 1 + 1 + (1 + 2 + 5) + (1 + 1 + 1)
    assert html_validate(node_tools, pages) == []


def axe(page, node_tools: Path) -> list[str]:
    page.add_script_tag(path=str(node_tools / "axe-core" / "axe.min.js"))
    violations = page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations"
                               ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))})))")
    return [f"{v['impact']} {v['id']}: {', '.join(v['nodes'][:3])}" for v in violations
            if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("path", PAGES)
def test_axe_finds_no_serious_violation(site, browser, node_tools, path):
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(site + path)
    assert axe(page, node_tools) == []
    # The search's message and, on a filter page, the overlay are part of the page too.
    page.fill(".search input", "no_such_layer/1")
    page.press(".search input", "Enter")
    page.wait_for_selector(".search output:not(:empty)")
    if page.query_selector(".overlay-toggle"):
        page.click(".overlay-toggle")
    assert axe(page, node_tools) == []
    assert errors == []


#: Lighthouse's image-size-responsive audit: an image shown w CSS px wide on a 2x screen needs 2w
#: pixels (0.75 of that above 64 px); one drawn as pixels (image-rendering) is pixel art, and exempt.
RESOLUTION = """() => Array.from(document.images).filter(i => {
  const s = getComputedStyle(i), r = i.getBoundingClientRect();
  if (r.width <= 1 || ['pixelated', 'crisp-edges'].includes(s.imageRendering) || s.objectFit !== 'fill') return false;
  const factor = (r.width > 64 || r.height > 64) ? 0.75 : 1;
  return i.naturalWidth < Math.ceil(factor * 2 * r.width) || i.naturalHeight < Math.ceil(factor * 2 * r.height);
}).map(i => `${i.src}: ${i.naturalWidth}x${i.naturalHeight} px shown at ${i.width}x${i.height}`)"""


@pytest.mark.parametrize("width", [1280, 412])
def test_no_image_is_shown_larger_than_its_pixels_unless_drawn_as_pixels(site, browser, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    for path in PAGES:
        page.goto(site + path)
        assert images_loaded(page) == [], path
        assert page.evaluate(RESOLUTION) == [], path
        # Lighthouse's unsized-images: every image has both size attributes, so nothing moves as it loads.
        assert page.evaluate("Array.from(document.images).filter(i => !i.getAttribute('width') || !i.getAttribute('height'))"
                             ".map(i => i.src)") == [], path
    page.close()


def test_links_in_text_are_underlined(site, browser):
    """Told apart by more than colour (axe's link-in-text-block, Lighthouse's finding): every link with
    words in it is underlined; only image links (a grid's cells) are not."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    for path in PAGES:
        page.goto(site + path)
        plain = page.evaluate("Array.from(document.querySelectorAll('a')).filter(a => a.textContent.trim()"
                              " && !a.closest('.grid') && !getComputedStyle(a).textDecorationLine.includes('underline'))"
                              ".map(a => a.textContent.trim())")
        assert plain == [], path
    page.close()


def test_every_image_has_meaningful_alt_text(site, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    for path in PAGES:
        page.goto(site + path)
        alts = page.evaluate("Array.from(document.images).map(i => i.getAttribute('alt'))")
        assert alts and all(alt and len(alt.split()) >= 3 for alt in alts), (path, alts)
        # Several images of one page never share a vague name such as 'image'.
        assert not any(alt.lower() in ("image", "photo", "thumbnail", "heatmap") for alt in alts)
    page.close()
