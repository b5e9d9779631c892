"""The model cut at one layer: its maps, the centre neuron's exact patch, and batch sizes from memory."""

import numpy as np
import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.synthesis import LayerEngine
from atlasgen.synthesis.engine import choose_batch_size
from atlasgen.tf import tf


@pytest.fixture(scope="module")
def block3(hed_model):
    return LayerEngine(hed_model, "block3_conv1")


def test_only_conv_layers_have_an_engine(hed_model):
    with pytest.raises(AtlasgenError, match="not a convolutional layer"):
        LayerEngine(hed_model, "block1_pool")


def test_maps_are_the_full_models_pre_relu_output_for_the_chosen_filters(hed_model, block3, keras):
    image = np.random.default_rng(0).uniform(size=(2, 40, 40, 3)).astype(np.float32)
    ids = [5, 0, 17]
    mine = block3.maps(tf.constant(image), tf.constant(ids)).numpy()
    layer = hed_model.model.get_layer("block3_conv1")
    cut = keras.Model(hed_model.model.inputs, layer.output)
    # The layer's own output is post-ReLU; ours is pre-ReLU, so they agree where ours is positive.
    full = cut(block3.to_model_input(tf.constant(image))).numpy()[..., ids]
    assert np.allclose(np.maximum(mine, 0), full, rtol=1e-4, atol=1e-3)
    own = block3.own_maps(tf.constant(image[:1].repeat(3, 0)), tf.constant(ids)).numpy()
    assert np.allclose(own[1], mine[0, ..., 1], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("layer,size", [("block3_conv1", 64), ("block4_conv1", 96), ("block5_conv1", 64)])
def test_patch_model_gives_the_neuron_exactly_its_full_image_value(hed_model, layer, size):
    engine = LayerEngine(hed_model, layer)
    plan = engine.patch_plan(size)
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(1, size, size, 3)).astype(np.float32)
    ids = tf.constant([0, 7], tf.int32)
    full = engine.maps(tf.constant(image), ids).numpy()[0][plan.unit]
    p = plan.patch
    patch = engine.maps(tf.constant(image[:, p.top : p.bottom, p.left : p.right]), ids).numpy()[0][plan.unit_in_patch]
    assert np.allclose(full, patch, rtol=1e-4, atol=1e-3)
    # Pixels outside the receptive field do not matter at all.
    outside = image.copy()
    b = plan.box
    keep = outside[:, b.top : b.bottom, b.left : b.right].copy()
    outside[:] = rng.uniform(size=outside.shape)
    outside[:, b.top : b.bottom, b.left : b.right] = keep
    moved = engine.maps(tf.constant(outside), ids).numpy()[0][plan.unit]
    assert np.allclose(full, moved, rtol=1e-4, atol=1e-3)


def test_patch_is_small_for_early_layers_and_stride_aligned(block3):
    plan = block3.patch_plan(128)
    field = block3.field((128, 128))
    assert plan.box == field.unit_box(plan.unit).clipped((128, 128))
    assert plan.patch.top % 4 == 0 and plan.patch.left % 4 == 0
    assert plan.patch.height < 24 + 2 * 4 and plan.patch.top <= plan.box.top and plan.patch.bottom >= plan.box.bottom


def test_batch_size_fits_the_memory_budget():
    assert choose_batch_size(100, 1000, wanted=64) == 10
    assert choose_batch_size(100, 50, wanted=64) == 1
    assert choose_batch_size(1, 10**9, wanted=8) == 8
    assert choose_batch_size(1, 10**9, wanted=500, limit=64) == 64




def test_activation_bytes_grow_with_the_image(block3):
    small, large = block3.bytes_per_image((32, 32)), block3.bytes_per_image((64, 64))
    assert 3.5 < large / small < 4.5
