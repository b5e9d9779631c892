"""Pure-Python tests of the receptive-field maths, against the published VGG16 table (design.md §2)."""

from __future__ import annotations

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.geometry import Box, Field, SpatialOp, receptive_fields, square
from conftest import PUBLISHED_VGG16


def vgg16_ops() -> list[SpatialOp]:
    """VGG16 without its top, written out by hand: 3x3 'same' convs, 2x2 stride-2 'valid' pools."""
    ops = [SpatialOp("image", "input")]
    previous = "image"
    for block, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        for index in range(1, convs + 1):
            name = f"block{block}_conv{index}"
            ops.append(SpatialOp(name, "conv", (previous,), (3, 3), (1, 1), (1, 1), "same"))
            previous = name
        name = f"block{block}_pool"
        ops.append(SpatialOp(name, "pool", (previous,), (2, 2), (2, 2), (1, 1), "valid"))
        previous = name
    return ops


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
