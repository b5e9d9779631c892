"""The model's geometry as one typed record: its conv layers and their receptive fields.

`model_geometry(loaded)` walks the Keras graph once; the record then gives every layer's field at any
input size (computed once per size), the sizes a layer needs, and the activation memory of an image,
so a build computes the model's geometry once and every stage receives it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from atlasgen.errors import AtlasgenError
from atlasgen.model import geometry
from atlasgen.model.graph import ConvLayer, conv_layers, image_readers, spatial_ops
from atlasgen.model.weights import LoadedModel

MAX_SEARCHED_SIZE = 4096
#: Bytes kept per activation element for a training-style step: the forward value, its gradient and
#: the backward pass's scratch, 4 bytes each; measured peaks on the CPU stay under this.
BYTES_PER_ACTIVATION = 4 * 4


@dataclass(frozen=True)
class LayerInfo:
    name: str
    filters: int
    field: geometry.Field
    input_size: geometry.Pair

    @property
    def centre_unit(self) -> geometry.Pair:
        return self.field.centre_unit(self.input_size)

    @property
    def centre_box(self) -> geometry.Box:
        return self.field.unit_box(self.centre_unit).clipped(self.input_size)

    def as_dict(self) -> dict:
        f = self.field
        return {
            "name": self.name,
            "filters": self.filters,
            "r": geometry.square(f.r),
            "S": geometry.square(f.S),
            "P": geometry.square(f.P),
            "output_size": geometry.square(f.size),
            "centre_unit": list(self.centre_unit),
            "centre_box": self.centre_box.as_list(),
        }


@dataclass(frozen=True, eq=False)
class ModelGeometry:
    """A model's graph as spatial ops and its conv layers, in graph order."""

    ops: tuple[geometry.SpatialOp, ...]
    convs: tuple[ConvLayer, ...]
    # The conv layers that read the image itself (graph.image_readers): their kernels are filters on pixels.
    image_readers: tuple[str, ...] = ()

    @functools.cache
    def fields(self, input_size: geometry.Pair) -> dict[str, geometry.Field]:
        """Every layer's field for an input of (height, width) pixels."""
        return geometry.receptive_fields(self.ops, tuple(input_size))

    def filters(self, layer: str) -> int:
        return next(c.filters for c in self.convs if c.name == layer)

    def layers(self, size: int) -> list[LayerInfo]:
        """Every conv layer with r, S, P and output size for a size x size input."""
        fields = self.fields((size, size))
        empty = [c.name for c in self.convs if min(fields[c.name].size) < 1]
        if empty:
            smallest = self.smallest_size([c.name for c in self.convs], size)
            raise AtlasgenError(
                f"--size {size} is too small: layer {empty[0]} would have an empty output; use --size {smallest} or more"
            )
        return [LayerInfo(c.name, c.filters, fields[c.name], (size, size)) for c in self.convs]

    def too_small(self, layers: list[str], size: geometry.Pair) -> str | None:
        """The first of `layers` whose map is empty on an input of `size` (height, width); None if none is."""
        fields = self.fields(tuple(size))
        return next((layer for layer in layers if min(fields[layer].size) < 1), None)

    def smallest_size(self, layers: list[str], start: int) -> int:
        """The smallest square side above `start` that gives every one of `layers` a map."""
        for n in range(start + 1, MAX_SEARCHED_SIZE + 1):
            if self.too_small(layers, (n, n)) is None:
                return n
        return MAX_SEARCHED_SIZE

    def activation_bytes(self, layer: str, size: geometry.Pair | int) -> int:
        """Activation memory one image needs for a forward and backward pass up to `layer`: the image
        and every conv layer's output up to it. Pure geometry, so it is known before any tensor is made."""
        size = (size, size) if isinstance(size, int) else tuple(size)
        fields = self.fields(size)
        elements = 3 * size[0] * size[1]
        for conv in self.convs:
            h, w = fields[conv.name].size
            elements += max(h, 0) * max(w, 0) * conv.filters
            if conv.name == layer:
                break
        return elements * BYTES_PER_ACTIVATION


def model_geometry(loaded: LoadedModel) -> ModelGeometry:
    """The model's geometry, from one walk of its graph."""
    ops = tuple(spatial_ops(loaded.model))
    return ModelGeometry(ops, tuple(conv_layers(loaded.model)), image_readers(loaded.model, list(ops)))


def describe_layers(loaded: LoadedModel, size: int) -> list[LayerInfo]:
    """Every conv layer of the model with r, S, P and output size for a size x size input."""
    return model_geometry(loaded).layers(size)


def check_input_sizes(geometry_: ModelGeometry, layers: list[str], sizes: dict[str, tuple[int, int]]) -> None:
    """Every named input (a probe photo: (height, width)) must give every layer a non-empty map."""
    for name, (h, w) in sizes.items():
        empty = geometry_.too_small(layers, (h, w))
        if empty:
            smallest = geometry_.smallest_size(layers, min(h, w))
            raise AtlasgenError(
                f"probe {name!r} is {w}x{h} px, too small for layer {empty}; give photos of at least {smallest} px a side"
            )


def layers_document(loaded: LoadedModel, layers: list[LayerInfo], size: int) -> dict:
    return {
        "model": loaded.architecture,
        "weights": {
            "source": loaded.source.kind,
            "spec": loaded.source.spec,
            "label": loaded.source.label,
            "fingerprint": loaded.fingerprint,
        },
        "input_size": size,
        "input_convention": loaded.input_convention.describe(),
        "total_filters": sum(layer.filters for layer in layers),
        "layers": [layer.as_dict() for layer in layers],
    }


def layers_table(document: dict) -> str:
    header = f"{'layer':<24} {'filters':>7} {'r':>5} {'S':>4} {'P':>4} {'output':>8}"
    rows = [header, "-" * len(header)]
    for layer in document["layers"]:
        rows.append(
            f"{layer['name']:<24} {layer['filters']:>7} {_cell(layer['r']):>5} {_cell(layer['S']):>4} "
            f"{_cell(layer['P']):>4} {_cell(layer['output_size']):>8}"
        )
    weights = document["weights"]
    rows += [
        "-" * len(header),
        f"{len(document['layers'])} conv layers, {document['total_filters']} filters, input {document['input_size']} px",
        f"model {document['model']}; weights: {weights['label']}",
        f"fingerprint sha256:{weights['fingerprint']}",
    ]
    return "\n".join(rows)


def _cell(value) -> str:
    return str(value) if isinstance(value, int) else "x".join(map(str, value))
