"""The content-addressed store, in git's shape: blobs named by their bytes, index entries named by
their recipe, a lock, verify (fsck) and gc (prune).

    layout.py      the folder layout, names, limits, `recipe_key`, error and value types
    rooted.py      file I/O below the root that never follows a symlink; atomic writes
    walk.py        the one walker over loose blobs and entries (verify and gc share it)
    lock.py        the advisory lock: shared for builds, exclusive for gc and verify
    objects.py     put and get blobs and entries; the one entry reader, the one blob check
    verify.py      fsck: re-hash and quarantine
    gc.py          prune: unreferenced blobs after a grace period, stale temp files
    repository.py  `Store`, the one object users hold

Every file is written atomically; blobs are re-hashed on read; the store never follows a symlink
below its root, never writes through one, and leaves what is not its own alone (verify and gc list
it as skipped).
"""

from atlasgen.store.gc import GcReport
from atlasgen.store.layout import (
    BlobRef, CorruptBlob, Entry, MissingBlob, StoreBusy, StoreError, recipe_key, usable_store,
)
from atlasgen.store.repository import Store
from atlasgen.store.verify import VerifyReport

__all__ = [
    "BlobRef", "CorruptBlob", "Entry", "GcReport", "MissingBlob", "Store", "StoreBusy", "StoreError", "VerifyReport",
    "recipe_key", "usable_store",
]
