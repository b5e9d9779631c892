"""The walk of a Keras model's graph: its conv layers and what each layer does to the spatial grid.

It turns the graph into `geometry.SpatialOp`s, so the receptive-field maths stays pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from atlasgen.errors import AtlasgenError
from atlasgen.geometry import SpatialOp
from atlasgen.tf import keras


@dataclass(frozen=True)
class ConvLayer:
    name: str
    filters: int


def conv_layers(model) -> list[ConvLayer]:
    """Every 2-D convolution in the model's graph, in topological order."""
    return [
        ConvLayer(layer.name, int(layer.filters))
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.Conv2DTranspose)
    ]


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def _explicit_padding(value) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(value, int):
        return ((value, value), (value, value))
    a, b = value
    a = (a, a) if isinstance(a, int) else tuple(a)
    b = (b, b) if isinstance(b, int) else tuple(b)
    return (a, b)  # type: ignore[return-value]


def _parents(layer) -> tuple[str, ...]:
    names: list[str] = []
    for node in layer._inbound_nodes[:1]:
        for tensor in node.input_tensors:
            names.append(tensor._keras_history.operation.name)
    return tuple(names)


IMAGE = "<image>"


def spatial_ops(model) -> list[SpatialOp]:
    """The model's graph as SpatialOps, in topological order, for the geometry stage.

    Every input layer, and any parent that is not one of the model's layers (Sequential models
    keep their input layer out of model.layers), is the image itself.
    """
    L = keras.layers
    ops: list[SpatialOp] = [SpatialOp(IMAGE, "input")]
    known: set[str] = set()
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            ops.append(SpatialOp(layer.name, "identity", (IMAGE,)))
            known.add(layer.name)
            continue
        parents = tuple(p if p in known else IMAGE for p in _parents(layer)) or (IMAGE,)
        data_format = getattr(layer, "data_format", "channels_last")
        if data_format not in (None, "channels_last"):
            raise AtlasgenError(f"layer {layer.name!r} is {data_format}; atlasgen needs channels_last models")
        if isinstance(layer, (L.Conv2DTranspose, L.UpSampling2D)):
            raise AtlasgenError(
                f"layer {layer.name!r} ({type(layer).__name__}) upsamples; its receptive field is not supported"
            )
        if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)):
            op = SpatialOp(
                layer.name, "conv", parents, _pair(layer.kernel_size), _pair(layer.strides),
                _pair(layer.dilation_rate), layer.padding,
            )
        elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
            op = SpatialOp(
                layer.name, "pool", parents, _pair(layer.pool_size), _pair(layer.strides), (1, 1), layer.padding
            )
        elif isinstance(layer, L.ZeroPadding2D):
            op = SpatialOp(layer.name, "pad", parents, padding=_explicit_padding(layer.padding))
        elif isinstance(layer, L.Cropping2D):
            op = SpatialOp(layer.name, "crop", parents, padding=_explicit_padding(layer.cropping))
        elif len(parents) > 1:
            op = SpatialOp(layer.name, "merge", parents)
        else:
            op = SpatialOp(layer.name, "identity", parents)
        ops.append(op)
        known.add(layer.name)
    return ops
