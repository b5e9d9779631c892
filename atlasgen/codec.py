"""Image bytes and pixels for the store and the web: the one decoder with its caps, WebP for what
people see, PNG for raw maps, the zoomed crop of a box, and the heatmaps' colours."""

from __future__ import annotations

import io
import re
import warnings
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# WebP q90: measured 9.9 KiB for a 128 px synthesised texture (PNG 40.5 KiB, WebP q80 7.5 KiB).
# A notch above q80 because lossy WebP blurs colour detail on noisy textures (design.md §2); the
# full atlas still fits GitHub Pages' 1 GB.
WEBP_QUALITY = 90
#: Dataset photos, shown behind an example's box: context, not detail.
PHOTO_QUALITY = 80
#: Image files atlasgen reads (probe photos, dataset images, the site's own images): at most this many bytes...
MAX_IMAGE_BYTES = 64 << 20
#: ...and this many pixels (e.g. 8000 x 5000), checked before the pixels are decoded.
MAX_IMAGE_PIXELS = 40_000_000
#: WebP's largest side, in pixels: what is published as WebP (e.g. a dataset photo) is at most this a side.
WEBP_MAX_SIDE = 16383
#: The receptive-field crop of a centre-neuron image: its longer side, in pixels.
RF_CROP_DISPLAY = 224

# Viridis at nine evenly spaced stops; interpolated linearly in between.
VIRIDIS_STOPS = np.array(
    [
        [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
        [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
    ],
    dtype=np.float32,
)


class Undecodable(ValueError):
    """Bytes that are not an image Pillow can read; the message is the reason, without the file's name."""


class TooManyPixels(Undecodable):
    """An image over the pixel cap; `size` says how large it claims to be ("8000x6000", "1,234,567"),
    or is None when Pillow refused it before telling."""

    def __init__(self, size: str | None, cap: int):
        self.size, self.cap = size, cap
        super().__init__(f"{size} pixels, over the cap of {cap:,}" if size else f"more than {cap:,} pixels")


def decode_rgb(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, exif: bool = False,
               check: Callable[[int, int], None] | None = None) -> Image.Image:
    """An image file's bytes as an RGB image (PIL's `convert("RGB")`; with `exif`, its EXIF orientation
    applied first). The pixel cap, and `check(width, height)` if given (it raises Undecodable to
    refuse), are checked on the header, before any pixel is decoded; a decompression bomb, a
    truncated or a corrupt file raises Undecodable, whatever the decoder says."""
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on images of more pixels than its own limit: both are refusals here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise TooManyPixels(f"{width}x{height}", max_pixels)
                if check is not None:
                    check(width, height)
                return (ImageOps.exif_transpose(opened) if exif else opened).convert("RGB")
    except (Undecodable, MemoryError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        raise TooManyPixels(f"{int(claimed.group(1)):,}" if claimed else None, max_pixels) from None
    except UnidentifiedImageError:
        raise Undecodable("not an image Pillow can identify") from None
    except Exception as exc:  # a corrupt file can fail anywhere in a decoder
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise Undecodable(f"not an image Pillow can read ({re.sub(r' at 0x[0-9a-f]+', '', first)})") from None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as an image file's header says, without decoding a pixel; None when Pillow
    cannot tell (the decoder then says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                return int(width), int(height)
    except Exception:  # not an image, or a header Pillow refuses: decode_rgb gives the reason
        return None


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
    """A blob atlasgen stored itself, back to its pixels."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image)


def zoomed_crop(image: np.ndarray, box, display: int, shrink: bool = True) -> np.ndarray:
    """The box (top, left, bottom, right; bottom and right excluded) cut out, its longer side scaled to
    `display` by nearest neighbour, so pixels stay honest. With `shrink=False` a box already at least
    `display` keeps its own size."""
    cut = image[box.top:box.bottom, box.left:box.right]
    longer = max(box.height, box.width)
    if not shrink and longer >= display:
        return np.ascontiguousarray(cut)
    zoom = display / longer
    size = (max(1, round(box.width * zoom)), max(1, round(box.height * zoom)))
    return np.asarray(Image.fromarray(cut).resize(size, Image.NEAREST))


def zoomed_size(box, display: int) -> tuple[int, int]:
    """(width, height) of `zoomed_crop(image, box, display)` for a box [top, left, bottom, right]."""
    top, left, bottom, right = box
    zoom = display / max(bottom - top, right - left)
    return max(1, round((right - left) * zoom)), max(1, round((bottom - top) * zoom))


def colour_map(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to viridis RGB bytes."""
    position = np.clip(values, 0, 1) * (len(VIRIDIS_STOPS) - 1)
    low = np.floor(position).astype(int).clip(0, len(VIRIDIS_STOPS) - 2)
    weight = (position - low)[..., None]
    rgb = VIRIDIS_STOPS[low] * (1 - weight) + VIRIDIS_STOPS[low + 1] * weight
    return np.round(rgb).astype(np.uint8)


#: A first-layer kernel drawn as an image: its longer side enlarged to about this many pixels.
KERNEL_DISPLAY = 96


def kernel_zoom(taps) -> int:
    """Pixels a side per weight of a kernel `taps` = (height, width) drawn at KERNEL_DISPLAY: a whole
    number, so every weight is a square of the same size (3 x 3 taps: 32 px each, 96 px in all)."""
    return max(1, KERNEL_DISPLAY // max(taps))


def kernel_size(taps) -> tuple[int, int]:
    """(width, height) in pixels of `kernel_image` for a kernel of `taps` = (height, width)."""
    zoom = kernel_zoom(taps)
    return taps[1] * zoom, taps[0] * zoom


def kernel_image(weights: np.ndarray) -> tuple[np.ndarray, float]:
    """A kernel's weights (height, width, 3), in RGB order, as uint8 RGB pixels and its scale: 0 is
    mid-grey (127.5, rounded to 128) and its largest absolute weight, the scale, is 0 or 255, every
    other weight in proportion (one scale for the whole kernel, so its colours compare); each weight
    enlarged to a square of `kernel_zoom` pixels by nearest neighbour. A kernel of zeros is all grey."""
    weights = np.asarray(weights, dtype=np.float64)
    scale = float(np.abs(weights).max()) if weights.size else 0.0
    values = 127.5 + 127.5 * (weights / scale if scale > 0 else np.zeros_like(weights))
    pixels = np.clip(np.round(values), 0, 255).astype(np.uint8)
    zoom = kernel_zoom(weights.shape[:2])
    return np.repeat(np.repeat(pixels, zoom, axis=0), zoom, axis=1), scale


def lossless_webp(image: np.ndarray) -> bytes:
    """Lossless WebP: every pixel decodes to exactly its value (a kernel's weights, read back)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="WEBP", lossless=True, quality=100, method=6)
    return buffer.getvalue()
