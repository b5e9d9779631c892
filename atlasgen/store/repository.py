"""`Store`, the one object users hold: the blobs and index entries of `atlasgen.store.objects`, plus
the lock (`atlasgen.store.lock`), verify (`atlasgen.store.verify`) and gc (`atlasgen.store.gc`),
as git's repository ties its object store to its lock, fsck and prune.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from atlasgen.store.gc import GcReport, prune
from atlasgen.store.layout import DEFAULT_GRACE_SECONDS
from atlasgen.store.lock import hold
from atlasgen.store.objects import ObjectStore
from atlasgen.store.verify import VerifyReport, fsck


class Store(ObjectStore):
    """A content-addressed store rooted at `root`. Nothing is created until the first write."""

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
        with hold(self, shared=shared, wait=wait):
            yield self

    def verify(self) -> VerifyReport:
        """Re-hashes every blob and checks every index entry; moves the corrupt ones into quarantine/
        and lists what is not the store's own as skipped (see `atlasgen.store.verify.fsck`).

        Does not lock: the caller must hold `lock(shared=False)` so that no build writes meanwhile."""
        return fsck(self)

    def gc(self, dry_run: bool = False, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> GcReport:
        """Removes (unless `dry_run`) the unreferenced blobs older than `grace_seconds` and the stale
        temp files; never touches what is not the store's own (see `atlasgen.store.gc.prune`).

        Does not lock: the caller must hold `lock(shared=False)` so that no build writes meanwhile."""
        return prune(self, dry_run=dry_run, grace_seconds=grace_seconds)
