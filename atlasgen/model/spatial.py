"""What one Keras operation does to the spatial grid, stated exactly or not at all.

Every layer or plain op of a model's graph becomes one `geometry.SpatialOp`:
- a convolution (plain, grouped, depthwise, separable) or a pooling: kernel, stride, dilation, padding;
- padding and cropping: the pixels added or removed;
- an op that acts on each pixel alone (an activation, a batch norm, a layer norm over the channels, a
  rescaling, a dense layer on the channels, dropout at inference...): the identity;
- an op of several maps of one grid (add, multiply, concatenate on the channels): a merge;
- a global op: a global pool (`global`, a vector or 1 x 1 map that a merge broadcasts back), or a
  normalisation over the whole map (`whole`, the grid kept): every unit after it depends on the whole image;
- anything else: `opaque`, with one line saying why. A model whose conv layers depend on an opaque
  op is refused (`geometry.first_opaque`): its fields would be a guess.
"""

from __future__ import annotations

from atlasgen.model.geometry import SpatialOp
from atlasgen.tf import keras

#: Plain ops (keras.ops on Keras tensors, between layers) that act on each element alone, or on several
#: tensors element by element; any other plain op is opaque.
ELEMENTWISE_OPS = frozenset({
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Negative", "Abs", "Absolute",
    "Exp", "Log", "Sqrt", "Square", "Power", "Tanh", "Sigmoid", "Relu", "Relu6", "Silu", "Swish", "Gelu", "Elu",
    "Selu", "Softplus", "Softsign", "LeakyRelu", "HardSigmoid", "HardSilu", "HardSwish", "Clip", "Cast", "Erf",
})
#: Layers of keras.applications defined outside keras.layers that act on each pixel alone:
#: ConvNeXt's LayerScale multiplies each channel by a learned number, StochasticDepth is the identity at inference.
APPLICATION_PER_PIXEL = frozenset({("keras.src.applications.convnext", "LayerScale"),
                                   ("keras.src.applications.convnext", "StochasticDepth")})
CHANNEL_AXES = (-1, 3)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def _explicit(value) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(value, int):
        return ((value, value), (value, value))
    a, b = value
    a = (a, a) if isinstance(a, int) else tuple(a)
    b = (b, b) if isinstance(b, int) else tuple(b)
    return (a, b)  # type: ignore[return-value]


def _axes(value) -> tuple[int, ...]:
    if value is None:
        return ()
    return (int(value),) if isinstance(value, int) else tuple(int(a) for a in value)


def _per_pixel_classes() -> tuple:
    L = keras.layers
    return (L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.Rescaling, L.Normalization, L.Dropout,
            L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
            L.Identity, L.Dense)


def _merge_classes() -> tuple:
    L = keras.layers
    return (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)


def is_convolution(layer) -> bool:
    """A 2-D convolution whose every output channel is a unit of the atlas: Conv2D (grouped or not),
    DepthwiseConv2D or SeparableConv2D; a transposed convolution is not one."""
    L = keras.layers
    return isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)) and not isinstance(
        layer, L.Conv2DTranspose)


def spatial_op(layer, parents: tuple[str, ...], gridless: bool) -> SpatialOp:
    """The SpatialOp of one operation of the graph, whose inputs are `parents`; `gridless`: every
    parent is a vector or a 1 x 1 map made by a global op (squeeze-and-excitation's)."""
    name = layer.name
    L = keras.layers
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format not in (None, "channels_last"):
        return _opaque(layer, parents, f"is {data_format}; atlasgen needs channels_last models")
    if is_convolution(layer):
        return SpatialOp(name, "conv", parents, _pair(layer.kernel_size), _pair(layer.strides),
                         _pair(layer.dilation_rate), layer.padding)
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        return SpatialOp(name, "pool", parents, _pair(layer.pool_size), _pair(layer.strides), (1, 1), layer.padding)
    if isinstance(layer, L.ZeroPadding2D):
        return SpatialOp(name, "pad", parents, padding=_explicit(layer.padding))
    if isinstance(layer, L.Cropping2D):
        return SpatialOp(name, "crop", parents, padding=_explicit(layer.cropping))
    if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        return SpatialOp(name, "global", parents, note=f"{name} ({type(layer).__name__}) pools the whole map")
    if len(parents) > 1:
        return _merge(layer, parents)
    return _one_input(layer, parents, gridless)


def _merge(layer, parents: tuple[str, ...]) -> SpatialOp:
    cls = type(layer).__name__
    if isinstance(layer, _merge_classes()) or (not isinstance(layer, keras.layers.Layer) and cls in ELEMENTWISE_OPS):
        return SpatialOp(layer.name, "merge", parents)
    if isinstance(layer, keras.layers.Concatenate):
        if layer.axis in CHANNEL_AXES:
            return SpatialOp(layer.name, "merge", parents)
        return _opaque(layer, parents, f"concatenates along axis {layer.axis}, not the channels")
    return _opaque(layer, parents, f"combines {len(parents)} tensors in a way atlasgen does not know")


def _one_input(layer, parents: tuple[str, ...], gridless: bool) -> SpatialOp:
    """An op of one input: per pixel (identity), global, or opaque."""
    L = keras.layers
    name, cls = layer.name, type(layer).__name__
    identity = SpatialOp(name, "identity", parents)
    if isinstance(layer, L.InputLayer) or (type(layer).__module__, cls) in APPLICATION_PER_PIXEL:
        return identity
    if not isinstance(layer, L.Layer):
        return identity if cls in ELEMENTWISE_OPS else _opaque(layer, parents, "is an op atlasgen does not know")
    if gridless and isinstance(layer, (L.Reshape, L.Flatten, L.Dense)):
        return identity  # a vector or a 1 x 1 map stays one: broadcast back later, every unit sees it
    if isinstance(layer, L.Softmax):
        return identity if set(_axes(layer.axis)) <= set(CHANNEL_AXES) else _opaque(layer, parents, "normalises across pixels")
    if isinstance(layer, (L.BatchNormalization, L.LayerNormalization, L.UnitNormalization)):
        axes = _axes(layer.axis)
        if set(axes) <= set(CHANNEL_AXES):
            return identity
        if isinstance(layer, L.LayerNormalization):
            return SpatialOp(name, "whole", parents, note=f"{name} ({cls}) normalises over the whole map (axes {list(axes)})")
        return _opaque(layer, parents, f"normalises along axes {list(axes)}, not the channels")
    if isinstance(layer, L.GroupNormalization):
        return SpatialOp(name, "whole", parents, note=f"{name} ({cls}) normalises each group over the whole map")
    if isinstance(layer, _per_pixel_classes()):
        return identity
    return _opaque(layer, parents, "is not known to act on each pixel alone or to move the grid in a way "
                                   "atlasgen can state")


def _opaque(layer, parents: tuple[str, ...], why: str) -> SpatialOp:
    return SpatialOp(layer.name, "opaque", parents, note=f"{layer.name!r} ({type(layer).__name__}) {why}")
