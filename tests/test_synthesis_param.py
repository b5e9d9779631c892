"""Parametrisation maths: 1/f spectrum scaling, colour decorrelation, the sigmoid."""

import numpy as np
import pytest

from atlasgen.synthesis import param
from atlasgen.tf import tf



def test_spectrum_scale_is_one_over_f_with_dc_capped():
    h, w = 16, 20
    scale = param.spectrum_scale(h, w)
    freqs = param.spectrum_frequencies(h, w)
    assert scale.shape == (h, w // 2 + 1)
    # DC is treated as the lowest non-zero frequency, 1/max(h, w).
    assert scale[0, 0] == pytest.approx(max(h, w) * np.sqrt(h * w), rel=1e-5)
    assert scale[0, 1] == pytest.approx(np.sqrt(h * w) / freqs[0, 1], rel=1e-5)
    assert scale[0, 1] > scale[0, 5] > scale[h // 2, w // 2]


def test_colour_matrix_normalised_by_largest_column():
    norms = np.linalg.norm(param.COLOR_CORRELATION, axis=0)
    assert norms.max() == pytest.approx(1.0)
    assert np.allclose(param.COLOR_CORRELATION / param.COLOR_CORRELATION[0, 0], param.COLOR_CORRELATION_SVD_SQRT / 0.26)


def test_zero_spectrum_is_neutral_grey():
    scale = tf.constant(param.spectrum_scale(8, 8))
    image = param.fourier_rgb(tf.zeros((2, 1, 3, 8, 5)), scale, 8, 8).numpy()
    assert image.shape == (1, 8, 8, 3)
    assert np.allclose(image, 0.5)


def test_random_spectrum_gives_pink_noise_in_unit_range():
    h = w = 64
    spectrum = param.initial_spectrum(1, h, w, sd=1.0, rng=np.random.default_rng(0))
    image = param.spectrum_to_image(tf.constant(spectrum), tf.constant(param.spectrum_scale(h, w)), h, w).numpy()[0, ..., 0]
    power = np.abs(np.fft.rfft2(image)) ** 2
    freqs = param.spectrum_frequencies(h, w)
    low = power[(freqs > 0) & (freqs < 0.1)].mean()
    high = power[freqs > 0.4].mean()
    assert low > 50 * high  # 1/f amplitude: power falls as 1/f^2
    rgb = param.fourier_rgb(tf.constant(spectrum), tf.constant(param.spectrum_scale(h, w)), h, w).numpy()
    assert 0 < rgb.min() and rgb.max() < 1
