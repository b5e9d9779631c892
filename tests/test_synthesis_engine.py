"""The model cut at one layer: its maps, the centre neuron's exact patch, and batch sizes from memory."""

from dataclasses import replace

import numpy as np
import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.model.graph import conv_layers
from atlasgen.synthesis import LayerEngine, SynthesisParams, synthesise
from atlasgen.synthesis.engine import choose_batch_size
from atlasgen.tf import tf
from atlasgen.model.weights import fingerprint, load_model


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


# --- models Keras allows but TensorFlow cannot run as they are --------------------------------


def save_model(model, folder, name):
    path = folder / f"{name}.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def fixed_size_path(keras, tmp_path_factory):
    """A model built for 64x64 inputs only, with a classifier head after its convs."""
    L = keras.layers
    image = keras.Input((64, 64, 3))
    x = L.Conv2D(4, 3, name="c1")(image)
    x = L.Conv2D(4, 3, strides=2, name="c2")(x)
    x = L.Dense(2, name="head")(L.Flatten(name="flat")(x))
    return save_model(keras.Model(image, x, name="fixed_cnn"), tmp_path_factory.mktemp("fixed"), "fixed_cnn")


@pytest.fixture(scope="module")
def odd_names_path(keras, tmp_path_factory):
    """Layer names Keras takes and TensorFlow refuses as scope names: a space, HTML, an ampersand."""
    L = keras.layers
    image = keras.Input((None, None, 3), name="the image")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="my conv")(image)
    x = L.MaxPooling2D(name="pool 1")(x)
    x = L.Conv2D(6, 3, padding="same", name="<b>x&y")(x)
    x = L.Conv2D(5, 3, name="plain")(x)
    return save_model(keras.Model(image, x, name="odd names"), tmp_path_factory.mktemp("odd"), "odd_names")


TINY_SYNTHESIS = SynthesisParams(size=32, steps=2)


def synthesise_both_kinds(engine, precision="float32"):
    for kind in ("channel", "neuron"):
        images = synthesise(engine, kind, [0, 1], replace(TINY_SYNTHESIS, precision=precision))
        assert [(i.layer, i.filter, i.kind, i.image.shape) for i in images] == [
            (engine.name, f, kind, (32, 32, 3)) for f in (0, 1)
        ]
        assert all(np.isfinite(i.objective) for i in images)


def test_a_fixed_size_model_runs_at_another_size(fixed_size_path):
    loaded = load_model(str(fixed_size_path))
    assert [c.name for c in conv_layers(loaded.model)] == ["c1", "c2"]
    for name in ("c1", "c2"):
        synthesise_both_kinds(LayerEngine(loaded, name))
    engine = LayerEngine(loaded, "c2")
    assert engine.maps(tf.zeros((1, 47, 33, 3)), tf.constant([0, 3])).shape == (1, 22, 15, 2)


def test_the_size_free_copy_computes_what_the_model_does(keras, fixed_size_path):
    loaded = load_model(str(fixed_size_path))
    # Its layers are the model's own (weights shared, the fingerprint untouched), never the head.
    assert loaded.internal_names == {}
    assert loaded.runnable.get_layer("c1") is loaded.model.get_layer("c1")
    assert {layer.name for layer in loaded.runnable.layers} == {loaded.runnable.inputs[0]._keras_history.operation.name, "c1"}
    assert loaded.fingerprint == fingerprint(keras.saving.load_model(fixed_size_path, compile=False))
    image = np.random.default_rng(3).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    cut = keras.Model(loaded.model.inputs, loaded.model.get_layer("c2").output)
    engine = LayerEngine(loaded, "c2")
    ours = engine.maps(tf.constant(image), tf.constant([0, 1, 2, 3])).numpy()
    np.testing.assert_allclose(ours, cut(engine.to_model_input(tf.constant(image))).numpy(), rtol=1e-5, atol=1e-5)


def test_layer_names_tensorflow_refuses_keep_their_real_names(odd_names_path):
    from atlasgen.model.layers import describe_layers

    loaded = load_model(str(odd_names_path))
    real = ["my conv", "<b>x&y", "plain"]
    assert [c.name for c in conv_layers(loaded.model)] == real
    assert [info.name for info in describe_layers(loaded, 32)] == real
    for name in real:
        engine = LayerEngine(loaded, name)
        assert engine.name == name and engine.layer is loaded.model.get_layer(name)
        synthesise_both_kinds(engine)
    # Only the layers the engine calls are renamed, each to a name of its own.
    assert sorted(loaded.internal_names) == ["<b>x&y", "my conv", "pool 1", "the image"]
    assert len(set(loaded.internal_names.values())) == 4
    # The renamed copies hold the same weights: the last layer's maps are the model's output.
    image = np.random.default_rng(4).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    engine = LayerEngine(loaded, "plain")
    ours = engine.maps(tf.constant(image), tf.range(5)).numpy()
    np.testing.assert_allclose(ours, loaded.model(engine.to_model_input(tf.constant(image))).numpy(), rtol=1e-5, atol=1e-5)
    # Memory counts every layer of the trunk under its real name: the image (as given and as the
    # input layer), my conv 32x32x4, pool 1 16x16x4, <b>x&y 16x16x6, and plain's own 14x14x5.
    elements = 2 * 32 * 32 * 3 + 32 * 32 * 4 + 16 * 16 * 4 + 16 * 16 * 6 + 14 * 14 * 5
    assert engine.bytes_per_image((32, 32)) == elements * 16


def test_a_model_that_only_runs_at_its_fixed_size_is_refused(keras, tmp_path):
    L = keras.layers
    image = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, name="c1")(image)
    x = L.Reshape((196, 4), name="to rows")(x)  # pins the grid at 14 x 14
    x = L.Reshape((14, 14, 4), name="back")(x)
    x = L.Conv2D(4, 3, name="c2")(x)
    path = save_model(keras.Model(image, x, name="pinned"), tmp_path, "pinned")
    with pytest.raises(AtlasgenError) as info:
        load_model(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"weights file {path}: model 'pinned' only runs at its fixed input size 16x16: "
                              f"layer 'to rows' (Reshape) needs it")
    assert message.endswith("rebuild the model on keras.Input((None, None, 3)) with a convolutional trunk")


def test_a_dense_layer_before_a_conv_is_refused(keras, tmp_path):
    L = keras.layers
    image = keras.Input((8, 8, 3))
    x = L.Flatten(name="flat")(L.Conv2D(2, 3, name="c1")(image))
    x = L.Reshape((6, 6, 2), name="grid")(L.Dense(72, name="mix")(x))
    path = save_model(keras.Model(image, L.Conv2D(2, 3, name="c2")(x)), tmp_path, "dense_in_trunk")
    with pytest.raises(AtlasgenError, match=r"only runs at its fixed input size 8x8: layer '(mix|grid)'"):
        load_model(str(path))


def test_the_cli_lists_real_names_of_models_it_had_to_rebuild(cli, fixed_size_path, odd_names_path, one_line_error,
                                                                keras, tmp_path):
    import json

    for path, names in ((fixed_size_path, ["c1", "c2"]), (odd_names_path, ["my conv", "<b>x&y", "plain"])):
        result = cli("layers", "--weights", path, "--size", "32", "--json")
        assert result.returncode == 0, result.stderr
        assert [layer["name"] for layer in json.loads(result.stdout)["layers"]] == names
    L = keras.layers
    image = keras.Input((16, 16, 3))
    x = L.Reshape((14, 14, 4), name="pin")(L.Reshape((196, 4))(L.Conv2D(4, 3, name="c1")(image)))
    path = save_model(keras.Model(image, L.Conv2D(4, 3, name="c2")(x), name="pinned"), tmp_path, "pinned")
    one_line_error(cli("layers", "--weights", path, "--size", "32"), "only runs at its fixed input size 16x16")


# --- how much memory a batch may use -----------------------------------------------------------

GiB = 2**30


def test_on_the_cpu_a_batch_may_use_a_quarter_of_what_the_machine_has_free():
    from atlasgen.synthesis.engine import available_memory_bytes, machine_available_bytes, memory_budget

    budget = memory_budget("CPU")
    assert budget.device == "CPU" and not budget.assumed_total
    assert abs(budget.free - machine_available_bytes()) < GiB  # read moments apart
    assert budget.usable == budget.free // 4
    assert abs(available_memory_bytes("CPU") - budget.usable) < GiB
    assert budget.describe().endswith("GiB free on CPU")


def test_without_a_gpu_the_synthesis_runs_on_the_cpu():
    from atlasgen.synthesis.engine import memory_budget, synthesis_device

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    assert synthesis_device() == "CPU" and memory_budget().device == "CPU"


def test_on_a_gpu_a_batch_may_use_half_of_what_tensorflow_does_not_use():
    from atlasgen.synthesis.engine import available_memory_bytes, memory_budget

    asked = []

    def memory_info(device):
        asked.append(device)
        return {"current": 2 * GiB, "peak": 5 * GiB}

    budget = memory_budget("GPU:0", memory_info=memory_info, total_bytes=lambda device: 10 * GiB)
    assert asked == ["GPU:0"]
    assert (budget.device, budget.free, budget.usable, budget.assumed_total) == ("GPU:0", 8 * GiB, 4 * GiB, False)
    assert budget.describe() == "4.0 GiB of the 8.0 GiB free on GPU:0"
    assert available_memory_bytes("GPU:0", memory_info=memory_info, total_bytes=lambda device: 10 * GiB) == 4 * GiB
    # Fuller than its total (a stale total): no memory to spare, so batches of one.
    full = memory_budget("GPU:0", memory_info=lambda d: {"current": 12 * GiB}, total_bytes=lambda d: 10 * GiB)
    assert full.usable == 0 and choose_batch_size(10**6, full.usable, wanted=64) == 1


def test_a_gpu_of_unknown_size_is_taken_to_be_small_and_says_so():
    from atlasgen.synthesis.engine import ASSUMED_GPU_BYTES, memory_budget

    budget = memory_budget("GPU:0", memory_info=lambda d: {"current": GiB}, total_bytes=lambda d: None)
    assert budget.assumed_total and budget.free == ASSUMED_GPU_BYTES - GiB and budget.usable == budget.free // 2
    assert budget.describe() == "3.5 GiB of the 7.0 GiB free on GPU:0 (its size unknown: taken as 8 GiB)"

    def no_allocator_yet(device):
        raise ValueError("no such device")

    assert memory_budget("GPU:0", memory_info=no_allocator_yet, total_bytes=lambda d: None).free == ASSUMED_GPU_BYTES


def test_a_gpus_size_is_its_configured_limit_else_what_its_details_say(monkeypatch):
    from atlasgen.synthesis import engine

    gpus = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU"), tf.config.PhysicalDevice("/physical_device:GPU:1", "GPU")]
    configured = {gpus[0].name: [tf.config.LogicalDeviceConfiguration(memory_limit=1024),
                                 tf.config.LogicalDeviceConfiguration(memory_limit=2048)]}
    details = {gpus[1].name: {"device_name": "Some GPU", "compute_capability": (9, 0), "memory_limit": 80 * GiB}}
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config, "get_logical_device_configuration", lambda d: configured.get(d.name))
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda d: details.get(d.name, {}))
    # GPU:0 and GPU:1 are two logical devices of the first GPU; GPU:2 is the second GPU.
    assert [engine.gpu_total_bytes(f"GPU:{i}") for i in range(4)] == [GiB, 2 * GiB, 80 * GiB, None]
    details[gpus[1].name] = {"device_name": "Some GPU", "compute_capability": (9, 0)}  # what TensorFlow 2.21 gives
    assert engine.gpu_total_bytes("GPU:2") is None


# --- mixed precision: bfloat16 compute, float32 variables and maps ----------------------------


@pytest.mark.parametrize("layer", ["block2_conv1", "block3_conv1"])
def test_mixed_maps_are_float32_and_close_to_the_float32_maps(hed_model, layer):
    exact, mixed = LayerEngine(hed_model, layer), LayerEngine(hed_model, layer, precision="mixed")
    image = tf.constant(np.random.default_rng(5).uniform(size=(3, 32, 32, 3)).astype(np.float32))
    ids = tf.constant([0, 3, 9], tf.int32)
    want = exact.maps(image, ids).numpy()
    got = mixed.maps(image, ids)
    assert got.dtype == tf.float32 and mixed.own_maps(image, ids).dtype == tf.float32
    # bfloat16 keeps 8 bits of mantissa: the maps move by well under 2% of their range.
    assert np.abs(got.numpy() - want).max() <= 0.02 * np.abs(want).max()
    assert not np.array_equal(got.numpy(), want)  # it really computed in another precision
    # float32=True is the float32 engine's computation, exactly.
    np.testing.assert_array_equal(mixed.maps(image, ids, float32=True).numpy(), want)
    np.testing.assert_array_equal(mixed.own_maps(image, ids, float32=True).numpy(), exact.own_maps(image, ids).numpy())


def test_the_mixed_trunk_computes_in_bfloat16_on_float32_copies_of_the_weights(hed_model, keras):
    engine = LayerEngine(hed_model, "block3_conv1", precision="mixed")
    assert engine.precision == "mixed" and engine.trunk is not engine.float32_trunk
    layers = [layer for layer in engine.trunk.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert [layer.name for layer in layers] == ["block1_conv1", "block1_conv2", "block1_pool", "block2_conv1",
                                                "block2_conv2", "block2_pool"]
    assert all(layer.dtype_policy.name == "mixed_bfloat16" for layer in layers)
    assert all(layer.compute_dtype == "bfloat16" for layer in layers)
    features = engine.trunk(engine.to_model_input(tf.zeros((1, 16, 16, 3))), training=False)
    assert features.dtype == tf.bfloat16
    assert engine.trunk.weights and all(w.dtype == "float32" for w in engine.trunk.weights)
    for copy, original in zip(engine.trunk.weights, engine.float32_trunk.weights):
        np.testing.assert_array_equal(copy.numpy(), original.numpy())
    # The loaded model is untouched: still float32, and the float32 trunk is its own layers.
    assert hed_model.model.get_layer("block1_conv1").dtype_policy.name == "float32"
    assert engine.float32_trunk.get_layer("block1_conv1") is hed_model.runnable.get_layer("block1_conv1")
    plain = LayerEngine(hed_model, "block3_conv1")
    assert plain.trunk is plain.float32_trunk


def test_in_mixed_the_objectives_gradient_on_the_float32_image_is_finite(hed_model):
    engine = LayerEngine(hed_model, "block3_conv1", precision="mixed")
    image = tf.Variable(np.random.default_rng(6).uniform(size=(2, 32, 32, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        score = tf.reduce_sum(tf.reduce_mean(engine.own_maps(image, tf.constant([1, 4])), axis=[1, 2]))
    grad = tape.gradient(score, image)
    assert grad.dtype == tf.float32
    assert np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).max() > 0


def test_a_model_with_a_merge_computes_in_mixed_too(custom_cnn_path):
    loaded = load_model(str(custom_cnn_path))
    exact, mixed = LayerEngine(loaded, "head"), LayerEngine(loaded, "head", precision="mixed")
    assert mixed.trunk.get_layer("add").compute_dtype == "bfloat16"
    image = tf.constant(np.random.default_rng(7).uniform(size=(1, 40, 40, 3)).astype(np.float32))
    want, got = exact.maps(image, tf.range(16)).numpy(), mixed.maps(image, tf.range(16)).numpy()
    assert np.abs(got - want).max() <= 0.03 * np.abs(want).max()
    synthesise_both_kinds(LayerEngine(loaded, "res_conv", precision="mixed"), precision="mixed")


@pytest.mark.parametrize("precision", ["half", "", "Mixed", None, "bfloat16"])
def test_an_unknown_precision_is_a_one_line_error_naming_the_choices(hed_model, precision):
    with pytest.raises(AtlasgenError) as raised:
        LayerEngine(hed_model, "block1_conv1", precision=precision)
    assert "\n" not in str(raised.value) and "float32, mixed" in str(raised.value)


def test_mixed_counts_the_trunks_activations_smaller(hed_model, block3):
    mixed = LayerEngine(hed_model, "block3_conv1", precision="mixed")
    exact_bytes, mixed_bytes = block3.bytes_per_image((64, 64)), mixed.bytes_per_image((64, 64))
    assert exact_bytes / 2 < mixed_bytes < exact_bytes
    # block1_conv1 has no trunk: its image and maps are float32 either way.
    first = (LayerEngine(hed_model, "block1_conv1"), LayerEngine(hed_model, "block1_conv1", precision="mixed"))
    assert first[0].bytes_per_image((64, 64)) == first[1].bytes_per_image((64, 64))


# --- what a unit's value is: conv, batch norm, activation -> after the batch norm (issue 23, item 3) ---


def _conv_bn_relu(keras, tmp_path):
    """conv 'a' -> BN 'a_bn' -> ReLU; conv 'b' (its own ReLU, no BN); conv 'c' -> BN and another branch."""
    L = keras.layers
    image = keras.Input((None, None, 3), name="image")
    a = L.Conv2D(6, 3, padding="same", name="a")(image)
    x = L.ReLU(name="a_relu")(L.BatchNormalization(name="a_bn")(a))
    b = L.Conv2D(5, 3, activation="relu", name="b")(x)
    c = L.Conv2D(4, 1, name="c")(b)
    out = L.Add(name="sum")([L.BatchNormalization(name="c_bn")(c), c])
    model = keras.Model(image, out, name="conv_bn_relu")
    rng = np.random.default_rng(3)
    for norm in ("a_bn", "c_bn"):  # moving statistics and affine parameters far from the identity
        layer = model.get_layer(norm)
        gamma, beta, mean, variance = layer.get_weights()
        layer.set_weights([rng.uniform(-2, 2, gamma.shape), rng.uniform(-1, 1, beta.shape),
                           rng.uniform(-1, 1, mean.shape), rng.uniform(0.2, 3, variance.shape)])
    path = tmp_path / "conv_bn_relu.keras"
    model.save(path)
    return path


def test_a_unit_is_read_after_its_batch_norm_and_before_its_activation(keras, tmp_path):
    from atlasgen.model.graph import runnable_model
    from atlasgen.model.layers import model_geometry

    loaded = load_model(str(_conv_bn_relu(keras, tmp_path)))
    geometry = model_geometry(loaded)
    # Only a conv whose one consumer is a batch norm: c also feeds the add directly.
    assert geometry.read_after == {"a": "a_bn"}
    assert [info.as_dict().get("read_after") for info in geometry.layers(16)] == ["a_bn", None, None]
    model = loaded.model
    image = np.random.default_rng(0).uniform(size=(2, 20, 20, 3)).astype(np.float32)
    after_bn = keras.Model(model.inputs, model.get_layer("a_bn").output)(image).numpy()
    assert (after_bn < 0).any()  # the ReLU would change it: the test can tell the two apart
    engine = LayerEngine(loaded, "a")
    ids = [4, 0, 2]
    mine = engine.maps(tf.constant(image), tf.constant(ids)).numpy()
    np.testing.assert_allclose(mine, after_bn[..., ids], rtol=1e-4, atol=1e-4)
    # The dataset scan reads the same values in its one forward pass; b is read before its ReLU.
    every, _ = runnable_model(model, pre_activation=True)
    scanned = every(image)
    np.testing.assert_allclose(scanned[0].numpy(), after_bn, rtol=1e-4, atol=1e-4)
    before_relu = keras.Model(model.inputs, model.get_layer("b").output)(image).numpy()
    assert np.allclose(np.maximum(scanned[1].numpy(), 0), before_relu, atol=1e-4) and (scanned[1].numpy() < 0).any()
    np.testing.assert_allclose(LayerEngine(loaded, "b").maps(tf.constant(image), tf.constant([0, 1])).numpy(),
                               scanned[1].numpy()[..., :2], rtol=1e-4, atol=1e-4)


def test_grouped_depthwise_and_separable_convs_have_the_maps_keras_computes(keras, tmp_path):
    """Their filters are not slices of one kernel: the engine runs the layer whole and keeps the chosen channels."""
    from atlasgen.model.layers import model_geometry

    L = keras.layers
    image = keras.Input((None, None, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="plain")(image)
    x = L.Conv2D(8, 3, groups=4, activation="relu", name="grouped")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, activation="relu", name="depthwise")(x)
    x = L.SeparableConv2D(6, 3, dilation_rate=2, padding="same", activation="relu", name="separable")(x)
    path = tmp_path / "convs.keras"
    keras.Model(image, x, name="convs").save(path)
    loaded = load_model(str(path))
    geometry = model_geometry(loaded)
    assert [(c.name, c.filters) for c in geometry.convs] == [("plain", 8), ("grouped", 8), ("depthwise", 16),
                                                              ("separable", 6)]
    rows = {info.name: info.as_dict() for info in geometry.layers(24)}
    assert (rows["depthwise"]["r"], rows["depthwise"]["S"]) == (7, 2) and rows["separable"]["r"] == 7 + 2 * 2 * 2
    picture = np.random.default_rng(2).uniform(size=(2, 24, 24, 3)).astype(np.float32)
    for name, ids in (("grouped", [7, 0, 3]), ("depthwise", [15, 2]), ("separable", [1, 5])):
        engine = LayerEngine(loaded, name)
        mine = engine.maps(tf.constant(picture), tf.constant(ids)).numpy()
        layer = loaded.model.get_layer(name)
        features = keras.Model(loaded.model.inputs, layer.input)(picture)
        linear = layer.__class__.from_config({**layer.get_config(), "activation": "linear", "name": "copy"})
        linear.build(layer.input.shape)
        linear.set_weights(layer.get_weights())
        np.testing.assert_allclose(mine, linear(features).numpy()[..., ids], rtol=1e-4, atol=1e-4)
        assert tuple(mine.shape[1:3]) == geometry.fields((24, 24))[name].size
