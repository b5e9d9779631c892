"""The one way atlasgen writes files: atomically, only when the bytes change, and only files it owns.

`atomic_write` is the primitive (temp file in the same folder, fsync, rename, fsync of the folder):
a reader sees the old file or the new one, never a part, and a kill at any moment leaves no torn
file. The store, the export and the site all write through it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path

from atlasgen.errors import AtlasgenError

TEMP_PREFIX = ".tmp-"
#: The record, in an output folder, of every file atlasgen wrote there, by stage.
OWNED_RECORD = ".atlasgen-files.json"
#: A line in a README.md that marks a folder as meant for atlasgen's output (the repository's site/).
OUTPUT_FOLDER_MARK = "<!-- atlasgen output folder -->"
MAX_RECORD_BYTES = 256 << 20


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of `path` if it is a regular file (never through a symlink, never a FIFO or a
    device) of at most `limit` bytes; OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(path: Path) -> None:
    """Makes a rename or a new name in `path` durable (git without this lost objects in crashes)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems cannot fsync a folder; the rename is still atomic
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def file_mode() -> int:
    """The mode a new file gets under the process's umask, as `open` would give it (0644 under 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def make_dirs(folder: Path) -> None:
    """Creates `folder` and its missing parents (mode 0777 less the umask), each made durable in its parent."""
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            continue  # another writer made it first
        fsync_dir(d.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Replaces `path` with `data`: temp file in the same folder, fsync, rename, fsync of the folder.

    Raises OSError; whatever was at `path` is untouched on failure, and the temp file is removed."""
    make_dirs(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        try:
            os.fchmod(fd, file_mode())  # mkstemp makes 0600; a file of ours gets what `open` would give
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def write_if_changed(path: Path, data: bytes, owner: str = "--out") -> bool:
    """Atomically writes `data` to `path` unless it already holds exactly that; True if written.

    `owner` names the option whose folder this is, for the one-line error."""
    if same_bytes(path, data):
        return False
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise AtlasgenError(f"cannot write {path} ({exc.strerror or exc}); check free space and permissions of {owner}") from None
    return True


def check_writable(folder: Path, option: str) -> None:
    """Fails early, in one line, when `folder` cannot be created or written."""
    try:
        make_dirs(folder)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AtlasgenError(f"{option} {folder} is not writable ({reason}); choose a folder you can write to") from None


def claim_folder(root: Path, force: bool, option: str = "--out", expected: frozenset[str] = frozenset()) -> None:
    """Refuses, in one line, a folder that is not empty and holds no atlas of ours, unless `force`:
    a first build must not mix its files with a user's. Names in `expected` (a stage's own input,
    such as the manifest that render reads) do not count."""
    if force or (root / OWNED_RECORD).is_file() and not (root / OWNED_RECORD).is_symlink():
        return
    try:
        with os.scandir(root) as entries:
            occupied = any(entry.name not in expected and not _marks_output_folder(entry) for entry in entries)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise AtlasgenError(f"{option} {root} is not a folder (a file stands in its path); choose a folder") from None
    except OSError as exc:
        raise AtlasgenError(f"{option} {root} cannot be read ({exc.strerror}); check its permissions") from None
    if occupied:
        raise AtlasgenError(
            f"{option} {root} is not empty and holds no atlas made by atlasgen; choose an empty or new folder, "
            f"or pass --force to write into it"
        )


def _marks_output_folder(entry: os.DirEntry) -> bool:
    """A README.md that says the folder is meant for atlasgen's output (never touched, never pruned)."""
    if entry.name != "README.md" or not entry.is_file(follow_symlinks=False):
        return False
    try:
        return OUTPUT_FOLDER_MARK in read_regular(Path(entry.path), 64 << 10).decode("utf-8", "replace")
    except OSError:
        return False


class OwnedFiles:
    """The files one stage (export, site) writes into an output folder, recorded so that a later run
    removes the ones it no longer writes, and never touches a file atlasgen did not write.

    Use: `write` every file, then `finish()`, which prunes this stage's stale files and saves the
    record. A run that fails before `finish` prunes nothing. Without `force`, it refuses a non-empty
    folder that holds no atlas of ours, and a file in the way that atlasgen did not write."""

    def __init__(self, root: Path, stage: str, force: bool = False, expected: frozenset[str] = frozenset(),
                 adopt: tuple[str, ...] = ()):
        claim_folder(root, force, expected=expected)
        self.root = root
        self.stage = stage
        self.force = force
        self.expected = expected
        self.record = read_owned(root)
        # Stages this one replaces (a record written by an older layout): their files become this stage's.
        for old in adopt:
            if old in self.record and old != stage:
                self.record[stage] = sorted(set(self.record.get(stage, [])) | set(self.record.pop(old)))
        self.owned = {p for paths in self.record.values() for p in paths}
        self.written: set[str] = set()

    def write(self, relative: str, data: bytes) -> bool:
        path = self.root / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise AtlasgenError(f"refusing to write {relative!r}: it is outside {self.root}; rebuild the atlas")
        if not _inside(self.root, path.parent):
            raise AtlasgenError(
                f"refusing to write {path}: a symlink in it leads outside {self.root}; remove the link or choose another --out"
            )
        if not self.force and relative not in self.owned and relative not in self.expected and os.path.lexists(path):
            raise AtlasgenError(f"{path} is in the way and was not written by atlasgen; move it, or pass --force to replace it")
        self.written.add(relative)
        return write_if_changed(path, data)

    def finish(self) -> list[str]:
        """Removes what this stage wrote before and not now (unless another stage still owns it);
        returns the removed paths, relative to the root."""
        before = set(self.record.get(self.stage, []))
        others = {p for stage, paths in self.record.items() if stage != self.stage for p in paths}
        removed = []
        for relative in sorted(before - self.written - others):
            path = self.root / relative
            if _inside(self.root, path) and path.is_file() and not path.is_symlink():
                try:
                    path.unlink()
                except OSError as exc:
                    raise AtlasgenError(f"cannot remove the stale file {path} ({exc.strerror}); check permissions of --out") from None
                removed.append(relative)
                _remove_empty_parents(self.root, path.parent)
        self.record[self.stage] = sorted(self.written)
        write_if_changed(self.root / OWNED_RECORD, (json.dumps(self.record, indent=1, sort_keys=True) + "\n").encode())
        return removed


def read_owned(root: Path) -> dict[str, list[str]]:
    """The record of what atlasgen wrote into `root`, by stage; empty when there is none, it is not a
    regular file, or it is damaged (a damaged record then prunes nothing, which is the safe side)."""
    try:
        record = json.loads(read_regular(root / OWNED_RECORD, MAX_RECORD_BYTES))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {
        stage: [p for p in paths if isinstance(p, str)]
        for stage, paths in record.items()
        if isinstance(stage, str) and isinstance(paths, list)
    }


def _inside(root: Path, path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def _remove_empty_parents(root: Path, folder: Path) -> None:
    root = root.resolve()
    while folder.resolve() != root and _inside(root, folder):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
