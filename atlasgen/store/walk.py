"""The one walker over the store's loose objects, shared by verify and gc (git's for_each_loose_object).

It lists what is its own and nothing else: real folders named by two lower-case hex digits directly
under blobs/ and index/, and in them real regular files named like a blob, an index entry or one of
atlasgen's temp files. It walks with os.scandir and never through a symlink; everything else
(symlinks, other names, nested folders, special files, folders it cannot list) is only listed as
skipped, so that verify and gc leave it alone.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from atlasgen.fs import TEMP_PREFIX
from atlasgen.store.layout import Layout, is_blob_name, is_entry_name, is_fan_out_name, relative


@dataclass
class Scan:
    """What the walker found under blobs/ or index/."""

    files: list[Path] = field(default_factory=list)  # blobs or index entries, by their names
    temps: list[Path] = field(default_factory=list)  # our temp files
    skipped: list[str] = field(default_factory=list)  # "<relative path> (<reason>)"
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # folders that could not be listed


def loose_blobs(layout: Layout) -> Scan:
    """The blob files under blobs/ (see `scan`)."""
    return scan(layout.root, layout.blobs_dir, is_blob_name)


def loose_entries(layout: Layout) -> Scan:
    """The index entry files under index/ (see `scan`)."""
    return scan(layout.root, layout.index_dir, is_entry_name)


def scan(root: Path, top: Path, is_ours: Callable[[str, str], bool]) -> Scan:
    """What is under `top` (blobs/ or index/ of the store at `root`), never through a symlink: in
    real folders named by two lower-case hex digits, the real regular files whose names
    `is_ours(folder, name)` accepts, and our temp files. Everything else is skipped and listed; a
    folder that cannot be listed (or a `top` that is a symlink or no folder) is also in `unreadable`."""
    found = Scan()
    rel = relative(root, top)
    try:
        mode = os.lstat(top).st_mode
        why = "a symlink, not followed" if stat.S_ISLNK(mode) else None if stat.S_ISDIR(mode) else "not a folder"
    except FileNotFoundError:
        return found
    except OSError as e:
        why = f"cannot be read: {e.strerror or e}"
    if why is not None:
        found.skipped.append(f"{rel} ({why})")
        found.unreadable.append((top, why))
        return found
    for sub in _list(root, top, found):
        where = f"{rel}/{sub.name}"
        if sub.is_symlink():
            found.skipped.append(f"{where} (symlink, not followed)")
        elif not sub.is_dir(follow_symlinks=False):
            kind = "not a fan-out folder" if sub.is_file(follow_symlinks=False) else "not a regular file"
            found.skipped.append(f"{where} ({kind})")
        elif not is_fan_out_name(sub.name):
            found.skipped.append(f"{where} (not a fan-out folder)")
        else:
            _scan_fan_out(root, Path(sub.path), where, is_ours, found)
    return found


def _scan_fan_out(root: Path, folder: Path, where: str, is_ours: Callable[[str, str], bool], found: Scan) -> None:
    for item in _list(root, folder, found):
        here = f"{where}/{item.name}"
        if item.is_symlink():
            found.skipped.append(f"{here} (symlink, not followed)")
        elif item.is_dir(follow_symlinks=False):
            found.skipped.append(f"{here} (folder inside a fan-out folder)")
        elif not item.is_file(follow_symlinks=False):
            found.skipped.append(f"{here} (not a regular file)")
        elif item.name.startswith(TEMP_PREFIX):
            found.temps.append(Path(item.path))
        elif is_ours(folder.name, item.name):
            found.files.append(Path(item.path))
        else:
            found.skipped.append(f"{here} (not a name the store uses)")


def _list(root: Path, folder: Path, found: Scan) -> list[os.DirEntry]:
    """The entries of `folder`, sorted by name; [] (noted in `found`) if it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as e:
        why = f"cannot be read: {e.strerror or e}"
        found.skipped.append(f"{relative(root, folder)} ({why})")
        found.unreadable.append((folder, e.strerror or str(e)))
        return []
