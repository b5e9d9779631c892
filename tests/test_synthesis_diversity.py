"""Diversity sets: several whole-filter images of one filter, optimised together with Lucid's diversity term."""

import numpy as np
import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.synthesis import LayerEngine, SynthesisParams
from atlasgen.synthesis.diversity import diversity_batch, diversity_batch_size, diversity_key
from atlasgen.synthesis.objectives import channel_mean, gram_similarity
from atlasgen.tf import tf

TINY = SynthesisParams(size=40, steps=16)


@pytest.fixture(scope="module")
def block2(hed_model):
    return LayerEngine(hed_model, "block2_conv1")


def _gram_alike(engine, images) -> float:
    features = engine.features(tf.constant(np.stack(images) / 255.0, tf.float32))
    return float(gram_similarity(tf.cast(features, tf.float32), len(images)).numpy().mean())


def test_a_set_has_its_images_numbers_and_curves(block2):
    (made,) = diversity_batch(block2, [3], TINY, faces=3)
    assert made.layer == "block2_conv1" and made.filter == 3
    assert len(made.images) == len(made.objectives) == len(made.mean_activations) == len(made.histories) == 3
    for image, objective, history in zip(made.images, made.objectives, made.histories):
        assert image.shape == (40, 40, 3) and image.dtype == np.uint8 and image.std() > 2.0
        assert history.shape == (16,)
        assert history[-1] > history[0]  # the recorded objective is the filter's, and it rose
    # Each objective is the filter's own pre-ReLU mean on the stored image (without the term).
    maps = block2.own_maps(tf.constant(np.stack(made.images) / 255.0, tf.float32), tf.constant([3, 3, 3]))
    assert np.allclose(made.objectives, channel_mean()(maps).numpy(), rtol=1e-4, atol=1e-4)
    assert made.similarity == pytest.approx(_gram_alike(block2, made.images), abs=1e-4)
    assert len({image.tobytes() for image in made.images}) == 3


def test_the_term_pulls_the_textures_apart(block2):
    """Against the same starts without the term (weight 0), the set's Gram matrices are less alike."""
    params = SynthesisParams(size=40, steps=24)
    (together,) = diversity_batch(block2, [5], params, faces=2, weight=1.0)
    (apart,) = diversity_batch(block2, [5], params, faces=2, weight=0.0)
    assert together.similarity < apart.similarity
    for history in together.histories:  # and each image's objective still rose along its run
        assert history[-1] > history[0]


def test_a_set_does_not_depend_on_its_batch_mates(block2):
    alone = diversity_batch(block2, [6], TINY, faces=2)[0]
    together = diversity_batch(block2, [2, 6], TINY, faces=2)[1]
    assert together.filter == 6
    for a, b in zip(alone.images, together.images):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0


def test_each_image_has_its_own_start():
    keys = {diversity_key(0, f, face) for f in range(4) for face in range(4)}
    assert len(keys) == 16 and all(0 <= k < 2 ** 31 for k in keys)
    assert diversity_key(1, 0, 0) != diversity_key(0, 0, 0)


def test_batches_hold_whole_sets(block2):
    assert diversity_batch_size(block2, TINY, faces=4, wanted=1) == 1
    assert 1 <= diversity_batch_size(block2, TINY, faces=4, wanted=64) <= 64


def test_a_batch_checks_its_filters(block2):
    with pytest.raises(AtlasgenError):
        diversity_batch(block2, [1000], TINY, faces=2)


def test_a_layer_affine_in_the_pixels_lays_each_image_over_its_exact_extreme(hed_model):
    """block1_conv1 has one best image: each set image keeps EXACT_SHARE of its gain over grey, and
    the textures still differ."""
    from atlasgen.params import EXACT_SHARE
    from atlasgen.synthesis.images import NEUTRAL_BYTE, evaluate, exact_extremes

    block1 = LayerEngine(hed_model, "block1_conv1")
    (made,) = diversity_batch(block1, [5], TINY, faces=2)
    best = evaluate(block1, exact_extremes(block1, [5], 40) / 255.0, [5])[0][0]
    grey = evaluate(block1, np.full((1, 40, 40, 3), NEUTRAL_BYTE / 255.0, np.float32), [5])[0][0]
    assert len(made.exact_weights) == 2 and all(0 <= w <= 1 for w in made.exact_weights)
    for objective in made.objectives:
        assert objective >= grey + EXACT_SHARE * (best - grey) - 0.01 * abs(best - grey)  # within uint8 rounding
        assert objective <= best + 1e-3
    assert not np.array_equal(made.images[0], made.images[1])
    (elsewhere,) = diversity_batch(LayerEngine(hed_model, "block2_conv1"), [5], TINY, faces=2)
    assert elsewhere.exact_weights is None
