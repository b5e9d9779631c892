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


def test_a_kernel_is_drawn_around_grey_one_square_per_weight_and_read_back_exactly():
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(3, 3, 3))
    weights[0, 0, 0] = 0.0
    image, scale = codec.kernel_image(weights)
    assert scale == np.abs(weights).max() and image.shape == (96, 96, 3) and image.dtype == np.uint8
    zoom = codec.kernel_zoom((3, 3))
    assert zoom == 32 and codec.kernel_size((3, 3)) == (96, 96)
    taps = image[zoom // 2 :: zoom, zoom // 2 :: zoom]
    # Nearest neighbour: every weight a square of one colour.
    assert np.array_equal(np.repeat(np.repeat(taps, zoom, 0), zoom, 1), image)
    # 0 is mid-grey; the largest absolute weight is 0 or 255; the rest in proportion, to 8-bit rounding.
    assert taps[0, 0, 0] == 128
    extreme = np.unravel_index(np.abs(weights).argmax(), weights.shape)
    assert taps[extreme] == (255 if weights[extreme] > 0 else 0)
    assert np.abs((taps - 127.5) / 127.5 * scale - weights).max() <= 0.5 / 127.5 * scale + 1e-12
    # Stored losslessly: the file gives back these pixels exactly.
    assert np.array_equal(codec.decode(codec.lossless_webp(image)), image)
    # A kernel of zeros is all grey; other shapes get whole squares near 96 px.
    flat, zero = codec.kernel_image(np.zeros((3, 3, 3)))
    assert zero == 0 and (flat == 128).all()
    assert codec.kernel_size((7, 7)) == (91, 91) and codec.kernel_size((3, 2)) == (64, 96)
    assert codec.kernel_image(rng.normal(size=(3, 2, 3)))[0].shape == (96, 64, 3)
