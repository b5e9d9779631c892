"""A scripted attack, as a careless colleague or a hostile file would make it: links from the store and
the site to the outside, a hostile manifest, gc in a loop while a build runs, special files as probes.
Nothing outside the store and the site may change, and no finished artifact may be lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atlasgen.build.run import prepare
from atlasgen.store import Store
from support import TINY_ARGS, cli_env, lines_of, read_until, synthetic_manifest, write_manifest


def snapshot(folder: Path) -> dict[str, tuple]:
    return {p.relative_to(folder).as_posix(): (p.lstat().st_mode, p.lstat().st_size, p.lstat().st_mtime_ns,
                                               p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    (folder / "static").mkdir(parents=True)
    (folder / "precious.txt").write_text("do not touch")
    (folder / "static" / "atlas.css").write_text("a user's stylesheet")
    (folder / "index.html").write_text("a user's page")
    return folder


def test_links_from_the_store_and_the_site_are_never_followed(atlas_copy, outside, cli):
    before = snapshot(outside)
    store, site = atlas_copy.store, atlas_copy.out
    (store / "blobs" / "zz").symlink_to(outside)
    fan = next(p for p in (store / "blobs").iterdir() if not p.is_symlink())
    (fan / ("0" * 62)).symlink_to(outside / "precious.txt")
    (store / "index" / "README.txt").write_text("a note")
    (site / "vgg16-hed-bsds500" / "elsewhere").symlink_to(outside)
    for command in (["gc", "--grace-minutes", "0"], ["verify"], ["gc", "--grace-minutes", "0", "--dry-run"]):
        result = cli(*command, "--store", store)
        assert result.returncode == 0, result.stderr
        assert "not the store's own, left alone" in result.stdout
    assert (store / "blobs" / "zz").is_symlink() and (store / "index" / "README.txt").is_file()
    assert Store(store).missing([a.key for a in prepare(atlas_copy).plan.artifacts], deep=True) == []
    # The site's own links: a rebuild and a render go around them.
    result = cli("render", "--out", site)
    assert result.returncode == 0, result.stderr
    assert (site / "vgg16-hed-bsds500" / "elsewhere").is_symlink()
    assert snapshot(outside) == before


def test_a_symlinked_static_folder_and_a_hostile_manifest_write_nothing_outside(atlas_copy, outside, cli, one_line_error):
    before = snapshot(outside)
    site = atlas_copy.out
    for p in (site / "static").iterdir():
        p.unlink()
    (site / "static").rmdir()
    (site / "static").symlink_to(outside / "static")
    one_line_error(cli("render", "--out", site), "symlink", "leads outside")
    (site / "static").unlink()
    hostile = synthetic_manifest(layers=[("block1_conv1", 2)])
    hostile["layers"][0]["path"] = "../../outside/"
    hostile["layers"][0]["units"][0]["page"] = str(outside) + "/"
    write_manifest(site, hostile)
    one_line_error(cli("render", "--out", site), "atlas.json.layers[0].path", "not a relative path")
    assert snapshot(outside) == before


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/null", "directory-link"])
def test_special_files_as_probes_are_one_line_errors(tmp_path, outside, cli, one_line_error, special):
    probe = {"fifo": tmp_path / "photo.png", "directory-link": tmp_path / "photos"}.get(special, Path(special))
    if special == "fifo":
        os.mkfifo(probe)
    elif special == "directory-link":
        probe.symlink_to(outside / "static")
    start = time.monotonic()
    result = cli("build", *TINY_ARGS, "--probe", probe, "--store", tmp_path / "store", "--out", tmp_path / "site")
    one_line_error(result)
    assert time.monotonic() - start < 60, "a special file must not hang the build"


@pytest.mark.slow
def test_gc_in_a_loop_during_a_build_loses_no_finished_artifact(tmp_path, tiny_config, cli):
    store = tmp_path / "store"
    args = [*TINY_ARGS, "--filters", "0-1", "--steps", "4", "--batch-size", "1", "--store", str(store),
            "--out", str(tmp_path / "site")]
    build = subprocess.Popen([sys.executable, "-m", "atlasgen.cli", "build", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, bufsize=0, env=cli_env())

    def gc():
        return cli("gc", "--store", store, "--grace-minutes", "0")

    try:
        # The build's plain progress lines (its stderr is not a terminal) all come while it holds the
        # store; the first, "N artifacts to compute", before it computes anything. Stopped there, it
        # surely still holds the store: gc must refuse.
        log = read_until(build.stderr, "artifacts to compute")
        build.send_signal(signal.SIGSTOP)
        try:
            result = gc()
        finally:
            build.send_signal(signal.SIGCONT)
        assert result.returncode == 2 and "in use by a running build" in result.stderr, result.stderr
        # Then gc again at every line the build prints as it goes on (each kind it starts, every
        # 2 s...), the build running: refused while it holds the store, or run once it has let go.
        for line in lines_of(build.stderr):
            log.append(line)
            result = gc()
            assert result.returncode == 0 or (result.returncode == 2 and "in use by a running build" in result.stderr), \
                result.stderr
        out, _ = build.communicate(timeout=600)
    finally:
        build.kill()
        build.wait()
    assert build.returncode == 0, "".join(log)
    assert "atlas complete" in out.decode()
    plan = prepare(tiny_config(filters="0-1", steps=4, batch_size=1)).plan
    assert Store(store).missing([a.key for a in plan.artifacts], deep=True) == []
    # And once the build is over, gc runs and keeps every referenced blob.
    assert gc().returncode == 0
    assert Store(store).missing([a.key for a in plan.artifacts], deep=True) == []
    assert Store(store).verify().ok
