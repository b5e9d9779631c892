"""The layer table: every conv layer with r, S, P and output size at one input size."""

from __future__ import annotations

from atlasgen.model.layers import describe_layers, layers_document, layers_table
from atlasgen.model.weights import VGG16_LAYERS


def test_describe_layers(hed_model):
    layers = describe_layers(hed_model, 96)
    assert [layer.name for layer in layers] == list(VGG16_LAYERS)
    last = layers[-1].as_dict()
    assert (last["r"], last["S"], last["P"], last["output_size"]) == (196, 16, 90, 6)
    # At 96 px conv5_3's centre unit sees the whole image.
    assert last["centre_box"] == [0, 0, 96, 96]
    first = layers[0].as_dict()
    assert first["centre_unit"] == [47, 47] and first["centre_box"] == [46, 46, 49, 49]


def test_layers_document_and_table(hed_model):
    document = layers_document(hed_model, describe_layers(hed_model, 96), 96)
    assert document["total_filters"] == 4224 and document["input_size"] == 96
    assert document["weights"]["fingerprint"] == hed_model.fingerprint
    table = layers_table(document).splitlines()
    assert table[2].split() == ["block1_conv1", "64", "3", "1", "1", "96"]
    assert "13 conv layers, 4224 filters, input 96 px" in table[-5]
    assert table[-2].startswith("a unit's value is its conv's output before the activation")
