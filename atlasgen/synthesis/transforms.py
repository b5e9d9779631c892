"""Transformation robustness (Lucid's standard transforms), applied to the image at every step.

A transform is a function (images, keys) -> images, with images (batch, h, w, 3) in [0, 1] and keys
one int64 per image. Random draws are a hash of the key, so an image's augmentations depend on its
own key (filter, seed, step) and not on its place in the batch: the same filter gets the same image
whichever filters share its batch. Random transforms keep the image size and fill uncovered pixels
with neutral grey, so the step compiles once.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from atlasgen.tf import tf


NEUTRAL = 0.5
Transform = Callable[..., object]


def pad(width: int, value: float = NEUTRAL) -> Transform:
    """A border of constant grey, so edges are optimised like the interior."""

    def apply(images, keys):
        return tf.pad(images, [[0, 0], [width, width], [width, width], [0, 0]], constant_values=value)

    return apply


def _warp(images, matrices, interpolation: str = "BILINEAR"):
    """Resamples each image with its own output->input affine map (a0 a1 a2 b0 b1 b2 0 0).

    ImageProjectiveTransformV3 has no XLA kernel; a gather-based warp that XLA accepts measured
    4x slower on the CPU, and XLA itself slowed the VGG trunk there, so the step runs without XLA.
    """
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=matrices,
        output_shape=tf.shape(images)[1:3],
        fill_value=NEUTRAL,
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )


def hash32(keys):
    """A 32-bit integer mixing hash (Wang/Mueller), kept in int64 so products cannot overflow."""
    b = tf.bitwise
    low32 = tf.constant(0xFFFFFFFF, tf.int64)
    x = b.bitwise_and(tf.cast(keys, tf.int64), low32)
    for _ in range(2):
        x = b.bitwise_and(b.bitwise_xor(b.right_shift(x, 16), x) * 0x45D9F3B, low32)
    return b.bitwise_xor(b.right_shift(x, 16), x)


def uniform(keys, salt: int, low, high):
    """One float per key, uniform in [low, high), reproducible from (key, salt)."""
    bits = hash32(hash32(keys) + salt)
    unit = tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) / float(1 << 24)
    return low + (high - low) * unit


def jitter(distance: int) -> Transform:
    """Shifts by a whole number of pixels, spread `distance` (Lucid's random crop of size - distance)."""
    half = distance / 2

    def apply(images, keys):
        dy = tf.floor(uniform(keys, 0, -half, half + 1))
        dx = tf.floor(uniform(keys, 1, -half, half + 1))
        zeros, ones = tf.zeros_like(dy), tf.ones_like(dy)
        matrices = tf.stack([ones, zeros, -dx, zeros, ones, -dy, zeros, zeros], axis=1)
        return _warp(images, matrices, "NEAREST")

    return apply


def _about_centre(images, scale, angle):
    """Output->input matrices for a zoom by `scale` and a turn by `angle` radians about the centre."""
    size = tf.cast(tf.shape(images)[1:3], tf.float32)
    cy, cx = (size[0] - 1) / 2, (size[1] - 1) / 2
    a0, a1 = tf.cos(angle) / scale, tf.sin(angle) / scale
    b0, b1 = -tf.sin(angle) / scale, tf.cos(angle) / scale
    zeros = tf.zeros_like(scale)
    return tf.stack(
        [a0, a1, cx - a0 * cx - a1 * cy, b0, b1, cy - b0 * cx - b1 * cy, zeros, zeros], axis=1
    )


def random_scale(low: float, high: float) -> Transform:
    """Zooms by a factor drawn uniformly from [low, high]."""

    def apply(images, keys):
        scale = uniform(keys, 2, low, high)
        return _warp(images, _about_centre(images, scale, tf.zeros_like(scale)))

    return apply


def random_rotate(degrees: float) -> Transform:
    """Turns by an angle drawn uniformly from [-degrees, degrees]."""
    limit = math.radians(degrees)

    def apply(images, keys):
        angle = uniform(keys, 3, -limit, limit)
        return _warp(images, _about_centre(images, tf.ones_like(angle), angle))

    return apply


def compose(transforms: Sequence[Transform]) -> Transform:
    """One transform that applies each in turn, each with keys of its own."""

    def apply(images, keys):
        for index, transform in enumerate(transforms):
            images = transform(images, hash32(keys * 31 + index))
        return images

    return apply


def standard(pad_width: int = 12, jitter_first: int = 8, scale=(0.9, 1.1), degrees: float = 10.0,
             jitter_last: int = 4) -> list[Transform]:
    """Lucid's standard_transforms: pad 12, jitter 8, scale 0.9-1.1, rotate +-10 degrees, jitter 4."""
    chain: list[Transform] = []
    if pad_width:
        chain.append(pad(pad_width))
    if jitter_first:
        chain.append(jitter(jitter_first))
    if scale and tuple(scale) != (1.0, 1.0):
        chain.append(random_scale(*scale))
    if degrees:
        chain.append(random_rotate(degrees))
    if jitter_last:
        chain.append(jitter(jitter_last))
    return chain
