"""Blobs and index entries, in the manner of git's object store: put and get them, and tell what is missing.

A blob is named by the sha256 of its bytes and is re-hashed whenever it is read; an index entry,
named by its recipe key, lists the blobs an artifact is made of. Every file is written to a temp
file in its own folder and renamed into place (`atlasgen.store.rooted`), so a reader sees either
nothing or the whole file, and nothing is read or written through a symlink below the root.

`read_entry` is the one reader of entry files and `check_blob` the one hash-then-quarantine check
of a blob: `get`, `missing`, verify and gc all use them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from atlasgen.store.layout import (
    MAX_BLOB_BYTES, MAX_ENTRY_BYTES, BlobRef, CorruptBlob, Entry, Layout, MissingBlob, StoreError, check_json,
    entry_key, is_digest,
)
from atlasgen.store.rooted import (
    TooLarge, hash_fd, open_regular, quarantine, read_capped, regular_size, write_atomically,
)


class ObjectStore(Layout):
    """The blobs and index entries of the store rooted at `root`. Nothing is created until the first write."""

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
            if self._intact_refreshed(path, digest):
                return digest
        write_atomically(self.root, path, data)
        return digest

    def get_blob(self, digest: str) -> bytes:
        """The bytes of blob `digest`, re-hashed on read. Raises MissingBlob or CorruptBlob.
        A symlink or anything but a regular file in its place counts as missing."""
        path = self.blob_path(digest)
        try:
            data = read_capped(self.root, path, MAX_BLOB_BYTES)
        except TooLarge:
            data = b""  # larger than put_blob allows: cannot match its hash
        if data is None:
            raise MissingBlob(f"blob {digest} is missing from {path}; rebuild the artifacts that need it")
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlob(f"blob {path} does not match its hash; run verify to quarantine it, then rebuild")
        return data

    def _intact_refreshed(self, path: Path, digest: str) -> bool:
        """Whether `path` is a regular file whose bytes hash to `digest`; if so its mtime is set to
        now (on the open file, never through a symlink)."""
        fd = open_regular(self.root, path)
        if fd is None:
            return False
        try:
            if hash_fd(fd, path) != digest:
                return False
            with contextlib.suppress(OSError):
                os.utime(fd)
            return True
        finally:
            os.close(fd)

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
        check_json(meta, "meta")
        text = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
        for data in blobs.values():
            self.put_blob(data)
        write_atomically(self.root, path, text.encode("ascii"))
        return Entry(key, refs, meta, created)

    def get(self, key: str) -> Entry | None:
        """The entry for `key`, or None if there is none or it is unusable (not a regular file,
        larger than MAX_ENTRY_BYTES, unparseable or nested too deep, names another key, or a blob is
        missing, not a regular file or the wrong size); the caller then rebuilds it.
        Blob contents are verified by `get_blob`, `missing(deep=True)` and `verify`, not here."""
        _, entry = read_entry(self.root, self.entry_path(key))
        if entry is None:
            return None
        for ref in entry.blobs.values():
            if regular_size(self.root, self.blob_path(ref.digest)) != ref.size:
                return None
        return entry

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def missing(self, keys, deep: bool = False, blobs: dict | None = None) -> list[str]:
        """The keys (in the given order) that have no usable entry: the work a build still has to do.

        `blobs` maps a key to the blob names its entry must hold: an entry without one of them (stored
        before its kind declared that blob) counts as missing, so the build makes it again, whole.

        With `deep=True` every blob of every present entry is also re-hashed (each distinct digest
        once); a blob that does not match its hash is moved into quarantine, as `verify` does, and
        every key whose entry needs it counts as missing, so the next build recomputes it. Hold the
        lock (shared is enough) while calling it with `deep=True`."""
        keys = list(keys)
        entries = {key: self.get(key) for key in keys}
        bad: set[str] = set()
        if deep:
            digests = dict.fromkeys(r.digest for e in entries.values() if e is not None for r in e.blobs.values())
            # Builds may run beside us (a shared lock): one may replace a corrupt copy while we look.
            bad = {d for d in digests if not check_blob(self.root, self.blob_path(d), d, tries=3).intact}
        needed = blobs or {}
        lacking = {k for k, e in entries.items() if e is not None and not set(needed.get(k, ())) <= set(e.blobs)}
        return [k for k in keys if entries[k] is None or k in lacking
                or any(r.digest in bad for r in entries[k].blobs.values())]


@dataclass(frozen=True)
class BlobCheck:
    """What `check_blob` found: whether a regular file was there to hash, its size if it matched its
    digest, and where it went (relative to the root) if it did not and was moved into quarantine."""

    present: bool
    size: int | None = None
    quarantined: str | None = None

    @property
    def intact(self) -> bool:
        return self.size is not None


def check_blob(root: Path, path: Path, digest: str, tries: int = 1) -> BlobCheck:
    """Re-hashes the blob file `path` against `digest` and moves a copy that does not match into
    quarantine, but only if it is still the file that was hashed. With `tries` > 1, a copy that was
    replaced while we looked is checked again, up to `tries` times in all."""
    check = BlobCheck(present=False)
    for _ in range(tries):
        fd = open_regular(root, path)
        if fd is None:
            return BlobCheck(present=False)
        try:
            info = os.fstat(fd)
            intact = hash_fd(fd, path) == digest
        finally:
            os.close(fd)
        if intact:
            return BlobCheck(present=True, size=info.st_size)
        check = BlobCheck(present=True, quarantined=quarantine(root, path, expect=info))
        if check.quarantined is not None:
            return check
    return check


def read_entry(root: Path, path: Path) -> tuple[bool, Entry | None]:
    """Reads the index entry file `path`: (False, None) when there is no regular file there (absent,
    a symlink, or gone since a scan); else (True, its entry), the entry being None when it is
    unusable: larger than MAX_ENTRY_BYTES, unparseable, or naming another key than its file name."""
    try:
        raw = read_capped(root, path, MAX_ENTRY_BYTES)
    except TooLarge:
        raw = b""
    if raw is None:
        return False, None
    return True, _parse_entry(raw, entry_key(path))


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
    if not all(is_digest(r.digest) and type(r.size) is int and r.size >= 0 for r in blobs.values()):
        return None
    return Entry(key, blobs, doc["meta"], doc["created"])
