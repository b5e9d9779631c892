"""The layer walk over real Keras graphs, and its geometry against the shapes Keras computes."""

from __future__ import annotations

import numpy as np
import pytest

from atlasgen.model.geometry import receptive_fields
from atlasgen.model.graph import conv_layers, spatial_ops
from atlasgen.model.weights import VGG16_LAYERS
from support import CUSTOM_CONVS, PUBLISHED_VGG16


def test_vgg16_walks_to_13_conv_layers(hed_model):
    convs = conv_layers(hed_model.model)
    assert [c.name for c in convs] == list(VGG16_LAYERS)
    assert sum(c.filters for c in convs) == 4224
    assert [c.filters for c in convs][::3] == [64, 128, 256, 512, 512]


def test_vgg16_graph_matches_published_table(hed_model):
    fields = receptive_fields(spatial_ops(hed_model.model), (224, 224))
    for layer, (r, S, P) in PUBLISHED_VGG16.items():
        assert (fields[layer].r, fields[layer].S, fields[layer].P) == ((r, r), (S, S), (P, P)), layer


def test_vgg19_walks_to_16_conv_layers(keras):
    model = keras.applications.VGG19(weights=None, include_top=False)
    convs = conv_layers(model)
    assert len(convs) == 16
    assert convs[-1].name == "block5_conv4" and sum(c.filters for c in convs) == 5504
    fields = receptive_fields(spatial_ops(model), (224, 224))
    # One more 3x3 conv than VGG16 in blocks 3, 4 and 5, each adding 2*S: 196 + 2*4 + 2*8 + 2*16.
    assert fields["block5_conv4"].r == (252, 252)


def test_custom_cnn_walks(custom_cnn):
    assert [(c.name, c.filters) for c in conv_layers(custom_cnn)] == CUSTOM_CONVS
    kinds = {op.name: op.kind for op in spatial_ops(custom_cnn)}
    assert kinds == {
        "<image>": "input", "image": "identity", "c1": "conv", "dilated": "conv", "strided_same": "conv",
        "pad": "pad", "pool": "pool", "res_conv": "conv", "add": "merge", "crop": "crop", "head": "conv",
    }
    ops = {op.name: op for op in spatial_ops(custom_cnn)}
    assert ops["add"].inputs == ("pool", "res_conv")
    assert ops["dilated"].dilation == (2, 2) and ops["head"].kernel == (3, 2) and ops["head"].stride == (2, 1)


def test_sequential_model_walks(keras, tmp_path):
    L = keras.layers
    model = keras.Sequential(
        [keras.Input((None, None, 3)), L.Conv2D(4, 5, name="a"), L.MaxPooling2D(name="p"), L.Conv2D(6, 3, name="b")]
    )
    model.save(tmp_path / "seq.keras")
    for walked in (model, keras.saving.load_model(tmp_path / "seq.keras")):
        assert [(c.name, c.filters) for c in conv_layers(walked)] == [("a", 4), ("b", 6)]
        fields = receptive_fields(spatial_ops(walked), (32, 32))
        assert (fields["b"].r, fields["b"].S, fields["b"].P, fields["b"].size) == ((10, 10), (2, 2), (0, 0), (12, 12))


def _real_output_sizes(keras, model, shape):
    """Output height and width of every layer, from running the model on an image of that shape."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.input, [layer.output for layer in layers])
    outputs = probe(np.zeros((1, *shape, 3), "float32"))
    return {layer.name: tuple(out.shape[1:3]) for layer, out in zip(layers, outputs)}


@pytest.mark.parametrize("shape", [(33, 33), (37, 50), (41, 29), (64, 64), (65, 71)])
def test_custom_cnn_sizes_match_keras(keras, custom_cnn, shape):
    fields = receptive_fields(spatial_ops(custom_cnn), shape)
    real = _real_output_sizes(keras, custom_cnn, shape)
    assert {name: fields[name].size for name in real} == real


@pytest.mark.parametrize("shape", [(35, 35), (67, 50)])
def test_vgg16_sizes_match_keras(keras, hed_model, shape):
    fields = receptive_fields(spatial_ops(hed_model.model), shape)
    real = _real_output_sizes(keras, hed_model.model, shape)
    assert {name: fields[name].size for name in real} == real


def test_vgg16_runs_as_loaded(hed_model):
    # Any input size and safe names already: the engine runs the model's own graph, cut, renaming nothing.
    from atlasgen.model.graph import runnable_model

    assert hed_model.internal_names == {}
    assert all(layer is hed_model.model.get_layer(layer.name) for layer in hed_model.runnable.layers)
    assert len(hed_model.runnable.outputs) == 13
    for conv, feed in zip(VGG16_LAYERS, hed_model.runnable.outputs):
        assert feed._keras_history == hed_model.model.get_layer(conv).input._keras_history
    runnable, internal = runnable_model(hed_model.model)
    assert internal == {} and [layer.name for layer in runnable.layers] == [layer.name for layer in hed_model.runnable.layers]


@pytest.mark.parametrize(
    "name, safe",
    [("block1_conv1", True), ("conv.2-a", True), ("my conv", False), ("<b>x", False), ("a&b", False),
     ("_lead", False), ("été", False), ("x>y", False)],
)
def test_scope_safe_names(name, safe):
    from atlasgen.model.graph import scope_safe

    assert scope_safe(name) is safe


def test_a_fixed_size_sequential_model_with_unsafe_names_is_replayed(keras, tmp_path):
    from atlasgen.model.graph import runnable_model

    L = keras.layers
    model = keras.Sequential(
        [keras.Input((40, 40, 3)), L.Conv2D(4, 3, name="my a"), L.BatchNormalization(name="bn x"),
         L.MaxPooling2D(name="p"), L.Conv2D(6, 3, name="b"), L.GlobalAveragePooling2D(name="gap"), L.Dense(3, name="d")]
    )
    bn = model.get_layer("bn x")
    bn.set_weights([w + i + 1 for i, w in enumerate(bn.get_weights())])  # moving stats that matter
    model.save(tmp_path / "seq.keras")
    walked = keras.saving.load_model(tmp_path / "seq.keras")
    runnable, internal = runnable_model(walked)
    assert sorted(internal) == ["bn x", "my a"]
    assert [tuple(t.shape) for t in runnable.outputs] == [(None, None, None, 3), (None, None, None, 4)]
    assert runnable.get_layer("p") is walked.get_layer("p")  # safe names: reused, not copied
    image = np.random.default_rng(5).uniform(size=(1, 40, 40, 3)).astype("float32")
    original = keras.Model(walked.inputs[0], walked.get_layer("b").input)(image)
    np.testing.assert_allclose(runnable(image)[1], original, rtol=1e-5, atol=1e-5)
    assert tuple(runnable(np.zeros((1, 23, 31, 3), "float32"))[1].shape) == (1, 10, 14, 4)


def test_plain_ops_between_layers_are_walked(keras):
    # `x + 1` and `x + y` on Keras tensors are ops of the graph, not layers: the walk goes through them.
    from atlasgen.model.graph import runnable_model

    L = keras.layers
    image = keras.Input((None, None, 3))
    x = L.Conv2D(4, 3, name="my a")(image)
    y = L.Conv2D(4, 3, padding="same", name="side")(x)
    x = L.Conv2D(6, 3, name="b")(keras.ops.add(x, 1.0) + y)
    model = keras.Model(image, x)
    ops = {op.name: op for op in spatial_ops(model)}
    assert ops["b"].inputs != ("<image>",) and ops[ops["b"].inputs[0]].kind == "merge"
    fields = receptive_fields(spatial_ops(model), (32, 32))
    # my a (3) then side (3) then b (3): r = 7; the sizes are those Keras computes.
    assert (fields["b"].r, fields["b"].size) == ((7, 7), (28, 28))
    assert _real_output_sizes(keras, model, (32, 32))["b"] == (28, 28)
    runnable, internal = runnable_model(model)
    assert list(internal) == ["my a"]
    assert tuple(runnable(np.zeros((1, 20, 20, 3), "float32"))[2].shape) == (1, 18, 18, 4)


# --- the layers that read the image --------------------------------------------------------------


def test_the_layers_that_read_the_image_are_found_from_the_graph(hed_model, custom_cnn, keras):
    from atlasgen.model.graph import image_readers
    from atlasgen.model.layers import model_geometry

    assert image_readers(hed_model.model) == ("block1_conv1",)
    assert model_geometry(hed_model).image_readers == ("block1_conv1",)
    assert image_readers(custom_cnn) == ("c1",)  # not dilated, which reads c1's 8 channels
    # Through channel-wise and spatial-only ops it still reads the image; through a conv, a merge or a
    # layer that mixes the channels it does not, whatever its name.
    L = keras.layers
    image = keras.Input((None, None, 3))
    padded = L.ZeroPadding2D(1)(L.Rescaling(1 / 255)(image))
    outputs = [
        L.Conv2D(2, 3, name="after_rescale_and_pad")(padded),
        L.Conv2D(2, 1, name="on_the_input")(image),
        L.Conv2D(2, 3, name="after_pool")(L.MaxPooling2D()(image)),
        L.Conv2D(2, 3, name="after_dense")(L.Dense(3)(image)),
        L.Conv2D(2, 3, name="after_a_merge")(L.Add()([image, padded[:, 1:-1, 1:-1]])),
        L.Conv2D(2, 3, name="block1_conv1")(L.Conv2D(3, 1, name="mixer")(image)),
    ]
    model = keras.Model(image, outputs)
    assert set(image_readers(model)) == {"after_rescale_and_pad", "on_the_input", "after_pool", "mixer"}
    sequential = keras.Sequential([keras.Input((None, None, 3)), L.Conv2D(4, 3, name="s1"), L.Conv2D(4, 3, name="s2")])
    assert image_readers(sequential) == ("s1",)
