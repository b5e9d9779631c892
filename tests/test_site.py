"""Site rendering from a manifest: links, escaping, GitHub Pages details, serve."""

import importlib.util
import json
import re
import stat
import threading
import urllib.request
from pathlib import Path

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.export import unit_folder
from atlasgen.model import safe_name
from atlasgen.serve import make_server
from atlasgen.site import render_site

_spec = importlib.util.spec_from_file_location("render_speed", Path(__file__).resolve().parent.parent / "benchmarks" / "render_speed.py")
render_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_speed)

HOSTILE = '<b onmouseover="x">evil</b>'


def write_atlas(out: Path, layers=(("block1_conv1", 3, 3, 1, 1), ("block2_conv1", 2, 10, 2, 4))) -> dict:
    manifest = render_speed.synthetic_manifest(layers=layers)
    out.mkdir(parents=True, exist_ok=True)
    (out / "atlas.json").write_text(json.dumps(manifest))
    return manifest


def test_pages_use_page_relative_links_only(tmp_path):
    write_atlas(tmp_path)
    result = render_site(tmp_path)
    assert result.pages == 1 + 2 + 5 + 1
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
    assert "@misc{atlasgen_vgg16_block2_conv1_1," in page and "\\url{https://user.github.io/repo/vgg16/block2_conv1/1/}" in page
    assert "block2\\_conv1" in page  # BibTeX escaping
    sitemap = (tmp_path / "sitemap.xml").read_text()
    assert sitemap.count("<loc>") == 1 + 2 + 5 and "<loc>https://user.github.io/repo/vgg16/block1_conv1/2/</loc>" in sitemap
    not_found = (tmp_path / "404.html").read_text()
    assert '<base href="/repo/">' in not_found and 'href="index.html"' in not_found


def test_names_are_escaped_and_paths_are_safe(tmp_path):
    manifest = write_atlas(tmp_path, layers=(("block1_conv1", 2, 3, 1, 1),))
    manifest["layers"][0]["name"] = HOSTILE
    manifest["weights"]["label"] = "<script>alert(1)</script>"
    (tmp_path / "atlas.json").write_text(json.dumps(manifest))
    render_site(tmp_path)
    for page in tmp_path.rglob("*.html"):
        html = page.read_text()
        assert "<b onmouseover" not in html and "<script>alert" not in html
    assert "&lt;b onmouseover=&#34;x&#34;&gt;evil&lt;/b&gt;" in (tmp_path / "vgg16/block1_conv1/index.html").read_text()
    for name in (HOSTILE, "../../etc", "a/b\\c", "..", ""):
        segment = safe_name(name)
        assert segment and "/" not in segment and "\\" not in segment and "<" not in segment
        assert segment not in (".", "..") and not segment.startswith(".")
    assert unit_folder("vgg16", "../../x", 3) == "vgg16/x/3/"


def test_files_are_world_readable(tmp_path):
    write_atlas(tmp_path)
    render_site(tmp_path)
    page = tmp_path / "vgg16/block1_conv1/0/index.html"
    assert stat.S_IMODE(page.stat().st_mode) == 0o644


def test_render_without_a_manifest_is_one_line(tmp_path, run_cli, one_line_error):
    with pytest.raises(AtlasgenError, match="atlasgen build"):
        render_site(tmp_path)
    one_line_error(run_cli("render", "--out", tmp_path), "atlas.json", "atlasgen build")
    one_line_error(run_cli("serve", "--out", tmp_path), "index.html")


def test_serve_listens_on_loopback(tmp_path):
    write_atlas(tmp_path)
    render_site(tmp_path)
    server = make_server(tmp_path, 0)
    assert server.server_address[0] == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/vgg16/block1_conv1/") as response:
            assert response.status == 200 and b"block1_conv1" in response.read()
    finally:
        server.shutdown()
        server.server_close()
