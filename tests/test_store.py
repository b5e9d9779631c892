"""The content-addressed store: keys, layout, atomic writes, verification, gc and failures."""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import select
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from atlasgen import fs
from atlasgen.errors import AtlasgenError
from atlasgen.store import CorruptBlob, GcReport, MissingBlob, Store, StoreBusy, StoreError, recipe_key
from atlasgen.store.layout import DEFAULT_GRACE_SECONDS, MAX_ENTRY_BYTES, STALE_TEMP_SECONDS
from support import REPO, key_of, payload



def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{fs.TEMP_PREFIX}*")]


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


# ---- keys and layout -------------------------------------------------------------------------

def test_recipe_key_is_canonical_and_pinned():
    recipe = {"algorithm": 1, "layer": "block3_conv1", "filter": 7, "size": 128, "lr": 0.05,
              "transforms": ["pad", "jitter"], "note": "café", "crop": None, "fourier": True}
    canonical = ('{"algorithm":1,"crop":null,"filter":7,"fourier":true,"layer":"block3_conv1","lr":0.05,'
                 '"note":"caf\\u00e9","size":128,"transforms":["pad","jitter"]}')
    assert json.dumps(recipe, sort_keys=True, separators=(",", ":"), ensure_ascii=True) == canonical
    expected = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    assert recipe_key(recipe) == expected
    # Pinned, so a change of canonical form (which would orphan every stored artifact) is noticed.
    assert expected == "ac430d41c580c6bf9baa3f32c5141ffa50b5f579597f2e01b3f5d27478686183"
    assert recipe_key(dict(reversed(list(recipe.items())))) == expected
    assert recipe_key({**recipe, "filter": 8}) != expected
    assert recipe_key({**recipe, "lr": 0.050000001}) != expected
    assert recipe_key({"nested": {"b": 1, "a": 2}}) == recipe_key({"nested": {"a": 2, "b": 1}})


@pytest.mark.parametrize("bad", [{1: "int key"}, {"x": b"bytes"}, {"x": float("nan")}, {"x": {1, 2}}])
def test_recipe_key_rejects_non_json(bad):
    with pytest.raises((TypeError, ValueError)):
        recipe_key(bad)


def test_fan_out_layout_and_round_trip(store):
    digest = store.put_blob(b"hello")
    assert digest == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert (store.root / "blobs" / "2c" / digest[2:]).read_bytes() == b"hello"
    assert store.get_blob(digest) == b"hello"
    assert store.put_blob(b"hello") == digest  # idempotent

    key = key_of(0)
    entry = store.put(key, {"image": b"png bytes", "thumb": b"webp"}, {"loss": -1.5, "shape": [3, 4]})
    path = store.root / "index" / key[:2] / f"{key}.json"
    assert path.is_file()
    doc = json.loads(path.read_text())
    assert doc["key"] == key and doc["meta"] == {"loss": -1.5, "shape": [3, 4]}
    assert doc["blobs"]["image"] == {"digest": hashlib.sha256(b"png bytes").hexdigest(), "size": 9}

    got = store.get(key)
    assert got == entry
    assert store.get_blob(got.blobs["image"].digest) == b"png bytes"
    assert store.get_blob(got.blobs["thumb"].digest) == b"webp"
    assert store.has(key) and not store.has(key_of(1))
    assert store.missing([key_of(2), key, key_of(1)]) == [key_of(2), key_of(1)]
    assert store.verify().ok
    assert temp_files(store.root) == []


def test_an_entry_without_a_blob_its_key_needs_counts_as_missing(store):
    """An entry stored before its kind declared another blob is missing, so the build makes it again."""
    store.put(key_of(0), {"top": b"old"}, {"n": 0})
    store.put(key_of(1), {"top": b"new", "bottom": b"also"}, {"n": 1})
    keys = [key_of(0), key_of(1)]
    needs = {k: ("top", "bottom") for k in keys}
    assert store.missing(keys) == [] and store.missing(keys, blobs={}) == []
    assert store.missing(keys, blobs=needs) == [key_of(0)] == store.missing(keys, deep=True, blobs=needs)
    assert store.missing(keys, blobs={key_of(0): ("top",)}) == []
    store.put(key_of(0), {"top": b"old", "bottom": b"made"}, {"n": 0})  # extended in place: the same key
    assert store.missing(keys, blobs=needs) == []


def test_missing_store_reads_as_empty_without_creating_it(store):
    assert store.get(key_of(0)) is None
    assert store.missing([key_of(0)]) == [key_of(0)]
    assert store.verify().ok and store.gc() == GcReport()
    assert not store.root.exists()


def test_bad_names_are_refused(store):
    for bad in ["../../etc/passwd", "AB" * 32, "a" * 63, 123]:
        with pytest.raises(ValueError):
            store.get_blob(bad)
        with pytest.raises(ValueError):
            store.get(bad)


def test_modes_follow_umask(store):
    # atlasgen.fs gives files and folders what `open` and `mkdir` would: 0666 / 0777 less the umask.
    old = os.umask(0o077)
    try:
        store.put(key_of(0), {"a": b"x"}, {})
        with store.lock(shared=True):
            pass
    finally:
        os.umask(old)
    assert (store.root / "lock").is_file()
    for p in store.root.rglob("*"):
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, p
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700


# ---- verification ----------------------------------------------------------------------------

def test_flipped_byte_is_caught_quarantined_and_rebuildable(store):
    store.put(key_of(0), {"a": payload(0, "a")}, {})
    store.put(key_of(1), {"a": payload(1, "a")}, {})
    digest = store.get(key_of(0)).blobs["a"].digest
    path = store.blob_path(digest)
    data = bytearray(path.read_bytes())
    data[17] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(CorruptBlob):
        store.get_blob(digest)
    assert issubclass(CorruptBlob, StoreError) and issubclass(StoreError, AtlasgenError)

    report = store.verify()
    assert not report.ok
    assert report.blobs_checked == 2 and report.entries_checked == 2
    assert report.quarantined_blobs == [f"blobs/{digest[:2]}/{digest[2:]}"]
    assert report.quarantined_entries == [f"index/{key_of(0)[:2]}/{key_of(0)}.json"]
    assert not path.exists()
    moved = list((store.root / "quarantine" / "blobs").rglob("*"))
    assert [p.read_bytes() for p in moved if p.is_file()] == [bytes(data)]  # kept, not deleted
    assert store.get(key_of(0)) is None and store.missing([key_of(0), key_of(1)]) == [key_of(0)]

    store.put(key_of(0), {"a": payload(0, "a")}, {})  # the next build recomputes it
    assert store.get_blob(store.get(key_of(0)).blobs["a"].digest) == payload(0, "a")
    assert store.verify().ok


def test_put_blob_repairs_a_corrupt_copy(store):
    digest = store.put_blob(b"abc")
    store.blob_path(digest).write_bytes(b"abd")
    assert store.put_blob(b"abc") == digest
    assert store.get_blob(digest) == b"abc"


@pytest.mark.parametrize("damage", ["truncated", "not json", "empty", "wrong key", "missing blob",
                                    "wrong size", "bad digest"])
def test_bad_index_entries_are_caught(store, damage):
    store.put(key_of(0), {"a": b"first"}, {"i": 0})
    store.put(key_of(1), {"a": b"second"}, {"i": 1})
    path = store.entry_path(key_of(0))
    text = path.read_text()
    doc = json.loads(text)
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "not json":
        path.write_bytes(b"\xff\xfe garbage")
    elif damage == "empty":
        path.write_text("")
    elif damage == "wrong key":
        path.write_text(store.entry_path(key_of(1)).read_text())
    elif damage == "missing blob":
        store.blob_path(doc["blobs"]["a"]["digest"]).unlink()
    elif damage == "wrong size":
        doc["blobs"]["a"]["size"] += 1
        path.write_text(json.dumps(doc))
    elif damage == "bad digest":
        doc["blobs"]["a"]["digest"] = "../" + "0" * 61
        path.write_text(json.dumps(doc))

    assert store.get(key_of(0)) is None
    assert store.get(key_of(1)) is not None
    report = store.verify()
    assert report.quarantined_entries == [f"index/{key_of(0)[:2]}/{key_of(0)}.json"]
    assert report.quarantined_blobs == []
    assert not path.exists() and store.get(key_of(0)) is None
    assert store.verify().ok
    assert store.get_blob(store.get(key_of(1)).blobs["a"].digest) == b"second"


def test_put_overwrites_a_bad_entry(store):
    store.put(key_of(0), {"a": b"x"}, {})
    store.entry_path(key_of(0)).write_text("{")
    store.put(key_of(0), {"a": b"x"}, {"again": True})
    assert store.get(key_of(0)).meta == {"again": True}


# ---- gc --------------------------------------------------------------------------------------

def test_gc_removes_only_unreferenced_blobs(store):
    store.put(key_of(0), {"a": b"kept", "b": b"shared"}, {})
    store.put(key_of(1), {"a": b"shared"}, {})
    orphan = store.put_blob(b"orphan")
    before = tree(store.root)

    assert store.gc(dry_run=True, grace_seconds=0) == GcReport(removed=[orphan])
    assert tree(store.root) == before

    assert store.gc(grace_seconds=0).removed == [orphan]
    assert not store.blob_path(orphan).exists()
    assert store.gc(grace_seconds=0) == GcReport()
    assert store.verify().ok
    for i, want in [(0, {"a": b"kept", "b": b"shared"}), (1, {"a": b"shared"})]:
        entry = store.get(key_of(i))
        assert {n: store.get_blob(r.digest) for n, r in entry.blobs.items()} == want


def test_gc_clears_only_stale_temp_files(store):
    store.put(key_of(0), {"a": b"x"}, {})
    folder = store.blob_path(store.get(key_of(0)).blobs["a"].digest).parent
    stale, fresh = folder / ".tmp-stale", folder / ".tmp-fresh"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 2 * STALE_TEMP_SECONDS
    os.utime(stale, (old, old))

    report = store.verify()
    assert report.ok and len(report.temp_files) == 2  # listed, not corruption
    dry = store.gc(dry_run=True)
    assert dry.removed == [] and dry.temp_files == [stale.relative_to(store.root).as_posix()] and stale.exists()
    assert store.gc() == GcReport(temp_files=dry.temp_files)
    assert not stale.exists() and fresh.exists()
    assert store.has(key_of(0))


def test_gc_refuses_while_an_entry_is_unreadable(store):
    store.put(key_of(0), {"a": b"x"}, {})
    store.entry_path(key_of(0)).write_text("{")
    with pytest.raises(StoreError, match="verify"):
        store.gc()
    assert store.blob_path(hashlib.sha256(b"x").hexdigest()).exists()


def test_gc_keeps_young_unreferenced_blobs(store):
    store.put(key_of(0), {"a": b"kept"}, {})
    young = store.put_blob(b"young orphan")
    old = store.put_blob(b"old orphan")
    refreshed = store.put_blob(b"stored again by a build")
    long_ago = time.time() - 2 * DEFAULT_GRACE_SECONDS
    for digest in (old, refreshed):
        os.utime(store.blob_path(digest), (long_ago, long_ago))
    assert store.put_blob(b"stored again by a build") == refreshed  # a build re-putting it makes it young

    report = store.gc()
    assert report.removed == [old] and report.kept_young == 2
    assert not store.blob_path(old).exists()
    assert store.blob_path(young).exists() and store.blob_path(refreshed).exists()
    assert sorted(store.gc(grace_seconds=0).removed) == sorted([young, refreshed])
    assert store.gc(grace_seconds=0) == GcReport()
    assert store.has(key_of(0)) and store.verify().ok
    for bad in (-1, float("nan"), "1h", True):
        with pytest.raises(StoreError, match="grace period") as err:
            store.gc(grace_seconds=bad)
        assert "\n" not in str(err.value)


# ---- only what is ours -----------------------------------------------------------------------

def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (not through symlinks), with a file's bytes or None for the rest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[p.relative_to(folder).as_posix()] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


def old_mtime(*paths: Path) -> None:
    then = time.time() - 10 * DEFAULT_GRACE_SECONDS
    for p in paths:
        os.utime(p, (then, then), follow_symlinks=False)


def test_symlinks_in_the_store_are_never_followed_by_gc_or_verify(store, tmp_path):
    store.put(key_of(0), {"a": b"kept"}, {})
    orphan = store.put_blob(b"orphan")
    victim = tmp_path / "victim"
    (victim / "ab").mkdir(parents=True)
    (victim / ("ab" * 31)).write_bytes(b"named like a blob")
    (victim / "ab" / ("cd" * 31)).write_bytes(b"named like a blob in a fan-out folder")
    (victim / "notes.txt").write_text("precious")
    outside_entry = tmp_path / "entry.json"
    outside_entry.write_text("{ not an entry")
    outside_blob = tmp_path / "blob"
    outside_blob.write_bytes(b"outside")
    old_mtime(*victim.rglob("*"), outside_entry, outside_blob)
    before = snapshot(tmp_path / "victim"), outside_entry.read_bytes(), outside_blob.read_bytes()

    links = {
        "blobs/zz": victim,                          # the repro: gc emptied victim/
        "blobs/ee": victim,                          # a fan-out name, still a symlink
        "blobs/ab": None,                            # a real folder, holding a link named like a blob
        f"blobs/ab/{'ef' * 31}": outside_blob,
        "index/cd": None,
        f"index/cd/{'cd' * 32}.json": outside_entry,
        "index/ee": victim / "ab",
    }
    for rel, target in links.items():
        path = store.root / rel
        if target is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.symlink_to(target)
    reason = "(symlink, not followed)"
    expected = sorted(f"{rel} {reason}" for rel, target in links.items() if target is not None)

    report = store.verify()
    assert report.ok and sorted(report.skipped) == expected
    assert report.blobs_checked == 2 and report.entries_checked == 1
    dry = store.gc(dry_run=True, grace_seconds=0)
    assert dry.removed == [orphan] and sorted(dry.skipped) == expected
    done = store.gc(grace_seconds=0)
    assert done.removed == [orphan] and sorted(done.skipped) == expected

    assert (snapshot(tmp_path / "victim"), outside_entry.read_bytes(), outside_blob.read_bytes()) == before
    for rel, target in links.items():
        if target is not None:
            assert (store.root / rel).is_symlink() and os.readlink(store.root / rel) == str(target), rel
    assert not (store.root / "quarantine").exists()
    assert store.has(key_of(0)) and store.get_blob(store.get(key_of(0)).blobs["a"].digest) == b"kept"


def test_foreign_files_and_folders_are_left_alone_and_reported(store):
    store.put(key_of(0), {"a": b"kept"}, {})
    entry_dir = store.entry_path(key_of(0)).parent
    foreign = {
        "blobs/ab/README.txt": "not a name the store uses",
        f"blobs/ab/sub/{'ab' * 31}": None,
        "blobs/README.txt": "not a fan-out folder",
        f"blobs/AB/{'ab' * 31}": None,
        f"blobs/abc/{'ab' * 31}": None,
        f"blobs/ab/{'ab' * 30}": "not a name the store uses",  # 60 hex digits
        "index/ab/notes.json": "not a name the store uses",
        f"index/00/{'11' * 32}.json": "not a name the store uses",  # in the wrong fan-out folder
        f"{entry_dir.relative_to(store.root).as_posix()}/{key_of(0).upper()}.json": "not a name the store uses",
    }
    for rel in foreign:
        path = store.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"somebody else's " + rel.encode())
    os.mkfifo(store.root / "blobs" / "ab" / ("ff" * 31))
    old_mtime(*store.root.rglob("*"))
    before = tree(store.root)
    expected = sorted([f"{rel} ({why})" for rel, why in foreign.items() if why] + [
        "blobs/ab/sub (folder inside a fan-out folder)",
        "blobs/AB (not a fan-out folder)",
        "blobs/abc (not a fan-out folder)",
        f"blobs/ab/{'ff' * 31} (not a regular file)",
    ])

    report = store.verify()
    assert report.ok and sorted(report.skipped) == expected
    assert report.blobs_checked == 1 and report.entries_checked == 1
    gc_report = store.gc(grace_seconds=0)
    assert gc_report.removed == [] and sorted(gc_report.skipped) == expected
    assert tree(store.root) == before
    assert stat.S_ISFIFO(os.lstat(store.root / "blobs" / "ab" / ("ff" * 31)).st_mode)
    assert not (store.root / "quarantine").exists()


def test_unreadable_folders_are_skipped_and_an_unreadable_index_stops_gc(store, monkeypatch):
    store.put(key_of(0), {"a": b"kept"}, {})
    orphan = store.put_blob(b"orphan")
    old_mtime(*store.root.rglob("*"))
    blob_dir = store.blob_path(orphan).parent
    index_dir = store.entry_path(key_of(0)).parent
    locked: set[Path] = set()
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) in locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    locked.add(blob_dir)
    blob_rel = blob_dir.relative_to(store.root).as_posix()
    report = store.gc(grace_seconds=0)
    assert report.removed == [] and report.skipped == [f"{blob_rel} (cannot be read: Permission denied)"]
    assert store.blob_path(orphan).exists() and store.has(key_of(0))

    locked = {index_dir}
    before = tree(store.root)
    report = store.verify()
    assert report.ok and report.entries_checked == 0
    assert report.skipped == [f"{index_dir.relative_to(store.root).as_posix()} (cannot be read: Permission denied)"]
    with pytest.raises(StoreError, match="cannot read the index folder") as err:
        store.gc(grace_seconds=0)
    assert "\n" not in str(err.value) and str(index_dir) in str(err.value)
    assert tree(store.root) == before

    locked = set()
    real_index = store.root / "index-elsewhere"
    store.index_dir.rename(real_index)
    store.index_dir.symlink_to(real_index)  # the whole index behind a symlink: every blob would look unreferenced
    with pytest.raises(StoreError, match="symlink") as err:
        store.gc(grace_seconds=0)
    assert "\n" not in str(err.value)
    assert tree(store.blobs_dir) == {k.removeprefix("blobs/"): v for k, v in before.items() if k.startswith("blobs/")}


def test_symlinks_where_a_blob_or_entry_should_be_count_as_missing(store, tmp_path):
    entry = store.put(key_of(0), {"a": b"real bytes"}, {})
    blob = store.blob_path(entry.blobs["a"].digest)
    copy = tmp_path / "copy"
    copy.write_bytes(b"real bytes")
    blob.unlink()
    blob.symlink_to(copy)  # the right bytes, but not ours to read
    assert store.get(key_of(0)) is None and store.missing([key_of(0)]) == [key_of(0)]
    with pytest.raises(MissingBlob):
        store.get_blob(entry.blobs["a"].digest)
    store.put(key_of(0), {"a": b"real bytes"}, {})  # the next build replaces the link, not its target
    assert not blob.is_symlink() and store.has(key_of(0)) and copy.read_bytes() == b"real bytes"

    outside_entry = tmp_path / "entry.json"
    outside_entry.write_bytes(store.entry_path(key_of(0)).read_bytes())
    store.entry_path(key_of(0)).unlink()
    store.entry_path(key_of(0)).symlink_to(outside_entry)
    assert store.get(key_of(0)) is None

    victim = tmp_path / "victim"
    victim.mkdir()
    digest = hashlib.sha256(b"hello").hexdigest()
    (store.blobs_dir / digest[:2]).symlink_to(victim)
    with pytest.raises(StoreError, match="symlink") as err:
        store.put_blob(b"hello")  # must not write through blobs/2c into victim/
    assert "\n" not in str(err.value) and list(victim.iterdir()) == []


def test_a_deeply_nested_entry_is_corrupt_not_a_crash(store):
    store.put(key_of(0), {"a": b"x"}, {})
    store.put(key_of(1), {"a": b"y"}, {})
    path = store.entry_path(key_of(0))
    path.write_text("[" * 100_000)
    assert store.get(key_of(0)) is None and store.has(key_of(1))
    assert store.missing([key_of(0), key_of(1)]) == [key_of(0)]
    with pytest.raises(StoreError, match="verify") as err:
        store.gc(grace_seconds=0)
    assert "\n" not in str(err.value)
    report = store.verify()
    assert report.quarantined_entries == [f"index/{key_of(0)[:2]}/{key_of(0)}.json"] and report.quarantined_blobs == []
    assert store.gc(grace_seconds=0).removed == [hashlib.sha256(b"x").hexdigest()]
    assert store.has(key_of(1)) and store.verify().ok


def test_an_oversize_entry_is_corrupt(store):
    store.put(key_of(0), {"a": b"x"}, {})
    store.put(key_of(1), {"a": b"y"}, {})
    path = store.entry_path(key_of(0))
    path.write_bytes(path.read_bytes() + b" " * MAX_ENTRY_BYTES)  # still valid JSON
    assert store.get(key_of(0)) is None and store.missing([key_of(0), key_of(1)]) == [key_of(0)]
    with pytest.raises(StoreError, match="verify"):
        store.gc(grace_seconds=0)
    assert store.verify().quarantined_entries == [f"index/{key_of(0)[:2]}/{key_of(0)}.json"]
    assert store.has(key_of(1)) and store.verify().ok


def test_missing_deep_rehashes_and_quarantines_a_corrupt_blob_of_the_right_size(store):
    shared = payload("shared", "s")
    for i in range(3):
        store.put(key_of(i), {"own": payload(i, "own"), **({"s": shared} if i < 2 else {})}, {})
    digest = hashlib.sha256(shared).hexdigest()
    path = store.blob_path(digest)
    data = bytearray(path.read_bytes())
    data[5] ^= 0x40
    path.write_bytes(bytes(data))
    keys = [key_of(2), key_of(1), key_of(0)]

    assert store.missing(keys) == [] and store.missing(keys, deep=False) == []  # the size is right
    assert store.missing(keys, deep=True) == [key_of(1), key_of(0)]
    assert not path.exists()
    moved = [p for p in (store.root / "quarantine").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in moved] == [bytes(data)]  # kept, not deleted
    assert store.missing(keys) == [key_of(1), key_of(0)]
    assert store.missing(keys, deep=True) == [key_of(1), key_of(0)]
    assert store.get_blob(store.get(key_of(2)).blobs["own"].digest) == payload(2, "own")

    store.put(key_of(0), {"own": payload(0, "own"), "s": shared}, {})  # the next build recomputes them
    store.put(key_of(1), {"own": payload(1, "own"), "s": shared}, {})
    assert store.missing(keys, deep=True) == [] and store.verify().ok


# ---- the lock --------------------------------------------------------------------------------

TRY_LOCK = """
import sys
from atlasgen.store import Store, StoreBusy
try:
    with Store(sys.argv[1]).lock(shared=sys.argv[2] == "shared", wait=False):
        print("locked")
except StoreBusy as e:
    print("busy:", e)
"""


def try_lock_in_subprocess(root: Path, mode: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(root), mode], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60, check=True).stdout


def test_lock_shared_for_builds_exclusive_for_gc(tmp_path):
    root = tmp_path / "new" / "store"
    store = Store(root)
    with store.lock(shared=True):
        assert (root / "lock").is_file()  # the lock made the store folder, and nothing else
        assert sorted(p.name for p in root.iterdir()) == ["lock"]
        with Store(root).lock(shared=True, wait=False):  # two builders at once
            with pytest.raises(StoreBusy) as err:
                with Store(root).lock(shared=False, wait=False):
                    pytest.fail("gc got the lock while a build held it")
        message = str(err.value)
        assert "\n" not in message and str(root) in message and "--wait" in message
        assert issubclass(StoreBusy, StoreError)
        assert try_lock_in_subprocess(root, "exclusive").startswith("busy:")
        assert try_lock_in_subprocess(root, "shared") == "locked\n"
    with Store(root).lock(shared=False, wait=False):
        with pytest.raises(StoreBusy, match="--wait"):
            with Store(root).lock(shared=True, wait=False):
                pass
        assert try_lock_in_subprocess(root, "shared").startswith("busy:")
    with Store(root).lock(shared=False, wait=False) as held:
        assert held.gc() == GcReport() and held.verify().ok


WAIT_FOR_LOCK = """
import sys
from atlasgen.store import Store
from support import key_of
store = Store(sys.argv[1])
print("waiting", flush=True)
with store.lock(shared=False, wait=True):
    print("locked; the build's entry is", "there" if store.has(key_of(0)) else "not there", flush=True)
"""


def start_child(script: str, *args) -> subprocess.Popen:
    """`script` in a new Python, its stdout unbuffered here so that `read_line` never reads ahead."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE, bufsize=0,
                            env=env, cwd=REPO)


def read_line(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The child's next line of output, waiting for it; "" once it has exited. Fails after `timeout`
    seconds of silence rather than hanging the run."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        pytest.fail(f"the child printed nothing in {timeout} s")
    return proc.stdout.readline().decode().rstrip("\n")


def stop_child(proc: subprocess.Popen) -> None:
    """Kills the child (SIGKILL) unless it has exited, and reaps it."""
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_lock_waits_for_the_holder(tmp_path):
    store = Store(tmp_path / "store")
    gc = None
    try:
        with store.lock(shared=True):
            gc = start_child(WAIT_FOR_LOCK, store.root)
            assert read_line(gc) == "waiting"
            # The build writes while gc waits: gc may have the lock only once the build lets go of it.
            store.put(key_of(0), {"a": payload(0, "a")}, {})
        assert read_line(gc) == "locked; the build's entry is there"  # a gc that gave up says nothing
        assert gc.wait(60) == 0
    finally:
        if gc is not None:
            stop_child(gc)


def test_lock_refuses_a_symlink_or_a_folder(tmp_path):
    store = Store(tmp_path / "store")
    store.root.mkdir()
    target = tmp_path / "precious"
    target.write_text("keep")
    (store.root / "lock").symlink_to(target)
    with pytest.raises(StoreError, match="symlink") as err:
        with store.lock(shared=False):
            pass
    assert "\n" not in str(err.value) and target.read_text() == "keep"
    (store.root / "lock").unlink()
    (store.root / "lock").mkdir()
    with pytest.raises(StoreError, match="not a regular file"):
        with store.lock(shared=True):
            pass


# ---- failures --------------------------------------------------------------------------------

def fake_enospc(monkeypatch, after_bytes: int):
    """os.write that writes `after_bytes` for real, then reports a full disk."""
    real_write = os.write
    budget = [after_bytes]

    def write(fd, data):
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(data[: budget[0]]))
        budget[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)


BIG = 32 * 1024  # bytes in each blob of the full-disk test


@pytest.mark.parametrize("after_bytes", [0, 100, BIG + 10], ids=["at-start", "mid-blob", "mid-index"])
def test_full_disk_raises_one_line_and_damages_nothing(store, monkeypatch, after_bytes):
    first = store.put(key_of(0), {"a": payload(0, "a", 1024)}, {"v": 1})
    before = tree(store.root)

    with monkeypatch.context() as m:
        fake_enospc(m, after_bytes)
        with pytest.raises(StoreError) as err:
            store.put(key_of(1), {"a": payload(1, "a", 1024)}, {})
    with monkeypatch.context() as m:  # overwriting an existing entry fails just the same
        fake_enospc(m, after_bytes)
        with pytest.raises(StoreError):
            store.put(key_of(0), {"a": payload(0, "a", 1024), "b": payload(0, "b", 1024)}, {"v": 2})

    message = str(err.value)
    assert "\n" not in message and "no space" in message and str(store.root) in message
    assert temp_files(store.root) == []
    assert store.get(key_of(1)) is None
    assert store.get(key_of(0)) == first
    assert {k: v for k, v in tree(store.root).items() if k.startswith("index/")} == \
           {k: v for k, v in before.items() if k.startswith("index/")}
    assert store.verify().ok
    assert store.get_blob(first.blobs["a"].digest) == payload(0, "a", 1024)


def test_permission_denied_simulated(store, monkeypatch):
    store.put(key_of(0), {"a": b"x"}, {})

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(StoreError) as err:
        store.put(key_of(1), {"a": b"y"}, {})
    message = str(err.value)
    assert "\n" not in message and "Permission denied" in message and "writable" in message
    assert str(store.root) in message
    monkeypatch.undo()
    assert store.has(key_of(0)) and not store.has(key_of(1)) and store.verify().ok


def test_unwritable_root_simulated_at_mkdir(tmp_path, monkeypatch):
    store = Store(tmp_path / "ro" / "store")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "mkdir", denied)
    with pytest.raises(StoreError, match="writable"):
        store.put_blob(b"x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_root(tmp_path):
    store = Store(tmp_path / "store")
    store.put(key_of(0), {"a": b"x"}, {})
    for p in [store.root, *store.root.rglob("*")]:
        if p.is_dir():
            p.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="writable"):
            store.put(key_of(1), {"a": b"y"}, {})
        assert store.has(key_of(0))
    finally:
        for p in [store.root, *store.root.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)


# ---- concurrency and crashes -----------------------------------------------------------------

def _writer(root: str, worker: int) -> None:
    """One of several processes writing the same 50 entries and 10 of its own."""
    store = Store(root)
    own = [f"own-{worker}-{j}" for j in range(10)]
    for n, i in enumerate([*range(50), *own]):
        store.put(key_of(i), {"a": payload(i, "a"), "b": payload(n % 5, "shared")}, {"i": i})


def test_concurrent_writers_leave_a_valid_store(tmp_path):
    root = tmp_path / "store"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(root), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4

    store = Store(root)
    report = store.verify()
    assert report.ok and report.temp_files == []
    assert report.entries_checked == 50 + 4 * 10
    assert report.blobs_checked == 50 + 40 + 5
    ids = [*range(50), *(f"own-{w}-{i}" for w in range(4) for i in range(10))]
    assert store.missing([key_of(i) for i in ids]) == []
    for i in ids:
        entry = store.get(key_of(i))
        assert entry.meta == {"i": i}
        assert store.get_blob(entry.blobs["a"].digest) == payload(i, "a")


KILLED_WRITER = """
import sys
from atlasgen.store import Store
from support import key_of, payload
store = Store(sys.argv[1])
i = 0
while True:
    store.put(key_of(i), {"a": payload(i, "a", 8192), "b": payload(i, "b", 8192)}, {"i": i})
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize("puts", [1, 5, 17])
def test_sigkill_mid_write_leaves_nothing_corrupt(tmp_path, puts):
    root = tmp_path / "store"
    proc = start_child(KILLED_WRITER, root)
    try:
        # Synchronise on the writer's own output: kill it while it writes the entry after `puts`.
        for i in range(puts):
            assert read_line(proc) == str(i)
        delay = puts
    finally:
        stop_child(proc)

    store = Store(root)
    report = store.verify()
    assert report.ok, (delay, report)
    # Entries are written in order, so every one before the last that `get` returns is complete.
    found = [i for i in range(report.entries_checked + 1) if store.has(key_of(i))]
    assert found == list(range(len(found))), (delay, found)
    for i in found:
        entry = store.get(key_of(i))
        assert entry.meta == {"i": i}
        for name in "ab":
            assert store.get_blob(entry.blobs[name].digest) == payload(i, name, 8192)
