"""Image bytes for the store and the web: WebP for what people see, PNG for raw maps."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# WebP q90: measured 9.9 KiB for a 128 px synthesised texture (PNG 40.5 KiB, WebP q80 7.5 KiB).
# A notch above q80 because lossy WebP blurs colour detail on noisy textures (design.md §2); the
# full atlas still fits GitHub Pages' 1 GB.
WEBP_QUALITY = 90
#: Dataset photos, shown behind an example's box: context, not detail.
PHOTO_QUALITY = 80


def webp(image: np.ndarray, quality: int = WEBP_QUALITY) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="WEBP", quality=quality, method=4)
    return buffer.getvalue()


def grey_png(values: np.ndarray) -> bytes:
    """A map in [0, 1] as lossless 8-bit PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8), mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image)
