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


# --- exact or refused (issue 23) -------------------------------------------------------------------


def _loaded(keras, model):
    """A model as load_model gives it, without a file: only what model_geometry reads."""
    from types import SimpleNamespace

    from atlasgen.model.nested import inlined

    return SimpleNamespace(model=inlined(model), architecture=model.name)


@pytest.mark.parametrize("make, layer, words", [
    (lambda L, x: L.UpSampling2D(name="up")(x), "up", "UpSampling2D"),
    (lambda L, x: L.Reshape((-1, 4, 4), name="fold")(x), "fold", "Reshape"),
    (lambda L, x: L.Lambda(lambda t: t[:, ::-1], name="flip")(x), "flip", "Lambda"),
    (lambda L, x: L.Concatenate(axis=1, name="stack")([x, x]), "stack", "concatenates along axis 1"),
    (lambda L, x: x[:, 1:, :, :], None, "GetItem"),
])
def test_a_layer_of_unknown_effect_before_a_conv_refuses_the_model(keras, make, layer, words):
    from atlasgen.errors import AtlasgenError
    from atlasgen.model.layers import model_geometry

    L = keras.layers
    image = keras.Input((None, None, 3))
    x = L.Conv2D(4, 3, padding="same", name="first")(image)
    y = L.Conv2D(4, 3, name="second")(make(L, x))
    with pytest.raises(AtlasgenError) as caught:
        model_geometry(_loaded(keras, keras.Model(image, y, name="odd")))
    message = str(caught.value)
    assert "\n" not in message and "model odd is refused" in message and words in message, message
    assert layer is None or f"'{layer}'" in message
    assert "does not guess" in message


def test_what_comes_after_the_last_conv_is_not_judged(keras):
    from atlasgen.model.layers import model_geometry

    L = keras.layers
    image = keras.Input((None, None, 3))
    x = L.Conv2D(4, 3, name="only")(image)
    top = L.Dense(2)(L.GlobalMaxPooling2D()(L.UpSampling2D()(x)))
    geometry = model_geometry(_loaded(keras, keras.Model(image, top, name="with_top")))
    assert [info.name for info in geometry.layers(8)] == ["only"]


def test_squeeze_and_excitation_makes_later_fields_global(keras):
    """A global pool, through a 1 x 1 gate, multiplied back: every later unit sees the whole image."""
    from atlasgen.model.layers import model_geometry

    L = keras.layers
    image = keras.Input((None, None, 3))
    x = L.Conv2D(4, 3, padding="same", name="c1")(image)
    gate = L.Reshape((1, 1, 4), name="shape")(L.GlobalAveragePooling2D(name="squeeze")(x))
    gate = L.Conv2D(4, 1, activation="sigmoid", name="excite")(gate)
    x = L.Multiply(name="scale")([x, gate])
    x = L.Conv2D(4, 3, strides=2, padding="same", name="c2")(x)
    geometry = model_geometry(_loaded(keras, keras.Model(image, x, name="se")))
    rows = {info.name: info.as_dict() for info in geometry.layers(20)}
    assert rows["c1"]["r"] == 3 and "global" not in rows["c1"]
    for name in ("excite", "c2"):
        assert rows[name]["r"] is None and rows[name]["P"] is None, rows[name]
        assert rows[name]["global"] == "every unit depends on the whole image: squeeze (GlobalAveragePooling2D) pools the whole map"
        assert rows[name]["centre_box"] == [0, 0, 20, 20]
    assert rows["c2"]["S"] == 2 and rows["c2"]["output_size"] == 10 and rows["excite"]["output_size"] == 1
    # Transforms are fitted to what a unit sees, the whole image, not to the local r of 5.
    from atlasgen.params import SynthesisParams
    from atlasgen.synthesis.images import transforms_used

    from atlasgen.model.geometry import Field

    params, c2 = SynthesisParams(size=20), geometry.fields((20, 20))["c2"]
    assert c2.extent == (20, 20) and min(c2.r) < 20
    assert transforms_used(params, c2) == transforms_used(params, Field((20, 20), c2.S, (0, 0), c2.size))
    assert transforms_used(params, c2) != transforms_used(params, Field(c2.r, c2.S, c2.P, c2.size))


def test_a_layer_norm_over_the_whole_map_is_global_and_over_the_channels_is_not(keras):
    from atlasgen.model.layers import model_geometry

    L = keras.layers
    image = keras.Input((None, None, 3))
    x = L.Conv2D(4, 3, name="a")(image)
    per_pixel = L.Conv2D(4, 3, name="b")(L.LayerNormalization(axis=-1)(x))
    whole = L.Conv2D(4, 3, name="c")(L.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, name="norm_all")(x))
    geometry = model_geometry(_loaded(keras, keras.Model(image, [per_pixel, whole], name="norms")))
    rows = {info.name: info.as_dict() for info in geometry.layers(16)}
    assert rows["b"]["r"] == 5 and rows["c"]["r"] is None and "norm_all" in rows["c"]["global"]


def test_nested_models_are_walked_into(keras):
    """A Sequential inside a functional model (as ConvNeXt's stem): its convs are the model's, with fields."""
    from atlasgen.model.layers import model_geometry

    L = keras.layers
    stem = keras.Sequential([L.Conv2D(8, 4, strides=4, name="stem_conv"), L.LayerNormalization(name="stem_norm")],
                            name="stem")
    image = keras.Input((None, None, 3))
    x = stem(image)
    x = L.Conv2D(8, 7, padding="same", groups=8, name="dw")(x)
    loaded = _loaded(keras, keras.Model(image, x, name="nested"))
    geometry = model_geometry(loaded)
    rows = {info.name: info.as_dict() for info in geometry.layers(64)}
    assert list(rows) == ["stem_conv", "dw"]
    assert (rows["dw"]["r"], rows["dw"]["S"], rows["dw"]["P"]) == (28, 4, 12)
    assert rows["dw"]["filters"] == 8
