"""The receptive-field maths: pure Python against the published VGG16 table (design.md §2), and
against gradients: the analytic field is exactly where a unit's gradient w.r.t. the input is non-zero."""

from __future__ import annotations

import numpy as np
import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.model.geometry import Box, Field, SpatialOp, first_opaque, receptive_fields, square
from atlasgen.model.graph import spatial_ops
from atlasgen.model.weights import vgg16_ops
from support import PUBLISHED_VGG16


@pytest.mark.parametrize("layer, expected", PUBLISHED_VGG16.items())
def test_vgg16_matches_published_table(layer, expected):
    field = receptive_fields(vgg16_ops(), (224, 224))[layer]
    r, S, P = expected
    assert (field.r, field.S, field.P) == ((r, r), (S, S), (P, P))


def test_vgg16_output_sizes_at_224():
    fields = receptive_fields(vgg16_ops(), (224, 224))
    sizes = {name: fields[name].size for name in ("block1_conv1", "block2_conv1", "block5_conv3", "block5_pool")}
    assert sizes == {"block1_conv1": (224, 224), "block2_conv1": (112, 112), "block5_conv3": (14, 14), "block5_pool": (7, 7)}


def test_rsp_do_not_depend_on_input_size_for_vgg16():
    # VGG16's 'same' convs have stride 1, so its padding never depends on the input's parity.
    at_224 = receptive_fields(vgg16_ops(), (224, 224))
    at_odd = receptive_fields(vgg16_ops(), (97, 131))
    for name in PUBLISHED_VGG16:
        assert (at_odd[name].r, at_odd[name].S, at_odd[name].P) == (at_224[name].r, at_224[name].S, at_224[name].P)
    assert at_odd["block5_pool"].size == (3, 4)


def test_unit_box_follows_u_times_S_minus_P():
    field = receptive_fields(vgg16_ops(), (224, 224))["block5_conv3"]
    # Unit u covers [u*S - P, u*S - P + r - 1]; boxes are half-open.
    assert field.unit_box((0, 0)) == Box(-90, -90, 106, 106)
    assert field.unit_box((2, 5)) == Box(2 * 16 - 90, 5 * 16 - 90, 2 * 16 - 90 + 196, 5 * 16 - 90 + 196)
    assert field.unit_box((13, 13)).as_list() == [118, 118, 314, 314]
    assert field.unit_box((0, 0)).height == field.unit_box((0, 0)).width == 196


def test_clipping_to_the_image():
    field = receptive_fields(vgg16_ops(), (224, 224))["block5_conv3"]
    assert field.unit_box((0, 0)).clipped((224, 224)) == Box(0, 0, 106, 106)
    assert field.unit_box((13, 0)).clipped((224, 224)) == Box(118, 0, 224, 106)
    inside = receptive_fields(vgg16_ops(), (224, 224))["block1_conv1"].unit_box((5, 7))
    assert inside.clipped((224, 224)) == inside == Box(4, 6, 7, 9)
    # A non-square image clips each axis to its own length.
    assert Box(-3, -4, 50, 60).clipped((40, 70)) == Box(0, 0, 40, 60)


def test_centre_unit():
    fields = receptive_fields(vgg16_ops(), (224, 224))
    # conv1_1 unit u is centred on pixel u; the image centre 111.5 ties 111 and 112; the lower wins.
    assert fields["block1_conv1"].centre_unit((224, 224)) == (111, 111)
    # conv5_3 unit u is centred on 16u + 7.5, so 6 and 7 tie around 111.5.
    assert fields["block5_conv3"].centre_unit((224, 224)) == (6, 6)
    odd = receptive_fields(vgg16_ops(), (225, 97))
    # Odd sizes have a centre pixel, 112 and 48; 16u + 7.5 is nearest for u = 7 (119.5) and u = 3 (55.5).
    assert odd["block1_conv1"].centre_unit((225, 97)) == (112, 48)
    assert odd["block5_conv3"].centre_unit((225, 97)) == (7, 3)


def test_centre_unit_box_is_centred():
    for size in (64, 96, 224, 225):
        fields = receptive_fields(vgg16_ops(), (size, size))
        for name in ("block1_conv1", "block3_conv1", "block4_conv3"):
            field = fields[name]
            box = field.unit_box(field.centre_unit((size, size)))
            centre = (box.top + box.bottom - 1) / 2
            assert abs(centre - (size - 1) / 2) <= field.S[0] / 2


def test_dilated_conv():
    ops = [SpatialOp("image", "input"), SpatialOp("d", "conv", ("image",), (3, 3), (1, 1), (2, 3), "valid")]
    field = receptive_fields(ops, (20, 30))["d"]
    # Effective kernel (k - 1) * d + 1: 5 rows and 7 columns.
    assert (field.r, field.S, field.P, field.size) == ((5, 7), (1, 1), (0, 0), (16, 24))


@pytest.mark.parametrize(
    "n, out, before",
    # TensorFlow 'same': out = ceil(n / s), total padding max((out - 1) * s + k - n, 0), the odd pixel after.
    [(7, 4, 1), (8, 4, 0), (9, 5, 1), (1, 1, 1)],
)
def test_same_padding_with_stride_depends_on_parity(n, out, before):
    ops = [SpatialOp("image", "input"), SpatialOp("c", "conv", ("image",), (3, 3), (2, 2), (1, 1), "same")]
    field = receptive_fields(ops, (n, n))["c"]
    assert (field.r, field.S, field.P, field.size) == ((3, 3), (2, 2), (before, before), (out, out))


def test_pad_and_crop_shift_p_by_parent_stride():
    ops = [
        SpatialOp("image", "input"),
        SpatialOp("c", "conv", ("image",), (3, 3), (2, 2), (1, 1), "valid"),
        SpatialOp("pad", "pad", ("c",), padding=((1, 2), (3, 0))),
        SpatialOp("crop", "crop", ("pad",), padding=((2, 0), (0, 1))),
    ]
    fields = receptive_fields(ops, (21, 21))
    assert fields["c"].size == (10, 10)
    assert (fields["pad"].P, fields["pad"].size) == ((2, 6), (13, 13))
    assert (fields["crop"].P, fields["crop"].size) == ((-2, 6), (11, 12))
    assert fields["crop"].r == fields["pad"].r == (3, 3)
    # Unit 0 of the crop is unit 2 of the padding, which is unit 1 of the conv: pixels 2..4.
    assert fields["crop"].unit_box((0, 0)).top == fields["c"].unit_box((1, 0)).top == 2


def test_merge_is_the_union_of_the_branches():
    ops = [
        SpatialOp("image", "input"),
        SpatialOp("wide", "conv", ("image",), (5, 5), (1, 1), (1, 1), "same"),
        SpatialOp("shifted", "pad", ("image",), padding=((0, 4), (4, 0))),
        SpatialOp("narrow", "conv", ("shifted",), (5, 5), (1, 1), (1, 1), "valid"),
        SpatialOp("add", "merge", ("wide", "narrow")),
    ]
    fields = receptive_fields(ops, (16, 16))
    # wide: unit u covers u-2..u+2; narrow: rows u..u+4, columns u-4..u.
    assert fields["add"].unit_box((5, 5)) == Box(3, 1, 10, 8)
    assert fields["add"].S == (1, 1) and fields["add"].size == (16, 16)


def test_merge_of_different_strides_is_refused():
    ops = [
        SpatialOp("image", "input"),
        SpatialOp("a", "conv", ("image",), (3, 3), (2, 2), (1, 1), "same"),
        SpatialOp("b", "conv", ("image",), (3, 3), (1, 1), (1, 1), "same"),
        SpatialOp("add", "merge", ("a", "b")),
    ]
    with pytest.raises(AtlasgenError, match="'add'.*different strides"):
        receptive_fields(ops, (16, 16))


def test_unknown_padding_is_refused():
    ops = [SpatialOp("image", "input"), SpatialOp("c", "conv", ("image",), (3, 3), padding="full")]
    with pytest.raises(AtlasgenError, match="'c'.*'full'"):
        receptive_fields(ops, (16, 16))


def test_too_small_input_gives_an_empty_output():
    fields = receptive_fields(vgg16_ops(), (8, 8))
    assert fields["block3_pool"].size == (1, 1)
    assert fields["block4_pool"].size == (0, 0)


def test_field_is_per_axis():
    field = Field(r=(3, 5), S=(1, 2), P=(1, 2), size=(10, 20))
    assert field.unit_box((4, 4)) == Box(3, 6, 6, 11)
    # y: unit u centred on u, nearest 4.5 -> 4 (tie, lower); x: centred on 2u, nearest 19.5 -> 10.
    assert field.centre_unit((10, 40)) == (4, 10)


def test_square():
    assert square((7, 7)) == 7
    assert square((3, 5)) == [3, 5]


# --- against gradients ------------------------------------------------------------------------


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


# --- reach and global fields (issue 23) ----------------------------------------------------------


def test_a_valid_strided_op_leaves_the_last_pixels_unread():
    # A 3x3 stride-2 'valid' conv on 8 px: units at 0, 2, 4 read pixels 0-6; pixel 7 is read by no unit.
    ops = [SpatialOp("image", "input"), SpatialOp("a", "conv", ("image",), (3, 3), (2, 2), (1, 1), "valid"),
           SpatialOp("b", "conv", ("a",), (3, 3), (1, 1), (1, 1), "same")]
    fields = receptive_fields(ops, (8, 8))
    assert fields["a"].reach == Box(0, 0, 7, 7)
    assert (fields["b"].r, fields["b"].S, fields["b"].P) == ((7, 7), (2, 2), (2, 2))
    assert fields["b"].unit_box((2, 2)).clipped((8, 8)) == Box(2, 2, 8, 8)
    assert fields["b"].unit_input((2, 2), (8, 8)) == Box(2, 2, 7, 7)
    assert receptive_fields(ops, (9, 9))["a"].reach is None  # 9 px: every pixel is read


def test_a_global_pool_broadcast_back_makes_the_field_whole():
    ops = [SpatialOp("image", "input"), SpatialOp("a", "conv", ("image",), (3, 3), (1, 1), (1, 1), "same"),
           SpatialOp("pool", "global", ("a",), note="pool (GlobalAveragePooling2D) pools the whole map"),
           SpatialOp("gate", "conv", ("pool",), (1, 1), (1, 1), (1, 1), "valid"),
           SpatialOp("mul", "merge", ("a", "gate")),
           SpatialOp("b", "conv", ("mul",), (3, 3), (2, 2), (1, 1), "same")]
    fields = receptive_fields(ops, (10, 10))
    assert fields["gate"].gridless and fields["gate"].size == (1, 1) and fields["gate"].whole == Box(0, 0, 10, 10)
    b = fields["b"]
    assert b.whole == Box(0, 0, 10, 10) and b.size == (5, 5) and b.S == (2, 2) and not b.gridless
    assert b.unit_box((0, 0)) == b.unit_box((4, 3)) == Box(0, 0, 10, 10) and b.extent == (10, 10)
    assert "pool (GlobalAveragePooling2D)" in b.why
    assert fields["a"].whole is None


def test_an_opaque_op_has_no_field_and_is_named_only_where_a_conv_depends_on_it():
    ops = [SpatialOp("image", "input"), SpatialOp("a", "conv", ("image",), (3, 3), (1, 1), (1, 1), "same"),
           SpatialOp("odd", "opaque", ("a",), note="'odd' (Lambda) is not known"),
           SpatialOp("b", "conv", ("odd",), (3, 3), (1, 1), (1, 1), "same")]
    fields = receptive_fields(ops, (10, 10))
    assert fields["odd"] is None and fields["b"] is None and fields["a"] is not None
    assert first_opaque(ops, ["b"]).name == "odd" and first_opaque(ops, ["a"]) is None


def test_a_merge_of_branches_that_read_different_pixels_is_their_union():
    # On 8 px a 1x1 stride-2 conv reads pixels 0, 2, 4, 6 (reach 0-6); a 2x2 stride-2 conv reads 0-7.
    ops = [SpatialOp("image", "input"), SpatialOp("a", "conv", ("image",), (1, 1), (2, 2), (1, 1), "valid"),
           SpatialOp("b", "conv", ("image",), (2, 2), (2, 2), (1, 1), "valid"), SpatialOp("sum", "merge", ("a", "b"))]
    fields = receptive_fields(ops, (8, 8))
    assert fields["a"].reach == Box(0, 0, 7, 7) and fields["b"].reach is None
    assert fields["sum"].unit_input((3, 3), (8, 8)) == Box(6, 6, 8, 8) and fields["sum"].r == (2, 2)
