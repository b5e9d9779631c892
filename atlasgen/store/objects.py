"""A content-addressed store for atlas artifacts, in the manner of git's object store.

Layout under the store's root::

    blobs/ab/cdef…          a blob, named by the sha256 of its bytes (first two hex digits fan out)
    index/ab/<key>.json     an index entry: which blobs make up the artifact whose recipe hashes to <key>
    quarantine/…            what `verify` found corrupt, moved aside (never deleted)
    lock                    the advisory lock (`Store.lock`): shared for builds, exclusive for gc and verify

An artifact's *key* is `recipe_key(recipe)`, the sha256 of its recipe in canonical JSON, so the same
recipe always finds the same entry and any change to the recipe (or to the algorithm version the
plan puts inside it) makes a new one. Every file is written to a temp file in its own folder and renamed into place, so a
reader sees either nothing or the whole file; reads of blobs are verified against their hash.

The store only ever reads, moves or removes what is its own: real folders named by two hex digits
directly under blobs/ and index/, and in them real regular files named like a blob, an index entry or
one of our temp files. It never follows a symlink below the root, never writes through one, and
leaves anything else alone (`verify` and `gc` list it as skipped).

Writes go through `atlasgen.fs.atomic_write`, the one atomic writer of atlasgen.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from atlasgen.errors import AtlasgenError
from atlasgen.fs import TEMP_PREFIX, atomic_write, fsync_dir, make_dirs

#: Temp files older than this are leftovers of a killed writer, and `gc` may remove them.
STALE_TEMP_SECONDS = 3600
#: `gc` keeps an unreferenced blob younger than this (a build puts blobs before the entry naming them).
DEFAULT_GRACE_SECONDS = 3600
#: An index entry file larger than this is corrupt (real ones are a few KiB).
MAX_ENTRY_BYTES = 1 << 20
#: No blob may be larger than this; `put_blob` refuses, and a larger file in the store is corrupt.
MAX_BLOB_BYTES = 1 << 30
#: The name of the lock file under the store's root.
LOCK_NAME = "lock"
_HEX = frozenset("0123456789abcdef")
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What opening a path without following symlinks answers when nothing of ours is there.
_NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EMLINK})


class StoreError(AtlasgenError):
    """The store cannot be read or written (permissions, full disk, …); one line naming path and fix."""


class CorruptBlob(StoreError):
    """A blob's bytes no longer hash to its name."""


class MissingBlob(StoreError):
    """No blob with that digest is stored."""


class StoreBusy(StoreError):
    """`Store.lock(..., wait=False)` found the lock held by another process."""


class _TooLarge(Exception):
    """A file is larger than the cap its reader allows (internal: callers treat it as corrupt)."""


@dataclass(frozen=True)
class BlobRef:
    """One named part of an artifact: the sha256 of its bytes and its length."""

    digest: str
    size: int


@dataclass(frozen=True)
class Entry:
    """An index entry: the artifact with recipe key `key` is made of `blobs` (name -> BlobRef).

    `meta` is free JSON the builder wants to keep (shapes, losses, …); `created` is ISO 8601 UTC."""

    key: str
    blobs: dict[str, BlobRef]
    meta: dict
    created: str


@dataclass
class VerifyReport:
    """What `Store.verify` checked and what it moved into quarantine (paths relative to the root).

    Temp files are listed but are not corruption: a killed writer leaves them and `gc` clears them.
    `skipped` lists what is not the store's own (symlinks, other names, nested or unreadable
    folders, special files) as "<path relative to the root> (<reason>)": never read, moved or removed,
    and not corruption either."""

    blobs_checked: int = 0
    entries_checked: int = 0
    quarantined_blobs: list[str] = field(default_factory=list)
    quarantined_entries: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.quarantined_blobs and not self.quarantined_entries


@dataclass
class GcReport:
    """What `Store.gc` removed (or, with dry_run, would remove).

    `removed`: digests of unreferenced blobs removed; `kept_young`: how many unreferenced blobs were
    kept because they are younger than the grace period; `temp_files`: stale temp files removed
    (paths relative to the root); `skipped`: what is not the store's own, as in `VerifyReport`."""

    removed: list[str] = field(default_factory=list)
    kept_young: int = 0
    temp_files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass
class _Scan:
    """What `Store._files` found under blobs/ or index/."""

    files: list[Path] = field(default_factory=list)  # blobs or index entries, by their names
    temps: list[Path] = field(default_factory=list)  # our temp files
    skipped: list[str] = field(default_factory=list)  # "<relative path> (<reason>)"
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # folders that could not be listed


def recipe_key(recipe: dict) -> str:
    """The sha256 hex of `recipe` as canonical JSON (sorted keys, no spaces, ASCII only).

    A recipe must hold only JSON values: dicts with str keys, lists, str, int, finite float, bool,
    None. Anything else raises TypeError or ValueError rather than hashing something ambiguous (json
    would turn an int key 1 into "1", colliding with a real "1"). Tuples hash as lists."""
    _check_json(recipe)
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _check_json(value, where: str = "recipe") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string key {k!r}; JSON keys must be strings")
            _check_json(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise TypeError(f"{where} is a {type(value).__name__}, not a JSON value")


def _is_hex(s, length: int) -> bool:
    return isinstance(s, str) and len(s) == length and set(s) <= _HEX


def _is_digest(s) -> bool:
    return _is_hex(s, 64)


def _require_digest(s, what: str) -> None:
    # Also keeps a hostile name like "../x" from escaping the store.
    if not _is_digest(s):
        raise ValueError(f"{what} must be 64 lower-case hex digits, got {s!r}")


def _is_blob_name(folder: str, name: str) -> bool:
    return _is_hex(name, 62)


def _is_entry_name(folder: str, name: str) -> bool:
    key = name.removesuffix(".json")
    return name.endswith(".json") and _is_digest(key) and key[:2] == folder


class Store:
    """A content-addressed store rooted at `root`. Nothing is created until the first write."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.index_dir = self.root / "index"
        self.quarantine_dir = self.root / "quarantine"
        self.lock_path = self.root / LOCK_NAME

    # ---- paths -------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        _require_digest(digest, "blob digest")
        return self.blobs_dir / digest[:2] / digest[2:]

    def entry_path(self, key: str) -> Path:
        _require_digest(key, "recipe key")
        return self.index_dir / key[:2] / f"{key}.json"

    # ---- the lock ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, shared: bool, wait: bool = True) -> Iterator[Store]:
        """Holds the store's advisory lock (`fcntl.flock` on `<root>/lock`) while the block runs.

        `shared=True` for builders (several may write at once), `shared=False` (exclusive) for `gc`
        and `verify`, which must not run while a build writes. With `wait=False` a busy lock raises
        `StoreBusy` at once instead of waiting. Creates the root (if missing) and the lock file;
        refuses a symlink or anything but a regular file at `<root>/lock`. The lock belongs to this
        open file, so a second `lock()` in the same process conflicts with the first like another
        process would (never nest an exclusive lock inside a shared one with `wait=True`).

        Usage::

            with store.lock(shared=False, wait=False):
                report = store.gc()
        """
        fd = self._open_lock()
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                if shared:
                    raise StoreBusy(f"the store {self.root} is locked by a running gc or verify; "
                                    f"run this again when it has finished, or pass --wait") from None
                raise StoreBusy(f"the store {self.root} is in use by a running build (or gc or verify); "
                                f"run this again when it has finished, or pass --wait") from None
            except OSError as e:
                raise StoreError(f"cannot lock {self.lock_path} ({e.strerror or e}); the store must be on a "
                                 f"filesystem with flock support: move it to a local disk") from None
            yield self
        finally:
            os.close(fd)  # releases the lock

    def _open_lock(self) -> int:
        path = self.lock_path
        self._mkdirs(self.root)
        fd = None
        for flags in (os.O_RDWR | os.O_CREAT | os.O_EXCL, os.O_RDWR, os.O_RDONLY):
            try:
                fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
                break
            except FileExistsError:
                continue  # there already: open it without creating (O_EXCL also refuses a symlink)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.EMLINK):
                    raise StoreError(f"the lock file {path} is a symlink; remove it (atlasgen makes a regular "
                                     f"file there)") from None
                if e.errno in (errno.EACCES, errno.EROFS) and flags == os.O_RDWR:
                    continue  # a read-only store: a shared or exclusive flock works on a read-only file too
                if e.errno == errno.EISDIR:
                    break
                raise StoreError(f"cannot open the lock file {path} ({e.strerror or e}); make {self.root} "
                                 f"writable or choose another store directory") from None
        if fd is not None and stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        if fd is not None:
            os.close(fd)
        raise StoreError(f"the lock file {path} is not a regular file; move it out of the store and run again")

    # ---- blobs -------------------------------------------------------------------------------

    def put_blob(self, data: bytes) -> str:
        """Stores `data` and returns its sha256 hex. A present, intact copy is left alone (its mtime
        is refreshed, so `gc` counts it as young); a corrupt one, or a symlink in its place, is
        replaced. Data larger than MAX_BLOB_BYTES is refused with a StoreError."""
        if len(data) > MAX_BLOB_BYTES:
            raise StoreError(f"an artifact part of {len(data)} bytes is larger than the store's limit of "
                             f"{MAX_BLOB_BYTES} bytes; build with a smaller --size")
        digest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        with contextlib.suppress(StoreError):
            if self._blob_intact(path, digest, freshen=True):
                return digest
        self._atomic_write(path, data)
        return digest

    def get_blob(self, digest: str) -> bytes:
        """The bytes of blob `digest`, re-hashed on read. Raises MissingBlob or CorruptBlob.
        A symlink or anything but a regular file in its place counts as missing."""
        path = self.blob_path(digest)
        try:
            data = self._read(path, MAX_BLOB_BYTES)
        except _TooLarge:
            data = b""  # larger than put_blob allows: cannot match its hash
        if data is None:
            raise MissingBlob(f"blob {digest} is missing from {path}; rebuild the artifacts that need it")
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlob(f"blob {path} does not match its hash; run verify to quarantine it, then rebuild")
        return data

    def _blob_intact(self, path: Path, digest: str, freshen: bool = False) -> bool:
        """Whether `path` is a regular file whose bytes hash to `digest`; if so and `freshen`, its
        mtime is set to now (on the open file, never through a symlink)."""
        fd = self._open_regular(path)
        if fd is None:
            return False
        try:
            if self._hash_fd(fd, path) != digest:
                return False
            if freshen:
                with contextlib.suppress(OSError):
                    os.utime(fd)
            return True
        finally:
            os.close(fd)

    # ---- entries -----------------------------------------------------------------------------

    def put(self, key: str, blobs: dict[str, bytes], meta: dict) -> Entry:
        """Stores each blob, then the index entry for `key` (blobs first, so an entry never names
        a blob that is not there yet). Replaces any earlier entry for `key`."""
        path = self.entry_path(key)
        if not all(isinstance(name, str) for name in blobs):
            raise TypeError("blob names must be strings")
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        refs = {name: BlobRef(hashlib.sha256(data).hexdigest(), len(data)) for name, data in blobs.items()}
        doc = {
            "key": key,
            "blobs": {name: {"digest": r.digest, "size": r.size} for name, r in refs.items()},
            "meta": meta,
            "created": created,
        }
        # Serialise before writing anything: bad meta must not leave orphan blobs behind.
        _check_json(meta, "meta")
        text = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
        for data in blobs.values():
            self.put_blob(data)
        self._atomic_write(path, text.encode("ascii"))
        return Entry(key, refs, meta, created)

    def get(self, key: str) -> Entry | None:
        """The entry for `key`, or None if there is none or it is unusable (not a regular file,
        larger than MAX_ENTRY_BYTES, unparseable or nested too deep, names another key, or a blob is
        missing, not a regular file or the wrong size); the caller then rebuilds it.
        Blob contents are verified by `get_blob`, `missing(deep=True)` and `verify`, not here."""
        entry = self._read_entry(self.entry_path(key), key)
        if entry is None:
            return None
        for ref in entry.blobs.values():
            if self._regular_size(self.blob_path(ref.digest)) != ref.size:
                return None
        return entry

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def missing(self, keys, deep: bool = False) -> list[str]:
        """The keys (in the given order) that have no usable entry: the work a build still has to do.

        With `deep=True` every blob of every present entry is also re-hashed (each distinct digest
        once); a blob that does not match its hash is moved into quarantine, as `verify` does, and
        every key whose entry needs it counts as missing, so the next build recomputes it. Hold the
        lock (shared is enough) while calling it with `deep=True`."""
        keys = list(keys)
        entries = {key: self.get(key) for key in keys}
        bad: set[str] = set()
        if deep:
            digests = dict.fromkeys(r.digest for e in entries.values() if e is not None for r in e.blobs.values())
            bad = {digest for digest in digests if not self._check_blob(digest)}
        return [k for k in keys if entries[k] is None or any(r.digest in bad for r in entries[k].blobs.values())]

    def _check_blob(self, digest: str) -> bool:
        """Whether blob `digest` is present and intact; a corrupt one is moved into quarantine."""
        path = self.blob_path(digest)
        for _ in range(3):  # a writer may replace a corrupt copy with a good one while we look
            fd = self._open_regular(path)
            if fd is None:
                return False
            try:
                info = os.fstat(fd)
                if self._hash_fd(fd, path) == digest:
                    return True
            finally:
                os.close(fd)
            if self._quarantine(path, expect=info) is not None:
                return False
        return False

    def _read_entry(self, path: Path, key: str) -> Entry | None:
        """The entry in the file `path` if it is a regular file, at most MAX_ENTRY_BYTES, well-formed
        and names `key`; else None (absent and corrupt alike)."""
        try:
            raw = self._read(path, MAX_ENTRY_BYTES)
        except _TooLarge:
            return None
        return None if raw is None else _parse_entry(raw, key)

    # ---- maintenance -------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Re-hashes every blob and checks every index entry; moves the corrupt ones (blobs that do
        not match their name, entries that are too large, do not parse, name another key, or need a
        missing or corrupt blob) into quarantine/. What is not the store's own is left alone and
        listed in `skipped`, as are folders that cannot be read.

        Does not lock: the caller must hold `lock(shared=False)` so that no build writes meanwhile."""
        report = VerifyReport()
        good: dict[str, int] = {}  # digest -> size of every intact blob
        blobs = self._files(self.blobs_dir, _is_blob_name)
        entries = self._files(self.index_dir, _is_entry_name)
        report.temp_files = [self._rel(p) for p in blobs.temps + entries.temps]
        report.skipped = blobs.skipped + entries.skipped
        for path in blobs.files:
            digest = path.parent.name + path.name
            fd = self._open_regular(path)
            if fd is None:
                continue  # gone (or replaced by something not ours) since the scan
            report.blobs_checked += 1
            try:
                info = os.fstat(fd)
                intact = self._hash_fd(fd, path) == digest
            finally:
                os.close(fd)
            if intact:
                good[digest] = info.st_size
            else:
                moved = self._quarantine(path, expect=info)
                if moved is not None:
                    report.quarantined_blobs.append(moved)
        for path in entries.files:
            present, entry = self._entry_at(path)
            if not present:
                continue  # gone since the scan
            report.entries_checked += 1
            if entry is None or any(good.get(r.digest) != r.size for r in entry.blobs.values()):
                moved = self._quarantine(path)
                if moved is not None:
                    report.quarantined_entries.append(moved)
        return report

    def _entry_at(self, path: Path) -> tuple[bool, Entry | None]:
        """(False, None) when the entry file is gone since the scan; else (True, its entry, or None
        when it is unusable: oversize, unparseable, or naming another key)."""
        try:
            raw = self._read(path, MAX_ENTRY_BYTES)
        except _TooLarge:
            raw = b""
        if raw is None:
            return False, None
        return True, _parse_entry(raw, path.name.removesuffix(".json"))

    def gc(self, dry_run: bool = False, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> GcReport:
        """Removes (unless `dry_run`) the blobs that no index entry references and whose mtime is at
        least `grace_seconds` old, like git's prune: a build puts blobs before the entry that
        references them, so a young unreferenced blob is counted in `kept_young` and kept.
        `grace_seconds=0` removes every unreferenced blob. Temp files older than STALE_TEMP_SECONDS
        are removed too. Returns a GcReport; what is not the store's own is never touched and is
        listed in `skipped`.

        Refuses (StoreError, one line) if an index entry cannot be read (run verify first) or a
        folder of the index cannot be listed, since the blobs of its entries would look unreferenced;
        a bad `grace_seconds` is a StoreError too. Does not lock: the caller must hold
        `lock(shared=False)` so that no build writes meanwhile."""
        if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, (int, float)) \
                or not math.isfinite(grace_seconds) or grace_seconds < 0:
            raise StoreError(f"the grace period {grace_seconds!r} is not a number of seconds >= 0; give e.g. "
                             f"{DEFAULT_GRACE_SECONDS} (0 removes every unreferenced blob)")
        entries = self._files(self.index_dir, _is_entry_name)
        if entries.unreadable:
            folder, why = entries.unreadable[0]
            raise StoreError(f"cannot read the index folder {folder} ({why}); its artifacts' blobs would look "
                             f"unreferenced, so gc removes nothing: make it a readable folder and run gc again")
        blobs = self._files(self.blobs_dir, _is_blob_name)
        referenced: set[str] = set()
        for path in entries.files:
            present, entry = self._entry_at(path)
            if not present:
                continue  # gone since the scan
            if entry is None:
                raise StoreError(f"index entry {path} is unreadable; run verify to quarantine it before gc")
            referenced.update(ref.digest for ref in entry.blobs.values())
        report = GcReport(skipped=blobs.skipped + entries.skipped)
        now = time.time()
        for path in blobs.files:
            digest = path.parent.name + path.name
            if digest in referenced:
                continue
            if grace_seconds > 0:
                try:
                    age = now - os.lstat(path).st_mtime
                except FileNotFoundError:
                    continue
                if age < grace_seconds:
                    report.kept_young += 1
                    continue
            report.removed.append(digest)
            if not dry_run:
                self._remove(path)
        for path in blobs.temps + entries.temps:
            if _is_stale(path):
                report.temp_files.append(self._rel(path))
                if not dry_run:
                    self._remove(path)
        return report

    # ---- file plumbing -----------------------------------------------------------------------

    def _files(self, top: Path, is_ours) -> _Scan:
        """What is under `top` (blobs/ or index/), walked with os.scandir and never through a
        symlink: in real folders named by two lower-case hex digits, the real regular files whose
        names `is_ours(folder, name)` accepts, and our temp files. Everything else is skipped and
        listed; a folder that cannot be listed (or a `top` that is a symlink or no folder) is also
        in `unreadable`."""
        scan = _Scan()
        rel = self._rel(top)
        try:
            mode = os.lstat(top).st_mode
            why = "a symlink, not followed" if stat.S_ISLNK(mode) else None if stat.S_ISDIR(mode) else "not a folder"
        except FileNotFoundError:
            return scan
        except OSError as e:
            why = f"cannot be read: {e.strerror or e}"
        if why is not None:
            scan.skipped.append(f"{rel} ({why})")
            scan.unreadable.append((top, why))
            return scan
        for sub in self._list(top, scan):
            where = f"{rel}/{sub.name}"
            if sub.is_symlink():
                scan.skipped.append(f"{where} (symlink, not followed)")
            elif not sub.is_dir(follow_symlinks=False):
                scan.skipped.append(f"{where} ({'not a fan-out folder' if sub.is_file(follow_symlinks=False) else 'not a regular file'})")
            elif not _is_hex(sub.name, 2):
                scan.skipped.append(f"{where} (not a fan-out folder)")
            else:
                for item in self._list(Path(sub.path), scan):
                    here = f"{where}/{item.name}"
                    if item.is_symlink():
                        scan.skipped.append(f"{here} (symlink, not followed)")
                    elif item.is_dir(follow_symlinks=False):
                        scan.skipped.append(f"{here} (folder inside a fan-out folder)")
                    elif not item.is_file(follow_symlinks=False):
                        scan.skipped.append(f"{here} (not a regular file)")
                    elif item.name.startswith(TEMP_PREFIX):
                        scan.temps.append(Path(item.path))
                    elif is_ours(sub.name, item.name):
                        scan.files.append(Path(item.path))
                    else:
                        scan.skipped.append(f"{here} (not a name the store uses)")
        return scan

    def _list(self, folder: Path, scan: _Scan) -> list[os.DirEntry]:
        """The entries of `folder`, sorted by name; [] (noted in `scan`) if it cannot be listed."""
        try:
            with os.scandir(folder) as it:
                return sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return []
        except OSError as e:
            why = f"cannot be read: {e.strerror or e}"
            scan.skipped.append(f"{self._rel(folder)} ({why})")
            scan.unreadable.append((folder, e.strerror or str(e)))
            return []

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _open_regular(self, path: Path) -> int | None:
        """A read-only descriptor of `path` (inside the store), or None if it is absent, is not a
        regular file, or it or any folder between the root and it is a symlink (never followed).
        The root itself may be a symlink: the user chose it."""
        parts = path.relative_to(self.root).parts
        folder = None
        try:
            folder = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
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

    def _regular_size(self, path: Path) -> int | None:
        fd = self._open_regular(path)
        if fd is None:
            return None
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def _read(self, path: Path, limit: int) -> bytes | None:
        """The bytes of the regular file `path`, None if absent or not one (see `_open_regular`);
        raises _TooLarge beyond `limit` bytes."""
        fd = self._open_regular(path)
        if fd is None:
            return None
        try:
            if os.fstat(fd).st_size > limit:
                raise _TooLarge(path)
            chunks, total = [], 0
            while chunk := os.read(fd, min(_CHUNK, limit + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise _TooLarge(path)  # it grew while we read
        except OSError as e:
            raise StoreError(f"cannot read {path} ({e.strerror or e}); check its permissions and the disk") from None
        finally:
            os.close(fd)
        return b"".join(chunks)

    @staticmethod
    def _hash_fd(fd: int, path: Path) -> str:
        """The sha256 hex of what `fd` holds, read in chunks (any size, little memory)."""
        h = hashlib.sha256()
        try:
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
        except OSError as e:
            raise StoreError(f"cannot read {path} ({e.strerror or e}); check its permissions and the disk") from None
        return h.hexdigest()

    def _quarantine(self, path: Path, expect: os.stat_result | None = None) -> str | None:
        """Moves `path` to the same relative place under quarantine/, with a unique suffix; returns
        its path relative to the root. With `expect`, moves it only if it is still that file (same
        device and inode) and returns None otherwise; None too if it is gone."""
        rel = path.relative_to(self.root)
        if expect is not None:
            try:
                now = os.lstat(path)
            except FileNotFoundError:
                return None
            except OSError as e:
                raise self._error(e, path) from None
            if (now.st_dev, now.st_ino) != (expect.st_dev, expect.st_ino):
                return None
        dest = self.quarantine_dir / rel.parent / f"{rel.name}.{time.time_ns()}"
        self._check_real_dirs(dest.parent)
        self._mkdirs(dest.parent)
        try:
            os.replace(path, dest)
            fsync_dir(path.parent)
        except FileNotFoundError:
            if not os.path.lexists(path):
                return None
            raise StoreError(f"cannot move {path} into {dest.parent}; check the store {self.root}") from None
        except OSError as e:
            raise self._error(e, path) from e
        return rel.as_posix()

    def _remove(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)  # unlink never follows a symlink
        except OSError as e:
            raise self._error(e, path) from e

    def _mkdirs(self, folder: Path) -> None:
        try:
            make_dirs(folder)
        except OSError as e:
            raise self._error(e, folder) from e

    def _check_real_dirs(self, folder: Path) -> None:
        """Refuses to write into `folder` if it or a folder between the root and it is a symlink or
        not a folder (the root itself may be a symlink). Missing ones are fine: we create them."""
        here = self.root
        for name in folder.relative_to(self.root).parts:
            here = here / name
            try:
                info = os.lstat(here)
            except FileNotFoundError:
                return
            except OSError as e:
                raise self._error(e, here) from e
            if stat.S_ISLNK(info.st_mode):
                raise StoreError(f"{here} is a symlink; atlasgen never writes through a symlink in the store: "
                                 f"remove it and run again")
            if not stat.S_ISDIR(info.st_mode):
                raise StoreError(f"{here} is not a folder; move it out of the store {self.root} and run again")

    def _atomic_write(self, path: Path, data: bytes) -> None:
        """Readers see the old file or the new one, never a part. Two writers of the same content
        both succeed. On failure whatever was at `path` is untouched. Never writes through a
        symlinked folder in the store."""
        self._check_real_dirs(path.parent)
        try:
            atomic_write(path, data)
        except OSError as e:
            raise self._error(e, path) from e

    def _error(self, e: OSError, path: Path) -> StoreError:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreError(f"no space left on the device while writing {path}; free some space or "
                              f"move the store {self.root} to a larger disk")
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StoreError(f"cannot write {path} ({e.strerror}); make {self.root} writable or "
                              f"choose another store directory")
        return StoreError(f"cannot write {path} ({e.strerror or e}); check the disk and the store {self.root}")


def _is_stale(path: Path) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime > STALE_TEMP_SECONDS
    except FileNotFoundError:
        return False


def _parse_entry(raw: bytes, key: str) -> Entry | None:
    """The entry in `raw` if it is well-formed and names `key`, else None (a document nested too
    deeply for json, which raises RecursionError, is not well-formed)."""
    try:
        doc = json.loads(raw)
        if doc["key"] != key or not isinstance(doc["meta"], dict) or not isinstance(doc["created"], str):
            return None
        blobs = {name: BlobRef(r["digest"], r["size"]) for name, r in doc["blobs"].items()}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    if not all(_is_digest(r.digest) and type(r.size) is int and r.size >= 0 for r in blobs.values()):
        return None
    return Entry(key, blobs, doc["meta"], doc["created"])


def usable_store(folder: Path) -> bool:
    """True for a store, an empty folder or none: never fill a user's folder with blobs."""
    store = Store(folder)
    try:
        with os.scandir(folder) as entries:
            empty = next(iter(entries), None) is None
    except OSError:
        return True  # missing, not a folder, or unreadable: check_writable says which, in one line
    return empty or any(os.path.lexists(p) for p in (store.blobs_dir, store.index_dir, store.lock_path))
