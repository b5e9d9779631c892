"""atlasgen.fs: atomic writes, writes only on change, early writability checks, and owned-file pruning."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from atlasgen import fs
from atlasgen.errors import AtlasgenError
from atlasgen.fs import OWNED_RECORD, OwnedFiles, atomic_write, check_writable, read_owned, write_if_changed


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
    owned = OwnedFiles(root, stage, force)
    for relative, data in files.items():
        owned.write(relative, data)
    return owned.finish() if finish else None


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
    owned = OwnedFiles(root, "export")
    for bad in ("../escaped.txt", "a/../../escaped.txt", str(tmp_path / "abs.txt")):
        with pytest.raises(AtlasgenError, match="outside"):
            owned.write(bad, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_non_empty_folder_without_our_record_is_refused_unless_forced(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("the user's own page")
    with pytest.raises(AtlasgenError, match="not empty and holds no atlas made by atlasgen.*--force"):
        OwnedFiles(root, "site")
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
        OwnedFiles(other, "site")
