"""Probe photographs: the real images activation maps are drawn on."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from atlasgen.errors import AtlasgenError
from atlasgen.names import safe_name

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


def load_probe(path: Path) -> Probe:
    """Reads one photo; bad files give a one-line error naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AtlasgenError(f"probe {path} cannot be read ({exc.strerror}); give a readable image file") from None
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        raise AtlasgenError(f"probe {path} is not an image Pillow can read; give a PNG, JPEG or WebP photo") from None
    image.thumbnail((MAX_PROBE_SIDE, MAX_PROBE_SIDE), Image.LANCZOS)
    return Probe(path.stem, hashlib.sha256(data).hexdigest(), np.asarray(image))


def load_probes(paths: list[Path]) -> list[Probe]:
    """Files as given, and the image files of folders (sorted); the default photo when none."""
    if not paths:
        return [default_probe()]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
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


def _skimage_data(name: str) -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise AtlasgenError("the default probe photos need scikit-image: pip install scikit-image")
    path = Path(spec.origin).parent / "data" / name
    if not path.is_file():
        raise AtlasgenError(f"scikit-image has no bundled {name}; pass --probe FILE")
    return path


def default_probe() -> Probe:
    return load_probe(_skimage_data(DEFAULT_PROBE))


def natural_photos() -> list[Probe]:
    return [load_probe(_skimage_data(name)) for name in NATURAL_PHOTOS]
