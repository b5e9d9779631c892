"""A filter page's weight before lazy images load: the HTML and everything it loads eagerly.

    python tests/test_site_weight.py SITE [PAGE]   # prints the weight of PAGE (default: every filter page's largest)

The issue's budget is 400 kB at the full preset's image size (224 px); the test checks it on the test atlas.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

BUDGET = 400_000


class Eager(HTMLParser):
    """The resources a page loads before any lazy image: stylesheets (the <noscript> one too, to be
    safe), icons, scripts and every <img> without loading="lazy". search.json is fetched only when the
    search box is used, so it is not counted."""

    def __init__(self):
        super().__init__()
        self.resources: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" and {"stylesheet", "icon"} & set((a.get("rel") or "").split()):
            self.resources.append(a["href"])
        elif tag == "script" and a.get("src"):
            self.resources.append(a["src"])
        elif tag == "img" and a.get("loading") != "lazy":
            self.resources.append(a["src"])


def page_weight(page: Path) -> dict[str, int]:
    """Bytes of the page and of each resource it loads eagerly, by path relative to the page."""
    parser = Eager()
    parser.feed(page.read_text())
    weights = {page.name: page.stat().st_size}
    for url in dict.fromkeys(parser.resources):
        assert not urlparse(url).scheme, url  # everything is the site's own
        weights[url] = (page.parent / url).stat().st_size
    return weights


def filter_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.glob("*/*/*/index.html"))


def test_a_filter_page_weighs_under_400_kB_before_lazy_images_load(built_atlas):
    pages = filter_pages(built_atlas.out)
    assert len(pages) == 6
    for page in pages:
        weights = page_weight(page)
        assert sum(weights.values()) < BUDGET, weights
        # Only the synthesised images above the fold load at once (what excites the filter beside what
        # inhibits it, and the centre neuron): no map, photo or example crop.
        images = [url for url in weights if url.endswith(".webp")]
        eager = ("channel.webp", "channel-negative.webp", "maco-channel.webp", "maco-negative.webp", "neuron.webp")
        assert images and all(Path(url).name in eager for url in images), images
        assert any(url.endswith("atlas.css") for url in weights) and any(url.endswith("atlas.js") for url in weights)


def main() -> None:
    site = Path(sys.argv[1])
    pages = [Path(sys.argv[2])] if len(sys.argv) > 2 else filter_pages(site)
    heaviest = max(pages, key=lambda p: sum(page_weight(p).values()))
    weights = page_weight(heaviest)
    for url, size in weights.items():
        print(f"{size:>9,} B  {url}")
    print(f"{sum(weights.values()):>9,} B  total for {heaviest.relative_to(site)} (heaviest of {len(pages)}; budget {BUDGET:,} B)")


if __name__ == "__main__":
    main()
