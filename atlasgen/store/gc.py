"""The store's prune: remove the blobs no index entry references, after a grace period, and stale temp files.

Like git's prune it spares young objects: a build puts its blobs before the entry that names them,
so a blob that is unreferenced but young may belong to a build still running. It removes only what
the walker (`atlasgen.store.walk`) found to be the store's own, and refuses outright when it cannot
read the whole index, since every blob of an unread entry would look unreferenced.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from atlasgen.store.layout import DEFAULT_GRACE_SECONDS, STALE_TEMP_SECONDS, Layout, StoreError, blob_digest, relative
from atlasgen.store.objects import read_entry
from atlasgen.store.rooted import remove
from atlasgen.store.walk import Scan, loose_blobs, loose_entries


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


def prune(layout: Layout, dry_run: bool = False, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> GcReport:
    """Removes (unless `dry_run`) the blobs of the store at `layout` that no index entry references
    and whose mtime is at least `grace_seconds` old, like git's prune: a build puts blobs before the
    entry that references them, so a young unreferenced blob is counted in `kept_young` and kept.
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
    root = layout.root
    entries = loose_entries(layout)
    if entries.unreadable:
        folder, why = entries.unreadable[0]
        raise StoreError(f"cannot read the index folder {folder} ({why}); its artifacts' blobs would look "
                         f"unreferenced, so gc removes nothing: make it a readable folder and run gc again")
    blobs = loose_blobs(layout)
    referenced = _referenced(root, entries)
    report = GcReport(skipped=blobs.skipped + entries.skipped)
    now = time.time()
    for path in blobs.files:
        digest = blob_digest(path)
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
            remove(root, path)
    for path in blobs.temps + entries.temps:
        if _is_stale(path):
            report.temp_files.append(relative(root, path))
            if not dry_run:
                remove(root, path)
    return report


def _referenced(root: Path, entries: Scan) -> set[str]:
    """The digests of every blob that an index entry in `entries` names; StoreError at an unusable entry."""
    referenced: set[str] = set()
    for path in entries.files:
        present, entry = read_entry(root, path)
        if not present:
            continue  # gone since the scan
        if entry is None:
            raise StoreError(f"index entry {path} is unreadable; run verify to quarantine it before gc")
        referenced.update(ref.digest for ref in entry.blobs.values())
    return referenced


def _is_stale(path: Path) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime > STALE_TEMP_SECONDS
    except FileNotFoundError:
        return False
