"""The analytic receptive field is exactly where a unit's gradient w.r.t. the input is non-zero."""

from __future__ import annotations

import numpy as np
import pytest

from atlasgen.geometry import receptive_fields
from atlasgen.model import spatial_ops


def linear_positive_copy(keras, model, seed: int = 0):
    """The same graph with linear activations, average instead of max pooling and positive kernels.

    Max pooling sends the gradient to the one largest element of each window, so a unit's
    gradient would miss most of its field; average pooling with the same pool size, strides
    and padding spreads it over the whole window. Positive kernels (normalised by fan-in to
    keep values moderate) and no ReLU mean no term can cancel or be cut to an exact zero.
    """
    L = keras.layers

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, L.MaxPooling2D):
            return L.AveragePooling2D.from_config(config)
        if isinstance(layer, L.Conv2D):
            config["activation"] = "linear"
        return type(layer).from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    rng = np.random.default_rng(seed)
    for layer in copy.layers:
        if isinstance(layer, L.Conv2D):
            shape = tuple(layer.kernel.shape)
            kernel = rng.uniform(0.5, 1.5, shape) / np.prod(shape[:3])
            layer.set_weights([kernel.astype("float32"), np.zeros(shape[3], "float32")])
    assert not any(isinstance(layer, L.MaxPooling2D) for layer in copy.layers)
    return copy


def check_fields_against_gradients(keras, model, shape, targets):
    """For each (layer, unit), the input pixels with a non-zero gradient form the analytic clipped box."""
    import tensorflow as tf

    copy = linear_positive_copy(keras, model)
    fields = receptive_fields(spatial_ops(copy), shape)
    names = sorted({name for name, _ in targets})
    probe = keras.Model(copy.input, [copy.get_layer(name).output for name in names])
    image = tf.Variable(np.random.default_rng(1).uniform(size=(1, *shape, 3)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        outputs = probe(image)
        outputs = dict(zip(names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))
    checked = 0
    for name, unit in targets:
        field = fields[name]
        if unit == "centre":
            unit = field.centre_unit(shape)
        elif unit == "last":
            unit = (field.size[0] - 1, field.size[1] - 1)
        assert tuple(outputs[name].shape[1:3]) == field.size
        with tape:
            value = tf.reduce_sum(outputs[name][0, unit[0], unit[1], :])
        gradient = tape.gradient(value, image).numpy()[0]
        touched = np.any(gradient != 0, axis=-1)
        box = field.unit_box(unit).clipped(shape)
        expected = np.zeros(shape, bool)
        expected[box.top : box.bottom, box.left : box.right] = True
        assert expected.any(), (name, unit, box)
        rows, cols = np.nonzero(touched)
        found = [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1] if rows.size else None
        assert np.array_equal(touched, expected), f"{name} unit {unit}: gradient box {found}, analytic {box.as_list()}"
        checked += 1
    del tape
    return checked


def test_vgg16_fields_match_gradients(keras, hed_model):
    shape = (96, 96)
    targets = [
        ("block1_conv1", "centre"),
        ("block1_conv2", (0, 0)),  # clipped at the top-left corner
        ("block2_conv1", "centre"),
        ("block3_conv1", "centre"),
        ("block3_pool", (0, 11)),
        ("block4_conv1", "centre"),  # r 60 inside a 96 px image
        ("block4_conv3", "centre"),  # r 92: clipped on one side
        ("block4_conv3", "last"),
        ("block5_conv1", (1, 4)),
        ("block5_conv3", "centre"),  # r 196: clipped to the whole image
    ]
    assert check_fields_against_gradients(keras, hed_model.model, shape, targets) == len(targets)


@pytest.mark.parametrize("shape", [(37, 37), (40, 45)])
def test_custom_cnn_fields_match_gradients(keras, custom_cnn, shape):
    targets = [(name, unit) for name in ("dilated", "strided_same", "pool", "add", "head") for unit in ("centre", (0, 0), "last")]
    assert check_fields_against_gradients(keras, custom_cnn, shape, targets) == len(targets)
