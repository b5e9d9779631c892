"""Site rendering from a manifest: links, escaping, GitHub Pages details, the typed manifest, pruning."""

import json
import re
import stat
from pathlib import Path

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.site import render_site
from support import synthetic_manifest


HOSTILE = '<b onmouseover="x">evil</b>'


def write_atlas(out: Path, layers=(("block1_conv1", 3), ("block2_conv1", 2))) -> dict:
    manifest = synthetic_manifest(layers=list(layers))
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
    manifest = write_atlas(tmp_path, layers=(("block1_conv1", 2),))
    manifest["layers"][0]["name"] = HOSTILE
    manifest["weights"]["label"] = "<script>alert(1)</script>"
    (tmp_path / "atlas.json").write_text(json.dumps(manifest))
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
    (tmp_path / "atlas.json").write_text(json.dumps(manifest))
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

    from atlasgen.site import layer_views, whole_filter_image

    lucid = {"channel": "a/channel.webp", "rf_crop": "a/rf-crop.webp"}
    unit = lambda images: SimpleNamespace(images=images, activation_maps=[])
    layer = SimpleNamespace(units=[unit(lucid)])
    assert [v["label"] for v in layer_views(layer, [])] == ["Whole filter", "Centre neuron (receptive field)"]
    both = SimpleNamespace(units=[unit({**lucid, "maco_channel": "a/maco-channel.webp"})])
    views = layer_views(both, [])
    assert [v["id"] for v in views] == ["channel", "maco", "neuron"]
    assert views[1]["label"] == "Whole filter (MACO)" and views[1]["cells"][0][1] == "a/maco-channel.webp"
    maco_only = unit({"maco_channel": "a/maco-channel.webp"})
    assert [v["id"] for v in layer_views(SimpleNamespace(units=[maco_only]), [])] == ["maco"]
    assert whole_filter_image(maco_only) == "a/maco-channel.webp" and whole_filter_image(both.units[0]) == "a/channel.webp"
