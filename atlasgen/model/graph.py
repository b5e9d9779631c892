"""The walk of a Keras model's graph: its conv layers and what each layer does to the spatial grid.

It turns the graph into `geometry.SpatialOp`s, so the receptive-field maths stays pure Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from atlasgen.errors import AtlasgenError, first_line
from atlasgen.model.geometry import SpatialOp
from atlasgen.model.spatial import is_convolution, spatial_op
from atlasgen.tf import keras


@dataclass(frozen=True)
class ConvLayer:
    """A 2-D convolution of the model: its name and number of filters."""

    name: str
    filters: int


def conv_layers(model) -> list[ConvLayer]:
    """Every 2-D convolution in the model's graph (plain, grouped, depthwise or separable), in
    topological order, with its number of output channels."""
    return [ConvLayer(layer.name, output_channels(layer)) for layer in model.layers if is_convolution(layer)]


def output_channels(layer) -> int:
    """A convolution's output channels: its filters, or a depthwise conv's input channels times its multiplier."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return int(layer.kernel.shape[2]) * int(layer.depth_multiplier)
    return int(layer.filters)


def plain_convolution(layer) -> bool:
    """A Conv2D of one group: each filter is one slice of its kernel, `kernel[..., f]`."""
    return (isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.Conv2DTranspose)
            and int(getattr(layer, "groups", 1)) == 1)


def _parents(layer) -> tuple[str, ...]:
    names: list[str] = []
    for node in layer._inbound_nodes[:1]:
        for tensor in node.input_tensors:
            names.append(tensor._keras_history.operation.name)
    return tuple(names)


IMAGE = "<image>"


def _walk(model) -> list:
    """The model's graph in topological order: a functional model's operations are its layers and
    the plain ops between them (x + y, ...); a Sequential model has layers only."""
    return list(getattr(model, "operations", None) or model.layers)


#: Layer names TensorFlow takes as name scopes inside tf.function (its own pattern is looser).
_SCOPE_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def scope_safe(name: str) -> bool:
    """True when TensorFlow accepts the name as a scope; Keras allows more (spaces, '<', '&', ...)."""
    return bool(_SCOPE_SAFE.fullmatch(name))


def runnable_model(model, pre_activation: bool = False) -> tuple[Any, dict[str, str]]:
    """What atlasgen runs of `model`: (a keras.Model from an RGB image of any size to the tensor that
    feeds each conv layer, in `conv_layers` order; real name -> internal name of each layer it renamed).

    With `pre_activation`, the model's outputs are instead each conv layer's unit values, all from one
    forward pass: its output before its activation (every conv is replayed as a linear copy, same
    weights, followed by its activation, so nothing is computed twice), or the output of the batch
    norm it feeds where `batch_norms_read` says so.

    A model that already takes any size and whose layers have scope-safe names is only cut (same
    layers, same graph). Otherwise the layers the conv layers need are replayed on a new
    `keras.Input((None, None, 3))`, in the walk `spatial_ops` uses: each layer reused (its weights
    shared), or, where its name is no TensorFlow scope name, cloned under a safe internal name with
    the same weights. Flatten, Dense and whatever else comes after the last conv is never called.
    """
    convs = [model.get_layer(c.name) for c in conv_layers(model)]
    walk = _walk(model)
    by_name = {op.name: op for op in walk}
    read = batch_norms_read(model) if pre_activation else {}
    needed = needed_layers(convs, by_name, pre_activation) | set(read.values())
    if not pre_activation and cut_suffices(model, needed, by_name):
        return keras.Model(model.inputs, [conv.input for conv in convs], name="atlasgen_conv_inputs"), {}
    replay = Replay(model, SafeNames(by_name))
    linear = {conv.name for conv in convs} if pre_activation else set()
    for layer in walk:
        if layer.name in needed and not isinstance(layer, keras.layers.InputLayer):
            replay.call(layer, linear=layer.name in linear)
    if pre_activation:
        outputs = [replay.replayed[read[conv.name], 0] if conv.name in read else replay.before_activation[conv.name]
                   for conv in convs]
        name = "atlasgen_pre_activations"
    else:
        outputs, name = [replay.feed_of(conv) for conv in convs], "atlasgen_conv_inputs"
    return keras.Model(replay.image, outputs, name=name), replay.names.internal


def needed_layers(convs: list, by_name: dict, pre_activation: bool) -> set[str]:
    """The names of every operation the conv layers' inputs depend on (and, with `pre_activation`,
    the conv layers themselves)."""
    needed: set[str] = set()
    todo = [parent for conv in convs for parent in _parents(conv)]
    if pre_activation:
        todo += [conv.name for conv in convs]
    while todo:
        name = todo.pop()
        if name in by_name and name not in needed:
            needed.add(name)
            todo += _parents(by_name[name])
    return needed


def fixed_input_size(model) -> bool:
    """True when the model's image input has a fixed height or width."""
    return any(d is not None for d in tuple(model.inputs[0].shape)[1:3])


def cut_suffices(model, needed: set[str], by_name: dict) -> bool:
    """True when the model runs at any size and every needed layer's name is a scope name: then
    atlasgen runs the model's own graph, cut before the conv layers."""
    unsafe = [n for n in needed if not scope_safe(n) and not isinstance(by_name[n], keras.layers.InputLayer)]
    return not fixed_input_size(model) and not unsafe


class SafeNames:
    """A scope-safe name for every layer: its own where TensorFlow takes it, else an internal
    atlasgen_layer_<n> that no layer of the model has. `internal` maps each real name it replaced."""

    def __init__(self, taken):
        self.taken = set(taken)
        self.internal: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if scope_safe(name):
            return name
        if name not in self.internal:
            new = f"atlasgen_layer_{len(self.internal)}"
            while new in self.taken:
                new += "_"
            self.taken.add(new)
            self.internal[name] = new
        return self.internal[name]


def pinned_error(model, layer, why: str) -> AtlasgenError:
    """Why `layer` cannot be replayed: the model's fixed input size, or a name it cannot be rebuilt under."""
    if fixed_input_size(model):
        size = "x".join(str(d) for d in tuple(model.inputs[0].shape)[1:3])
        return AtlasgenError(
            f"model {model.name!r} only runs at its fixed input size {size}: layer {layer.name!r} "
            f"({type(layer).__name__}) needs it ({why}); to use it with atlasgen, rebuild the model on "
            f"keras.Input((None, None, 3)) with a convolutional trunk"
        )
    return AtlasgenError(
        f"layer {layer.name!r} ({type(layer).__name__}) of model {model.name!r} cannot be rebuilt under a name "
        f"TensorFlow accepts ({why}); name the model's layers with letters, digits, '_', '.' and '-' only"
    )


def renamed_copy(layer, name: str, **config):
    """A new layer of the same class and configuration as `layer` (with `config` changed), named `name`."""
    return layer.__class__.from_config({**layer.get_config(), **config, "name": name})


class Replay:
    """The model's layers called again, one at a time in the walk's order, on a new image input of any size."""

    def __init__(self, model, names: SafeNames):
        self.model = model
        self.names = names
        self.fixed = fixed_input_size(model)
        self.image = keras.Input((None, None, 3), name=names(model.inputs[0]._keras_history.operation.name))
        # The replayed tensors by (layer name, output index): the walk of `_parents` goes by names, and a
        # Sequential model may hold its layers' first calls in more than one graph.
        self.replayed: dict[tuple[str, int], object] = {}
        self.before_activation: dict[str, object] = {}

    def inputs_of(self, layer) -> tuple:
        """The layer's first call node, and the replayed tensor for each of its inputs, by id."""
        node = layer._inbound_nodes[0]
        found = {}
        for tensor in node.input_tensors:
            history = tensor._keras_history
            if isinstance(history.operation, keras.layers.InputLayer):
                found[id(tensor)] = self.image
            elif (history.operation.name, history.tensor_index) in self.replayed:
                found[id(tensor)] = self.replayed[history.operation.name, history.tensor_index]
            else:
                raise pinned_error(self.model, layer, f"it reads {history.operation.name!r}, which is not in the model's graph")
        return node, found

    def feed_of(self, conv):
        """The replayed tensor that feeds `conv`."""
        node, found = self.inputs_of(conv)
        return found[id(node.input_tensors[0])]

    def call(self, layer, linear: bool = False) -> None:
        """Replays `layer` on the replayed inputs: itself, a renamed copy, or (`linear`) a linear copy of
        a conv followed by its activation, whose input is kept in `before_activation`."""
        node, found = self.inputs_of(layer)
        args, kwargs = node.arguments.fill_in(found)
        try:
            outputs = self._linear_then_activation(layer, args, kwargs) if linear else self._plain(layer, args, kwargs)
        except AtlasgenError:
            raise
        except Exception as exc:
            raise pinned_error(self.model, layer, first_line(exc)) from None
        for index, tensor in enumerate(outputs):
            shape = tuple(tensor.shape)
            # On an image of no fixed size, a grid of fixed size (a Reshape, a Resizing) can only come
            # from the model's own size; a 1x1 one (squeeze-and-excite) is broadcast and is fine.
            if self.fixed and len(shape) >= 3 and any(d is not None and d > 1 for d in shape[1:-1]):
                raise pinned_error(self.model, layer, f"its output is {shape[1:]} whatever the input size")
            self.replayed[layer.name, index] = tensor

    def _plain(self, layer, args, kwargs) -> list:
        run = layer if scope_safe(layer.name) else renamed_copy(layer, self.names(layer.name))
        outputs = keras.tree.flatten(run(*args, **kwargs))
        if run is not layer:
            run.set_weights(layer.get_weights())
        return outputs

    def _linear_then_activation(self, layer, args, kwargs) -> list:
        safe = self.names(layer.name)
        linear = renamed_copy(layer, f"{safe}_linear", activation="linear")
        before = linear(*args, **kwargs)
        linear.set_weights(layer.get_weights())
        self.before_activation[layer.name] = before
        return [keras.layers.Activation(layer.activation, name=f"{safe}_activation")(before)]


def spatial_ops(model) -> list[SpatialOp]:
    """The model's graph as SpatialOps, in topological order, for the geometry stage (see
    `atlasgen.model.spatial`). A plain op (not a layer) that acts element by element is an identity,
    or a merge of several inputs.

    Every input layer, and any parent that is not one of the model's layers (Sequential models
    keep their input layer out of model.layers), is the image itself.
    """
    ops: list[SpatialOp] = [SpatialOp(IMAGE, "input")]
    known: set[str] = set()
    gridless: set[str] = set()  # ops whose output is a global op's vector or 1 x 1 map
    for layer in _walk(model):
        if isinstance(layer, keras.layers.InputLayer):
            ops.append(SpatialOp(layer.name, "identity", (IMAGE,)))
            known.add(layer.name)
            continue
        parents = tuple(p if p in known else IMAGE for p in _parents(layer)) or (IMAGE,)
        on_vectors = all(p in gridless for p in parents)
        op = spatial_op(layer, parents, on_vectors)
        if op.kind == "global" or on_vectors:
            gridless.add(op.name)
        ops.append(op)
        known.add(layer.name)
    return ops


def image_readers(model, ops: list[SpatialOp] | None = None) -> tuple[str, ...]:
    """The conv layers that read the image itself, in graph order: between the model's input and the
    layer there is nothing but ops that act on each channel alone or on space alone (an input layer,
    padding, cropping, pooling, rescaling, normalisation, an activation), each with one parent, and
    the kernel takes the image's 3 channels. Their kernels are filters on RGB (or BGR) pixels.
    `ops`: the model's `spatial_ops`, when the caller has them."""
    L = keras.layers
    passing = (L.InputLayer, L.ZeroPadding2D, L.Cropping2D, L.MaxPooling2D, L.AveragePooling2D, L.Rescaling,
               L.Normalization, L.BatchNormalization, L.Activation, L.ReLU, L.LeakyReLU, L.Dropout)
    by_name = {op.name: op for op in (ops if ops is not None else spatial_ops(model))}
    layers = {getattr(layer, "name", None): layer for layer in _walk(model)}

    def from_image(name: str) -> bool:
        while name != IMAGE:
            op = by_name.get(name)
            if op is None or len(op.inputs) != 1 or not isinstance(layers.get(name), passing):
                return False
            name = op.inputs[0]
        return True

    readers = []
    for conv in conv_layers(model):
        op = by_name.get(conv.name)
        kernel = getattr(model.get_layer(conv.name), "kernel", None)
        plain = plain_convolution(model.get_layer(conv.name))
        if plain and op is not None and len(op.inputs) == 1 and from_image(op.inputs[0]) and kernel is not None \
                and int(kernel.shape[2]) == 3:
            readers.append(conv.name)
    return tuple(readers)


def batch_norms_read(model) -> dict[str, str]:
    """Where each conv layer's unit is read, when not at its own output: conv layer -> the
    BatchNormalization it feeds, for a conv of linear activation whose only consumer is an inference
    batch norm over the channels (conv, BN, activation: the unit is read after the BN, before the
    activation). Its value is then `scale * conv + shift`, one affine map per channel."""
    consumers: dict[str, list] = {}
    for op in _walk(model):
        for parent in _parents(op):
            consumers.setdefault(parent, []).append(op)
    read = {}
    for conv in conv_layers(model):
        layer = model.get_layer(conv.name)
        after = consumers.get(conv.name, [])
        if getattr(layer, "activation", None) is not keras.activations.linear or len(after) != 1:
            continue
        norm = after[0]
        if isinstance(norm, keras.layers.BatchNormalization) and norm.axis in (-1, 3, [-1], [3], (-1,), (3,)):
            read[conv.name] = norm.name
    return read
