"""The content-addressed store, in git's shape: blobs named by their bytes, index entries named by
their recipe, a lock, verify (fsck) and gc (prune)."""

from atlasgen.store.objects import (
    BlobRef, CorruptBlob, Entry, GcReport, MissingBlob, Store, StoreBusy, StoreError, VerifyReport, recipe_key,
    usable_store,
)

__all__ = [
    "BlobRef", "CorruptBlob", "Entry", "GcReport", "MissingBlob", "Store", "StoreBusy", "StoreError", "VerifyReport",
    "recipe_key", "usable_store",
]
