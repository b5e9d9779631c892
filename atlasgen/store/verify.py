"""The store's fsck: re-hash every blob, check every index entry, move what is corrupt into quarantine/.

Corrupt files are moved aside, never deleted, so nothing is lost to a false alarm; the next build
recomputes what was moved. What is not the store's own is never read, moved or removed: the walker
(`atlasgen.store.walk`) lists it as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from atlasgen.store.layout import Layout, blob_digest, relative
from atlasgen.store.objects import check_blob, read_entry
from atlasgen.store.rooted import quarantine
from atlasgen.store.walk import loose_blobs, loose_entries


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


def fsck(layout: Layout) -> VerifyReport:
    """Re-hashes every blob and checks every index entry of the store at `layout`; moves the corrupt
    ones (blobs that do not match their name, entries that are too large, do not parse, name another
    key, or need a missing or corrupt blob) into quarantine/. What is not the store's own is left
    alone and listed in `skipped`, as are folders that cannot be read.

    Does not lock: the caller must hold `lock(shared=False)` so that no build writes meanwhile."""
    root = layout.root
    report = VerifyReport()
    good: dict[str, int] = {}  # digest -> size of every intact blob
    blobs = loose_blobs(layout)
    entries = loose_entries(layout)
    report.temp_files = [relative(root, p) for p in blobs.temps + entries.temps]
    report.skipped = blobs.skipped + entries.skipped
    for path in blobs.files:
        digest = blob_digest(path)
        # One look: under the exclusive lock no build replaces a copy while we hash it.
        check = check_blob(root, path, digest)
        if not check.present:
            continue  # gone (or replaced by something not ours) since the scan
        report.blobs_checked += 1
        if check.intact:
            good[digest] = check.size
        elif check.quarantined is not None:
            report.quarantined_blobs.append(check.quarantined)
    for path in entries.files:
        present, entry = read_entry(root, path)
        if not present:
            continue  # gone since the scan
        report.entries_checked += 1
        if entry is None or any(good.get(r.digest) != r.size for r in entry.blobs.values()):
            moved = quarantine(root, path)
            if moved is not None:
                report.quarantined_entries.append(moved)
    return report
