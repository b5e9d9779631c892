"""The one way atlasgen writes files: atomically, only when the bytes change, and only files it owns.

`atomic_write` is the primitive (temp file in the same folder, fsync, rename, fsync of the folder):
a reader sees the old file or the new one, never a part, and a kill at any moment leaves no torn
file. The store, the export and the site all write through it.

In an output folder (`output_folder`), writers take turns under `.atlasgen-lock`, and every file is
recorded before it is written (`.atlasgen-intent`, folded into `.atlasgen-files.json` when the
writer finishes), so a killed writer leaves nothing the next one takes for a user's file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from atlasgen.errors import AtlasgenError

TEMP_PREFIX = ".tmp-"
#: The record, in an output folder, of every file atlasgen wrote there, by stage.
OWNED_RECORD = ".atlasgen-files.json"
#: Beside it, the files a writer is about to create (a killed run's are read as part of the record).
INTENT_LOG = ".atlasgen-intent"
#: The lock every writer of an output folder holds while it writes (builds and renders take turns).
LOCK_FILE = ".atlasgen-lock"
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
    such as the manifest that render reads) do not count. A folder with our record, or with the
    intent log of a first build that was killed before its record was written, is ours."""
    if force or any(_regular(root / name) for name in (OWNED_RECORD, INTENT_LOG)):
        return
    try:
        with os.scandir(root) as entries:
            occupied = any(entry.name not in expected and entry.name != LOCK_FILE and not _marks_output_folder(entry)
                           for entry in entries)
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


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _marks_output_folder(entry: os.DirEntry) -> bool:
    """A README.md that says the folder is meant for atlasgen's output (never touched, never pruned)."""
    if entry.name != "README.md" or not entry.is_file(follow_symlinks=False):
        return False
    try:
        return OUTPUT_FOLDER_MARK in read_regular(Path(entry.path), 64 << 10).decode("utf-8", "replace")
    except OSError:
        return False


# --- the output folder: one writer at a time, every file recorded before it is written -------------


@contextlib.contextmanager
def output_folder(root: Path, force: bool = False, expected: frozenset[str] = frozenset(),
                  log: Callable[[str], None] | None = None) -> Iterator[OutputFolder]:
    """Holds the lock of the output folder `root` (waiting for another writer, said through `log`)
    and yields its `OutputFolder`. Nothing is pruned and the record is kept unless `finish()` runs.

    The folder is claimed (`claim_folder`) before the lock file is made, so a folder of the user's
    never gets one, and again under the lock."""
    claim_folder(root, force, expected=expected)
    with hold_lock(root, log):
        folder = OutputFolder(root, force, expected, log)
        try:
            yield folder
        finally:
            folder.intents.close()


@contextlib.contextmanager
def hold_lock(root: Path, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """An exclusive `flock` on `<root>/.atlasgen-lock` while the block runs (as the store's lock, but
    writers of an output folder take turns: each reads the record, writes, prunes and saves it)."""
    make_dirs(root)
    path = root / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise AtlasgenError(f"the lock file {path} is a symlink; remove it (atlasgen makes a regular file there)") from None
        raise AtlasgenError(f"cannot open the lock file {path} ({exc.strerror or exc}); remove whatever is there "
                            f"and check the permissions of --out") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AtlasgenError(f"the lock file {path} is not a regular file; remove it (atlasgen makes a regular file there)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log:
                log(f"waiting for another atlasgen that writes into {root}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise AtlasgenError(f"cannot lock {path} ({exc.strerror or exc}); --out must be on a filesystem with "
                                f"flock support: choose a folder on a local disk") from None
        yield
    finally:
        os.close(fd)  # releases the lock


class IntentLog:
    """`<root>/.atlasgen-intent`: every file a writer is about to create, one JSON line `[stage, path]`,
    appended and fsynced before the files are written. A run that is killed leaves it behind, and the
    next one reads it as part of the record; a finished run folds it into the record and removes it."""

    def __init__(self, root: Path):
        self.root, self.path = root, root / INTENT_LOG
        self.fd: int | None = None

    def read(self) -> list[tuple[str, str]]:
        """The (stage, path) lines of a killed run; a torn last line (the run killed mid-append, before
        it wrote that batch) and anything that is not a line of ours are skipped."""
        try:
            data = read_regular(self.path, MAX_RECORD_BYTES)
        except OSError:
            return []
        entries = []
        for line in data.splitlines():
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry):
                entries.append((entry[0], entry[1]))
        return entries

    def add(self, stage: str, paths: list[str]) -> None:
        """Appends the lines and makes them durable: only then may the files be written."""
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                                  0o666)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EMLINK):
                    raise AtlasgenError(f"{self.path} is a symlink; remove it (atlasgen makes a regular file there)") from None
                raise AtlasgenError(f"cannot open {self.path} ({exc.strerror or exc}); remove whatever is there "
                                    f"(atlasgen makes a regular file) and check the permissions of --out") from None
            if not stat.S_ISREG(os.fstat(self.fd).st_mode):
                raise AtlasgenError(f"{self.path} is not a regular file; remove it (atlasgen makes a regular file there)")
            fsync_dir(self.root)
        try:
            write_all(self.fd, b"".join(json.dumps([stage, p]).encode() + b"\n" for p in paths))
            os.fsync(self.fd)
        except OSError as exc:
            raise AtlasgenError(f"cannot write {self.path} ({exc.strerror or exc}); check free space and "
                                f"permissions of --out") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def clear(self) -> None:
        """Removes the log, once the record holds every file in it."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            if _regular(self.path):
                self.path.unlink()
                fsync_dir(self.root)


class OutputFolder:
    """The files atlasgen wrote into an output folder, by stage (`.atlasgen-files.json`, with the
    intent log of a killed run folded in), while one writer holds the folder's lock (`output_folder`).

    Each stage (`stage(name)`) writes its files; `finish()` then prunes, stage by stage (the last
    first, so pages go before the images they show), what a stage wrote before and no stage writes
    now, and saves the record. A file is recorded in the intent log before it is first written, so
    a kill at any moment leaves nothing of ours unrecorded."""

    def __init__(self, root: Path, force: bool = False, expected: frozenset[str] = frozenset(),
                 log: Callable[[str], None] | None = None):
        claim_folder(root, force, expected=expected)
        self.root, self.force, self.expected, self.log = root, force, expected, log
        self.intents = IntentLog(root)
        self.record = {stage: set(paths) for stage, paths in read_owned(root).items()}
        killed = self.intents.read()
        for stage, path in killed:
            # A killed run's file: ours if it is there (one it never wrote is no one's to prune).
            if os.path.lexists(root / path):
                self.record.setdefault(stage, set()).add(path)
        # Where a killed run may have left a temp file mid-write (its folders, and the record's own).
        self.killed_folders = {str(Path(path).parent) for _, path in killed} | ({"."} if killed else set())
        self.owned = {p for paths in self.record.values() for p in paths}
        self.stages: dict[str, OwnedFiles] = {}

    def stage(self, name: str, adopt: tuple[str, ...] = ()) -> OwnedFiles:
        """The writer of one stage. Stages in `adopt` (a record of an older layout) become this one."""
        for old in adopt:
            if old in self.record and old != name:
                self.record[name] = self.record.get(name, set()) | self.record.pop(old)
        self.stages[name] = OwnedFiles(self, name)
        return self.stages[name]

    def finish(self) -> list[str]:
        """Writes what is pending, removes every stage's stale files (never one another stage still
        owns; "prune: N/M stale files" through `log`) and saves the record; returns the removed
        paths, relative to the root."""
        for stage in self.stages.values():
            stage.flush()
        now = {**self.record, **{name: stage.written for name, stage in self.stages.items()}}
        stale = []
        for name in reversed(self.stages):
            others = set().union(*(paths for stage, paths in now.items() if stage != name))
            stale += sorted(self.record.get(name, set()) - now[name] - others)
        tick = progress_lines(self.log, "prune", len(stale), "stale files")
        removed = []
        for relative in stale:
            if self._remove(relative):
                removed.append(relative)
            tick()
        self.record = now
        document = {stage: sorted(paths) for stage, paths in sorted(now.items())}
        write_if_changed(self.root / OWNED_RECORD, (json.dumps(document, indent=1) + "\n").encode())
        self._remove_stale_temps()
        self.intents.clear()
        return removed

    def _remove_stale_temps(self) -> None:
        """The temp files a killed writer left in the folders it was writing (under the lock no other
        writer has one open): a published site must not carry them."""
        for relative in sorted(self.killed_folders):
            folder = self.root / relative
            if not (_inside(self.root, folder) and folder.is_dir() and not folder.is_symlink()):
                continue
            with os.scandir(folder) as entries:
                stale = [e.path for e in entries if e.name.startswith(TEMP_PREFIX) and e.is_file(follow_symlinks=False)]
            for path in stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _remove(self, relative: str) -> bool:
        path = self.root / relative
        if not (_inside(self.root, path) and path.is_file() and not path.is_symlink()):
            return False
        try:
            path.unlink()
        except OSError as exc:
            raise AtlasgenError(f"cannot remove the stale file {path} ({exc.strerror}); check permissions of --out") from None
        _remove_empty_parents(self.root, path.parent)
        return True


class OwnedFiles:
    """The files one stage (an atlas's export, the site) writes into an output folder, through its
    `OutputFolder`. Without `force`, a file in the way that atlasgen did not write is refused.

    Writes are queued and made in order, a batch at a time: the batch's new paths are appended to
    the intent log (one fsync), then each file is written atomically, only if its bytes change."""

    BATCH_FILES = 64
    BATCH_BYTES = 16 << 20

    def __init__(self, folder: OutputFolder, name: str):
        self.folder, self.root, self.name = folder, folder.root, name
        self.written: set[str] = set()
        self.pending: list[tuple[str, bytes]] = []
        self.pending_bytes = 0

    def write(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise AtlasgenError(f"refusing to write {relative!r}: it is outside {self.root}; rebuild the atlas")
        if not _inside(self.root, path.parent):
            raise AtlasgenError(
                f"refusing to write {path}: a symlink in it leads outside {self.root}; remove the link or choose another --out"
            )
        folder = self.folder
        if not folder.force and relative not in folder.owned and relative not in folder.expected and os.path.lexists(path):
            raise AtlasgenError(f"{path} is in the way and was not written by atlasgen; move it, or pass --force to replace it")
        self.written.add(relative)
        self.pending.append((relative, data))
        self.pending_bytes += len(data)
        if len(self.pending) >= self.BATCH_FILES or self.pending_bytes >= self.BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Writes the queued files: first the intent of the new ones, then the files, in order."""
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        new = list(dict.fromkeys(relative for relative, _ in pending if relative not in self.folder.owned))
        if new:
            self.folder.intents.add(self.name, new)
            self.folder.owned.update(new)
        for relative, data in pending:
            write_if_changed(self.root / relative, data)


def progress_lines(log: Callable[[str], None] | None, stage: str, total: int, unit: str) -> Callable:
    """A function a writer of an output folder calls on each of `total` items (an export's filters,
    the site's pages): it passes the item through, and every tenth of the way and at the end says
    "<stage>: N/M <unit>" through `log`, so that a log, or a test, can follow the writing."""
    step, done = max(1, -(-total // 10)), 0

    def tick(item=None):
        nonlocal done
        done += 1
        if log is not None and (done % step == 0 or done == total):
            log(f"{stage}: {done}/{total} {unit}")
        return item

    return tick


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
