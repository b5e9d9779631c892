"""Analytic receptive fields: size r, effective stride S and effective padding P of every layer.

Pure Python on purpose, so the maths is testable without a model. Conventions, per axis:
unit u of a layer covers input pixels [u*S - P, u*S - P + r - 1] (Araujo et al., Distill 2019).
Boxes are half-open: (top, left, bottom, right) with bottom and right excluded.

A global op (a global pool broadcast back, as in squeeze-and-excitation) makes every later unit depend
on every pixel its pooled map saw: such a field is `whole`, the same box for every unit (the image,
in every model atlasgen knows), and says why. An op whose effect on the grid cannot be stated is
`opaque`: a layer that depends on one has no field, and `first_opaque` names the op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal

from atlasgen.errors import AtlasgenError

Pair = tuple[int, int]
OpKind = Literal["input", "conv", "pool", "pad", "crop", "identity", "merge", "global", "whole", "opaque"]


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
    note: str = ""  # global: what it pools; opaque: the layer and why its effect cannot be stated


@dataclass(frozen=True)
class Field:
    """Receptive field of a layer's units and the size of its output map, per axis (y, x).

    r, S and P are the local field's; when `whole` is set (after a global op) every unit sees that
    one box instead, `why` says which op made it so, and r and P no longer describe the field (S and
    the size still describe the output grid). `gridless`: the map is a vector or a 1 x 1 map of a
    global op, which a merge broadcasts."""

    r: Pair
    S: Pair
    P: Pair
    size: Pair
    whole: "Box | None" = None
    why: str = ""
    gridless: bool = False
    # The pixels that any unit of the layer depends on, clipped to the image: a 'valid' op with a
    # stride leaves the image's last rows or columns unread when they do not fill a window, and no
    # later unit depends on them. None: the whole image.
    reach: "Box | None" = None

    @property
    def extent(self) -> Pair:
        """The height and width of the box each unit sees: r, or the whole box's."""
        return (self.whole.height, self.whole.width) if self.whole else self.r

    def unit_input(self, unit: Pair, image: Pair) -> "Box":
        """The pixels unit (y, x) depends on: its box, clipped to the image and to the layer's reach."""
        box = self.unit_box(unit).clipped(image)
        if self.reach is None:
            return box
        r = self.reach
        return Box(max(box.top, r.top), max(box.left, r.left), min(box.bottom, r.bottom), min(box.right, r.right))

    def unit_box(self, unit: Pair) -> "Box":
        """The input box that unit (y, x) sees, before clipping to the image."""
        if self.whole is not None:
            return self.whole
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


def _local_union(op: SpatialOp, parents: list[Field]) -> tuple[Pair, Pair]:
    """(r, P) of the union of the branches' boxes: the earliest start and the latest end."""
    if len({f.S for f in parents}) != 1 or len({f.size for f in parents}) != 1:
        raise AtlasgenError(
            f"layer {op.name!r} merges branches with different strides or sizes; "
            "its receptive field is not a single box"
        )
    P = tuple(max(f.P[a] for f in parents) for a in (0, 1))
    r = tuple(max(f.r[a] - f.P[a] for f in parents) + P[a] for a in (0, 1))
    return r, P  # type: ignore[return-value]


def _span(field: Field, image: Pair) -> Box:
    """The box every unit of `field` together sees, clipped to the image and to its reach."""
    if field.whole is not None:
        return field.whole
    first = field.unit_input((0, 0), image)
    last = field.unit_input((max(field.size[0] - 1, 0), max(field.size[1] - 1, 0)), image)
    return Box(first.top, first.left, last.bottom, last.right)


def _union(boxes: list[Box]) -> Box:
    return Box(min(b.top for b in boxes), min(b.left for b in boxes),
               max(b.bottom for b in boxes), max(b.right for b in boxes))


def _inside(field: Field, box: Box, image: Pair) -> bool:
    """Every unit's box of `field`, clipped to the image, lies in `box`."""
    span = _span(field, image)
    return box.top <= span.top and box.left <= span.left and span.bottom <= box.bottom and span.right <= box.right


def _merge(op: SpatialOp, parents: list[Field], image: Pair) -> Field:
    """Several maps combined pixel by pixel. A gridless parent (a global op's vector or 1 x 1 map) is
    broadcast: every unit then sees its whole box too, which must hold every unit's own box."""
    grids = [f for f in parents if not f.gridless]
    wholes = [f for f in parents if f.whole is not None]
    why = next((f.why for f in wholes), "")
    if not grids:
        return Field(parents[0].r, parents[0].S, parents[0].P, (1, 1), _union([f.whole for f in wholes]), why, True)
    r, P = _local_union(op, grids)
    reach = _or_none(_union([f.reach or Box(0, 0, *image) for f in grids]), image)
    if not wholes:
        merged = Field(r=r, S=grids[0].S, P=P, size=grids[0].size, reach=reach)
        _check_reaches(op, grids, merged, image)
        return merged
    whole = _union([f.whole for f in wholes])
    if not all(_inside(f, whole, image) for f in grids):
        raise AtlasgenError(
            f"layer {op.name!r} combines a global map with a map whose units see beyond it; "
            "its units' fields are not one box"
        )
    return Field(r=r, S=grids[0].S, P=P, size=grids[0].size, whole=whole, why=why, reach=reach)


def _check_reaches(op: SpatialOp, grids: list[Field], merged: Field, image: Pair) -> None:
    """Where the branches read different parts of the image, a merged unit reads the union of what
    each branch's unit reads; refuses the merge if, for any unit, that is not its box within the merged
    reach (checked per axis, every unit)."""
    if len({f.reach for f in grids}) == 1:
        return
    for a in (0, 1):
        for u in range(merged.size[a]):
            spans = [_axis_input(f, a, u, image[a]) for f in grids]
            union = (min(lo for lo, _ in spans), max(hi for _, hi in spans))
            if union != _axis_input(merged, a, u, image[a]):
                raise AtlasgenError(
                    f"layer {op.name!r} merges branches that read different parts of a {image[0]}x{image[1]} image; "
                    "its units' fields are not one box at this size"
                )


def _axis_input(field: Field, a: int, u: int, n: int) -> tuple[int, int]:
    """[start, end) of the pixels unit u of `field` reads along axis a of an image of n pixels."""
    lo, hi = u * field.S[a] - field.P[a], u * field.S[a] - field.P[a] + field.r[a]
    reach = (0, n) if field.reach is None else ((field.reach.top, field.reach.bottom) if a == 0
                                                else (field.reach.left, field.reach.right))
    return max(lo, 0, reach[0]), min(hi, n, reach[1])


def _one_parent(op: SpatialOp, p: Field, image: Pair) -> Field:
    if op.kind == "global":  # a global pool: a 1 x 1 map of what every unit of its input saw
        return Field(p.r, p.S, p.P, (1, 1), _span(p, image), p.why or op.note, True)
    if op.kind == "whole":  # a normalisation over the whole map: the grid stays, every unit sees it all
        return Field(p.r, p.S, p.P, p.size, _span(p, image), p.why or op.note, p.gridless, p.reach)
    steps = [_axis_step(op, a, p.r[a], p.S[a], p.P[a], p.size[a]) for a in (0, 1)]
    field = Field(
        r=(steps[0][0], steps[1][0]),
        S=(steps[0][1], steps[1][1]),
        P=(steps[0][2], steps[1][2]),
        size=(steps[0][3], steps[1][3]),
        whole=p.whole, why=p.why, gridless=p.gridless, reach=p.reach,
    )
    if field.whole is not None or min(field.size) < 1:
        return field
    # What this layer's units together read, within what its input's units read.
    span = _span(field, image)
    return Field(field.r, field.S, field.P, field.size, gridless=field.gridless, reach=_or_none(span, image))


def _or_none(reach: Box, image: Pair) -> Box | None:
    return None if reach == Box(0, 0, *image) else reach


def receptive_fields(ops: Iterable[SpatialOp], input_size: Pair) -> dict[str, Field | None]:
    """Field of every op, in a graph given in topological order (inputs before their users). An
    opaque op, and every op that depends on one, has none (None)."""
    image = tuple(input_size)
    fields: dict[str, Field | None] = {}
    for op in ops:
        if op.kind == "input" or not op.inputs:
            fields[op.name] = Field(r=(1, 1), S=(1, 1), P=(0, 0), size=image)  # type: ignore[arg-type]
            continue
        parents = [fields[i] for i in op.inputs]
        if op.kind == "opaque" or any(p is None for p in parents):
            fields[op.name] = None
        elif op.kind == "merge" or len(parents) > 1:
            fields[op.name] = _merge(op, parents, image)  # type: ignore[arg-type]
        else:
            fields[op.name] = _one_parent(op, parents[0], image)  # type: ignore[arg-type]
    return fields


def first_opaque(ops: Iterable[SpatialOp], targets: Iterable[str]) -> SpatialOp | None:
    """The first opaque op (in graph order) that any of `targets` depends on, or None."""
    ops = list(ops)
    by_name = {op.name: op for op in ops}
    needed, todo = set(), list(targets)
    while todo:
        name = todo.pop()
        if name in by_name and name not in needed:
            needed.add(name)
            todo += by_name[name].inputs
    return next((op for op in ops if op.name in needed and op.kind == "opaque"), None)


def square(pair: Pair | None) -> int | list[int] | None:
    """One number for a square pair, as published tables give it; [y, x] otherwise (None stays None)."""
    if pair is None:
        return None
    return pair[0] if pair[0] == pair[1] else [pair[0], pair[1]]
