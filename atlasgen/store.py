"""A content-addressed store for atlas artifacts, in the manner of git's object store.

Layout under the store's root::

    blobs/ab/cdef…          a blob, named by the sha256 of its bytes (first two hex digits fan out)
    index/ab/<key>.json     an index entry: which blobs make up the artifact whose recipe hashes to <key>
    quarantine/…            what `verify` found corrupt, moved aside (never deleted)

An artifact's *key* is `recipe_key(recipe)`, the sha256 of its recipe in canonical JSON, so the same
recipe always finds the same entry and any change to the recipe (or to the algorithm version the
plan puts inside it) makes a new one. Every file is written to a temp file in its own folder and renamed into place, so a
reader sees either nothing or the whole file; reads of blobs are verified against their hash.

Writes go through `atlasgen.fs.atomic_write`, the one atomic writer of atlasgen.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from atlasgen.errors import AtlasgenError
from atlasgen.fs import TEMP_PREFIX, atomic_write, fsync_dir, make_dirs

#: Temp files older than this are leftovers of a killed writer, and `gc` may remove them.
STALE_TEMP_SECONDS = 3600
_HEX = frozenset("0123456789abcdef")


class StoreError(AtlasgenError):
    """The store cannot be read or written (permissions, full disk, …); one line naming path and fix."""


class CorruptBlob(StoreError):
    """A blob's bytes no longer hash to its name."""


class MissingBlob(StoreError):
    """No blob with that digest is stored."""


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

    Temp files are listed but are not corruption: a killed writer leaves them and `gc` clears them."""

    blobs_checked: int = 0
    entries_checked: int = 0
    quarantined_blobs: list[str] = field(default_factory=list)
    quarantined_entries: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.quarantined_blobs and not self.quarantined_entries


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


def _is_digest(s) -> bool:
    return isinstance(s, str) and len(s) == 64 and set(s) <= _HEX


def _require_digest(s, what: str) -> None:
    # Also keeps a hostile name like "../x" from escaping the store.
    if not _is_digest(s):
        raise ValueError(f"{what} must be 64 lower-case hex digits, got {s!r}")


def _is_stale(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > STALE_TEMP_SECONDS
    except FileNotFoundError:
        return False


class Store:
    """A content-addressed store rooted at `root`. Nothing is created until the first write."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.index_dir = self.root / "index"
        self.quarantine_dir = self.root / "quarantine"

    # ---- paths -------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        _require_digest(digest, "blob digest")
        return self.blobs_dir / digest[:2] / digest[2:]

    def entry_path(self, key: str) -> Path:
        _require_digest(key, "recipe key")
        return self.index_dir / key[:2] / f"{key}.json"

    # ---- blobs -------------------------------------------------------------------------------

    def put_blob(self, data: bytes) -> str:
        """Stores `data` and returns its sha256 hex. A present, intact copy is left alone;
        a corrupt one is replaced."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        with contextlib.suppress(StoreError):
            if self._read_verified(path, digest):
                return digest
        self._atomic_write(path, data)
        return digest

    def get_blob(self, digest: str) -> bytes:
        """The bytes of blob `digest`, re-hashed on read. Raises MissingBlob or CorruptBlob."""
        path = self.blob_path(digest)
        data = self._read(path)
        if data is None:
            raise MissingBlob(f"blob {digest} is missing from {path}; rebuild the artifacts that need it")
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlob(f"blob {path} does not match its hash; run verify to quarantine it, then rebuild")
        return data

    def _read_verified(self, path: Path, digest: str) -> bool:
        data = self._read(path)
        return data is not None and hashlib.sha256(data).hexdigest() == digest

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
        """The entry for `key`, or None if there is none or it is unusable (unparseable, names
        another key, or a blob is missing or the wrong size); the caller then rebuilds it.
        Blob contents are verified by `get_blob` and `verify`, not here."""
        raw = self._read(self.entry_path(key))
        entry = _parse_entry(raw, key) if raw is not None else None
        if entry is None:
            return None
        for ref in entry.blobs.values():
            try:
                if self.blob_path(ref.digest).stat().st_size != ref.size:
                    return None
            except FileNotFoundError:
                return None
        return entry

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def missing(self, keys) -> list[str]:
        """The keys (in the given order) that have no usable entry: the work a build still has to do."""
        return [k for k in keys if not self.has(k)]

    # ---- maintenance -------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Re-hashes every blob and checks every index entry; moves the corrupt ones (blobs that do
        not match their name, entries that do not parse, name another key, or need a missing or
        corrupt blob) into quarantine/. Run it while no build is writing."""
        report = VerifyReport()
        good: dict[str, int] = {}  # digest -> size of every intact blob
        blob_files, blob_temps = self._files(self.blobs_dir)
        entry_files, entry_temps = self._files(self.index_dir)
        report.temp_files = [p.relative_to(self.root).as_posix() for p in blob_temps + entry_temps]
        for path in blob_files:
            report.blobs_checked += 1
            digest = path.parent.name + path.name
            if _is_digest(digest) and self._read_verified(path, digest):
                good[digest] = path.stat().st_size
            else:
                report.quarantined_blobs.append(self._quarantine(path))
        for path in entry_files:
            report.entries_checked += 1
            key = path.name.removesuffix(".json")
            entry = None
            if _is_digest(key) and path.name.endswith(".json") and path.parent.name == key[:2]:
                entry = _parse_entry(self._read(path) or b"", key)
            if entry is None or any(good.get(r.digest) != r.size for r in entry.blobs.values()):
                report.quarantined_entries.append(self._quarantine(path))
        return report

    def gc(self, dry_run: bool = False) -> list[str]:
        """The digests of blobs that no index entry references, removed unless `dry_run`.

        Temp files older than STALE_TEMP_SECONDS are removed too (unless `dry_run`). Refuses to run
        if an index entry cannot be read, since its blobs would look unreferenced: run verify first.
        Run it while no build is writing: a build puts blobs before the entry that references them."""
        referenced: set[str] = set()
        entry_files, entry_temps = self._files(self.index_dir)
        blob_files, blob_temps = self._files(self.blobs_dir)
        for path in entry_files:
            try:
                doc = json.loads(self._read(path) or b"")
                referenced.update(ref["digest"] for ref in doc["blobs"].values())
            except (ValueError, KeyError, TypeError, AttributeError):
                raise StoreError(f"index entry {path} is unreadable; run verify to quarantine it before gc") from None
        unreferenced: list[str] = []
        for path in blob_files:
            digest = path.parent.name + path.name
            if digest not in referenced:
                unreferenced.append(digest)
                if not dry_run:
                    self._remove(path)
        if not dry_run:
            for path in blob_temps + entry_temps:
                if _is_stale(path):
                    self._remove(path)
        return unreferenced

    # ---- file plumbing -----------------------------------------------------------------------

    def _files(self, top: Path) -> tuple[list[Path], list[Path]]:
        """(stored files, temp files) in the fan-out folders under `top`."""
        files: list[Path] = []
        temps: list[Path] = []
        if top.is_dir():
            for sub in sorted(p for p in top.iterdir() if p.is_dir()):
                for path in sorted(p for p in sub.iterdir() if p.is_file()):
                    (temps if path.name.startswith(TEMP_PREFIX) else files).append(path)
        return files, temps

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot read {path} ({e.strerror}); check its permissions and the disk") from e

    def _quarantine(self, path: Path) -> str:
        """Moves `path` to the same relative place under quarantine/, with a unique suffix."""
        rel = path.relative_to(self.root)
        dest = self.quarantine_dir / rel.parent / f"{rel.name}.{time.time_ns()}"
        self._mkdirs(dest.parent)
        try:
            os.replace(path, dest)
            fsync_dir(path.parent)
        except OSError as e:
            raise self._error(e, path) from e
        return rel.as_posix()

    def _remove(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise self._error(e, path) from e

    def _mkdirs(self, folder: Path) -> None:
        try:
            make_dirs(folder)
        except OSError as e:
            raise self._error(e, folder) from e

    def _atomic_write(self, path: Path, data: bytes) -> None:
        """Readers see the old file or the new one, never a part. Two writers of the same content
        both succeed. On failure whatever was at `path` is untouched."""
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


def _parse_entry(raw: bytes, key: str) -> Entry | None:
    """The entry in `raw` if it is well-formed and names `key`, else None."""
    try:
        doc = json.loads(raw)
        if doc["key"] != key or not isinstance(doc["meta"], dict) or not isinstance(doc["created"], str):
            return None
        blobs = {name: BlobRef(r["digest"], r["size"]) for name, r in doc["blobs"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all(_is_digest(r.digest) and type(r.size) is int and r.size >= 0 for r in blobs.values()):
        return None
    return Entry(key, blobs, doc["meta"], doc["created"])
