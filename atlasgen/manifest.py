"""atlas.json as typed records: what the export writes and the only thing the site reads.

`Manifest.from_json` checks a document against these records, field by field, so a damaged or
hostile manifest stops with one line that names the bad field instead of failing somewhere later:
each field's type; the range of its whole numbers and the length of its lists (`bounded`, declared
on the field); and what a record's fields must say together (its `problems`: boxes inside their
images, indices inside their layer, one activation map per probe photo, ...). The site renders any
manifest that passes, so every value a page does arithmetic on or looks up is checked here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from atlasgen.errors import AtlasgenError
from atlasgen.params import PRECISIONS, SynthesisParams

MANIFEST = "atlas.json"
SCHEMA_VERSION = 3
#: atlas.json larger than this is refused: the full VGG16 atlas is about 6 MB.
MAX_MANIFEST_BYTES = 256 * 1024 * 1024


#: A record field written only when it has a value: atlas.json omits it when it is None (older
#: atlas.json lack it, and an atlas without the thing it describes carries no null for it).
OMITTED_WHEN_NONE = {"omit_none": True}


class ManifestError(AtlasgenError):
    """atlas.json is missing, unreadable or does not match its schema."""


#: The most a bounded whole number may be: far beyond any real image, index or count, and small enough
#: that the site's arithmetic on it stays exact in floating point.
MAX_WHOLE = 2**31 - 1


def bounded(least: int = 0, items: int | None = None, most: int = MAX_WHOLE, **kwargs):
    """A record field of whole numbers (an integer, or a list of them) from `least` to `most`, which
    is a list of `items` items when it is a list; `_decode` checks both. `kwargs` go to `field`."""
    return field(metadata={"least": least, "most": most, "items": items}, **kwargs)


def box_problem(box: list[int], height: int, width: int, image: str) -> str | None:
    """None when `box` [top, left, bottom, right] (bottom and right excluded) holds at least one pixel
    of an image `height` × `width` and no pixel outside it; else what it should be, for the error."""
    top, left, bottom, right = box
    if top < bottom <= height and left < right <= width:
        return None
    return f"[top, left, bottom, right] with top < bottom <= {height} and left < right <= {width} ({image})"


@dataclass(frozen=True)
class Generator:
    name: str
    version: str
    algorithm: int


@dataclass(frozen=True)
class Weights:
    source: str  # "imagenet", "hed-bsds500" or "file"
    spec: str  # what was given to --weights
    label: str  # the truthful description shown wherever results are shown
    fingerprint: str  # sha256 over every weight tensor


@dataclass(frozen=True)
class ProbeRecord:
    name: str
    sha256: str
    image: str
    width: int = bounded(1)
    height: int = bounded(1)


@dataclass(frozen=True)
class SynthesisMetrics:
    objective: float  # pre-ReLU objective on the final image
    mean_activation: float  # post-ReLU spatial mean on the final image
    activation_vs_best_probe: float | None  # that mean over the best probe photo's; None if all are silent
    steps: int = bounded(0)
    changed_pixels_outside_box: int | None = bounded(0, default=None)  # centre-neuron images only: 0
    # Whole-filter images: [scale, objective] with the image's deviation from its mean colour scaled
    # (0.5, 1, 1.5, 2), and whether the filter is faint-driven (a faint image that louder ones score below).
    contrast_response: list[list[float]] | None = None
    faint: bool | None = None
    # [step, objective] along the run (under each step's random transforms), ending at [steps, objective].
    curve: list[list[float]] | None = None
    # Whole-filter images of a layer affine in the pixels: true when the image is the exact extreme
    # (each colour channel at 0 or 255 by the sign of the objective's gradient), not the run's last image.
    exact: bool | None = None

    def problems(self):
        # The pages draw both as pairs: a point of the curve, a contrast and its objective.
        for name in ("contrast_response", "curve"):
            pairs = getattr(self, name)
            if pairs is not None and any(len(pair) != 2 for pair in pairs):
                yield name, "a list of pairs of numbers", [len(pair) for pair in pairs][:8]
        if self.curve is not None and any(b[0] <= a[0] for a, b in zip(self.curve, self.curve[1:])):
            yield "curve", "[step, objective] pairs in order of step", [point[0] for point in self.curve][:8]
        if self.faint and not self.contrast_response:
            yield "faint", "false or null: there is no contrast response to show it by", self.faint


@dataclass(frozen=True)
class Metrics:
    best_probe_mean_activation: float
    # The centre-neuron image's pre-ReLU objective over the best dataset example's (both one unit);
    # None without examples, or when the best example is not positive.
    neuron_vs_best_example: float | None = None
    own_image_peak: float | None = None  # the largest post-ReLU value on its own whole-filter image
    # Pre-ReLU negative everywhere on every probe photo and on its own whole-filter image.
    silent: bool = False
    # The diversity set (images.diversity, in its order): each image's objective, its numbers and
    # curve, and the set's mean pairwise cosine similarity between the Gram matrices of the features
    # that feed the layer (1: the same texture); absent without one.
    diversity: list[float] | None = field(default=None, metadata=OMITTED_WHEN_NONE)
    diversity_runs: list[SynthesisMetrics] | None = field(default=None, metadata=OMITTED_WHEN_NONE)
    diversity_similarity: float | None = field(default=None, metadata=OMITTED_WHEN_NONE)
    # A layer affine in the pixels: each set image's weight on the layer's exact extreme, laid under it
    # (atlasgen.synthesis.diversity.over_exact_extremes); absent elsewhere.
    diversity_exact_weights: list[float] | None = field(default=None, metadata=OMITTED_WHEN_NONE)
    # Each synthesised image's numbers under its view's name ("channel", "neuron", "maco", ...), written
    # beside the fields above as metrics.<name>; an image the atlas did not build has none.
    images: dict[str, SynthesisMetrics] = field(default_factory=dict, metadata={"flatten": True})

    def problems(self):
        if self.diversity is not None and (self.diversity_runs is None or len(self.diversity_runs) != len(self.diversity)):
            yield "diversity_runs", f"one record per diversity image ({len(self.diversity)})", \
                None if self.diversity_runs is None else len(self.diversity_runs)
        if self.neuron_vs_best_example is not None and "neuron" not in self.images:
            yield ("neuron_vs_best_example", "null: there are no centre-neuron numbers (metrics.neuron)",
                   self.neuron_vs_best_example)


@dataclass(frozen=True)
class MapRecord:
    probe: str
    images: dict[str, str]  # "heatmap", "overlay" -> path
    peak: float  # largest post-ReLU value on this photo
    mean: float  # spatial mean of the post-ReLU map on this photo
    scale: float  # the value drawn as 1: the filter's peak over all probes


@dataclass(frozen=True)
class ExampleRecord:
    """One of a filter's top (or bottom) units on the dataset, and what it saw."""

    source: str  # the image's path relative to the dataset folder, '/' separators
    activation: float  # the unit's pre-ReLU value
    unit: list[int] = bounded(0, items=2)  # [y, x] in the layer's map of the resized image
    # The unit's receptive field, clipped to the resized image: [top, left, bottom, right].
    box: list[int] = bounded(0, items=4)
    image: str  # the crop of the box
    photo: str  # the resized image the box is in
    photo_size: list[int] = bounded(1, items=2)  # [height, width] of that image

    def problems(self):
        problem = box_problem(self.box, *self.photo_size, "its photo, photo_size")
        if problem:
            yield "box", problem, self.box


@dataclass(frozen=True)
class SkippedFile:
    file: str  # relative to the dataset folder
    reason: str


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    images: int = bounded(0)  # distinct images scanned (skipped files not counted)
    short_side: int = bounded(1)  # each image's shorter side was resized to this
    sha256: str  # a hash of every scanned image's content and path, and the size
    skipped: list[SkippedFile]
    convention: dict[str, str]  # how an image becomes the model's input, and what an example is
    examples: int = bounded(0)  # asked for per filter
    builtin: bool  # scikit-image's bundled photos (no --dataset was given)


#: The precisions of a dataset scan as atlas.json records them (`PrecisionRecord.scan`).
SCAN_PRECISIONS = ("float32", "tf32", "unrecorded")


@dataclass(frozen=True)
class PrecisionRecord:
    """The precision the atlas's numbers were computed in."""

    synthesis: str  # parameters.precision: "float32", or "mixed" (bfloat16 compute, float32 parameters and objective)
    # Whether TensorFlow allowed TF32 for float32 convolutions where the synthesised images were made:
    # true if it did for any of them (on a GPU), false if a GPU made them all with it disabled, null on
    # a CPU (TF32 does not apply) or where their entries do not say.
    synthesis_tf32: bool | None = None
    # The dataset scan, from every chunk's facts: "float32" only if every chunk was scanned in full
    # float32 (on a CPU, or on a GPU with TF32 disabled), so its examples are exactly the highest;
    # "tf32" if any chunk let a GPU use TF32 (the highest as computed in TF32: approximate);
    # "unrecorded" if a chunk's entry does not say; null without a dataset.
    scan: str | None = None

    def problems(self):
        if self.synthesis not in PRECISIONS:
            yield "synthesis", " or ".join(PRECISIONS), self.synthesis
        if self.scan is not None and self.scan not in SCAN_PRECISIONS:
            yield "scan", f"null or one of {', '.join(SCAN_PRECISIONS)}", self.scan


@dataclass(frozen=True)
class KernelRecord:
    """A first-layer filter's kernel, drawn as an image (`images.kernel`): its weights on the image's
    RGB channels, 0 as mid-grey and `scale` as 0 or 255."""

    scale: float  # its largest absolute weight: drawn as 0 or 255, every other weight in proportion
    taps: list[int] = bounded(1, items=2)  # [height, width] of the kernel, in weights
    flipped: bool  # its weights were in the model's BGR order, drawn flipped to RGB

    def problems(self):
        if self.scale < 0:
            yield "scale", "a number at least 0 (the largest absolute weight)", self.scale




@dataclass(frozen=True)
class WiringLink:
    """One filter a filter is wired to (atlasgen.model.wiring): the kernel slice between them."""

    layer: str  # the conv layer of the filter linked to: the wiring's source (inputs, inhibitors) or target (outputs)
    filter: int = bounded(0)  # below that layer's filters
    weight: float  # the slice's sum: what a uniform input of the earlier filter does to the later one
    norm: float  # the slice's L2 norm
    slice: list[list[float]]  # the kernel's spatial slice W[:, :, c, d] (per-channel scales folded in), rows first

    def problems(self):
        if self.norm < 0:
            yield "norm", "a number at least 0 (an L2 norm)", self.norm
        if not self.slice or not self.slice[0] or any(len(row) != len(self.slice[0]) for row in self.slice):
            yield "slice", "a rectangle of weights: at least one row, every row as long as the first", len(self.slice)


@dataclass(frozen=True)
class WiredLayer:
    """The conv layer a filter's wiring links to, and how many filters it has (it may not be in the atlas)."""

    name: str
    filters: int = bounded(1)


#: A filter's wiring lists: (field, the layer they link to, strongest first: "down" for the most negative first).
WIRING_LISTS = (("inputs", "source", "up"), ("inhibitors", "source", "down"), ("outputs", "target", "up"))


@dataclass(frozen=True)
class WiringRecord:
    """Which filters feed a filter and which it feeds, from the weights alone (atlasgen.model.wiring):
    the k strongest of each list, strongest first; where none is claimed, why (`unclaimed`)."""

    k: int = bounded(1)  # --wiring-k: each list holds at most this many
    source: WiredLayer | None = None  # the conv layer whose filters feed this one; None when unclaimed
    target: WiredLayer | None = None  # the conv layer this one feeds; None when unclaimed
    inputs: list[WiringLink] = field(default_factory=list)  # positive weights, largest first
    inhibitors: list[WiringLink] = field(default_factory=list)  # negative weights, most negative first
    outputs: list[WiringLink] = field(default_factory=list)  # the target's filters it excites most, largest first
    # "inputs" or "outputs" -> why no wiring is claimed that way, in one line (it reads the image, a
    # residual add or a dense layer stands between, no conv layer follows...).
    unclaimed: dict[str, str] = field(default_factory=dict)
    # "inputs" or "outputs" -> the per-channel affine layers (batch norms) folded into that way's slices.
    folded: dict[str, list[str]] = field(default_factory=dict)

    def problems(self):
        for way, layer in (("inputs", self.source), ("outputs", self.target)):
            reason = self.unclaimed.get(way)
            if (layer is None) == (reason is None):
                yield f"unclaimed.{way}", f"a reason exactly when there is no {'source' if way == 'inputs' else 'target'}", reason
            if reason is not None and (not reason.strip() or not reason.isprintable()):
                yield f"unclaimed.{way}", "one line of text", reason
        for key in (*self.unclaimed, *self.folded):
            if key not in ("inputs", "outputs"):
                yield f"unclaimed.{key}", "a key of inputs or outputs", key
        for name, end, order in WIRING_LISTS:
            yield from _wiring_list_problems(name, getattr(self, name), getattr(self, end), order, self.k)


def _wiring_list_problems(name: str, links: list, layer, order: str, k: int):
    if len(links) > k:
        yield name, f"at most k = {k} links", len(links)
    shape = (len(links[0].slice), len(links[0].slice[0])) if links else None
    for i, link in enumerate(links):
        if layer is None or link.layer != layer.name:
            yield f"{name}[{i}].layer", f"the wiring's {'target' if name == 'outputs' else 'source'} layer", link.layer
        elif link.filter >= layer.filters:
            yield f"{name}[{i}].filter", f"below the {layer.filters} filters of {layer.name}", link.filter
        if (len(link.slice), len(link.slice[0])) != shape:
            yield f"{name}[{i}].slice", f"{shape[0]} × {shape[1]} like the list's first slice", len(link.slice)
        if (link.weight <= 0) if order == "up" else (link.weight >= 0):
            yield f"{name}[{i}].weight", "positive" if order == "up" else "negative", link.weight
        if i and ((link.weight > links[i - 1].weight) if order == "up" else (link.weight < links[i - 1].weight)):
            yield f"{name}[{i}].weight", "no stronger than the link before it (strongest first)", link.weight
    if len({link.filter for link in links}) != len(links):
        yield name, "links to distinct filters", [link.filter for link in links]


@dataclass(frozen=True)
class UnitRecord:
    index: int = bounded(0)  # below the layer's filters, once in the layer
    page: str  # the filter's permanent folder
    # Record field (e.g. "channel", "neuron", "rf_crop", "maco_channel") -> path; at least one, the
    # unit's picture (site.views.thumbnail). The pages show the views whose images a unit has.
    images: dict[str, str | list[str]]  # a list: the diversity set ("diversity"), each image a path
    # [top, left, bottom, right] of the centre unit's field, bottom and right excluded, inside the
    # synthesised image (parameters.size).
    rf_box: list[int] = bounded(0, items=4)
    # One per probe photo, in the order of the manifest's probes; none where the maps were not built.
    activation_maps: list[MapRecord]
    metrics: Metrics
    dataset_examples: list[ExampleRecord] = field(default_factory=list)  # highest activation first
    # The bottom k units on the dataset, lowest activation first (what inhibits the filter most); empty
    # without a dataset, and in atlas.json written before they were made.
    dataset_examples_negative: list[ExampleRecord] = field(default_factory=list)
    # Layers that read the image itself: the filter's kernel, drawn as images.kernel.
    kernel: KernelRecord | None = field(default=None, metadata=OMITTED_WHEN_NONE)
    # Which filters feed it and which it feeds, from the weights; absent from atlas.json written before it was made.
    wiring: WiringRecord | None = field(default=None, metadata=OMITTED_WHEN_NONE)

    def problems(self):
        if not self.images:
            yield ("images", "an object with at least one image", sorted(self.images))
        if "kernel" in self.images and self.kernel is None:
            yield "kernel", "the kernel's record (scale, taps, flipped), as images.kernel is there", None
        faces = self.images.get("diversity")
        if faces is not None and (isinstance(faces, str) or not faces or self.metrics.diversity is None
                                  or len(faces) != len(self.metrics.diversity)):
            yield "images.diversity", "a list of paths, one per objective in metrics.diversity", faces


@dataclass(frozen=True)
class TransformsUsed:
    """What one kind of synthesised image of a layer was optimised with, fitted to the layer's
    receptive field (atlasgen.synthesis.images.transforms_used): the random transforms of every step
    (pad, jitter, zoom, turn, last jitter), the step from which they stop, and Adam's learning rate."""

    pad: int = bounded(0)  # grey pixels added on every side
    jitter: int = bounded(0)  # random shift, up to this many pixels, before the zoom and turn
    scale: list[float]  # [low, high] of the random zoom ([1, 1]: none)
    rotate_degrees: float  # random turn, up to this many degrees either way (0: none)
    jitter_last: int = bounded(0)  # random shift after the zoom and turn
    learning_rate: float
    # The first step scored on the bare image, as it is judged, with no transforms; absent: every step
    # was transformed (a centre-neuron image, or an atlas written before algorithm 6).
    untransformed_from: int | None = field(default=None, metadata={"least": 0, "most": MAX_WHOLE, "items": None,
                                                                   **OMITTED_WHEN_NONE})

    def problems(self):
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            yield "scale", "[low, high] with 0 < low <= high", self.scale


@dataclass(frozen=True)
class LayerRecord:
    name: str
    path: str
    filters: int = bounded(1)  # in the layer, not only those built
    # An int where height and width agree, else [height, width]. r and P are null for a global field:
    # every unit depends on the whole image, and `global` says why.
    r: int | list[int] | None = bounded(1, items=2)
    S: int | list[int] = bounded(1, items=2)
    P: int | list[int] | None = bounded(0, items=2)
    output_size: int | list[int] = bounded(1, items=2)
    centre_unit: list[int] = bounded(0, items=2)  # [y, x] inside output_size
    units: list[UnitRecord]
    # By image (the metrics' names: "channel", "neuron"): the transforms and learning rate it was made
    # with at this layer; absent from atlas.json written before it was recorded.
    synthesis: dict[str, TransformsUsed] | None = field(default=None, metadata=OMITTED_WHEN_NONE)
    # Why every unit sees the whole image (JSON `global`), when r is null; absent otherwise.
    global_reason: str | None = field(default=None, metadata={**OMITTED_WHEN_NONE, "key": "global"})
    # The batch norm after the conv whose output is the unit's value (conv, BN, activation); absent: the conv's own.
    read_after: str | None = field(default=None, metadata=OMITTED_WHEN_NONE)

    def problems(self):
        if (self.r is None) != (self.global_reason is not None) or (self.r is None) != (self.P is None):
            yield "r", "null exactly when P is null and `global` says why", self.r
        height, width = pair(self.output_size)
        if not (self.centre_unit[0] < height and self.centre_unit[1] < width):
            yield "centre_unit", f"[y, x] inside the {height} × {width} output_size", self.centre_unit
        seen = set()
        for i, unit in enumerate(self.units):
            if unit.index >= self.filters:
                yield f"units[{i}].index", f"below the layer's {self.filters} filters", unit.index
            if unit.index in seen:
                yield f"units[{i}].index", "a filter no other unit of the layer has", unit.index
            seen.add(unit.index)


@dataclass(frozen=True)
class Manifest:
    schema: int
    generator: Generator
    model: str
    model_filters: int = bounded(0)  # every filter of every conv layer of the model
    weights: Weights
    input_convention: str
    preset: str
    parameters: SynthesisParams  # every synthesis parameter, as recorded in the recipes
    probes: list[ProbeRecord]
    activation_map_normalisation: str
    layers: list[LayerRecord] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: ["lucid"])  # whole-filter synthesis methods, in order
    method_parameters: dict[str, dict] = field(default_factory=dict)  # each method's own parameters beyond `parameters`
    dataset: DatasetRecord | None = None  # the images the dataset examples come from
    # The precision of the synthesis and of the dataset scan; absent from atlas.json written before it was recorded.
    precision: PrecisionRecord | None = None
    # The atlas's folder in the site (its pages are under <name>/; atlas.json is <name>/atlas.json).
    name: str = ""
    # A short hash of everything that determines the images (model, weights, methods, parameters,
    # probes, dataset, algorithm): the version a citation points at.
    atlas_id: str = ""
    title: str = ""  # the atlas's own title (--title), for citations
    authors: list[str] = field(default_factory=list)  # --author, in order
    built: str = ""  # YYYY-MM-DD: the day this atlas_id was first exported
    # The keras.applications convention by name and meaning (caffe, tf, torch, in the model); absent for others.
    preprocessing: str | None = field(default=None, metadata=OMITTED_WHEN_NONE)

    def to_json(self) -> dict:
        return to_json(self)

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n").encode()

    @classmethod
    def from_json(cls, document) -> "Manifest":
        schema = document.get("schema") if isinstance(document, dict) else None
        if isinstance(schema, int) and not isinstance(schema, bool) and schema != SCHEMA_VERSION:
            raise ManifestError(
                f"atlas.json has schema {schema}, this atlasgen reads {SCHEMA_VERSION}; rebuild with atlasgen build"
            )
        manifest = _decode(cls, document, "atlas.json")
        _check_paths(manifest)
        return manifest

    @property
    def units(self) -> int:
        return sum(len(layer.units) for layer in self.layers)

    def problems(self):
        size = self.parameters.size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_WHOLE:
            yield "parameters.size", f"a whole number from 1 to {MAX_WHOLE}", size
            return
        probes = [p.name for p in self.probes]
        yield from _repeated({f"probes[{i}].name": name for i, name in enumerate(probes)}, "a name no other probe photo has")
        yield from _repeated({f"layers[{i}].name": layer.name for i, layer in enumerate(self.layers)},
                             "a name no other layer has")
        folders = {"name": f"{self.name}/"} | {f"layers[{i}].path": layer.path for i, layer in enumerate(self.layers)}
        for li, layer in enumerate(self.layers):
            folders |= {f"layers[{li}].units[{ui}].page": unit.page for ui, unit in enumerate(layer.units)}
        yield from _repeated(folders, "a folder no other page of the atlas has")
        in_order = f"empty, or one map per probe photo in the order of probes ({', '.join(probes)[:60] or 'none'})"
        for li, layer in enumerate(self.layers):
            for ui, unit in enumerate(layer.units):
                problem = box_problem(unit.rf_box, size, size, "the synthesised image, parameters.size")
                if problem:
                    yield f"layers[{li}].units[{ui}].rf_box", problem, unit.rf_box
                if unit.activation_maps and [m.probe for m in unit.activation_maps] != probes:
                    yield f"layers[{li}].units[{ui}].activation_maps", in_order, [m.probe for m in unit.activation_maps]
        yield from _wired_layers(self.layers)


def _wired_layers(layers: list[LayerRecord]):
    """A wiring's source or target that is a layer of the atlas must have that layer's filters."""
    filters = {layer.name: layer.filters for layer in layers}
    for li, layer in enumerate(layers):
        for ui, unit in enumerate(layer.units):
            for end in ("source", "target"):
                wired = getattr(unit.wiring, end, None)
                if wired is not None and filters.get(wired.name, wired.filters) != wired.filters:
                    yield (f"layers[{li}].units[{ui}].wiring.{end}.filters",
                           f"{filters[wired.name]}, the filters of {wired.name} in this atlas", wired.filters)


def load_manifest(out: Path) -> Manifest:
    """The manifest in `out`, checked against its schema; one line naming the problem otherwise."""
    path = out / MANIFEST
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ManifestError(f"{path} is not a regular file; rebuild with atlasgen build")
        with open(path, "rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist; run `atlasgen build` first (render reads its manifest)") from None
    except OSError as exc:
        raise ManifestError(f"{path} cannot be read ({exc.strerror}); check its permissions") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB; it is not an atlas manifest")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({str(exc)[:80]}); rebuild with atlasgen build") from None
    return Manifest.from_json(document)


def activation_vs_best_probe(mean_activation: float, best_probe_mean: float) -> float | None:
    """A synthesised image's mean activation over the filter's best probe photo's; None when every photo is silent."""
    return mean_activation / best_probe_mean if best_probe_mean > 0 else None


def image_metrics(facts: dict) -> dict:
    """A synthesised image's numbers from the facts stored with it: every SynthesisMetrics field they hold."""
    return {f.name: facts[f.name] for f in dataclasses.fields(SynthesisMetrics) if f.name in facts}


def derive_metrics(document: dict) -> dict:
    """A unit's record (as JSON) from the parts its kinds published (images, maps, examples, each
    image's numbers), with the numbers that compare them derived here, in one place."""
    metrics = document.setdefault("metrics", {})
    maps = document.get("activation_maps", [])
    best = max((m["mean"] for m in maps), default=0.0)
    metrics["best_probe_mean_activation"] = best
    for value in [*metrics.values(), *metrics.get("diversity_runs", ())]:
        if isinstance(value, dict) and "mean_activation" in value:
            value.setdefault("activation_vs_best_probe", activation_vs_best_probe(value["mean_activation"], best))
    neuron, examples = metrics.get("neuron"), document.get("dataset_examples") or []
    if neuron is not None and examples and examples[0]["activation"] > 0:
        metrics["neuron_vs_best_example"] = neuron["objective"] / examples[0]["activation"]
    # Post-ReLU peaks of 0 mean the pre-ReLU map is nowhere positive.
    own = metrics.get("own_image_peak")
    metrics["silent"] = bool(own is not None and max((m["peak"] for m in maps), default=0.0) <= 0 and own <= 0)
    return document


def from_json(kind, document, where: str = "atlas.json"):
    """A record of type `kind` from its JSON, checked field by field as `Manifest.from_json` checks atlas.json."""
    return _decode(kind, document, where)


def to_json(record):
    """A record as JSON values: dataclasses as objects (a flattened field's entries beside the others)."""
    if dataclasses.is_dataclass(record):
        document = {}
        for f in dataclasses.fields(record):
            if f.metadata.get("omit_none") and getattr(record, f.name) is None:
                continue
            value = to_json(getattr(record, f.name))
            if f.metadata.get("flatten"):
                document.update(value)
            else:
                document[f.metadata.get("key", f.name)] = value
        return document
    if isinstance(record, (list, tuple)):
        return [to_json(v) for v in record]
    if isinstance(record, dict):
        return {k: to_json(v) for k, v in record.items()}
    return record


# --- checking a document against the records ---------------------------------------------------

# Every path in the manifest is relative to the output folder and made of safe names: the site writes
# pages at these paths and links to them, so one of '../x', '/abs' or 'javascript:x' must never pass.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _site_path(value: str, where: str, folder: bool) -> None:
    segments = value.split("/")
    if folder:
        if segments[-1] != "":
            raise ManifestError(f"{where} {json.dumps(value)[:60]} should end with '/'; rebuild with atlasgen build")
        segments = segments[:-1]
    if not segments or not all(_SEGMENT.fullmatch(s) and not s.endswith(".") for s in segments):
        raise ManifestError(
            f"{where} {json.dumps(value)[:60]} is not a relative path of safe names inside the site; rebuild with atlasgen build"
        )


def _check_paths(manifest: "Manifest") -> None:
    for i, probe in enumerate(manifest.probes):
        _site_path(probe.image, f"atlas.json.probes[{i}].image", folder=False)
    for li, layer in enumerate(manifest.layers):
        _site_path(layer.path, f"atlas.json.layers[{li}].path", folder=True)
        for ui, unit in enumerate(layer.units):
            where = f"atlas.json.layers[{li}].units[{ui}]"
            _site_path(unit.page, f"{where}.page", folder=True)
            for name, paths in unit.images.items():
                for i, path in enumerate([paths] if isinstance(paths, str) else paths):
                    _site_path(path, _member(f"{where}.images", name) + ("" if isinstance(paths, str) else f"[{i}]"),
                               folder=False)
            for mi, amap in enumerate(unit.activation_maps):
                for name, path in amap.images.items():
                    _site_path(path, _member(f"{where}.activation_maps[{mi}].images", name), folder=False)
            for name in ("dataset_examples", "dataset_examples_negative"):
                for ei, example in enumerate(getattr(unit, name)):
                    _site_path(example.image, f"{where}.{name}[{ei}].image", folder=False)
                    _site_path(example.photo, f"{where}.{name}[{ei}].photo", folder=False)


def pair(value: int | list[int]) -> tuple[int, int]:
    """(height, width) of a layer's size field: an int where they agree, else [height, width]."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _repeated(values: dict[str, object], expected: str):
    """(field, expected, value) of the first of `values` (by the field that holds it) seen before."""
    seen = set()
    for where, value in values.items():
        if value in seen:
            yield where, expected, value
            return
        seen.add(value)


def _check_bounds(f, value, where: str) -> None:
    """A `bounded` field's value: every whole number in range, a list of the right length."""
    least, most, items = f.metadata["least"], f.metadata["most"], f.metadata["items"]
    numbers = value if isinstance(value, list) else [value]
    if isinstance(value, list) and items is not None and len(value) != items:
        raise _bad(where, f"a list of {items} whole numbers", value)
    for i, number in enumerate(numbers):
        if number is not None and not least <= number <= most:
            place = f"{where}[{i}]" if isinstance(value, list) else where
            raise _bad(place, f"a whole number from {least} to {most}", number)


def _decode(kind, value, where: str):
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise _bad(where, "an object", value)
        hints, fields = _fields(kind)
        values = {}
        for f in fields:
            if f.metadata.get("flatten"):
                named = {g.name for g in fields}
                rest = {k: v for k, v in value.items() if k not in named and v is not None}
                values[f.name] = _decode(hints[f.name], rest, where)
                continue
            key = f.metadata.get("key", f.name)  # its name in JSON, where Python cannot spell it ("global")
            if key not in value:
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    continue
                raise ManifestError(f"{where}.{key} is missing; rebuild with atlasgen build")
            values[f.name] = _decode(hints[f.name], value[key], f"{where}.{key}")
            if "least" in f.metadata:
                _check_bounds(f, values[f.name], f"{where}.{f.name}")
        record = kind(**values)
        for path, expected, shown in getattr(record, "problems", tuple)():
            raise _bad(f"{where}.{path}", expected, shown)
        return record
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        records = [o for o in options if dataclasses.is_dataclass(o) or typing.get_origin(o) in (dict, list)]
        if value is not None and len(records) == 1 and set(options) == {records[0], type(None)}:
            return _decode(records[0], value, where)  # an optional record (or object): name the bad field inside it
        for option in options:
            try:
                return _decode(option, value, where)
            except ManifestError:
                continue
        raise _bad(where, " or ".join(_name(o) for o in typing.get_args(kind)), value)
    if origin is tuple:
        return _decode_tuple(typing.get_args(kind), value, where)
    if origin is list:
        if not isinstance(value, list):
            raise _bad(where, "a list", value)
        (item,) = typing.get_args(kind)
        return [_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise _bad(where, "an object", value)
        args = typing.get_args(kind)
        if not args:
            return value
        return {k: _decode(args[1], v, _member(where, k)) for k, v in value.items()}
    if kind is type(None):
        if value is not None:
            raise _bad(where, "null", value)
        return None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(where, "a number", value)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise _bad(where, "a finite number", value)
        return number
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, "an integer", value)
        return value
    if kind in (str, bool):
        if not isinstance(value, kind):
            raise _bad(where, _name(kind), value)
        if kind is str and not _encodable(value):
            raise _bad(where, "text (not a lone UTF-16 surrogate)", value.encode("utf-8", "backslashreplace").decode())
        return value
    raise TypeError(f"no decoder for {kind}")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decode_tuple(args: tuple, value, where: str) -> tuple:
    """A tuple of fixed types, or `tuple[T, ...]` of any length, from a JSON list."""
    if len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list):
            raise _bad(where, "a list", value)
        return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if not isinstance(value, list) or len(value) != len(args):
        raise _bad(where, f"a list of {len(args)}", value)
    return tuple(_decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


@functools.cache
def _fields(kind) -> tuple[dict, tuple]:
    return typing.get_type_hints(kind), dataclasses.fields(kind)


def _member(where: str, key: str) -> str:
    """`where.key`, or `where["key"]` escaped and cut short when the key is not a plain name."""
    return f"{where}.{key}" if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", key) else f"{where}[{json.dumps(key)[:40]}]"


def _name(kind) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "null"}.get(
        kind, getattr(kind, "__name__", str(kind))
    )


def _bad(where: str, expected: str, value) -> ManifestError:
    if isinstance(value, list) and len(value) <= 8 and all(isinstance(v, (int, str)) for v in value):
        text = json.dumps([v if not isinstance(v, int) or abs(v) < 10**15 else "huge" for v in value])
        shown = text if len(text) <= 80 else "list"
    elif isinstance(value, (dict, list)):
        shown = type(value).__name__
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        shown = "a huge integer"
    else:
        shown = json.dumps(value)[:40]
    return ManifestError(f"{where} should be {expected}, not {shown}; rebuild with atlasgen build")
