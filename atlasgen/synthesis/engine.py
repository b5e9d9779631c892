"""The model cut at one convolutional layer: nothing after the target layer is ever computed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from atlasgen.model import geometry
from atlasgen.errors import AtlasgenError, first_line
from atlasgen.model.graph import output_channels, plain_convolution, scope_safe
from atlasgen.model.layers import BYTES_PER_ACTIVATION, ModelGeometry, model_geometry
from atlasgen.model.weights import LoadedModel
from atlasgen.params import check_precision
from atlasgen.tf import keras, tf


# The same in mixed precision, for the trunk's bfloat16 activations: the value and its gradient at
# 2 bytes, and the scratch still counted as float32 (kernels that accumulate or convert in float32),
# so 2 * 2 + 2 * 4 rather than a flat half. The image and the layer's own maps stay float32. On the
# CPU a mixed image's measured peak was 0.65-0.76 of a float32 one's (block3_conv1, block5_conv1 at
# 152 px); this counts about 0.77.
BYTES_PER_BFLOAT16_ACTIVATION = 2 * 2 + 2 * 4
DEFAULT_MAX_BATCH = 64

def bfloat16_copy(model, name: str):
    """A copy of a functional `model` whose layers compute in bfloat16 (Keras's "mixed_bfloat16"
    dtype policy, so each layer casts its inputs) and hold float32 copies of the same weights.
    Plain operations between layers (x + y, ...) have no weights and are reused as they are; nested
    models are copied the same way."""

    def rebuild(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer
        try:
            return layer.__class__.from_config({**layer.get_config(), "dtype": "mixed_bfloat16"})
        except Exception as exc:
            raise AtlasgenError(
                f"layer {layer.name!r} ({type(layer).__name__}) cannot be rebuilt to compute in bfloat16 "
                f"({first_line(exc)}); use --precision float32"
            ) from None

    copy = keras.models.clone_model(model, clone_function=rebuild, recursive=True)
    copy.set_weights(model.get_weights())
    copy.name = name
    return copy


@dataclass(frozen=True)
class PatchPlan:
    """Where the centre neuron's receptive-field patch sits and which unit to read inside it.

    `patch` is aligned to the layer's stride grid (or to the image border), so every intermediate
    unit the neuron depends on sees exactly the pixels and padding it would see in the full image.
    """

    image_size: geometry.Pair
    unit: geometry.Pair  # the centre unit, in the full image's output map
    box: geometry.Box  # its receptive field, clipped to the image
    patch: geometry.Box  # the optimised region, in image coordinates
    unit_in_patch: geometry.Pair
    stride: geometry.Pair


def linear_copy(layer):
    """A copy of a conv layer without its activation, built and holding the same weights."""
    copy = layer.__class__.from_config({**layer.get_config(), "activation": "linear", "name": f"{layer.name}_linear"})
    copy.build(layer.input.shape)
    copy.set_weights(layer.get_weights())
    return copy


def batch_norm_affine(norm):
    """An inference batch norm as one affine map per channel: (scale, shift) float32 tensors, with
    y = scale * x + shift, scale = gamma / sqrt(moving_variance + epsilon), shift = beta - moving_mean * scale."""
    variance = np.asarray(norm.moving_variance, dtype=np.float64)
    gamma = np.asarray(norm.gamma, dtype=np.float64) if norm.scale else np.ones_like(variance)
    beta = np.asarray(norm.beta, dtype=np.float64) if norm.center else np.zeros_like(variance)
    scale = gamma / np.sqrt(variance + float(norm.epsilon))
    shift = beta - np.asarray(norm.moving_mean, dtype=np.float64) * scale
    return tf.constant(scale.astype(np.float32)), tf.constant(shift.astype(np.float32))


def model_input(convention, images):
    """RGB images in [0, 1] to a model's input convention (atlasgen.model.weights.InputConvention)."""
    if convention.channel_order == "BGR":
        images = images[..., ::-1]
    out = images * float(convention.scale) - tf.constant(np.array(convention.mean, dtype=np.float32))
    if tuple(convention.std) != (1.0, 1.0, 1.0):
        out = out / tf.constant(np.array(convention.std, dtype=np.float32))
    return out


#: Layers that pass the image on affinely at inference: a conv that only these feed is affine in the pixels.
AFFINE_LAYERS = ("InputLayer", "ZeroPadding2D", "Cropping2D", "Rescaling", "Normalization", "BatchNormalization",
                 "AveragePooling2D", "Dropout", "Identity")


class LayerEngine:
    """What feeds one conv layer (the trunk), plus that layer's kernel for any chosen filters."""

    def __init__(self, loaded: LoadedModel, layer_name: str, precision: str = "float32",
                 geometry: ModelGeometry | None = None):
        """`geometry`: the model's, when the caller has walked it already (a build walks it once)."""
        self.precision = check_precision(precision)
        self.geometry = geometry or model_geometry(loaded)
        names = [c.name for c in self.geometry.convs]
        if layer_name not in names:
            raise AtlasgenError(
                f"layer {layer_name!r} is not a convolutional layer of {loaded.architecture}; "
                f"choose one of {', '.join(names)}"
            )
        self.loaded = loaded
        # The layer as loaded: its kernel and bias (the runnable model reuses them, or holds copies).
        self.layer = loaded.model.get_layer(layer_name)
        self.name = layer_name
        self.filters = output_channels(self.layer)
        # A grouped, depthwise or separable conv is run whole (a linear copy sharing its weights) and
        # its chosen channels kept; a plain Conv2D runs only the chosen filters' kernel slices.
        self.whole_layer = None if plain_convolution(self.layer) else linear_copy(self.layer)
        # Conv, batch norm, activation: the unit is read after the batch norm (graph.batch_norms_read).
        norm = self.geometry.read_after.get(layer_name)
        self.read_after = norm
        self.affine = batch_norm_affine(loaded.model.get_layer(norm)) if norm else None
        # Everything before the layer, from loaded.runnable: it runs at any size and every layer it
        # calls has a name TensorFlow takes as a scope.
        index = names.index(layer_name)
        trunk_name = f"trunk_to_{layer_name}" if scope_safe(layer_name) else f"trunk_to_conv{index}"
        # In float32 always: the final evaluation of every image, and activation maps, use it.
        self.float32_trunk = keras.Model(loaded.runnable.inputs, loaded.runnable.outputs[index], name=trunk_name)
        # What the synthesis runs: the same trunk, or in "mixed" a copy that computes in bfloat16.
        self.trunk = self.float32_trunk if self.precision == "float32" else bfloat16_copy(
            self.float32_trunk, f"{trunk_name}_bfloat16")
        self._real_names = {internal: real for real, internal in loaded.internal_names.items()}
        # Compiled optimisation graphs of this layer, by the explicit cache key `optimise` is given.
        self.compiled: dict = {}

    # --- geometry -------------------------------------------------------------------------

    def field(self, size: geometry.Pair) -> geometry.Field:
        """The layer's receptive field on an image of `size`."""
        return self.geometry.fields(tuple(size))[self.name]

    @property
    def affine_in_pixels(self) -> bool:
        """Whether the layer's pre-activation is an affine function of the image's pixels: the input
        convention is, and so is every layer of the trunk (none, for VGG16's first conv)."""
        return all(type(layer).__name__ in AFFINE_LAYERS for layer in self.float32_trunk.layers)

    def output_size(self, size: geometry.Pair) -> geometry.Pair:
        """The layer's map size on an image of `size`."""
        return self.field(size).size

    def patch_plan(self, size: int) -> PatchPlan:
        """The smallest stride-aligned patch that gives the centre unit its exact inputs."""
        image = (size, size)
        full = self.field(image)
        unit = full.centre_unit(image)
        box = full.unit_box(unit)
        start, end, unit_in_patch = [], [], []
        for a in (0, 1):
            lo, hi = (box.top, box.bottom) if a == 0 else (box.left, box.right)
            s = full.S[a]
            first = 0 if lo <= 0 else (lo // s) * s
            last = image[a] if hi >= image[a] else hi
            start.append(first)
            end.append(last)
            unit_in_patch.append(unit[a] - first // s)
        patch = geometry.Box(start[0], start[1], end[0], end[1])
        seen = full.unit_input(unit, image)
        plan = PatchPlan(image, unit, seen, patch, tuple(unit_in_patch), full.S)  # type: ignore[arg-type]
        if not self._patch_is_exact(plan, box):
            whole = geometry.Box(0, 0, size, size)
            plan = PatchPlan(image, unit, seen, whole, unit, full.S)
        return plan

    def _patch_is_exact(self, plan: PatchPlan, box: geometry.Box) -> bool:
        """True when the patch model sees the same box, with the same padding, as the full image."""
        patch_field = self.field((plan.patch.height, plan.patch.width))
        if min(patch_field.size) < 1:
            return False
        inner = patch_field.unit_box(plan.unit_in_patch)
        shifted = geometry.Box(
            inner.top + plan.patch.top, inner.left + plan.patch.left,
            inner.bottom + plan.patch.top, inner.right + plan.patch.left,
        )
        if not (shifted == box and all(0 <= plan.unit_in_patch[a] < patch_field.size[a] for a in (0, 1))):
            return False
        seen = patch_field.unit_input(plan.unit_in_patch, (plan.patch.height, plan.patch.width))
        return geometry.Box(seen.top + plan.patch.top, seen.left + plan.patch.left, seen.bottom + plan.patch.top,
                            seen.right + plan.patch.left) == plan.box

    # --- forward passes -------------------------------------------------------------------

    def to_model_input(self, images):
        """RGB images in [0, 1] to the model's own input convention."""
        return model_input(self.loaded.input_convention, images)

    def maps(self, images, filter_ids, *, float32: bool = False, features=None):
        """Pre-ReLU maps of the listed filters for every image: (batch, h, w, len(filter_ids)), float32.
        Each is the unit's value: the conv's output before its activation, or, where a batch norm
        follows the conv (conv, BN, activation), after that batch norm and before the activation.

        Computed in the engine's precision, or in float32 whatever it is when `float32` is true. In
        "mixed" the float32 images enter the trunk, whose first layer casts them to bfloat16; the
        features and the gathered kernel meet in a bfloat16 convolution, and its output is cast to
        float32 before the bias is added. `features`: the images' `features(images)`, when the caller
        has them already (they are the engine's own precision's)."""
        full = float32 or self.precision == "float32"
        if features is None or (full and self.precision != "float32"):
            features = self.float32_trunk(self.to_model_input(images), training=False) if full else self.features(images)
        if self.whole_layer is not None:
            out = tf.gather(tf.cast(self.whole_layer(tf.cast(features, tf.float32)), tf.float32), filter_ids, axis=3)
        else:
            kernel = tf.gather(self.layer.kernel, filter_ids, axis=3)
            if full:
                out = self.layer.convolution_op(features, kernel)
            else:
                # A trunk of no layers (the first conv) returns the float32 image itself: cast it here.
                out = self.layer.convolution_op(tf.cast(features, tf.bfloat16), tf.cast(kernel, tf.bfloat16))
            out = tf.cast(out, tf.float32)
            if self.layer.use_bias:
                out = out + tf.cast(tf.gather(self.layer.bias, filter_ids), tf.float32)
        if self.affine is not None:
            scale, shift = self.affine
            out = out * tf.gather(scale, filter_ids) + tf.gather(shift, filter_ids)
        return out

    def features(self, images):
        """The activations that feed the layer, in the engine's precision: (batch, h, w, c)."""
        return self.trunk(self.to_model_input(images), training=False)

    def own_maps(self, images, filter_ids, *, float32: bool = False, features=None):
        """Pre-ReLU map of image i's own filter filter_ids[i]: (batch, h, w), float32 (see `maps`)."""
        out = self.maps(images, filter_ids, float32=float32, features=features)
        own = tf.one_hot(tf.range(tf.shape(filter_ids)[0]), tf.shape(filter_ids)[0], dtype=out.dtype)
        return tf.reduce_sum(out * own[:, None, None, :], axis=-1)

    # --- memory ---------------------------------------------------------------------------

    def bytes_per_image(self, size: geometry.Pair) -> int:
        """Activation bytes one image needs for a forward and backward pass up to this layer, in the
        engine's precision: in "mixed" the trunk's activations are bfloat16, the image and the
        layer's own maps float32."""
        fields = self.geometry.fields(tuple(size))
        outer = 3 * size[0] * size[1]  # the image, float32 in either precision
        inner = 0
        for layer in self.float32_trunk.layers:
            name = self._real_names.get(layer.name, layer.name)
            if name in fields and name != self.name:
                h, w = fields[name].size
                count = h * w * int(layer.output.shape[-1])
                if isinstance(layer, keras.layers.InputLayer):
                    outer += count  # the image again, as the trunk's float32 input
                else:
                    inner += count
        h, w = fields[self.name].size
        outer += h * w * self.filters
        trunk_bytes = BYTES_PER_ACTIVATION if self.precision == "float32" else BYTES_PER_BFLOAT16_ACTIVATION
        return outer * BYTES_PER_ACTIVATION + inner * trunk_bytes


# A batch may use this share of the free memory of the device it runs on.
#  - CPU: a quarter of MemAvailable. The machine is shared with the OS, the page cache, other
#    programs and TensorFlow's own allocator overhead, and running out swaps or gets killed.
#  - GPU: a half. TensorFlow's allocator owns the GPU (it reserves nearly all of it at start), so
#    nothing else competes; the other half covers cuDNN/XLA workspaces, allocator fragmentation
#    and the error of BYTES_PER_ACTIVATION, which was measured on the CPU. A batch that still
#    runs out of memory is split and retried by the build (atlasgen.build.compute).
CPU_SHARE = 1 / 4
GPU_SHARE = 1 / 2
# A GPU whose memory TensorFlow does not report (TensorFlow 2.21's get_device_details gives only
# its name and compute capability, so this is the usual case unless a logical device memory limit
# was configured) is taken to have this much: small enough for a common consumer card, so the
# first batches rarely fail; a larger card then runs smaller batches than it could (--batch-size
# overrides), a smaller one splits its first batch.
ASSUMED_GPU_BYTES = 8 * 2**30


@dataclass(frozen=True)
class MemoryBudget:
    """What a batch of the synthesis may use, and on which device."""

    device: str  # "CPU" or "GPU:0"
    free: int  # bytes free on the device now
    usable: int  # what one batch may use: a share of `free`
    assumed_total: bool = False  # the GPU's total was unknown: ASSUMED_GPU_BYTES stood in

    def describe(self) -> str:
        """E.g. "3.2 GiB of the 12.8 GiB free on CPU", for the build's log."""
        text = f"{self.usable / 2**30:.1f} GiB of the {self.free / 2**30:.1f} GiB free on {self.device}"
        if self.assumed_total:
            text += f" (its size unknown: taken as {ASSUMED_GPU_BYTES / 2**30:.0f} GiB)"
        return text


def machine_available_bytes() -> int:
    """The machine's whole MemAvailable (host memory, whatever device the synthesis runs on)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2


def synthesis_device() -> str:
    """Where TensorFlow places the synthesis by default: its first GPU if it sees one."""
    return "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU"


def gpu_total_bytes(device: str = "GPU:0") -> int | None:
    """The memory of a logical GPU, if TensorFlow tells: its configured memory limit (what the
    allocator may use), else a memory size in its physical device's details; None when neither."""
    logical = []  # (physical device, its logical configuration or None), one per logical GPU
    for physical in tf.config.get_visible_devices("GPU"):
        configured = tf.config.get_logical_device_configuration(physical)
        logical += [(physical, c) for c in configured] if configured else [(physical, None)]
    index = int(device.rpartition(":")[2] or 0)
    if index >= len(logical):
        return None
    physical, configured = logical[index]
    if configured is not None and getattr(configured, "memory_limit", None):
        return int(configured.memory_limit) * 2**20  # configured in MiB
    details = tf.config.experimental.get_device_details(physical) or {}
    for key in ("memory_limit", "memory_size", "total_memory"):
        if details.get(key):
            return int(details[key])
    return None


def memory_budget(device: str | None = None, memory_info: Callable[[str], dict] | None = None,
                  total_bytes: Callable[[str], int | None] = gpu_total_bytes) -> MemoryBudget:
    """The memory a batch may use on `device` ("CPU", "GPU:0"; None: where the synthesis runs).

    CPU: CPU_SHARE of MemAvailable. GPU: GPU_SHARE of its total less what TensorFlow uses now
    (`memory_info`, tf.config.experimental.get_memory_info by default); the total is
    `total_bytes(device)`, or ASSUMED_GPU_BYTES when that is None."""
    device = device or synthesis_device()
    if not device.upper().startswith("GPU"):
        free = machine_available_bytes()
        return MemoryBudget("CPU", free, int(free * CPU_SHARE))
    memory_info = memory_info or tf.config.experimental.get_memory_info
    try:
        used = int(memory_info(device).get("current", 0))
    except (ValueError, RuntimeError):  # no such device, or no allocator yet: nothing used
        used = 0
    total = total_bytes(device)
    free = max(0, (total or ASSUMED_GPU_BYTES) - used)
    return MemoryBudget(device, free, int(free * GPU_SHARE), assumed_total=total is None)


def available_memory_bytes(device: str | None = None, memory_info: Callable[[str], dict] | None = None,
                           total_bytes: Callable[[str], int | None] = gpu_total_bytes) -> int:
    """Memory one batch of the synthesis may use on `device` (None: where it runs); see memory_budget."""
    return memory_budget(device, memory_info, total_bytes).usable


def choose_batch_size(bytes_per_image: int, budget_bytes: int, wanted: int, limit: int = DEFAULT_MAX_BATCH) -> int:
    """The largest batch up to `wanted` (and `limit`) whose activations fit the budget; at least 1."""
    fits = max(1, budget_bytes // max(bytes_per_image, 1))
    return int(max(1, min(wanted, limit, fits)))
