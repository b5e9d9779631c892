"""Citations and atlases side by side: the atlas_id, BibTeX that a real parser reads, the sitemap,
unit.json, and two atlases of different weights in one output folder."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from atlasgen.build.run import run_build
from atlasgen.build.config import BuildConfig
from support import HED_ATLAS

BASE = "https://user.github.io/repo/"


def tiny(tmp_path, **overrides) -> BuildConfig:
    return BuildConfig(**{"preset": "quick", "layers": ("block1_conv1",), "filters": "0-1", "size": 32, "steps": 2,
                          "dataset_size": 32, "store": tmp_path / "store", "out": tmp_path / "site", **overrides})


def citations(page_html: str) -> str:
    (block,) = re.findall(r'<pre class="cite"[^>]*>(.*?)</pre>', page_html, re.S)
    return html.unescape(block)


def filter_pages(site, atlas):
    return sorted((site / atlas).glob("*/*/index.html"))


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory, hed_model):
    """The offline trunk's atlas and one of other weights (a weights file: the trunk with one bias
    moved), built into one output folder with a base URL, the second with a title and authors."""
    from atlasgen.model.weights import _vgg16

    root = tmp_path_factory.mktemp("two")
    other = _vgg16()
    weights = [w.copy() for w in hed_model.model.get_weights()]
    weights[1] = weights[1] + 0.5
    other.set_weights(weights)
    path = root / "moved.weights.h5"
    other.save_weights(path)
    first = tiny(root, base_url=BASE)
    assert run_build(first).complete
    second = tiny(root, base_url=BASE, weights=str(path), title="An atlas {of} mine & yours",
                  authors=("Ada Lovelace", "Grace Hopper"))
    assert run_build(second).complete
    return root, first, second


def test_two_atlases_of_different_weights_live_side_by_side(side_by_side):
    root, first, _ = side_by_side
    site = root / "site"
    names = sorted(p.parent.name for p in site.glob("*/atlas.json"))
    assert len(names) == 2 and HED_ATLAS in names
    other = next(n for n in names if n != HED_ATLAS)
    assert re.fullmatch(r"vgg16-[0-9a-f]{8}", other)
    atlases = {n: json.loads((site / n / "atlas.json").read_text()) for n in names}
    assert atlases[other]["weights"]["fingerprint"][:8] == other[6:]
    assert atlases[HED_ATLAS]["weights"]["fingerprint"] != atlases[other]["weights"]["fingerprint"]
    for name in names:  # the second build removed nothing of the first
        assert len(filter_pages(site, name)) == 2
        assert (site / name / "block1_conv1" / "0" / "channel.webp").is_file()
    index = (site / "index.html").read_text()
    assert all(f'href="{n}/index.html"' in index for n in names)
    # Rebuilding the first atlas keeps the second.
    assert run_build(first).complete and len(filter_pages(site, other)) == 2


def test_every_filter_pages_bibtex_parses_and_names_the_atlas_version(side_by_side):
    from pybtex.database import parse_string

    root, _, _ = side_by_side
    site = root / "site"
    keys = set()
    for atlas_json in site.glob("*/atlas.json"):
        atlas = json.loads(atlas_json.read_text())
        assert re.fullmatch(r"[0-9a-f]{12}", atlas["atlas_id"]) and re.fullmatch(r"\d{4}-\d\d-\d\d", atlas["built"])
        for page in filter_pages(site, atlas["name"]):
            database = parse_string(citations(page.read_text()), "bibtex")
            ((key, entry),) = database.entries.items()
            keys.add(key)
            fields = entry.fields
            assert entry.type == "misc"
            assert fields["year"] == atlas["built"][:4] and fields["urldate"] == atlas["built"]
            unit_path = page.parent.relative_to(site).as_posix() + "/"
            assert fields["url"] == BASE + unit_path
            assert atlas["atlas_id"] in fields["note"] and atlas["weights"]["fingerprint"][:16] in fields["note"]
            assert atlas["generator"]["version"] in fields["note"]
            assert atlas["atlas_id"] in page.read_text() or atlas["atlas_id"] in fields["note"]
            people = [str(p) for p in entry.persons.get("author", [])]
            if atlas["authors"]:
                assert people == ["Lovelace, Ada", "Hopper, Grace"]
                assert "An atlas \\{of\\} mine \\& yours" in fields["title"]
            else:
                assert people == ["{atlasgen}"]  # a corporate author, braced
    assert len(keys) == 4  # stable names, unique across both atlases


def test_the_sitemap_parses_and_lists_every_page_of_both_atlases(side_by_side):
    root, _, _ = side_by_side
    tree = ET.parse(root / "site" / "sitemap.xml")
    namespace = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locations = [loc.text for loc in tree.getroot().findall("s:url/s:loc", namespace)]
    assert len(locations) == len(set(locations))
    assert BASE in locations
    for name in (p.parent.name for p in (root / "site").glob("*/atlas.json")):
        assert f"{BASE}{name}/" in locations and f"{BASE}{name}/block1_conv1/1/" in locations


def test_unit_json_is_the_filters_record(side_by_side):
    root, _, _ = side_by_side
    site = root / "site"
    atlas = json.loads((site / HED_ATLAS / "atlas.json").read_text())
    unit = atlas["layers"][0]["units"][1]
    document = json.loads((site / unit["page"] / "unit.json").read_text())
    assert document["unit"] == unit and document["atlas_id"] == atlas["atlas_id"]
    assert document["layer"]["name"] == "block1_conv1" and document["weights"] == atlas["weights"]
    assert document["bibtex"].startswith("@misc{atlasgen-vgg16-hed-bsds500-block1_conv1-1,")


def test_the_atlas_id_follows_the_images_not_the_filters_built(tmp_path):
    config = tiny(tmp_path)
    assert run_build(config).complete
    manifest = tmp_path / "site" / HED_ATLAS / "atlas.json"
    first = json.loads(manifest.read_text())
    assert run_build(replace(config, filters="0-2")).complete
    assert json.loads(manifest.read_text())["atlas_id"] == first["atlas_id"]  # a bigger atlas, the same images
    assert run_build(replace(config, steps=3)).complete
    assert json.loads(manifest.read_text())["atlas_id"] != first["atlas_id"]


@pytest.mark.parametrize("option,value,fragment", [("--title", "", "--title"), ("--author", " ", "--author"),
                                                   ("--title", "a\nb", "--title"), ("--name", "Not_A_Slug", "--name"),
                                                   ("--name", "", "--name"), ("--name", "static", "--name")])
def test_bad_citation_and_name_options_are_one_line(tmp_path, cli, one_line_error, option, value, fragment):
    from support import TINY_ARGS

    result = cli("build", *TINY_ARGS, "--store", tmp_path / "store", "--out", tmp_path / "site", option, value)
    one_line_error(result, fragment)
    assert not (tmp_path / "site").exists()


def test_name_overrides_the_folder(tmp_path):
    assert run_build(tiny(tmp_path, name="my-finetune")).complete
    atlas = json.loads((tmp_path / "site" / "my-finetune" / "atlas.json").read_text())
    assert atlas["name"] == "my-finetune"
    assert all(u["page"].startswith("my-finetune/block1_conv1/") for u in atlas["layers"][0]["units"])
