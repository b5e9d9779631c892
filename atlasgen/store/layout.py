"""The store's folder layout and names, its limits, its error types and its value types.

Layout under the store's root::

    blobs/ab/cdef…          a blob, named by the sha256 of its bytes (first two hex digits fan out)
    index/ab/<key>.json     an index entry: which blobs make up the artifact whose recipe hashes to <key>
    quarantine/…            what `verify` found corrupt, moved aside (never deleted)
    lock                    the advisory lock (`Store.lock`): shared for builds, exclusive for gc and verify

An artifact's *key* is `recipe_key(recipe)`, the sha256 of its recipe in canonical JSON, so the same
recipe always finds the same entry and any change to the recipe (or to the algorithm version the
plan puts inside it) makes a new one.

The name predicates here decide what is the store's own: a real folder named by two hex digits
directly under blobs/ or index/, holding files named like a blob or an index entry (see
`atlasgen.store.walk`). Nothing here touches the disk except `usable_store`, which only looks.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from atlasgen.errors import AtlasgenError

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
#: The folders under the store's root.
BLOBS_FOLDER = "blobs"
INDEX_FOLDER = "index"
QUARANTINE_FOLDER = "quarantine"
ENTRY_SUFFIX = ".json"
_HEX = frozenset("0123456789abcdef")


class StoreError(AtlasgenError):
    """The store cannot be read or written (permissions, full disk, …); one line naming path and fix."""


class CorruptBlob(StoreError):
    """A blob's bytes no longer hash to its name."""


class MissingBlob(StoreError):
    """No blob with that digest is stored."""


class StoreBusy(StoreError):
    """`Store.lock(..., wait=False)` found the lock held by another process."""


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


class Layout:
    """Where everything of the store rooted at `root` lives. Nothing is created here."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.blobs_dir = self.root / BLOBS_FOLDER
        self.index_dir = self.root / INDEX_FOLDER
        self.quarantine_dir = self.root / QUARANTINE_FOLDER
        self.lock_path = self.root / LOCK_NAME

    def blob_path(self, digest: str) -> Path:
        _require_digest(digest, "blob digest")
        return self.blobs_dir / digest[:2] / digest[2:]

    def entry_path(self, key: str) -> Path:
        _require_digest(key, "recipe key")
        return self.index_dir / key[:2] / f"{key}{ENTRY_SUFFIX}"


def relative(root: Path, path: Path) -> str:
    """`path` relative to the store's root, as the reports list it."""
    return path.relative_to(root).as_posix()


def blob_digest(path: Path) -> str:
    """The digest a blob file at `path` is named for (its fan-out folder and its name)."""
    return path.parent.name + path.name


def entry_key(path: Path) -> str:
    """The recipe key an index entry file at `path` is named for."""
    return path.name.removesuffix(ENTRY_SUFFIX)


def is_hex(s, length: int) -> bool:
    return isinstance(s, str) and len(s) == length and set(s) <= _HEX


def is_digest(s) -> bool:
    return is_hex(s, 64)


def is_fan_out_name(name: str) -> bool:
    return is_hex(name, 2)


def is_blob_name(folder: str, name: str) -> bool:
    return is_hex(name, 62)


def is_entry_name(folder: str, name: str) -> bool:
    key = name.removesuffix(ENTRY_SUFFIX)
    return name.endswith(ENTRY_SUFFIX) and is_digest(key) and key[:2] == folder


def _require_digest(s, what: str) -> None:
    # Also keeps a hostile name like "../x" from escaping the store.
    if not is_digest(s):
        raise ValueError(f"{what} must be 64 lower-case hex digits, got {s!r}")


def recipe_key(recipe: dict) -> str:
    """The sha256 hex of `recipe` as canonical JSON (sorted keys, no spaces, ASCII only).

    A recipe must hold only JSON values: dicts with str keys, lists, str, int, finite float, bool,
    None. Anything else raises TypeError or ValueError rather than hashing something ambiguous (json
    would turn an int key 1 into "1", colliding with a real "1"). Tuples hash as lists."""
    check_json(recipe)
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def check_json(value, where: str = "recipe") -> None:
    """Raises TypeError, naming where in `value`, at the first thing that is not a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string key {k!r}; JSON keys must be strings")
            check_json(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_json(v, f"{where}[{i}]")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise TypeError(f"{where} is a {type(value).__name__}, not a JSON value")


def usable_store(folder: Path) -> bool:
    """True for a store, an empty folder or none: never fill a user's folder with blobs."""
    layout = Layout(folder)
    try:
        with os.scandir(folder) as entries:
            empty = next(iter(entries), None) is None
    except OSError:
        return True  # missing, not a folder, or unreadable: check_writable says which, in one line
    return empty or any(os.path.lexists(p) for p in (layout.blobs_dir, layout.index_dir, layout.lock_path))
