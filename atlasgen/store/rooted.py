"""File I/O rooted at the store's root that never follows a symlink below it.

Every function takes the store's `root` and a path inside it. The root itself may be a symlink (the
user chose it); below it, a symlink is never followed when reading and never written through: a
symlinked folder on the way to a write is refused with a StoreError, and a symlink, FIFO or device
where a file should be reads as absent. Writes go through `atlasgen.fs.atomic_write`, the one atomic
writer of atlasgen, so a reader sees either nothing or the whole file. Every OSError leaves here as
a one-line StoreError naming the path and the fix.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from pathlib import Path

from atlasgen.fs import atomic_write, fsync_dir, make_dirs
from atlasgen.store.layout import QUARANTINE_FOLDER, StoreError

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What opening a path without following symlinks answers when nothing of ours is there.
_NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EMLINK})


class TooLarge(Exception):
    """A file is larger than the cap its reader allows (callers treat it as corrupt)."""


def open_regular(root: Path, path: Path) -> int | None:
    """A read-only descriptor of `path` (inside the store), or None if it is absent, is not a
    regular file, or it or any folder between the root and it is a symlink (never followed).
    The root itself may be a symlink: the user chose it."""
    parts = path.relative_to(root).parts
    folder = None
    try:
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for name in parts[:-1]:
            sub = os.open(name, _DIR_FLAGS, dir_fd=folder)
            os.close(folder)
            folder = sub
        if not stat.S_ISREG(os.stat(parts[-1], dir_fd=folder, follow_symlinks=False).st_mode):
            return None  # never open a FIFO or a device
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
    except OSError as e:
        if e.errno in _NOT_THERE:
            return None
        raise StoreError(f"cannot read {path} ({e.strerror or e}); check its permissions and the disk") from None
    finally:
        if folder is not None:
            os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def regular_size(root: Path, path: Path) -> int | None:
    """The size of the regular file `path`, None if absent or not one (see `open_regular`)."""
    fd = open_regular(root, path)
    if fd is None:
        return None
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_capped(root: Path, path: Path, limit: int) -> bytes | None:
    """The bytes of the regular file `path`, None if absent or not one (see `open_regular`);
    raises TooLarge beyond `limit` bytes."""
    fd = open_regular(root, path)
    if fd is None:
        return None
    try:
        if os.fstat(fd).st_size > limit:
            raise TooLarge(path)
        chunks, total = [], 0
        while chunk := os.read(fd, min(_CHUNK, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise TooLarge(path)  # it grew while we read
    except OSError as e:
        raise StoreError(f"cannot read {path} ({e.strerror or e}); check its permissions and the disk") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def hash_fd(fd: int, path: Path) -> str:
    """The sha256 hex of what `fd` (opened from `path`) holds, read in chunks (any size, little memory)."""
    h = hashlib.sha256()
    try:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
    except OSError as e:
        raise StoreError(f"cannot read {path} ({e.strerror or e}); check its permissions and the disk") from None
    return h.hexdigest()


def check_real_dirs(root: Path, folder: Path) -> None:
    """Refuses to write into `folder` if it or a folder between the root and it is a symlink or
    not a folder (the root itself may be a symlink). Missing ones are fine: we create them."""
    here = root
    for name in folder.relative_to(root).parts:
        here = here / name
        try:
            info = os.lstat(here)
        except FileNotFoundError:
            return
        except OSError as e:
            raise write_error(root, e, here) from e
        if stat.S_ISLNK(info.st_mode):
            raise StoreError(f"{here} is a symlink; atlasgen never writes through a symlink in the store: "
                             f"remove it and run again")
        if not stat.S_ISDIR(info.st_mode):
            raise StoreError(f"{here} is not a folder; move it out of the store {root} and run again")


def make_store_dirs(root: Path, folder: Path) -> None:
    """Creates `folder` and its missing parents (see `atlasgen.fs.make_dirs`)."""
    try:
        make_dirs(folder)
    except OSError as e:
        raise write_error(root, e, folder) from e


def write_atomically(root: Path, path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a part. Two writers of the same content
    both succeed. On failure whatever was at `path` is untouched. Never writes through a
    symlinked folder in the store."""
    check_real_dirs(root, path.parent)
    try:
        atomic_write(path, data)
    except OSError as e:
        raise write_error(root, e, path) from e


def quarantine(root: Path, path: Path, expect: os.stat_result | None = None) -> str | None:
    """Moves `path` to the same relative place under quarantine/, with a unique suffix; returns
    its path relative to the root. With `expect`, moves it only if it is still that file (same
    device and inode) and returns None otherwise; None too if it is gone."""
    rel = path.relative_to(root)
    if expect is not None:
        try:
            now = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise write_error(root, e, path) from None
        if (now.st_dev, now.st_ino) != (expect.st_dev, expect.st_ino):
            return None
    dest = root / QUARANTINE_FOLDER / rel.parent / f"{rel.name}.{time.time_ns()}"
    check_real_dirs(root, dest.parent)
    make_store_dirs(root, dest.parent)
    try:
        os.replace(path, dest)
        fsync_dir(path.parent)
    except FileNotFoundError:
        if not os.path.lexists(path):
            return None
        raise StoreError(f"cannot move {path} into {dest.parent}; check the store {root}") from None
    except OSError as e:
        raise write_error(root, e, path) from e
    return rel.as_posix()


def remove(root: Path, path: Path) -> None:
    """Removes the file `path` (a symlink itself, never its target); gone already is fine."""
    try:
        path.unlink(missing_ok=True)  # unlink never follows a symlink
    except OSError as e:
        raise write_error(root, e, path) from e


def write_error(root: Path, e: OSError, path: Path) -> StoreError:
    """The one-line StoreError for `e`, met while changing `path` in the store at `root`."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"no space left on the device while writing {path}; free some space or "
                          f"move the store {root} to a larger disk")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreError(f"cannot write {path} ({e.strerror}); make {root} writable or "
                          f"choose another store directory")
    return StoreError(f"cannot write {path} ({e.strerror or e}); check the disk and the store {root}")
