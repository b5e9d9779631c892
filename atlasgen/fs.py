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
import tempfile
from pathlib import Path

from atlasgen.errors import AtlasgenError

FILE_MODE = 0o644
DIR_MODE = 0o755
TEMP_PREFIX = ".tmp-"
#: The record, in an output folder, of every file atlasgen wrote there, by stage.
OWNED_RECORD = ".atlasgen-files.json"


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


def make_dirs(folder: Path) -> None:
    """Creates `folder` and its missing parents with mode 0755, each made durable in its parent."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue  # another writer made it first
        os.chmod(d, DIR_MODE)  # mkdir obeys the umask
        fsync_dir(d.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Replaces `path` with `data`: temp file in the same folder, fsync, rename, fsync of the folder.

    Raises OSError; whatever was at `path` is untouched on failure, and the temp file is removed."""
    make_dirs(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        try:
            os.fchmod(fd, FILE_MODE)
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


class OwnedFiles:
    """The files one stage (export, site) writes into an output folder, recorded so that a later run
    removes the ones it no longer writes, and never touches a file atlasgen did not write.

    Use: `write` every file, then `finish()`, which prunes this stage's stale files and saves the
    record. A run that fails before `finish` prunes nothing."""

    def __init__(self, root: Path, stage: str):
        self.root = root
        self.stage = stage
        self.record = read_owned(root)
        self.written: set[str] = set()

    def write(self, relative: str, data: bytes) -> bool:
        path = self.root / relative
        if Path(relative).is_absolute() or not _inside(self.root, path.parent):
            raise AtlasgenError(f"refusing to write {relative!r}: it is outside {self.root}; rebuild the atlas")
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
    """The record of what atlasgen wrote into `root`, by stage; empty when there is none or it is damaged
    (a damaged record then prunes nothing, which is the safe side)."""
    try:
        record = json.loads((root / OWNED_RECORD).read_text())
    except (OSError, ValueError):
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
