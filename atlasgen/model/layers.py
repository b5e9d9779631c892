"""The model's geometry as one typed record: its conv layers and their receptive fields.

`model_geometry(loaded)` walks the Keras graph once; the record then gives every layer's field at any
input size (computed once per size), the sizes a layer needs, and the activation memory of an image,
so a build computes the model's geometry once and every stage receives it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from atlasgen.errors import AtlasgenError
from atlasgen.model import geometry
from atlasgen.model.conventions import meaning
from atlasgen.model.graph import ConvLayer, batch_norms_read, conv_layers, image_readers, spatial_ops
from atlasgen.model.weights import LoadedModel

MAX_SEARCHED_SIZE = 4096
#: What a unit's value is, as the atlas states it (issue 23, item 3).
READ_RULE = ("a unit's value is its conv's output before the activation; where a batch norm follows the conv "
             "(conv, batch norm, activation), after the batch norm and before the activation")
#: Bytes kept per activation element for a training-style step: the forward value, its gradient and
#: the backward pass's scratch, 4 bytes each; measured peaks on the CPU stay under this.
BYTES_PER_ACTIVATION = 4 * 4


@dataclass(frozen=True)
class LayerInfo:
    name: str
    filters: int
    field: geometry.Field
    input_size: geometry.Pair
    read_after: str | None = None  # the batch norm the unit is read after (graph.batch_norms_read)

    @property
    def centre_unit(self) -> geometry.Pair:
        return self.field.centre_unit(self.input_size)

    @property
    def centre_box(self) -> geometry.Box:
        return self.field.unit_input(self.centre_unit, self.input_size)

    def as_dict(self) -> dict:
        """The layer's row: r and P are null for a global field, whose `global` says why."""
        f = self.field
        row = {
            "name": self.name,
            "filters": self.filters,
            "r": geometry.square(f.r) if f.whole is None else None,
            "S": geometry.square(f.S),
            "P": geometry.square(f.P) if f.whole is None else None,
            "output_size": geometry.square(f.size),
            "centre_unit": list(self.centre_unit),
            "centre_box": self.centre_box.as_list(),
        }
        if f.whole is not None:
            row["global"] = global_reason(f)
        if self.read_after:
            row["read_after"] = self.read_after
        return row


@dataclass(frozen=True, eq=False)
class ModelGeometry:
    """A model's graph as spatial ops and its conv layers, in graph order."""

    ops: tuple[geometry.SpatialOp, ...]
    convs: tuple[ConvLayer, ...]
    # The conv layers that read the image itself (graph.image_readers): their kernels are filters on pixels.
    image_readers: tuple[str, ...] = ()
    # Conv layer -> the batch norm its unit is read after (graph.batch_norms_read); others at their own output.
    read_after: dict[str, str] = field(default_factory=dict)

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
        return [LayerInfo(c.name, c.filters, fields[c.name], (size, size), self.read_after.get(c.name))
                for c in self.convs]

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


def global_reason(field: geometry.Field) -> str:
    """Why every unit of a global field sees the whole image, in one line."""
    return f"every unit depends on the whole image: {field.why}"


def model_geometry(loaded: LoadedModel) -> ModelGeometry:
    """The model's geometry, from one walk of its graph. A model whose conv layers depend on a layer
    whose effect on the grid cannot be stated exactly is refused, naming the layer: no field is guessed."""
    ops = tuple(spatial_ops(loaded.model))
    convs = tuple(conv_layers(loaded.model))
    opaque = geometry.first_opaque(ops, [c.name for c in convs])
    if opaque is not None:
        raise AtlasgenError(
            f"model {loaded.architecture} is refused: layer {opaque.note}, so its conv layers' receptive fields "
            f"cannot be stated exactly; atlasgen does not guess them"
        )
    return ModelGeometry(ops, convs, image_readers(loaded.model, list(ops)), batch_norms_read(loaded.model))


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
        "preprocessing": meaning(loaded.input_convention),
        "total_filters": sum(layer.filters for layer in layers),
        "layers": [layer.as_dict() for layer in layers],
    }


def layers_table(document: dict) -> str:
    width = max([24] + [len(layer["name"]) for layer in document["layers"]])
    header = f"{'layer':<{width}} {'filters':>7} {'r':>5} {'S':>4} {'P':>4} {'output':>8}"
    rows = [header, "-" * len(header)]
    for layer in document["layers"]:
        rows.append(
            f"{layer['name']:<{width}} {layer['filters']:>7} {_cell(layer['r']):>5} {_cell(layer['S']):>4} "
            f"{_cell(layer['P']):>4} {_cell(layer['output_size']):>8}"
        )
    weights = document["weights"]
    rows += ["-" * len(header),
             f"{len(document['layers'])} conv layers, {document['total_filters']} filters, input {document['input_size']} px"]
    whole = [layer for layer in document["layers"] if layer["r"] is None]
    if whole:
        rows.append(f"{len(whole)} layers from {whole[0]['name']} on see the whole image (r whole): {whole[0]['global']}")
    rows += [
        f"model {document['model']}; weights: {weights['label']}",
        f"input: {document['input_convention']}" + (f" ({document['preprocessing']})" if document.get("preprocessing") else ""),
        READ_RULE,
        f"fingerprint sha256:{weights['fingerprint']}",
    ]
    return "\n".join(rows)


def _cell(value) -> str:
    if value is None:
        return "whole"
    return str(value) if isinstance(value, int) else "x".join(map(str, value))
