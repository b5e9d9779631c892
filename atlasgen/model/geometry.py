"""Analytic receptive fields: size r, effective stride S and effective padding P of every layer.

Pure Python on purpose, so the maths is testable without a model. Conventions, per axis:
unit u of a layer covers input pixels [u*S - P, u*S - P + r - 1] (Araujo et al., Distill 2019).
Boxes are half-open: (top, left, bottom, right) with bottom and right excluded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal

from atlasgen.errors import AtlasgenError

Pair = tuple[int, int]
OpKind = Literal["input", "conv", "pool", "pad", "crop", "identity", "merge"]


@dataclass(frozen=True)
class SpatialOp:
    """What one layer does to the spatial grid; everything else about the layer is irrelevant here."""

    name: str
    kind: OpKind
    inputs: tuple[str, ...] = ()
    kernel: Pair = (1, 1)
    stride: Pair = (1, 1)
    dilation: Pair = (1, 1)
    # "valid", "same", or explicit ((top, bottom), (left, right)) pixels for pad and crop.
    padding: str | tuple[Pair, Pair] = "valid"


@dataclass(frozen=True)
class Field:
    """Receptive field of a layer's units and the size of its output map, per axis (y, x)."""

    r: Pair
    S: Pair
    P: Pair
    size: Pair

    def unit_box(self, unit: Pair) -> "Box":
        """The input box that unit (y, x) sees, before clipping to the image."""
        (uy, ux) = unit
        top = uy * self.S[0] - self.P[0]
        left = ux * self.S[1] - self.P[1]
        return Box(top, left, top + self.r[0], left + self.r[1])

    def centre_unit(self, input_size: Pair) -> Pair:
        """The unit whose field is centred nearest the image centre (ties go to the lower index)."""
        return tuple(
            _centre_index(self.r[a], self.S[a], self.P[a], self.size[a], input_size[a]) for a in (0, 1)
        )  # type: ignore[return-value]


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def clipped(self, size: Pair) -> "Box":
        return Box(max(self.top, 0), max(self.left, 0), min(self.bottom, size[0]), min(self.right, size[1]))

    def as_list(self) -> list[int]:
        return [self.top, self.left, self.bottom, self.right]


def _centre_index(r: int, S: int, P: int, out: int, n: int) -> int:
    image_centre = (n - 1) / 2
    return min(range(out), key=lambda u: (abs(u * S - P + (r - 1) / 2 - image_centre), u))


def _same_pad_before(n: int, k_eff: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding: output ceil(n/s), the odd pixel of padding goes after."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + k_eff - n, 0)
    return total // 2, out


def _axis_step(op: SpatialOp, a: int, r: int, S: int, P: int, n: int) -> tuple[int, int, int, int]:
    if op.kind in ("identity",):
        return r, S, P, n
    if op.kind == "pad":
        before, after = op.padding[a]  # type: ignore[index]
        return r, S, P + before * S, n + before + after
    if op.kind == "crop":
        before, after = op.padding[a]  # type: ignore[index]
        return r, S, P - before * S, max(n - before - after, 0)
    k_eff = (op.kernel[a] - 1) * op.dilation[a] + 1
    s = op.stride[a]
    if op.padding == "same":
        before, out = _same_pad_before(n, k_eff, s)
    elif op.padding == "valid":
        before, out = 0, (n - k_eff) // s + 1
    else:
        raise AtlasgenError(f"layer {op.name!r} has padding {op.padding!r}; only 'valid' and 'same' are supported")
    return r + (k_eff - 1) * S, S * s, P + before * S, max(out, 0)


def _merge(op: SpatialOp, parents: list[Field]) -> Field:
    if len({f.S for f in parents}) != 1 or len({f.size for f in parents}) != 1:
        raise AtlasgenError(
            f"layer {op.name!r} merges branches with different strides or sizes; "
            "its receptive field is not a single box"
        )
    # The union of the branches' boxes: the earliest start and the latest end.
    P = tuple(max(f.P[a] for f in parents) for a in (0, 1))
    r = tuple(max(f.r[a] - f.P[a] for f in parents) + P[a] for a in (0, 1))
    return Field(r=r, S=parents[0].S, P=P, size=parents[0].size)  # type: ignore[arg-type]


def receptive_fields(ops: Iterable[SpatialOp], input_size: Pair) -> dict[str, Field]:
    """Field of every op, in a graph given in topological order (inputs before their users)."""
    fields: dict[str, Field] = {}
    for op in ops:
        if op.kind == "input" or not op.inputs:
            fields[op.name] = Field(r=(1, 1), S=(1, 1), P=(0, 0), size=tuple(input_size))  # type: ignore[arg-type]
            continue
        parents = [fields[i] for i in op.inputs]
        if op.kind == "merge" or len(parents) > 1:
            fields[op.name] = _merge(op, parents)
            continue
        (p,) = parents
        steps = [_axis_step(op, a, p.r[a], p.S[a], p.P[a], p.size[a]) for a in (0, 1)]
        fields[op.name] = Field(
            r=(steps[0][0], steps[1][0]),
            S=(steps[0][1], steps[1][1]),
            P=(steps[0][2], steps[1][2]),
            size=(steps[0][3], steps[1][3]),
        )
    return fields


def square(pair: Pair) -> int | list[int]:
    """One number for a square pair, as published tables give it; [y, x] otherwise."""
    return pair[0] if pair[0] == pair[1] else [pair[0], pair[1]]
