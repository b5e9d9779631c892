"""The convolutional layers of a loaded model with their receptive-field geometry at one input size."""

from __future__ import annotations

from dataclasses import dataclass

from atlasgen.model import geometry
from atlasgen.errors import AtlasgenError
from atlasgen.model.graph import conv_layers, spatial_ops
from atlasgen.model.weights import LoadedModel

MAX_SEARCHED_SIZE = 4096


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


def describe_layers(loaded: LoadedModel, size: int) -> list[LayerInfo]:
    """Every conv layer of the model with r, S, P and output size for a size x size input."""
    ops = spatial_ops(loaded.model)
    convs = conv_layers(loaded.model)
    fields = geometry.receptive_fields(ops, (size, size))
    empty = [c.name for c in convs if min(fields[c.name].size) < 1]
    if empty:
        smallest = smallest_size(ops, [c.name for c in convs], size)
        raise AtlasgenError(
            f"--size {size} is too small: layer {empty[0]} would have an empty output; use --size {smallest} or more"
        )
    return [LayerInfo(c.name, c.filters, fields[c.name], (size, size)) for c in convs]


#: Bytes kept per activation element for a training-style step: the forward value, its gradient and
#: the backward pass's scratch, 4 bytes each; measured peaks on the CPU stay under this.
BYTES_PER_ACTIVATION = 4 * 4


def activation_bytes(loaded: LoadedModel, layer: str, size: int) -> int:
    """Activation memory one size x size image needs for a forward and backward pass up to `layer`:
    the image and every conv layer's output up to it. Pure geometry, so it is known before any
    tensor is made."""
    fields = geometry.receptive_fields(spatial_ops(loaded.model), (size, size))
    elements = 3 * size * size
    for conv in conv_layers(loaded.model):
        h, w = fields[conv.name].size
        elements += max(h, 0) * max(w, 0) * conv.filters
        if conv.name == layer:
            break
    return elements * BYTES_PER_ACTIVATION


def check_input_sizes(loaded: LoadedModel, layers: list[str], sizes: dict[str, tuple[int, int]]) -> None:
    """Every named input (a probe photo: (height, width)) must give every layer a non-empty map."""
    ops = spatial_ops(loaded.model)
    for name, (h, w) in sizes.items():
        fields = geometry.receptive_fields(ops, (h, w))
        empty = [layer for layer in layers if min(fields[layer].size) < 1]
        if empty:
            smallest = smallest_size(ops, layers, min(h, w))
            raise AtlasgenError(
                f"probe {name!r} is {w}x{h} px, too small for layer {empty[0]}; give photos of at least {smallest} px a side"
            )


def smallest_size(ops, names: list[str], start: int) -> int:
    for n in range(start + 1, MAX_SEARCHED_SIZE + 1):
        fields = geometry.receptive_fields(ops, (n, n))
        if all(min(fields[name].size) >= 1 for name in names):
            return n
    return MAX_SEARCHED_SIZE


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
