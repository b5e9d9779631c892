"""The site folder is as safe as the store (issue 19, items 1, 2 and 9): a build or render killed at
any moment of its writing leaves a folder the next plain build finishes, pages never point at
missing images, writers of one --out take turns, and one name is one atlas.

The kills are synchronised on the build's own plain progress lines ("export: N/M filters",
"render: N/M pages", "prune: N/M stale files"), read from its stderr as it prints them, never on
sleeps."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from atlasgen.build.config import BuildConfig
from atlasgen.build.export import export_atlas
from atlasgen.build.run import prepare, run_build
from atlasgen.errors import AtlasgenError
from atlasgen.fs import INTENT_LOG, OWNED_RECORD, read_owned
from atlasgen.store import Store
from support import HED_ATLAS, cli_env, lines_of, quiet_progress

FILTERS = 16
#: One layer at 32 px and 2 steps, dataset photos at 32 px: every file kind of an atlas, quickly.
SETTINGS = dict(preset="quick", layers=("block1_conv1",), size=32, steps=2, dataset_size=32)
ARGS = ["--preset", "quick", "--layers", "block1_conv1", "--size", "32", "--steps", "2", "--dataset-size", "32"]


def config(root: Path, filters: str = f"0-{FILTERS - 1}", **overrides) -> BuildConfig:
    return BuildConfig(**{**SETTINGS, "filters": filters, "store": root / "store", "out": root / "site", **overrides})


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store that holds every artifact of filters 0-15 (so the builds below only write), and the
    site of filters 0-7 built from it."""
    root = tmp_path_factory.mktemp("stored")
    assert run_build(config(root, out=root / "full"), quiet_progress()).complete
    assert run_build(config(root, "0-7"), quiet_progress()).complete
    return root


@pytest.fixture
def copy(stored, tmp_path):
    """The stored store and the 0-7 site, copied into tmp_path."""
    shutil.copytree(stored / "store", tmp_path / "store", symlinks=True)
    shutil.copytree(stored / "site", tmp_path / "site", symlinks=True)
    return tmp_path


def start_build(root: Path, *extra: str, filters: str = f"0-{FILTERS - 1}", stderr=subprocess.PIPE) -> subprocess.Popen:
    args = [*ARGS, "--filters", filters, "--store", str(root / "store"), "--out", str(root / "site"), *extra]
    return subprocess.Popen([sys.executable, "-m", "atlasgen.cli", "build", *args], stdout=subprocess.PIPE,
                            stderr=stderr, bufsize=0, env=cli_env())


def kill_at(root: Path, line: str, *extra: str, filters: str = f"0-{FILTERS - 1}", nth: int = 1) -> list[str]:
    """Starts a build and SIGKILLs it once it has printed the `nth` line that starts with `line`; its lines.

    Its stderr is a pipe of one page that this test can fill through a second, non-blocking write
    end: filled at once after `line`, it holds the build at its next line, however late this test
    sends the signal. So the build is killed after `line` and before it prints another."""
    read, write = os.pipe()
    fcntl.fcntl(read, fcntl.F_SETPIPE_SZ, 4096)
    filler = os.open(f"/proc/self/fd/{write}", os.O_WRONLY | os.O_NONBLOCK)  # its own file description
    try:
        process = start_build(root, *extra, filters=filters, stderr=write)
    finally:
        os.close(write)
    seen = []
    with os.fdopen(read, "rb", buffering=0) as stream:
        try:
            for text in lines_of(stream):
                seen.append(text)
                nth -= text.startswith(line)
                if nth == 0:
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            os.write(filler, b"\n" * 512)
                    process.send_signal(signal.SIGKILL)
                    break
        finally:
            os.close(filler)
            process.kill()
            process.wait()
            process.stdout.close()
    assert process.returncode == -signal.SIGKILL and seen[-1].startswith(line), "".join(seen[-20:])
    return seen


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []  # every src
        self.files: list[str] = []  # every local href that is not a page

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if not value or value.startswith(("http:", "https:", "data:", "/", "#")):
                continue
            value = value.split("#")[0]
            if name == "src":
                self.images.append(value)
            elif name == "href" and not value.endswith(("/", "index.html")):
                self.files.append(value)


def missing_links(site: Path, pages_too: bool = False) -> list[str]:
    """Every image (img src, or an image file a link opens) that a page of the site names and that
    is not there; with `pages_too`, every other local link too (pages, unit.json, static files)."""
    missing = []
    for page in sorted(site.rglob("*.html")):
        links = Links()
        links.feed(page.read_text())
        named = links.images + [f for f in links.files if pages_too or f.endswith((".webp", ".png", ".jpg"))]
        if pages_too:
            named += re.findall(r'href="((?:\.\./)*[^"#:]*index\.html)', page.read_text())
        missing += [f"{page.relative_to(site)} -> {link}" for link in named if not (page.parent / link).is_file()]
    return missing


def files(site: Path) -> set[str]:
    return {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}


def assert_whole(site: Path, atlases: dict[str, int]) -> None:
    """The site after a finished build: each atlas in the root index with all its filter pages, every
    link there, every file of ours in the record and nothing in it that is not there, no intent log."""
    index = (site / "index.html").read_text()
    for name, filters in atlases.items():
        assert f'href="{name}/index.html"' in index, name
        links = Links()
        links.feed((site / name / "block1_conv1" / "0" / "index.html").read_text())
        assert {"channel.webp", "neuron.webp", "heatmap.webp"} <= {Path(src).name for src in links.images}
        pages = sorted(p.parent.name for p in (site / name / "block1_conv1").glob("*/index.html"))
        assert pages == sorted(str(i) for i in range(filters)), (name, pages)
    assert missing_links(site, pages_too=True) == []
    assert not (site / INTENT_LOG).exists()
    record = read_owned(site)
    assert set(record) == {f"export:{name}" for name in atlases} | {"site"}
    recorded = {p for paths in record.values() for p in paths}
    assert recorded == files(site) - {OWNED_RECORD, ".atlasgen-lock"}


# --- item 1: a kill at any moment of the writing, then a plain rebuild ---------------------------


@pytest.mark.slow
@pytest.mark.parametrize("line", [
    "export: 10/16 filters",  # the new filters' files half written, no atlas.json yet
    "export: 16/16 filters",  # every image written, atlas.json about to be
    "render: 8/20 pages",  # the new atlas.json in place, old pages and a few new ones
    "render: 18/20 pages",  # nearly every page written; the prune and the record not yet
])
def test_a_build_killed_while_it_writes_is_finished_by_the_next_plain_build(copy, cli, line):
    """The issue's case: an atlas of filters 0-7, then 0-15 killed while it writes into the same --out."""
    seen = kill_at(copy, line)
    assert "0 artifacts to compute" in "".join(seen), "the store held everything: it only wrote"
    # Every file on disk that the record does not list (what made the next build say "in the way")
    # is in the intent log; killed while it rendered, it had written such files (filter 8 is new).
    site = copy / "site"
    unrecorded = files(site) - {p for paths in read_owned(site).values() for p in paths}
    log = site / INTENT_LOG
    intended = {json.loads(line)[1] for line in log.read_text().splitlines()} if log.exists() else set()
    assert unrecorded <= intended | {OWNED_RECORD, ".atlasgen-lock", INTENT_LOG}
    if line.startswith("render"):
        assert f"{HED_ATLAS}/block1_conv1/8/channel.webp" in unrecorded
    # Killed at any moment, the site shows whole pages: no page points at an image that is not there.
    assert missing_links(site) == []
    result = cli("build", *ARGS, "--filters", f"0-{FILTERS - 1}", "--store", copy / "store", "--out", copy / "site")
    assert result.returncode == 0 and "atlas complete" in result.stdout, result.stderr
    assert_whole(copy / "site", {HED_ATLAS: FILTERS})


@pytest.mark.slow
@pytest.mark.parametrize("line", ["export: 8/16 filters", "render: 12/20 pages"])
def test_a_first_build_killed_in_an_empty_out_is_finished_without_force(copy, cli, line):
    """Killed before the record exists: the intent log says the files are ours, not a user's."""
    shutil.rmtree(copy / "site")
    (copy / "site").mkdir()
    kill_at(copy, line)
    assert not (copy / "site" / OWNED_RECORD).exists() and (copy / "site" / INTENT_LOG).is_file()
    assert missing_links(copy / "site") == []
    (copy / "site" / "notes.md").write_text("the user's, added after the kill")
    result = cli("build", *ARGS, "--filters", "0-11", "--store", copy / "store", "--out", copy / "site")
    assert result.returncode == 0 and "atlas complete" in result.stdout, result.stderr
    assert (copy / "site" / "notes.md").read_text() == "the user's, added after the kill"
    (copy / "site" / "notes.md").unlink()
    # The killed build's filters 12-15 were pruned: this build does not have them.
    assert_whole(copy / "site", {HED_ATLAS: 12})


@pytest.mark.slow
@pytest.mark.parametrize("nth", [1, 5])  # a tenth of the way (in the pages), half of the way (in the images)
def test_a_shrinking_build_killed_in_its_prune_never_leaves_a_page_without_its_images(copy, cli, nth):
    shutil.rmtree(copy / "site")
    assert run_build(config(copy), quiet_progress()).complete  # 0-15
    seen = kill_at(copy, "prune: ", filters="0-3", nth=nth)
    # Filters 4-15 go: their pages and unit.json first (24 files), then their 12 x 15 images.
    stale = int(seen[-1].split("/")[1].split()[0])
    assert stale >= 24 + 12 * 15 and "render: 8/8 pages" in "".join(seen)
    assert missing_links(copy / "site") == []
    layer = copy / "site" / HED_ATLAS / "block1_conv1"
    if nth == 5:  # every stale page gone, some of their images not yet
        assert sorted(p.parent.name for p in layer.glob("*/index.html")) == ["0", "1", "2", "3"]
        assert any((layer / str(f) / "channel.webp").exists() for f in range(4, 16))
    result = cli("build", *ARGS, "--filters", "0-3", "--store", copy / "store", "--out", copy / "site")
    assert result.returncode == 0, result.stderr
    assert_whole(copy / "site", {HED_ATLAS: 4})


def test_a_users_file_in_the_way_still_stops_the_build(copy, cli):
    user = copy / "site" / HED_ATLAS / "block1_conv1" / "9" / "channel.webp"
    user.parent.mkdir(parents=True)
    user.write_bytes(b"the user's")
    result = cli("build", *ARGS, "--filters", "0-9", "--store", copy / "store", "--out", copy / "site")
    # After its progress lines, the refusal: one line.
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith("Error: ") and "channel.webp is in the way and was not written by atlasgen" in error
    assert "--force" in error and user.read_bytes() == b"the user's"
    assert missing_links(copy / "site") == []


# --- item 2: several writers of one --out --------------------------------------------------------


@pytest.mark.slow
def test_two_builds_of_different_atlases_into_one_out_at_once(copy):
    """The first holds the folder (stopped while it writes); the second computes beside it (other
    steps), waits for it, then writes; both end complete, and the record keeps both."""
    shutil.rmtree(copy / "site")
    first = start_build(copy, "--name", "one")
    try:
        seen = []
        for text in lines_of(first.stderr):
            seen.append(text)
            if text.startswith("export: "):
                break
        first.send_signal(signal.SIGSTOP)  # it holds the folder's lock now
        second = start_build(copy, "--name", "two", "--steps", "3", filters="0-1")
        try:
            log = []
            for text in lines_of(second.stderr):
                log.append(text)
                if "waiting for another atlasgen that writes into" in text:
                    break
            else:
                pytest.fail("the second build never waited:\n" + "".join(seen + log))
            assert re.match(r"\d+ artifacts to compute", log[0]) and not log[0].startswith("0 ")
            assert any(text.startswith("computed ") for text in log), "it computed before it waited"
        finally:
            first.send_signal(signal.SIGCONT)
        out2, err2 = second.communicate(timeout=300)
        out1, err1 = first.communicate(timeout=300)
    finally:
        for process in (first, second):
            process.kill()
            process.wait()
    assert first.returncode == 0 and "atlas complete" in out1.decode(), err1.decode()
    assert second.returncode == 0 and "atlas complete" in out2.decode(), err2.decode()
    assert_whole(copy / "site", {"one": FILTERS, "two": 2})


@pytest.mark.slow
def test_a_build_beside_a_loop_of_renders(copy, cli):
    """At every line the build prints (while it computes, and while it writes), a render of the
    same --out: each one exit 0, waiting for the build's writing when it has to."""
    build = start_build(copy, "--name", "two", "--steps", "3", filters="0-3")  # computes: other steps
    renders = 0
    try:
        log = []
        for text in lines_of(build.stderr):
            log.append(text)
            result = cli("render", "--out", copy / "site")
            assert result.returncode == 0, result.stderr
            renders += 1
        out, _ = build.communicate(timeout=300)
    finally:
        build.kill()
        build.wait()
    assert build.returncode == 0 and "atlas complete" in out.decode(), "".join(log)
    assert renders >= 10 and any(line.startswith("render: ") for line in log)
    assert_whole(copy / "site", {HED_ATLAS: 8, "two": 4})


# --- item 9: one name, one atlas ------------------------------------------------------------------


@pytest.fixture(scope="module")
def moved_weights(tmp_path_factory, hed_model):
    """A weights file: the offline trunk with one bias moved (so another fingerprint)."""
    from atlasgen.model.weights import _vgg16

    other = _vgg16()
    weights = [w.copy() for w in hed_model.model.get_weights()]
    weights[1] = weights[1] + 0.5
    other.set_weights(weights)
    path = tmp_path_factory.mktemp("moved") / "moved.weights.h5"
    other.save_weights(path)
    return path


def entries(store: Path) -> set[str]:
    return {p.name for p in (store / "index").rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["x", HED_ATLAS])
def test_a_name_that_holds_an_atlas_of_other_weights_is_refused_before_anything_is_computed(
        copy, cli, one_line_error, moved_weights, name):
    site, store = copy / "site", copy / "store"
    if name != HED_ATLAS:
        assert run_build(config(copy, "0-7", name=name), quiet_progress()).complete
    before = (site / name / "atlas.json").read_bytes()
    known = entries(store)
    result = cli("build", *ARGS, "--filters", "0-1", "--weights", moved_weights, "--name", name,
                 "--store", store, "--out", site)
    message = one_line_error(result, f"already holds the atlas {name!r} of other weights", "--name")
    assert "sha256:" in message
    assert entries(store) == known, "it computed something"
    assert (site / name / "atlas.json").read_bytes() == before
    # The same weights and model rebuild it as before.
    result = cli("build", *ARGS, "--filters", "0-7", "--name", name, "--store", store, "--out", site)
    assert result.returncode == 0, result.stderr


def test_a_build_that_finds_its_name_taken_when_it_comes_to_write_replaces_nothing(copy, moved_weights):
    """Two builds of one name and different weights at once: the one that writes second is refused
    under the lock, after computing, before it writes a file."""
    site = copy / "site"
    prepared = prepare(config(copy, "0-1", weights=str(moved_weights), name=HED_ATLAS))
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    with pytest.raises(AtlasgenError, match="already holds the atlas"):
        export_atlas(prepared, Store(copy / "store"))
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before

