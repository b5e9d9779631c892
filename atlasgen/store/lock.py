"""The store's lock (where git has lockfile.c): an advisory `fcntl.flock` on `<root>/lock`.

Builders hold it shared (several may write at once); gc and verify hold it exclusive, since they
must not run while a build writes. The lock file is a regular file of the store's own: a symlink or
anything else in its place is refused, never followed or replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from typing import Iterator

from atlasgen.store.layout import Layout, StoreBusy, StoreError
from atlasgen.store.rooted import make_store_dirs


@contextlib.contextmanager
def hold(layout: Layout, shared: bool, wait: bool) -> Iterator[None]:
    """Holds the lock of the store at `layout` while the block runs (see `Store.lock`); with
    `wait=False` a busy lock raises StoreBusy at once."""
    fd = _open_lock_file(layout)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            if shared:
                raise StoreBusy(f"the store {layout.root} is locked by a running gc or verify; "
                                f"run this again when it has finished, or pass --wait") from None
            raise StoreBusy(f"the store {layout.root} is in use by a running build (or gc or verify); "
                            f"run this again when it has finished, or pass --wait") from None
        except OSError as e:
            raise StoreError(f"cannot lock {layout.lock_path} ({e.strerror or e}); the store must be on a "
                             f"filesystem with flock support: move it to a local disk") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_lock_file(layout: Layout) -> int:
    """A descriptor of the regular file `<root>/lock`, made (with the root) if missing."""
    path = layout.lock_path
    make_store_dirs(layout.root, layout.root)
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
            raise StoreError(f"cannot open the lock file {path} ({e.strerror or e}); make {layout.root} "
                             f"writable or choose another store directory") from None
    if fd is not None and stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    if fd is not None:
        os.close(fd)
    raise StoreError(f"the lock file {path} is not a regular file; move it out of the store and run again")
