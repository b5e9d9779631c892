"""Image parametrisations (Lucid's): a Fourier spectrum with 1/f scaling, decorrelated colour, a sigmoid.

Each function maps a tensor to a tensor; `fourier_rgb` composes them into the parametrisation the
optimiser uses. The trainable variable is the spectrum, never the pixels.
"""

from __future__ import annotations

import numpy as np

from atlasgen.tf import tf


# Lucid's colour correlation square root, estimated on ImageNet.
COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


def spectrum_frequencies(height: int, width: int) -> np.ndarray:
    """|f| of every coefficient of an rfft2 of a height x width image, in cycles per pixel."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> np.ndarray:
    """1/f scaling so every frequency band starts with equal energy; sqrt(h*w) undoes irfft's 1/(h*w)."""
    freqs = spectrum_frequencies(height, width)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width)) ** decay_power
    return (scale * np.sqrt(width * height)).astype(np.float32)


def initial_spectrum(batch: int, height: int, width: int, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Real and imaginary parts, N(0, sd): shape (2, batch, 3, height, width // 2 + 1)."""
    shape = (2, batch, 3, height, width // 2 + 1)
    return (sd * rng.standard_normal(shape)).astype(np.float32)


def spectrum_to_image(spectrum, scale, height: int, width: int):
    """Inverse real FFT of the scaled spectrum: (batch, height, width, 3), roughly unit variance."""
    complex_spectrum = tf.complex(spectrum[0] * scale, spectrum[1] * scale)
    image = tf.signal.irfft2d(complex_spectrum, fft_length=[height, width])
    return tf.transpose(image, (0, 2, 3, 1)) / 4.0


def decorrelate_colour(image):
    """Maps decorrelated channels to RGB, so the optimiser steps along natural colour axes."""
    return tf.einsum("bhwc,dc->bhwd", image, tf.constant(COLOR_CORRELATION))


def to_unit_range(image):
    """A sigmoid keeps pixels in (0, 1) without clipping, which would kill gradients."""
    return tf.sigmoid(image)


def scale_contrast(image, log_contrast):
    """Each image's deviation from its own mean colour scaled by exp(log_contrast), (batch, 1, 1, 1):
    its contrast, apart from its colour and its layout."""
    mean = tf.reduce_mean(image, axis=[1, 2], keepdims=True)
    return mean + tf.exp(log_contrast) * (image - mean)


def fourier_rgb(spectrum, scale, height: int, width: int, decorrelate: bool = True, log_contrast=None):
    """The whole parametrisation: spectrum -> RGB image in (0, 1); with `log_contrast`, each image's
    contrast scaled before the sigmoid."""
    image = spectrum_to_image(spectrum, scale, height, width)
    if decorrelate:
        image = decorrelate_colour(image)
    if log_contrast is not None:
        image = scale_contrast(image, log_contrast)
    return to_unit_range(image)
