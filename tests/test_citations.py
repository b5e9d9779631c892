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


#: What `atlasgen.site.render.tex` writes for a character, back to the character.
UNTEX = {r"\textbraceleft{}": "{", r"\textbraceright{}": "}", r"\textbackslash{}": "\\", r"\textasciitilde{}": "~",
         r"\textasciicircum{}": "^", **{"\\" + c: c for c in "%$&#_"}}


def untex(text: str) -> str:
    """A BibTeX field's text as the value it was made from (the escapes undone, left to right)."""
    return re.sub("|".join(re.escape(k) for k in sorted(UNTEX, key=len, reverse=True)), lambda m: UNTEX[m.group()], text)


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
    path = root / "w}eird.weights.h5"  # its name is in the weights label, and so in every citation
    other.save_weights(path)
    first = tiny(root, base_url=BASE)
    assert run_build(first).complete
    second = tiny(root, base_url=BASE, weights=str(path), title="An atlas {of} mine & yours \\",
                  authors=("Ada Lovelace", "Grace Hopper", "O}Brien"))
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
            assert set(fields) == {"title", "year", "howpublished", "url", "urldate", "note"}
            assert untex(fields["note"]).endswith(f"weights: {atlas['weights']['label']}, "
                                                  f"sha256:{atlas['weights']['fingerprint'][:16]}")
            people = [str(p) for p in entry.persons.get("author", [])]
            if atlas["authors"]:
                assert people == ["Lovelace, Ada", "Hopper, Grace", "O\\textbraceright{}Brien"]
                assert untex(fields["title"]).startswith("{An atlas {of} mine & yours \\}: block1_conv1, filter ")
                assert "w}eird.weights.h5" in untex(fields["note"])
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
                                                   ("--author", "a\u2028b", "--author"), ("--title", "\udcff", "--title"),
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


# --- hostile values: BibTeX that always parses, a sitemap that is always XML (issue 19, item 6) ---

#: Valid, and as awkward as a base URL may be: '&', "'", '~', '$', '_', a %XX escape and non-ASCII.
HOSTILE_BASE = "https://例え.jp/r&d/it's~a_b$c%20d/"
HOSTILE = {
    "title": "A {title} 100% #1 & $x$ a_b ~ ^ }, publisher = {EVIL} ends in \\",
    "authors": ["O}Brien", "{", "Tom and Jerry", "Smith, J., Jr., III", "Ada\tLovelace", "and", "%comment", "x\\"],
    "label": "file w}eird.keras",
    "layer": "bl{ock} %#&$_~^\\ 1",
    "built": "2024-01-0}",
    "atlas_id": "abc}, note = {x",
    "version": "1.0\\",
}


def hostile_site(tmp_path, base=HOSTILE_BASE):
    from atlasgen.site.render import render_site
    from support import synthetic_manifest, write_manifest

    manifest = synthetic_manifest(layers=[("block1_conv1", 2), ("block2_conv1", 1)])
    manifest.update(title=HOSTILE["title"], authors=HOSTILE["authors"], built=HOSTILE["built"],
                    atlas_id=HOSTILE["atlas_id"])
    manifest["generator"]["version"] = HOSTILE["version"]
    manifest["weights"]["label"] = HOSTILE["label"]
    manifest["weights"]["fingerprint"] = "f}%\\" + "0" * 60
    manifest["layers"][0]["name"] = HOSTILE["layer"]  # its folder stays block1_conv1/
    write_manifest(tmp_path, manifest)
    render_site(tmp_path, base_url=base)
    return manifest


def test_every_filter_pages_bibtex_parses_whatever_the_manifest_holds(tmp_path):
    from pybtex.database import parse_string

    manifest = hostile_site(tmp_path)
    for layer in manifest["layers"]:
        for unit in layer["units"]:
            page = (tmp_path / unit["page"] / "index.html").read_text()
            text = citations(page)
            assert text == json.loads((tmp_path / unit["page"] / "unit.json").read_text())["bibtex"]
            ((key, entry),) = parse_string(text, "bibtex").entries.items()
            assert re.fullmatch(r"atlasgen-vgg16-[A-Za-z0-9_-]+-\d", key)
            fields = entry.fields
            assert set(fields) == {"title", "year", "howpublished", "url", "urldate", "note"}  # no field added
            url = HOSTILE_BASE + unit["page"]
            assert fields["url"] == url and fields["howpublished"] == "\\url{" + url.replace("%", "\\%") + "}"
            assert untex(fields["title"]) == f"{{{HOSTILE['title']}}}: {layer['name']}, filter {unit['index']}"
            assert untex(fields["year"]) == HOSTILE["built"][:4] and untex(fields["urldate"]) == HOSTILE["built"]
            assert untex(fields["note"]) == (f"Atlas {HOSTILE['atlas_id']}, made with atlasgen {HOSTILE['version']}; "
                                             f"weights: {HOSTILE['label']}, sha256:{manifest['weights']['fingerprint'][:16]}")
            people = [untex(str(p)) for p in entry.persons["author"]]
            assert len(people) == len(HOSTILE["authors"])  # none split, none lost
            assert people[0] == "O}Brien" and people[2] == "{Tom and Jerry}" and people[3] == "{Smith, J., Jr., III}"
            assert people[4] == "Lovelace, Ada" and people[5] == "{and}" and people[7] == "x\\"
            (canonical,) = re.findall(r'<link rel="canonical" href="([^"]*)">', page)
            assert html.unescape(canonical) == url


def test_the_sitemap_is_xml_with_a_hostile_base_url(tmp_path):
    manifest = hostile_site(tmp_path)
    tree = ET.parse(tmp_path / "sitemap.xml")
    namespace = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locations = [loc.text for loc in tree.getroot().findall("s:url/s:loc", namespace)]
    pages = ["vgg16/"] + [layer["path"] for layer in manifest["layers"]]
    pages += [unit["page"] for layer in manifest["layers"] for unit in layer["units"]]
    assert locations == [HOSTILE_BASE] + [HOSTILE_BASE + page for page in pages]


def test_bibtex_of_any_text_parses_and_keeps_the_text():
    import unicodedata

    from pybtex.database import parse_string

    from atlasgen.manifest import Manifest
    from atlasgen.site.render import bibtex, bibtex_name, tex
    from support import synthetic_manifest

    for text in ["}", "{", "\\", "%", "a\nb\x00c\u2028d\te", "\\}", "{\\}", "}{", "@misc{x,", "\ud800", "a and b", ""]:
        blanks = "".join(" " if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp", "Zs") else c for c in text)
        assert untex(tex(text)) == blanks
        entry = parse_string(f"@misc{{k, title = {{{tex(text)}}}, author = {{{bibtex_name(text)}}}}}", "bibtex")
        assert set(entry.entries["k"].fields) == {"title"} and len(entry.entries["k"].persons["author"]) == 1
    atlas = Manifest.from_json(synthetic_manifest(layers=[("block1_conv1", 1)]))
    # A caller's own URL (not a checked --base-url) is percent-encoded where BibTeX would read it.
    ((_, entry),) = parse_string(bibtex(atlas, "l", 0, 'https://x.org/a b}{\\"/'), "bibtex").entries.items()
    assert entry.fields["url"] == "https://x.org/a%20b%7D%7B%5C%22/"


BAD_URLS = [
    ("https://user.github.io/r}, publisher = {EVIL", "'}'"), ("https://x.org/a b/", "%20"), ("https://x.org/\x07", "\\x07"),
    ("https://x.org/a\nb", "\\n"), ("https://x.org/{", "'{'"), ('https://x.org/"', "'\"'"), ("https://x.org/\\", "'\\\\'"),
    ("https://", "has no host"), ("https:///path", "has no host"), ("https://x.org/?q=1", "query"), ("https://x.org/#top", "fragment"),
    ("https://x.org:port/", "port"), ("https://x.org/%zz", "%XX"), ("ftp://x.org/", "http(s)"), ("x.org", "http(s)"),
    ("https://x.org/\u202e", "\\u202e"), ("https://x.org/" + "a" * 3000, "longer than"),
]


@pytest.mark.parametrize("url,fragment", BAD_URLS, ids=[ascii(u)[:40] for u, _ in BAD_URLS])
def test_a_bad_base_url_is_refused_in_one_line_by_the_cli_the_config_and_render_site(tmp_path, cli, one_line_error,
                                                                                      url, fragment):
    from atlasgen.errors import AtlasgenError
    from atlasgen.site.render import render_site
    from support import TINY_ARGS, synthetic_manifest, write_manifest

    for command in (["build", *TINY_ARGS, "--store", tmp_path / "store", "--out", tmp_path / "site"],
                    ["render", "--out", tmp_path / "site"]):
        one_line_error(cli(*command, "--base-url", url), "--base-url", fragment)
    assert not (tmp_path / "site").exists() and not (tmp_path / "store").exists()
    with pytest.raises(AtlasgenError, match="--base-url") as caught:
        tiny(tmp_path, base_url=url).resolved()
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    write_manifest(tmp_path / "site", synthetic_manifest(layers=[("block1_conv1", 1)]))
    with pytest.raises(AtlasgenError, match="--base-url"):
        render_site(tmp_path / "site", base_url=url)
    assert sorted(p.name for p in (tmp_path / "site").rglob("*")) == ["atlas.json", "vgg16"]  # nothing written
