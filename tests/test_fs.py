"""atlasgen.fs: atomic writes, writes only on change, early writability checks, owned-file pruning,
the intent log that survives a kill, and the output folder's lock."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from atlasgen import fs
from atlasgen.errors import AtlasgenError
from atlasgen.fs import (
    INTENT_LOG, LOCK_FILE, OWNED_RECORD, OutputFolder, atomic_write, check_writable, output_folder, read_owned,
    write_if_changed,
)


def temp_files(folder):
    return sorted(p.name for p in folder.rglob(f"{fs.TEMP_PREFIX}*"))


@pytest.fixture
def strict_umask():
    """A umask of 077: files 0600 and folders 0700, as `open` and `mkdir` would make them."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


# --- atomic_write ---------------------------------------------------------------------------------


def test_atomic_write_honours_the_umask_and_leaves_no_temp(tmp_path, strict_umask):
    target = tmp_path / "a" / "b" / "c.bin"
    atomic_write(target, b"first")
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert temp_files(tmp_path) == []


def test_atomic_write_under_the_usual_umask_makes_files_pages_can_serve(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "d" / "f", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / "f").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_write_replaces_content(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write(target, b"a much longer first version")
    atomic_write(target, b"short")
    assert target.read_bytes() == b"short"
    atomic_write(target, b"")
    assert target.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def _full_disk(fd, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_failure_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write(target, b"old")
    monkeypatch.setattr(fs, "write_all", _full_disk)
    with pytest.raises(OSError) as caught:
        atomic_write(target, b"new")
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_write_if_changed_full_disk_is_one_line_naming_the_owner(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write(target, b"old")
    monkeypatch.setattr(fs, "write_all", _full_disk)
    with pytest.raises(AtlasgenError) as caught:
        write_if_changed(target, b"new", owner="--store")
    message = str(caught.value)
    assert "\n" not in message and "--store" in message and str(target) in message
    assert target.read_bytes() == b"old"
    assert temp_files(tmp_path) == []


# --- write_if_changed -----------------------------------------------------------------------------


def test_write_if_changed_skips_equal_bytes(tmp_path):
    target = tmp_path / "f.txt"
    assert write_if_changed(target, b"same") is True
    old = 1_000_000_000_000_000_000  # 2001, so that a rewrite could not keep it by chance
    os.utime(target, ns=(old, old))
    inode = target.stat().st_ino
    assert write_if_changed(target, b"same") is False
    assert target.stat().st_mtime_ns == old
    assert target.stat().st_ino == inode


def test_write_if_changed_writes_different_bytes(tmp_path):
    target = tmp_path / "f.txt"
    write_if_changed(target, b"same")
    old = 1_000_000_000_000_000_000
    os.utime(target, ns=(old, old))
    assert write_if_changed(target, b"sane") is True  # same length, other bytes
    assert target.read_bytes() == b"sane"
    assert target.stat().st_mtime_ns != old
    assert write_if_changed(target, b"sane!") is True
    assert target.read_bytes() == b"sane!"


def test_write_if_changed_fails_in_one_line_when_its_folder_cannot_be_made(tmp_path):
    blocker = tmp_path / "site"
    blocker.write_text("a regular file where a folder should be")
    with pytest.raises(AtlasgenError) as caught:
        write_if_changed(blocker / "model" / "x.webp", b"data", owner="--out")
    message = str(caught.value)
    assert "\n" not in message and "--out" in message
    assert blocker.read_text() == "a regular file where a folder should be"


# --- check_writable -------------------------------------------------------------------------------


def test_check_writable_creates_a_new_nested_folder(tmp_path):
    folder = tmp_path / "x" / "y" / "z"
    check_writable(folder, "--store")
    assert folder.is_dir()
    assert list(folder.iterdir()) == []  # its probe file is gone


def test_check_writable_under_a_regular_file_names_the_option(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AtlasgenError) as caught:
        check_writable(blocker / "store", "--store")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--store ") and str(blocker / "store") in message
    assert blocker.read_text() == "x"


# --- OwnedFiles -----------------------------------------------------------------------------------


def run(root, stage, files: dict[str, bytes], finish=True, force=False):
    """One writer of `root`: writes `files` as `stage`, then finishes (prunes and saves the record), or,
    with `finish=False`, stops after writing them, as a writer killed before its prune."""
    with output_folder(root, force) as folder:
        owned = folder.stage(stage)
        for relative, data in files.items():
            owned.write(relative, data)
        if not finish:
            owned.flush()
            return None
        return folder.finish()


def test_a_second_run_removes_what_it_no_longer_writes_and_empty_folders(tmp_path):
    root = tmp_path / "site"
    assert run(root, "export", {"a.txt": b"a", "deep/er/b.txt": b"b"}) == []
    assert (root / "deep" / "er" / "b.txt").read_bytes() == b"b"
    assert read_owned(root) == {"export": ["a.txt", "deep/er/b.txt"]}

    assert run(root, "export", {"a.txt": b"a2"}) == ["deep/er/b.txt"]
    assert (root / "a.txt").read_bytes() == b"a2"
    assert not (root / "deep").exists()
    assert root.is_dir()
    assert read_owned(root) == {"export": ["a.txt"]}


def test_user_files_are_never_removed(tmp_path):
    root = tmp_path / "site"
    run(root, "export", {"sub/a.txt": b"a", "sub/b.txt": b"b"})
    (root / "sub" / "notes.txt").write_text("mine")
    (root / "README.txt").write_text("mine too")
    assert run(root, "export", {}) == ["sub/a.txt", "sub/b.txt"]
    assert (root / "sub" / "notes.txt").read_text() == "mine"
    assert (root / "README.txt").read_text() == "mine too"
    assert sorted(p.name for p in (root / "sub").iterdir()) == ["notes.txt"]


def test_a_file_another_stage_owns_is_kept(tmp_path):
    root = tmp_path / "site"
    run(root, "export", {"a.txt": b"a", "shared.txt": b"s"})
    run(root, "site", {"shared.txt": b"s", "index.html": b"<html>"})
    assert run(root, "export", {"a.txt": b"a"}) == []
    assert (root / "shared.txt").read_bytes() == b"s"
    assert (root / "index.html").read_bytes() == b"<html>"
    # Once no stage writes it any more, the last owner removes it.
    assert run(root, "site", {"index.html": b"<html>"}) == ["shared.txt"]
    assert not (root / "shared.txt").exists()


def test_a_recorded_path_that_became_a_symlink_out_of_the_root_is_not_followed(tmp_path):
    root = tmp_path / "site"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("keep me")
    (outside / "b.txt").write_text("keep me too")
    run(root, "export", {"a.txt": b"a", "link.txt": b"l", "sub/b.txt": b"b"})
    (root / "link.txt").unlink()
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "sub" / "b.txt").unlink()
    (root / "sub").rmdir()
    (root / "sub").symlink_to(outside, target_is_directory=True)

    assert run(root, "export", {"a.txt": b"a"}) == []
    assert (outside / "secret.txt").read_text() == "keep me"
    assert (outside / "b.txt").read_text() == "keep me too"
    assert (root / "link.txt").is_symlink() and (root / "sub").is_symlink()


def test_a_hand_edited_record_cannot_reach_outside_the_root(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (tmp_path / "outside.txt").write_text("keep me")
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("keep me")
    (root / "inside.txt").write_text("owned")
    record = {"export": ["../outside.txt", str(victim), "sub/../../outside.txt", "inside.txt"]}
    (root / OWNED_RECORD).write_text(json.dumps(record))

    assert run(root, "export", {"a.txt": b"a"}) == ["inside.txt"]  # the one recorded path inside the root
    assert (tmp_path / "outside.txt").read_text() == "keep me"
    assert victim.read_text() == "keep me"
    assert victim.parent.is_dir()


def test_a_recorded_path_the_user_replaced_is_left_alone(tmp_path):
    root = tmp_path / "site"
    run(root, "export", {"a.txt": b"a", "link.txt": b"l", "folder": b"f"})
    (root / "user.txt").write_text("mine")
    (root / "link.txt").unlink()
    (root / "link.txt").symlink_to(root / "user.txt")
    (root / "folder").unlink()
    (root / "folder").mkdir()
    (root / "folder" / "notes.txt").write_text("mine")

    assert run(root, "export", {"a.txt": b"a"}) == []
    assert (root / "link.txt").is_symlink() and (root / "user.txt").read_text() == "mine"
    assert (root / "folder" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("damage", ["{not json", '["b"]', '{"export": "b"}', "", '{"export": [1, null]}', "null"])
def test_a_damaged_record_prunes_nothing(tmp_path, damage):
    root = tmp_path / "site"
    run(root, "export", {"a.txt": b"a", "b": b"b"})
    (root / OWNED_RECORD).write_text(damage)
    # With the record damaged, a.txt is no longer known to be ours: only --force rewrites it.
    with pytest.raises(AtlasgenError, match="was not written by atlasgen"):
        run(root, "export", {"a.txt": b"a"})
    assert run(root, "export", {"a.txt": b"a"}, force=True) == []
    assert (root / "b").read_bytes() == b"b"
    assert read_owned(root) == {"export": ["a.txt"]}  # and the record is whole again


def test_a_run_that_does_not_finish_prunes_nothing_and_keeps_the_record(tmp_path):
    root = tmp_path / "site"
    run(root, "export", {"a.txt": b"a", "b.txt": b"b"})
    record = (root / OWNED_RECORD).read_bytes()
    run(root, "export", {"a.txt": b"a2"}, finish=False)
    assert (root / "b.txt").read_bytes() == b"b"
    assert (root / "a.txt").read_bytes() == b"a2"
    assert (root / OWNED_RECORD).read_bytes() == record
    # The next finished run still knows b.txt was atlasgen's.
    assert run(root, "export", {"a.txt": b"a2"}) == ["b.txt"]


def test_a_stage_cannot_write_outside_its_root(tmp_path):
    root = tmp_path / "site"
    owned = OutputFolder(root).stage("export")
    for bad in ("../escaped.txt", "a/../../escaped.txt", str(tmp_path / "abs.txt")):
        with pytest.raises(AtlasgenError, match="outside"):
            owned.write(bad, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_non_empty_folder_without_our_record_is_refused_unless_forced(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("the user's own page")
    with pytest.raises(AtlasgenError, match="not empty and holds no atlas made by atlasgen.*--force"):
        run(root, "site", {})
    assert sorted(p.name for p in root.iterdir()) == ["index.html"], "refused before a lock file was made"
    # Once the folder holds our record, a file of the user's in the way of ours is still refused.
    run(root, "site", {"other.txt": b"x"}, force=True)
    with pytest.raises(AtlasgenError, match="in the way and was not written by atlasgen"):
        run(root, "site", {"other.txt": b"x", "index.html": b"ours"})
    assert (root / "index.html").read_text() == "the user's own page"
    assert run(root, "site", {"other.txt": b"x", "index.html": b"ours"}, force=True) == []
    assert (root / "index.html").read_bytes() == b"ours"


def test_writing_through_a_symlink_out_of_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "site", tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "atlas.css").write_text("theirs")
    run(root, "site", {"index.html": b"x"})
    (root / "static").symlink_to(outside)
    with pytest.raises(AtlasgenError, match="symlink in it leads outside"):
        run(root, "site", {"static/atlas.css": b"ours"}, force=True)
    assert (outside / "atlas.css").read_text() == "theirs"


def test_a_folder_marked_for_our_output_may_be_claimed(tmp_path):
    """The repository's site/ holds only its README, which marks it as atlasgen's output folder."""
    from support import REPO

    root = tmp_path / "site"
    root.mkdir()
    (root / "README.md").write_text((REPO / "site" / "README.md").read_text())
    assert run(root, "site", {"index.html": b"ours"}) == []
    assert (root / "README.md").read_text() == (REPO / "site" / "README.md").read_text()
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("# my project\\n")
    with pytest.raises(AtlasgenError, match="holds no atlas made by atlasgen"):
        OutputFolder(other)


# --- the intent log: a writer killed at any moment leaves nothing of ours unrecorded -------------


def intents(root):
    return [json.loads(line) for line in (root / INTENT_LOG).read_text().splitlines()]


def test_every_new_file_is_in_the_intent_log_before_it_is_written(tmp_path, monkeypatch):
    root = tmp_path / "site"
    run(root, "export", {"old.txt": b"o"})
    seen = []
    real = fs.write_if_changed

    def checked(path, data, owner="--out"):
        relative = path.relative_to(root).as_posix()
        logged = [p for _, p in intents(root)] if (root / INTENT_LOG).exists() else []
        seen.append(relative)
        assert relative == "old.txt" or relative in logged, (relative, logged)
        return real(path, data, owner)

    monkeypatch.setattr(fs, "write_if_changed", checked)
    files = {f"n/{i}.txt": b"%d" % i for i in range(150)}  # three batches
    run(root, "export", {"old.txt": b"o2", **files}, finish=False)
    assert seen == ["old.txt", *files]  # in the order they were given
    # Only the new ones are logged (the record already holds old.txt), each once, with its stage.
    assert intents(root) == [["export", p] for p in files]


def test_a_first_run_killed_before_its_record_is_resumed_without_force(tmp_path):
    root = tmp_path / "site"
    run(root, "export", {"a.txt": b"a", "gone.txt": b"g", "deep/b.txt": b"b"}, finish=False)
    assert not (root / OWNED_RECORD).exists() and (root / INTENT_LOG).exists()
    (root / "mine.txt").write_text("the user's, written after the kill")
    # Not "holds no atlas made by atlasgen", not "in the way": the killed run's files are ours.
    assert run(root, "export", {"a.txt": b"a2", "deep/b.txt": b"b"}) == ["gone.txt"]
    assert read_owned(root) == {"export": ["a.txt", "deep/b.txt"]}
    assert not (root / INTENT_LOG).exists(), "folded into the record"
    assert (root / "mine.txt").read_text() == "the user's, written after the kill"


def test_a_killed_rerun_of_a_bigger_atlas_resumes_and_prunes_what_it_no_longer_writes(tmp_path):
    root = tmp_path / "site"
    run(root, "export", {f"{i}/c.webp": b"c" for i in range(4)})
    run(root, "export", {f"{i}/c.webp": b"c" for i in range(8)}, finish=False)  # killed after its writes
    (root / "notes.txt").write_text("mine")
    with pytest.raises(AtlasgenError, match="notes.txt is in the way"):
        run(root, "export", {"notes.txt": b"ours"})  # a user's file still stops it
    assert run(root, "export", {f"{i}/c.webp": b"c" for i in range(2)}) == [f"{i}/c.webp" for i in range(2, 8)]
    assert read_owned(root) == {"export": ["0/c.webp", "1/c.webp"]}
    assert (root / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("tail", [b'["export", "half', b"\xff\xfe", b'{"not": "a line of ours"}', b'["export", 3]'])
def test_a_torn_or_foreign_intent_line_is_skipped(tmp_path, tail):
    root = tmp_path / "site"
    run(root, "export", {"a.txt": b"a"}, finish=False)
    with open(root / INTENT_LOG, "ab") as log:
        log.write(tail)
    assert run(root, "export", {}) == ["a.txt"]
    assert read_owned(root) == {"export": []}


def test_a_file_a_killed_run_meant_to_write_and_never_did_is_not_taken_for_ours(tmp_path):
    root = tmp_path / "site"
    run(root, "export", {"a.txt": b"a"})
    with open(root / INTENT_LOG, "a") as log:  # killed after logging never.txt, before writing it
        log.write(json.dumps(["export", "never.txt"]) + "\n")
    assert run(root, "export", {"a.txt": b"a"}) == []
    assert read_owned(root) == {"export": ["a.txt"]}
    (root / "never.txt").write_text("the user's, made later")
    with pytest.raises(AtlasgenError, match="never.txt is in the way"):
        run(root, "export", {"never.txt": b"ours"})


def test_stale_pages_are_pruned_before_the_images_they_show(tmp_path):
    root = tmp_path / "site"
    with output_folder(root) as folder:
        folder.stage("export").write("img/1.webp", b"i")
        folder.stage("site").write("page/1.html", b"<img src=../img/1.webp>")
        folder.finish()
    with output_folder(root) as folder:
        export, site = folder.stage("export"), folder.stage("site")
        assert folder.finish() == ["page/1.html", "img/1.webp"]
    assert read_owned(root) == {"export": [], "site": []}


def test_a_run_that_writes_nothing_new_logs_no_intent_and_rewrites_nothing(tmp_path, monkeypatch):
    root = tmp_path / "site"
    files = {f"{i}.txt": b"x" for i in range(100)}
    run(root, "export", files)
    monkeypatch.setattr(fs.IntentLog, "add", lambda *a: pytest.fail("a rebuild of the same files logged an intent"))
    writes = []
    real = fs.atomic_write
    monkeypatch.setattr(fs, "atomic_write", lambda path, data: writes.append(path) or real(path, data))
    assert run(root, "export", files) == []
    assert writes == [] and not (root / INTENT_LOG).exists()


# --- the output folder's lock ---------------------------------------------------------------------


def test_writers_of_one_folder_take_turns_and_keep_each_others_record(tmp_path):
    import threading

    root = tmp_path / "site"
    run(root, "export:a", {"a/1.txt": b"1"})
    said, entered = [], threading.Event()

    def second():
        with output_folder(root, log=said.append) as folder:
            entered.set()
            folder.stage("export:b").write("b/1.txt", b"1")
            folder.finish()

    with output_folder(root) as folder:
        folder.stage("export:a").write("a/2.txt", b"2")
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(1.0), "the second writer went in while the first held the folder"
        folder.finish()
    thread.join(30)
    assert entered.is_set() and said == [f"waiting for another atlasgen that writes into {root}"]
    assert read_owned(root) == {"export:a": ["a/2.txt"], "export:b": ["b/1.txt"]}
    assert (root / LOCK_FILE).is_file()


@pytest.mark.parametrize("name", [LOCK_FILE, INTENT_LOG])
def test_a_symlink_in_place_of_the_lock_or_the_intent_log_is_refused_not_followed(tmp_path, name):
    root = tmp_path / "site"
    run(root, "export", {"a.txt": b"a"})
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (root / name).unlink(missing_ok=True)
    (root / name).symlink_to(victim)
    with pytest.raises(AtlasgenError, match=f"{name} is a symlink; remove it") as caught:
        run(root, "export", {"a.txt": b"a", "new.txt": b"n"})
    assert "\n" not in str(caught.value)
    assert victim.read_text() == "keep me" and (root / name).is_symlink()


def test_a_folder_with_only_our_lock_file_counts_as_empty(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / LOCK_FILE).touch()  # a writer that took the lock and was killed before it wrote
    assert run(root, "site", {"index.html": b"ours"}) == []


def test_the_temp_files_a_killed_writer_left_are_removed_by_the_next_one(tmp_path):
    root = tmp_path / "site"
    run(root, "export", {"a/old.webp": b"o"})
    fs.IntentLog(root).add("export", ["a/new.webp"])  # killed mid-write: the intent, a temp, no file
    (root / "a" / f"{fs.TEMP_PREFIX}abc123").write_bytes(b"half")
    (root / f"{fs.TEMP_PREFIX}record").write_bytes(b"half a record")
    (root / "b").mkdir()
    (root / "b" / f"{fs.TEMP_PREFIX}kept").write_bytes(b"no run of ours was writing here")
    run(root, "export", {"a/old.webp": b"o", "a/new.webp": b"n"})
    assert sorted(p.name for p in (root / "a").iterdir()) == ["new.webp", "old.webp"]
    assert not (root / f"{fs.TEMP_PREFIX}record").exists() and not (root / INTENT_LOG).exists()
    assert (root / "b" / f"{fs.TEMP_PREFIX}kept").exists()  # a folder no killed run wrote into is left alone
