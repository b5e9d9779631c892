"""Probe photographs: the real images activation maps are drawn on."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from atlasgen.codec import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, TooManyPixels, Undecodable, decode_rgb
from atlasgen.errors import AtlasgenError
from atlasgen.names import display_name, safe_name

MAX_PROBE_SIDE = 512
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# scikit-image's bundled colour photographs of natural scenes (no download needed).
NATURAL_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "hubble_deep_field.jpg")
DEFAULT_PROBE = "astronaut.png"  # Eileen Collins, the seed article's example


@dataclass(frozen=True)
class Probe:
    name: str  # the file's stem, shown on pages
    digest: str  # sha256 of the file's bytes: part of every activation map's recipe
    image: np.ndarray  # uint8 (h, w, 3) RGB, longest side at most MAX_PROBE_SIDE


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a plain file"


def _read_probe_bytes(path: Path) -> bytes:
    """The bytes of a regular file (a symlink to one is fine) of at most MAX_IMAGE_BYTES.

    Opened without blocking and checked with fstat before any read, so a FIFO cannot hang the
    build and a device such as /dev/zero cannot fill the memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise AtlasgenError(f"probe {path} cannot be read ({exc.strerror}); give a readable image file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AtlasgenError(f"probe {path} is not a regular file ({_file_kind(info.st_mode)}); give an image file")
        if info.st_size > MAX_IMAGE_BYTES:
            raise _too_big(path, f"{info.st_size:,} bytes")
        chunks, left = [], MAX_IMAGE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise AtlasgenError(f"probe {path} cannot be read ({exc.strerror}); give a readable image file") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_IMAGE_BYTES:  # it grew while being read
        raise _too_big(path, f"more than {MAX_IMAGE_BYTES:,} bytes")
    return data


def _too_big(path: Path, size: str) -> AtlasgenError:
    return AtlasgenError(f"probe {path} is {size}, over the cap of {MAX_IMAGE_BYTES >> 20} MiB; give a smaller image file")


def _too_many_pixels(path: Path, size: str) -> AtlasgenError:
    return AtlasgenError(
        f"probe {path} has {size} pixels, over the cap of {MAX_IMAGE_PIXELS:,} pixels; give a smaller image"
    )


def load_probe(path: Path) -> Probe:
    """Reads one photo; bad files give a one-line error naming the file."""
    data = _read_probe_bytes(path)
    try:
        image = decode_rgb(data)
    except TooManyPixels as exc:
        raise _too_many_pixels(path, exc.size or "too many") from None
    except Undecodable:
        raise AtlasgenError(f"probe {path} is not an image Pillow can read; give a PNG, JPEG or WebP photo") from None
    image.thumbnail((MAX_PROBE_SIDE, MAX_PROBE_SIDE), Image.LANCZOS)
    # A name that is not valid UTF-8 is shown with its bytes escaped, never as lone surrogates.
    return Probe(display_name(path.stem), hashlib.sha256(data).hexdigest(), np.asarray(image))


def load_probes(paths: list[Path]) -> list[Probe]:
    """Files as given, and the image files of folders (sorted); the default photo when none."""
    if not paths:
        return [default_probe()]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # is_file() is a regular file (through a symlink too): never a FIFO or a device.
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise AtlasgenError(f"probe folder {path} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise AtlasgenError(f"probe {path} does not exist; give an image file or a folder of images")
    probes = [load_probe(p) for p in files]
    # Two names that clean to one file name would share every file of the site.
    by_file: dict[str, Probe] = {}
    for probe in probes:
        other = by_file.setdefault(safe_name(probe.name), probe)
        if other is not probe:
            raise AtlasgenError(
                f"probes {other.name!r} and {probe.name!r} would share the file name {safe_name(probe.name)!r}; rename one"
            )
    return probes


def skimage_data(name: str) -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise AtlasgenError("the default probe photos need scikit-image: pip install scikit-image")
    path = Path(spec.origin).parent / "data" / name
    if not path.is_file():
        raise AtlasgenError(f"scikit-image has no bundled {name}; pass --probe FILE")
    return path


def default_probe() -> Probe:
    return load_probe(skimage_data(DEFAULT_PROBE))


def natural_photos() -> list[Probe]:
    return [load_probe(skimage_data(name)) for name in NATURAL_PHOTOS]
