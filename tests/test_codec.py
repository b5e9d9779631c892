"""Image bytes: WebP for what people see, lossless PNG for raw maps."""

import numpy as np

from atlasgen import codec


def test_webp_round_trips_closely():
    rng = np.random.default_rng(0)
    image = (rng.uniform(size=(32, 48, 3)) * 40 + 100).astype(np.uint8)
    data = codec.webp(image)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    back = codec.decode(data)
    assert back.shape == image.shape and np.abs(back.astype(int) - image).mean() < 8
    assert codec.webp(image) == data, "the same pixels give the same bytes (content addressing relies on it)"


def test_grey_png_is_lossless_on_its_256_levels():
    values = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    back = codec.decode(codec.grey_png(values))
    assert back.dtype == np.uint8 and np.array_equal(back, np.round(values * 255).astype(np.uint8))
    assert codec.decode(codec.grey_png(np.array([[-1.0, 2.0]])) ).tolist() == [[0, 255]]
