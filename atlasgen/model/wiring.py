"""Wiring between filters, read from the weights alone (Olah et al., "Zoom In", Circuits, Distill 2020).

Between two conv layers A and B that only channel-wise operations separate (an activation, pooling,
padding, cropping, dropout, a per-channel affine map such as an inference batch norm), the weight from
filter c of A to filter d of B is the spatial slice `W_B[:, :, c, d]` of B's kernel, and its sum is
what a uniform input of c does to d. Nothing is optimised: the graph is walked once, each kernel read
once per layer, and the rest is numpy.

**Folding.** A per-channel affine map between A and B (`y_c = s_c * x_c + t_c`: an inference
`BatchNormalization`, s_c = gamma_c / sqrt(moving_variance_c + epsilon), or a `Rescaling`) is folded
*forward into B's slice*: the effective slice is `W_B[:, :, c, d] * s_c` (several such maps multiply),
so a weight is in units of A's own output, the map the atlas shows as filter c. The shift t_c moves
B's bias, not the weight, and is left out.

**Where no wiring is claimed.** A conv layer that reads the image (its kernel weighs pixels), a path
that merges several tensors (a residual add, a concatenation), and any operation that mixes channels
or is not known to act on each channel alone (a dense layer, a depthwise or separable conv, a softmax,
a reshape, a layer norm...): the unit then says why, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlasgen.model.graph import IMAGE, conv_layers, plain_convolution, spatial_ops
from atlasgen.tf import keras

#: The directions of a filter's wiring, as atlas.json names them.
DIRECTIONS = ("inputs", "outputs")
#: Significant digits of each weight of a published slice (its sum and norm keep full precision).
SLICE_DIGITS = 6


@dataclass(frozen=True)
class Link:
    """Conv layer `source` feeds conv layer `target` through channel-wise operations only."""

    source: str
    target: str
    folded: tuple[str, ...] = ()  # the per-channel affine layers folded into the target's slices, source first
    scale: tuple[float, ...] | None = None  # their product, one factor per source channel (None: all 1)


@dataclass(frozen=True)
class ModelWiring:
    """Every conv layer's link from the conv layer that feeds it (`feeds`) and to the one it feeds
    (`fed`), or, where none is claimed, why (one line)."""

    feeds: dict[str, Link | str]  # conv layer -> the link into it, or why none
    fed: dict[str, Link | str]  # conv layer -> the link out of it, or why none


def _operations(model) -> dict:
    return {getattr(op, "name", None): op for op in (getattr(model, "operations", None) or model.layers)}


def _described(name: str, op) -> str:
    return f"{name} ({type(op).__name__})"


def channel_factor(op, channels: int) -> tuple[np.ndarray | None, str | None]:
    """What `op` does to each of `channels` channels: (its per-channel factor to fold, or None for
    none; None, or what it does that is not channel-wise, in words)."""
    L = keras.layers
    plain = (L.ZeroPadding2D, L.Cropping2D, L.MaxPooling2D, L.AveragePooling2D, L.ReLU, L.LeakyReLU, L.ELU,
             L.PReLU, L.Dropout, L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
             L.ActivityRegularization, L.Identity)
    if isinstance(op, L.Activation):
        name = getattr(op.activation, "__name__", str(op.activation))
        return (None, None) if "softmax" not in name else (None, "mixes channels (a softmax)")
    if isinstance(op, plain):
        return None, None
    if isinstance(op, L.BatchNormalization):
        if op.axis not in (-1, 3, [-1], [3], (-1,), (3,)):
            return None, f"normalises along axis {op.axis}, not the channels"
        variance = np.asarray(op.moving_variance, dtype=np.float64)
        gamma = np.asarray(op.gamma, dtype=np.float64) if op.scale else np.ones_like(variance)
        return gamma / np.sqrt(variance + float(op.epsilon)), None
    if isinstance(op, L.Rescaling):
        scale = np.asarray(op.scale, dtype=np.float64).reshape(-1)
        if scale.size not in (1, channels):
            return None, f"scales by {scale.size} numbers, not one per channel"
        return np.broadcast_to(scale, (channels,)).copy(), None
    if isinstance(op, (L.DepthwiseConv2D, L.SeparableConv2D)):
        return None, "is a depthwise convolution: its channels are not a conv layer's filters"
    if isinstance(op, L.Dense):
        return None, "mixes channels (a dense layer)"
    return None, "is not known to act on each channel alone"


def model_wiring(model) -> ModelWiring:
    """The model's wiring: for every conv layer, the conv layer whose filters feed it through
    channel-wise operations only (a single chain, each with one input), and the one it feeds."""
    ops = {op.name: op for op in spatial_ops(model)}
    layers = _operations(model)
    convs = {c.name: c.filters for c in conv_layers(model)}
    feeds = {name: _feed(name, ops, layers, convs) for name in convs}
    children: dict[str, list[str]] = {}
    for op in ops.values():
        for parent in op.inputs:
            children.setdefault(parent, []).append(op.name)
    fed = {name: _fed(name, feeds, children, ops, layers, convs) for name in convs}
    return ModelWiring(feeds, fed)


def _feed(target: str, ops: dict, layers: dict, convs: dict) -> Link | str:
    """The link into conv layer `target`, walked back from its input, or why there is none."""
    op = ops.get(target)
    if op is None or len(op.inputs) != 1:
        return f"it reads {len(op.inputs) if op else 0} tensors, not one"
    if getattr(layers[target], "groups", 1) != 1:
        return f"it is a grouped convolution ({layers[target].groups} groups): each filter reads some channels only"
    if not plain_convolution(layers[target]):
        return f"it is a {type(layers[target]).__name__}: each filter reads one channel, or mixes them after a depthwise step"
    kernel = layers[target].kernel
    channels = int(kernel.shape[2])
    folded, scale = [], np.ones(channels)
    name = op.inputs[0]
    while True:
        if name == IMAGE or isinstance(layers.get(name), keras.layers.InputLayer):
            return "it reads the image: its kernel weighs pixels, not filters"
        if name in convs:
            if convs[name] != channels:
                return f"its kernel reads {channels} channels and {name} has {convs[name]} filters"
            exact = all(s == 1 for s in scale)
            return Link(name, target, tuple(reversed(folded)), None if exact else tuple(float(s) for s in scale))
        step = ops[name]
        if len(step.inputs) != 1:
            return (f"its input comes through {_described(name, layers.get(name))}, which merges {len(step.inputs)} "
                    f"tensors: no single chain from one conv layer")
        factor, problem = channel_factor(layers.get(name), channels)
        if problem:
            return f"its input comes through {_described(name, layers.get(name))}, which {problem}"
        if factor is not None:
            folded.append(name)
            scale = scale * factor
        name = step.inputs[0]


def _fed(source: str, feeds: dict, children: dict, ops: dict, layers: dict, convs: dict) -> Link | str:
    """The link out of conv layer `source` to the one conv layer its output reaches through channel-wise
    operations (another path, through an add, may leave beside it), or why there is none."""
    reached, blocked = [], None
    todo, seen = [source], set()
    while todo:
        for name in children.get(todo.pop(), []):
            if name in seen:
                continue
            seen.add(name)
            if name in convs:
                reached.append(name)
                continue
            problem = (f"merges {len(ops[name].inputs)} tensors" if len(ops[name].inputs) != 1
                       else channel_factor(layers.get(name), convs[source])[1])
            if problem:
                blocked = blocked or f"its output goes on through {_described(name, layers.get(name))}, which {problem}"
                continue
            todo.append(name)
    reached.sort(key=list(convs).index)
    if len(reached) > 1:
        return f"it feeds {len(reached)} conv layers ({', '.join(reached)}): no single next layer"
    if reached:
        link = feeds[reached[0]]
        return link if isinstance(link, Link) else f"{reached[0]} reads it, and no wiring is claimed there: {link}"
    return blocked or "no conv layer comes after it"


def effective_kernel(model, link: Link) -> np.ndarray:
    """The target's kernel (height, width, source filters, target filters) in float64, with the
    per-channel scales between the two layers folded into it (`W[:, :, c, :] * s_c`)."""
    kernel = np.asarray(model.get_layer(link.target).kernel, dtype=np.float64)
    return kernel if link.scale is None else kernel * np.asarray(link.scale)[None, None, :, None]


def ranked(sums: np.ndarray, k: int, lowest: bool = False) -> list[int]:
    """The indices of the k largest positive sums, largest first (`lowest`: the k most negative, most
    negative first); ties go to the lower index."""
    order = np.lexsort((np.arange(len(sums)), sums if lowest else -sums))
    keep = sums[order] < 0 if lowest else sums[order] > 0
    return [int(i) for i in order[keep][:k]]


class LayerWiring:
    """One conv layer's wiring, its kernels read once: every filter's record for atlas.json (`unit`)."""

    def __init__(self, model, wiring: ModelWiring, layer: str):
        self.layer = layer
        self.into, self.out = wiring.feeds[layer], wiring.fed[layer]
        self.into_kernel = effective_kernel(model, self.into) if isinstance(self.into, Link) else None
        self.out_kernel = effective_kernel(model, self.out) if isinstance(self.out, Link) else None
        # Sums of every slice: (source filters, this layer's filters) and (this layer's, target's).
        self.into_sums = self.into_kernel.sum(axis=(0, 1)) if self.into_kernel is not None else None
        self.out_sums = self.out_kernel.sum(axis=(0, 1)) if self.out_kernel is not None else None

    def unit(self, d: int, k: int) -> dict:
        """Filter d's wiring (atlas.json's `wiring`): its k strongest inputs, inhibitors and outputs,
        each with its layer, filter, weight (the slice's sum), norm (its L2 norm) and slice."""
        record: dict = {"k": k, "inputs": [], "inhibitors": [], "outputs": [], "unclaimed": {}, "folded": {}}
        if isinstance(self.into, Link):
            record["source"] = {"name": self.into.source, "filters": int(self.into_kernel.shape[2])}
            sums, slices = self.into_sums[:, d], self.into_kernel[:, :, :, d]
            record["inputs"] = [_entry(self.into.source, c, slices[:, :, c]) for c in ranked(sums, k)]
            record["inhibitors"] = [_entry(self.into.source, c, slices[:, :, c]) for c in ranked(sums, k, lowest=True)]
            if self.into.folded:
                record["folded"]["inputs"] = list(self.into.folded)
        else:
            record["unclaimed"]["inputs"] = self.into
        if isinstance(self.out, Link):
            record["target"] = {"name": self.out.target, "filters": int(self.out_kernel.shape[3])}
            sums, slices = self.out_sums[d, :], self.out_kernel[:, :, d, :]
            record["outputs"] = [_entry(self.out.target, e, slices[:, :, e]) for e in ranked(sums, k)]
            if self.out.folded:
                record["folded"]["outputs"] = list(self.out.folded)
        else:
            record["unclaimed"]["outputs"] = self.out
        return record


def _entry(layer: str, filter: int, slice_: np.ndarray) -> dict:
    return {"layer": layer, "filter": filter, "weight": float(slice_.sum()), "norm": float(np.sqrt((slice_ ** 2).sum())),
            "slice": [[float(f"{w:.{SLICE_DIGITS}g}") for w in row] for row in slice_]}
