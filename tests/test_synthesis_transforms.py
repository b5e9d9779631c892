"""Transforms: shapes, neutral fill, reproducibility and per-image (not per-position) randomness."""

import numpy as np
import pytest

from atlasgen.synthesis import transforms
from atlasgen.tf import tf



def keys(*values):
    return tf.constant(values, tf.int64)


def test_pad_adds_a_neutral_border():
    images = tf.ones((2, 5, 5, 3))
    out = transforms.pad(3)(images, keys(1, 2)).numpy()
    assert out.shape == (2, 11, 11, 3)
    assert np.all(out[:, :3] == 0.5) and np.all(out[:, 3:8, 3:8] == 1.0)


def test_jitter_moves_a_dot_by_whole_pixels_within_range():
    image = np.zeros((1, 21, 21, 3), np.float32)
    image[0, 10, 10] = 1.0
    seen = set()
    for k in range(40):
        out = transforms.jitter(8)(tf.constant(image), keys(k)).numpy()[0, ..., 0]
        ys, xs = np.nonzero(out == 1.0)
        assert len(ys) == 1, "a whole-pixel shift keeps the dot one pixel"
        dy, dx = ys[0] - 10, xs[0] - 10
        assert -4 <= dy <= 4 and -4 <= dx <= 4
        seen.add((dy, dx))
    assert len(seen) > 10


@pytest.mark.parametrize("transform", [transforms.random_scale(0.9, 1.1), transforms.random_rotate(10), transforms.jitter(8)])
def test_random_transforms_keep_size_and_fill_with_grey(transform):
    images = tf.fill((3, 16, 16, 3), 0.5)
    out = transform(images, keys(1, 2, 3)).numpy()
    assert out.shape == (3, 16, 16, 3)
    assert np.allclose(out, 0.5)


def test_randomness_follows_the_key_not_the_batch_position():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(size=(3, 24, 24, 3)).astype(np.float32))
    chain = transforms.compose(transforms.standard())
    together = chain(images, keys(7, 8, 9)).numpy()
    alone = chain(images[2:3], keys(9)).numpy()
    assert np.allclose(together[2], alone[0], atol=1e-6)
    again = chain(images, keys(7, 8, 9)).numpy()
    assert np.array_equal(together, again)
    different = chain(images, keys(70, 80, 90)).numpy()
    assert not np.allclose(together, different)


def test_standard_chain_matches_lucid_geometry():
    out = transforms.compose(transforms.standard())(tf.fill((1, 128, 128, 3), 0.2), keys(1)).numpy()
    assert out.shape == (1, 152, 152, 3)  # pad 12 on each side; the random steps keep the size


def test_uniform_is_in_range_and_roughly_uniform():
    values = transforms.uniform(tf.range(20000, dtype=tf.int64), 5, -2.0, 3.0).numpy()
    assert values.min() >= -2.0 and values.max() < 3.0
    assert abs(values.mean() - 0.5) < 0.05
    assert abs(np.histogram(values, bins=5)[0] / 4000 - 1).max() < 0.1
