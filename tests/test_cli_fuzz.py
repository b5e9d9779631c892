"""The one-line contract, as a property: whatever hostile value an option gets, the CLI exits 0 or 2,
never prints a traceback, says what is wrong in one line on stderr, and changes nothing outside its
folders.

Hypothesis picks a command, one of its options and a hostile value (empty, zero, negative, huge,
unicode, control characters, '..' paths, special files); every run starts from a tiny valid command
line, so a value that happens to be valid builds a tiny atlas."""

from __future__ import annotations

import functools
import json
import os
import stat
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import TINY_ARGS, synthetic_manifest, write_manifest

HOSTILE = [
    "", " ", "0", "-1", "-0", "1e9", "nan", "inf", "99999999999999999999", "3/2", "0/0", "1/1", "0-", "-",
    "all", ",", "a,,b", "猫", "\u202e", "a\nb", "x" * 5000, "../..", "../../outside", "./", ".", "/",
    "/dev/zero", "/dev/null", "/proc/self/mem", "FIFO", "LOOP", "DIR", "FILE", "block1_conv1", "block1_pool",
    "<b>x</b>", "http://", "https://example.org/a b/", "--help", "lucid,maco", "maco,maco", "lucid,", "LUCID",
    "mixed", "float32", "bfloat16", "O}Brien", "ends in \\", "{", "100%", "https://x.org/r}, publisher = {EVIL",
    "https://例え.jp/r&d/it's/", "https://x.org/\x07", "\udcff",
]

COMMANDS = {
    "build": ["--preset", "--weights", "--layers", "--filters", "--size", "--steps", "--probe", "--store", "--out",
              "--shard", "--batch-size", "--seed", "--base-url", "--method", "--precision", "--dataset-size",
              "--examples", "--dataset-chunk", "--title", "--author"],
    "status": ["--weights", "--layers", "--filters", "--size", "--steps", "--probe", "--store", "--shard", "--seed",
               "--precision", "--dataset-size", "--examples"],
    "layers": ["--weights", "--size"],
    "render": ["--out", "--base-url"],
    "verify": ["--store"],
    "gc": ["--store", "--grace-minutes"],
}
BASE = {
    "build": [*TINY_ARGS, "--filters", "0", "--steps", "1", "--store", "store", "--out", "site"],
    "status": [*TINY_ARGS, "--store", "store"],
    "layers": ["--weights", "hed-bsds500", "--size", "32"],
    "render": ["--out", "site"],
    "verify": ["--store", "store"],
    "gc": ["--store", "store"],
}


def snapshot(folder: Path) -> dict[str, tuple]:
    return {p.relative_to(folder).as_posix(): (p.lstat().st_mode, p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A work folder two levels down (so '../..' stays inside), special files, and an outside folder
    that links from inside point to; the test checks the outside never changes."""
    root = tmp_path_factory.mktemp("fuzz")
    work = root / "a" / "b"
    work.mkdir(parents=True)
    outside = tmp_path_factory.mktemp("outside")
    (outside / "precious.txt").write_text("do not touch")
    (outside / "static").mkdir()
    (outside / "static" / "atlas.css").write_text("theirs")
    os.mkfifo(work / "FIFO")
    (work / "LOOP").symlink_to(work / "LOOP")
    (work / "DIR").mkdir()
    (work / "FILE").write_text("not an image")
    (work / "outside").symlink_to(outside)
    return work, outside


@settings(max_examples=45, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_hostile_option_value_is_exit_0_or_2_and_one_line(cli, world, data):
    work, outside = world
    command = data.draw(st.sampled_from(sorted(COMMANDS)), label="command")
    option = data.draw(st.sampled_from(COMMANDS[command]), label="option")
    value = data.draw(st.sampled_from(HOSTILE) | st.text(max_size=12), label="value")
    before_outside = snapshot(outside)
    before_root = sorted(p.name for p in work.parent.parent.parent.iterdir())
    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = cli(command, *BASE[command], option, value)
    finally:
        os.chdir(cwd)
    assert result.returncode in (0, 2), (command, option, value, result.returncode, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    if result.returncode == 2:
        # The error is one line; a run that succeeds may log its progress on stderr.
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: "), result.stderr
    else:
        assert "Error" not in result.stderr, result.stderr
    assert snapshot(outside) == before_outside, (command, option, value)
    assert sorted(p.name for p in work.parent.parent.parent.iterdir()) == before_root
    assert stat.S_ISFIFO((work / "FIFO").lstat().st_mode)


# --- render trusts nothing: a tampered atlas.json ends in exit 0 or one line and exit 2 (issue 19, item 7) ---

RENDER_BASE = "https://user.github.io/r&d/it's-é/"
DELETE = object()
UNIT = ("layers", 0, "units", 0)


def valid_atlas() -> dict:
    """A small atlas.json that renders: two layers (3 filters), two probe photos, a dataset and one
    dataset example on every unit."""
    manifest = synthetic_manifest(layers=[("block1_conv1", 2), ("block2_conv1", 1)], probes=("astronaut", "coffee"))
    manifest["dataset"] = {"name": "photos", "images": 2, "short_side": 224, "sha256": "ab" * 32, "skipped": [],
                           "convention": {"resize": "shorter side to 224"}, "examples": 1, "builtin": False}
    for layer in manifest["layers"]:
        for unit in layer["units"]:
            unit["dataset_examples"] = [{"source": "a.jpg", "activation": 1.5, "unit": [3, 4], "box": [10, 20, 40, 60],
                                         "image": unit["page"] + "examples/0.webp", "photo": "vgg16/dataset/0.webp",
                                         "photo_size": [224, 300]}]
            unit["metrics"]["neuron_vs_best_example"] = 2.0
    return manifest


def changed(document: dict, path: tuple, value) -> dict:
    node = document
    for step in path[:-1]:
        node = node[step]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return document


def files_in(folder: Path) -> list[str]:
    """Every path in the folder but the writers' lock file (atlasgen.fs), which a render may leave."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.name != ".atlasgen-lock")


def test_the_valid_atlas_renders(tmp_path, cli):
    write_manifest(tmp_path, valid_atlas())
    result = cli("render", "--out", tmp_path, "--base-url", RENDER_BASE)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "vgg16/block2_conv1/0/index.html").is_file()


# Each of these was a traceback from `atlasgen render` (ZeroDivisionError, ValueError, StopIteration,
# KeyError, IndexError, UndefinedError, OverflowError, UnicodeEncodeError): (where, new value, what
# the one-line error names).
TAMPERED = [
    (UNIT + ("rf_box",), [0, 0, 0, 0], "atlas.json.layers[0].units[0].rf_box"),
    (UNIT + ("rf_box",), [0, 0, 3], "atlas.json.layers[0].units[0].rf_box"),
    (("probes", 0, "width"), 0, "atlas.json.probes[0].width"),
    (UNIT + ("index",), -1, "atlas.json.layers[0].units[0].index"),
    (UNIT + ("images",), {}, "atlas.json.layers[0].units[0].images"),
    (UNIT + ("dataset_examples", 0, "photo_size"), [], "atlas.json.layers[0].units[0].dataset_examples[0].photo_size"),
    (UNIT + ("dataset_examples", 0, "box"), [1, 2, 3], "atlas.json.layers[0].units[0].dataset_examples[0].box"),
    (UNIT + ("dataset_examples", 0, "unit"), [], "atlas.json.layers[0].units[0].dataset_examples[0].unit"),
    (("layers", 0, "centre_unit"), [], "atlas.json.layers[0].centre_unit"),
    (UNIT + ("activation_maps", 0, "probe"), "nope", "atlas.json.layers[0].units[0].activation_maps"),
    (("probes",), [], "atlas.json.layers[0].units[0].activation_maps should be empty, or one map per probe photo"),
    (UNIT + ("activation_maps",), [{"probe": "astronaut", "images": {"heatmap": "vgg16/h.webp", "overlay": "vgg16/o.webp"},
                                    "peak": 1.0, "mean": 1.0, "scale": 1.0}],
     "atlas.json.layers[0].units[0].activation_maps"),
    (("probes", 1, "name"), "astronaut", "atlas.json.probes[1].name"),
    (("probes", 1, "height"), 10 ** 400, "atlas.json.probes[1].height"),
    (UNIT + ("metrics", "neuron"), DELETE, "atlas.json.layers[0].units[0].metrics.neuron_vs_best_example"),
    (("title",), "\ud800", "atlas.json.title"),
    (("layers", 0, "name"), "block1\udcff", "atlas.json.layers[0].name"),
]


@pytest.mark.parametrize("where,value,fragment", TAMPERED, ids=[f"{'.'.join(map(str, w[0]))}" for w in TAMPERED])
def test_a_tampered_atlas_is_one_line_and_writes_nothing(tmp_path, cli, one_line_error, where, value, fragment):
    write_manifest(tmp_path, changed(valid_atlas(), where, value))
    before = files_in(tmp_path)
    one_line_error(cli("render", "--out", tmp_path, "--base-url", RENDER_BASE), fragment, "rebuild")
    assert files_in(tmp_path) == before


def test_render_checks_every_atlas_before_it_writes_anything(tmp_path, cli, one_line_error):
    write_manifest(tmp_path, valid_atlas())
    bad = changed(synthetic_manifest(layers=[("block1_conv1", 1)], model="zz-last"), UNIT + ("rf_box",), [0, 0, 0, 0])
    write_manifest(tmp_path, bad)
    before = files_in(tmp_path)
    one_line_error(cli("render", "--out", tmp_path), "atlas.json.layers[0].units[0].rf_box")
    assert files_in(tmp_path) == before


def paths_in(node, prefix: tuple = ()):
    """The path of every value in a JSON document below its root, containers included."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield prefix + (key,)
        yield from paths_in(child, prefix + (key,))


VALID_ATLAS = valid_atlas()
ATLAS_PATHS = sorted(paths_in(VALID_ATLAS), key=repr)
NUMBERS = [0, -1, 1, 2, 7, 2**31, -(2**31), 10**20, 10**400, 0.5, -0.0, 1e308, float("nan"), float("inf"), True, None, "1"]
TEXTS = ["", " ", "}", "{", "\\", "%", "O}Brien", "a\nb", "\ud800", "\x00", "../x", "/abs/", "<b>x</b>", "x" * 300,
         "vgg16/", "vgg16/block1_conv1/", "vgg16/block1_conv1/0/", "vgg16/block1_conv1/1/channel.webp", "javascript:x",
         "猫", "astronaut", "coffee", "channel", None, 7]


@st.composite
def tampered(draw):
    """The valid atlas with one to three of its values changed: a number to 0, -1, huge or NaN; a list
    emptied, cut short, grown or reversed; a string to hostile text; a key or an item removed."""
    document = json.loads(json.dumps(VALID_ATLAS))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ATLAS_PATHS))
        try:
            parent = functools.reduce(lambda node, step: node[step], path[:-1], document)
            value = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed it
        if isinstance(value, list):
            options = [[], value[:-1], value + value[-1:], value + [None], value[::-1], {}]
        elif isinstance(value, dict):
            options = [{}, [], {**value, "extra": 1}, "x"]
        elif isinstance(value, str):
            options = TEXTS
        else:
            options = NUMBERS
        if draw(st.booleans()) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(st.sampled_from(options))
    return document


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=tampered())
def test_any_tampered_atlas_renders_or_is_one_line(cli, document):
    from pybtex.database import parse_string

    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder)
        write_manifest(site, document)
        before = files_in(site)
        result = cli("render", "--out", site, "--base-url", RENDER_BASE)
        assert result.returncode in (0, 2), (result.returncode, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        if result.returncode == 2:
            assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: "), result.stderr
            assert files_in(site) == before  # checked before anything was written
            return
        ET.parse(site / "sitemap.xml")
        for unit_json in site.rglob("unit.json"):
            assert len(parse_string(json.loads(unit_json.read_text())["bibtex"], "bibtex").entries) == 1
