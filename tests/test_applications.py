"""The keras.applications models by name: every one walks, and its fields are the ones the input
gradient shows (issue 23, items 1 and 2).

The gradient is measured on a float64 copy of the model built by Keras's own `clone_model`, not by
atlasgen's walk: max pooling becomes average pooling of the same window (max pooling sends the gradient
to one pixel of each window only), every activation is linear and every weight is made positive (so
no path cancels another or dies in a ReLU). None of that changes which pixels a unit depends on. The
field of a unit is then the bounding box of the pixels whose gradient is not zero, compared with the
analytic box for the centre unit and its neighbours below and to the right. Each model is checked
on a sample of its conv layers at one small size, in one forward and backward pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from atlasgen.model.applications import APPLICATIONS
from atlasgen.model.geometry import Box
from atlasgen.model.layers import model_geometry
from atlasgen.model.weights import load_model

# Input size per model: small, and large enough for every model's deepest layer to have a map.
SIZES = {"inception_v3": 96, "densenet121": 64, "convnext_tiny": 96, "efficientnet_b0": 64}
SIZE = 64


@pytest.fixture(scope="module")
def loaded_models():
    """Each model with random weights, loaded once for the module."""
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache[name] = load_model("random", name)
        return cache[name]

    return get


def measuring_copy(keras, model):
    """A float64 copy of `model` whose units depend on the same pixels, with nothing that hides a
    dependency: average for max pooling, linear activations, positive weights (and a depthwise conv
    for a conv of one group per channel, which reads the same taps)."""
    L = keras.layers

    def copy(layer):
        if not isinstance(layer, L.Layer):
            return layer.__class__.from_config(layer.get_config())
        config = {**layer.get_config(), "dtype": "float64"}
        if isinstance(layer, L.MaxPooling2D):
            return L.AveragePooling2D.from_config(config)
        if isinstance(layer, (L.Activation, L.ReLU)):
            return L.Activation("linear", name=layer.name, dtype="float64")
        if _depthwise(layer):  # the same taps; TensorFlow runs grouped float64 convolutions slowly (XLA)
            return L.DepthwiseConv2D.from_config({key: config[key] for key in _DEPTHWISE_KEYS})
        if "activation" in config:
            config["activation"] = "linear"
        return layer.__class__.from_config(config)

    image = keras.Input((None, None, 3), dtype="float64")
    clone = keras.models.clone_model(model, input_tensors=image, clone_function=copy)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            target = clone.get_layer(layer.name)
            target.set_weights([_positive(w).reshape(t.shape) for w, t in zip(weights, target.weights)])
    return clone


_DEPTHWISE_KEYS = ("name", "dtype", "kernel_size", "strides", "padding", "dilation_rate", "use_bias")


def _depthwise(layer) -> bool:
    """A Conv2D of one group per channel: a depthwise conv (its kernel (k, k, 1, C) is (k, k, C, 1) reshaped)."""
    groups = getattr(layer, "groups", 1)
    return type(layer).__name__ == "Conv2D" and groups > 1 and groups == layer.filters == layer.kernel.shape[3] \
        and layer.kernel.shape[2] == 1


def _positive(weight) -> np.ndarray:
    """The weight made positive; a kernel also scaled so each output sums its inputs with weights
    summing to 1, so that nothing overflows on the way through a deep network."""
    w = np.abs(np.asarray(weight, dtype=np.float64)) + 0.01
    return w / w.sum(axis=tuple(range(w.ndim - 1)), keepdims=True) if w.ndim >= 2 else w


def measured_boxes(keras, model, requests, size):
    """For each (layer, unit): the bounding box of the input pixels whose gradient is not zero, from one
    batched pass (batch element i asks for request i)."""
    import tensorflow as tf

    clone = measuring_copy(keras, model)
    layers = sorted({layer for layer, _ in requests})
    probe = keras.Model(clone.inputs, [clone.get_layer(name).output for name in layers])
    image = tf.constant(np.random.default_rng(0).uniform(0.5, 1.0, (len(requests), size, size, 3)))
    with tf.GradientTape() as tape:
        tape.watch(image)
        outputs = probe(image, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        total = 0
        for i, (layer, (y, x)) in enumerate(requests):
            total += tf.reduce_sum(outputs[layers.index(layer)][i, y, x, :])
    grads = np.abs(tape.gradient(total, image).numpy()).sum(axis=-1)
    assert np.isfinite(grads).all()
    sizes = {name: tuple(out.shape[1:3]) for name, out in zip(layers, outputs)}
    boxes = []
    for grad in grads:
        rows, cols = np.nonzero(grad.any(axis=1))[0], np.nonzero(grad.any(axis=0))[0]
        boxes.append(Box(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1) if rows.size else None)
    return boxes, sizes


def sample(geometry, size: int) -> list[str]:
    """A few conv layers: the first, up to three whose centre field lies inside the image (r, S and P
    then all show in the box), the deepest, and the first global one if any."""
    convs = [c.name for c in geometry.convs]
    fields = geometry.fields((size, size))
    inside = [name for name in convs if fields[name].whole is None and _inside(fields[name], size)]
    picks = [convs[0]] + [inside[int(i)] for i in np.linspace(0, len(inside) - 1, 3)] + [convs[-1]]
    picks += [name for name in convs if fields[name].whole is not None][:1]
    return sorted(set(picks), key=convs.index)


def _inside(field, size: int) -> bool:
    box = field.unit_box(field.centre_unit((size, size)))
    return box.top > 0 and box.left > 0 and box.bottom < size - field.S[0] and box.right < size - field.S[1]


def _requests(geometry, layers, size):
    fields = geometry.fields((size, size))
    requests = []
    for layer in layers:
        field = fields[layer]
        cy, cx = field.centre_unit((size, size))
        for unit in ((cy, cx), (cy, cx + 1), (cy + 1, cx)):
            if unit[0] < field.size[0] and unit[1] < field.size[1]:
                requests.append((layer, unit))
    return requests


@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_fields_match_the_input_gradient(keras, loaded_models, name):
    loaded = loaded_models(name)
    geometry = model_geometry(loaded)
    size = SIZES.get(name, SIZE)
    layers = sample(geometry, size)
    requests = _requests(geometry, layers, size)
    boxes, sizes = measured_boxes(keras, loaded.model, requests, size)
    fields = geometry.fields((size, size))
    for (layer, unit), measured in zip(requests, boxes):
        field = fields[layer]
        assert field.size == sizes[layer], (name, layer)
        assert measured == field.unit_input(unit, (size, size)), (name, layer, unit, field)
    # The sample states r, S and P, not only clipped boxes: at least one layer past the first, unclipped.
    assert sum(1 for layer in layers[1:] if fields[layer].whole is None and _inside(fields[layer], size)) >= 1


def test_convnext_tiny_stem_and_downsampling_are_walked(loaded_models, keras):
    from atlasgen.model.applications import APPLICATIONS, build

    loaded = loaded_models("convnext_tiny")
    layers = {info.name: info.as_dict() for info in model_geometry(loaded).layers(224)}
    assert len(layers) == 22  # 18 blocks' depthwise convs, the stem and 3 downsampling convs
    stem, first = layers["convnext_tiny_stem_conv"], layers["convnext_tiny_stage_0_block_0_depthwise_conv"]
    assert (stem["r"], stem["S"], stem["P"]) == (4, 4, 0)
    assert (first["r"], first["S"], first["P"]) == (28, 4, 12)  # 7x7 'same' on the stride-4 stem: 4 + 6*4
    assert layers["convnext_tiny_downsampling_conv_2"]["S"] == 32
    # The flat model atlasgen walks computes what Keras's nested one does.
    nested = build(APPLICATIONS["convnext_tiny"], None)
    image = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded.model(image)), np.asarray(nested(image)), rtol=1e-5, atol=1e-4)


def test_efficientnet_gated_layers_are_global(loaded_models):
    geometry = model_geometry(loaded_models("efficientnet_b0"))
    layers = {info.name: info.as_dict() for info in geometry.layers(96)}
    assert layers["block1a_dwconv"]["r"] == 7 and "global" not in layers["block1a_dwconv"]
    project = layers["block1a_project_conv"]
    assert project["r"] is None and project["P"] is None and "block1a_se_squeeze" in project["global"]
    assert project["centre_box"] == [0, 0, 96, 96]
    assert all(layers[name]["r"] is None for name in list(layers)[list(layers).index("block1a_project_conv"):])


def test_random_weights_are_the_same_every_time_and_labelled(loaded_models):
    first = loaded_models("mobilenet_v2")
    again = load_model("random", "mobilenet_v2")
    assert first.fingerprint == again.fingerprint
    assert first.source.kind == "random" and first.source.label.startswith("random weights")
    assert first.architecture == "mobilenet_v2"


@pytest.mark.parametrize("name, order, scale, preprocessing", [
    ("vgg19", "BGR", 255.0, "caffe"), ("resnet50", "BGR", 255.0, "caffe"), ("resnet50v2", "RGB", 2.0, "tf"),
    ("inception_v3", "RGB", 2.0, "tf"), ("mobilenet_v2", "RGB", 2.0, "tf"), ("densenet121", "RGB", 1.0, "torch"),
    ("efficientnet_b0", "RGB", 255.0, "in-model"), ("convnext_tiny", "RGB", 255.0, "in-model"),
])
def test_each_model_has_its_input_convention(name, order, scale, preprocessing):
    convention = APPLICATIONS[name].convention
    assert (convention.channel_order, convention.scale, convention.preprocessing) == (order, scale, preprocessing)


def test_a_weights_file_of_a_model_by_name_loads_into_it(loaded_models, tmp_path):
    random = loaded_models("mobilenet_v2")
    path = tmp_path / "mobilenet.weights.h5"
    random.model.save_weights(path)
    loaded = load_model(str(path), "mobilenet_v2")
    assert loaded.fingerprint == random.fingerprint and loaded.source.kind == "file"
    assert loaded.input_convention == APPLICATIONS["mobilenet_v2"].convention
    from atlasgen.errors import AtlasgenError

    with pytest.raises(AtlasgenError, match="does not fit DenseNet121 without its top"):
        load_model(str(path), "densenet121")
