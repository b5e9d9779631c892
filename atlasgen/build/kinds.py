"""The artifact kinds: each declares, in one place, how it is made and how it is published.

A kind says what its recipe holds, which compute function makes it, its blobs and facts, which files
its blobs become in the site, its part of the unit record in atlas.json (record fields copied from its
facts, its numbers under `metrics`, or a publish function for files as many as its entry says), and
its views: how the filter page, the layer page's tabs and `atlasgen figure` show it. The plan makes
one artifact of every kind of the chosen methods (`kinds_for`) per scope item, the build runs each
kind's compute function in this order (so a kind may read the kinds above it from the store), and
the export and the site read this registry and name no kind.

Adding a per-filter image kind is one `Kind(...)` here, one compute function in
`atlasgen.build.compute` and one template under `templates/views/` (the README's layout section).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Literal

from atlasgen.build import compute
from atlasgen.build.artifacts import ProbeRef
from atlasgen.build.dataset import DATASET_CONVENTION, EXAMPLE_DISPLAY
from atlasgen.codec import KERNEL_DISPLAY
from atlasgen.params import DIVERSITY_WEIGHT, EXACT_SHARE

#: The synthesis methods of whole-filter images; a kind with a method is planned only when it is chosen.
METHODS = ("lucid", "maco")
DEFAULT_METHODS = ("lucid",)
#: How many inputs, inhibitors and outputs each filter's wiring lists (--wiring-k), by default.
WIRING_K = 6

#: One artifact per filter, per filter and probe photo, per probe photo, or per dataset chunk and layer.
Scope = Literal["unit", "unit-probe", "probe", "chunk"]
#: What the colours of the map views mean, as atlas.json states it.
MAP_NORMALISATION = "post-ReLU activation / the filter's maximum over all probe photos (0 = silent, 1 = that maximum)"


@dataclass(frozen=True)
class Output:
    """One blob of a kind, published as a file."""

    blob: str  # which blob of the entry
    file: str  # path under the unit's folder (probe scope: the atlas's); {probe} is the probe's safe name
    field: str  # where the file's path goes in the record of the kind's scope, e.g. "images.channel"


@dataclass(frozen=True)
class View:
    """One way of showing a kind: a block of the filter page, a tab of the layer page, a figure column."""

    id: str  # the figure column and the layer page's tab, e.g. "rf-crop"
    label: str  # the tab's label and the block's heading, e.g. "Whole filter"
    header: str  # the figure column's header ("\n" breaks it)
    template: str  # the filter page's block: templates/views/<template>
    # What a grid or figure cell draws; "faces": the list of images a unit's `images.<image>` holds.
    shows: Literal["image", "faces", "rf-crop", "kernel", "examples", "maps", "wiring"] = "image"
    image: str | None = None  # the unit's `images` entry an image view shows
    metrics: str | None = None  # the unit's `metrics` entry of the image's numbers
    place: Literal["figures", "section"] = "figures"  # in the page's row of figures, or a section of its own
    # Which side of the filter's card it shows, side by side on the filter page: what excites the filter
    # (its images and top examples) or what inhibits it (its negative images and bottom examples); None:
    # neither, outside the two sides. Within a side, `place` says a row of figures or a section.
    side: Literal["excites", "inhibits"] | None = None
    examples: str = "dataset_examples"  # an examples view: the unit's record field of its examples
    tab: bool = True  # a grid on the layer page (when every filter of the layer has it)
    # A tab that draws its own cells (templates/views/<this>, inside the tab's panel) instead of an image each.
    layer_template: str | None = None
    column: bool = True  # a column `atlasgen figure --columns` can ask for
    default_column: bool = False  # among the figure's columns when --columns is not given
    hint: str = ""  # how to get it, when a figure asks for it and the atlas has not built it


@dataclass(frozen=True)
class RecipeContext:
    """What a kind's recipe may depend on."""

    params: dict  # the synthesis parameters
    probe: ProbeRef | None  # per-probe kinds: this probe
    probes: list[ProbeRef]  # every probe photo of the atlas, in order
    keys: dict[tuple[str, str | None], str]  # keys of this unit's artifacts of the kinds above, by (kind, probe)
    layer: str | None = None
    filter: int | None = None
    method_params: dict = field(default_factory=dict)  # method -> its parameters as plain JSON (e.g. "maco")
    examples: dict | None = None  # dataset examples: a hash of the layer's chunk keys, and k
    chunk: tuple[str, ...] = ()  # dataset chunks: the chunk's image digests
    dataset: object = None  # dataset chunks: atlasgen.build.artifacts.DatasetRef
    wiring_k: int = WIRING_K  # wiring: the strongest links each list keeps
    diversity: int = 0  # images in each filter's diversity set (0: none)


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # what progress lines call a batch of them
    scope: Scope
    blobs: tuple[str, ...]  # "{rank}" in a name: one blob per rank, as many as the entry says
    recipe: Callable[[RecipeContext], dict]  # the recipe's fields beyond algorithm, kind, model and weights
    compute: Callable[[compute.Job], compute.Results]
    outputs: tuple[Output, ...] = ()
    facts: tuple[str, ...] = ()  # meta fields every entry of the kind must carry
    record: dict[str, str] = field(default_factory=dict)  # record field (dotted) -> the fact copied into it
    metrics: str | None = None  # its facts are a synthesised image's numbers: the unit's metrics.<this>
    # For files as many as the entry says: (artifact, entry, publisher) -> its part of the unit record.
    publish: Callable | None = None
    views: tuple[View, ...] = ()
    method: str | None = None  # planned only when this method is chosen; None: with every method
    needs_model: bool = True
    needs_dataset: bool = False  # planned only when the atlas has a dataset
    reads_image: bool = False  # planned only for layers that read the image itself (ModelGeometry.image_readers)
    planned: Callable[[RecipeContext], bool] | None = None  # planned only when this says so (None: always)


def required_blobs(kind: Kind) -> tuple[str, ...]:
    """The blobs every entry of the kind holds (not the "{rank}" ones, as many as the entry says): an
    entry stored before the kind declared one of them lacks it, and the build makes it again."""
    return tuple(blob for blob in kind.blobs if "{" not in blob)


def _unit(context: RecipeContext) -> dict:
    return {"layer": context.layer, "filter": context.filter}


def publish_examples(artifact, entry, publisher, field: str = "dataset_examples", folder: str = "examples") -> dict:
    """A filter's example crops in its folder (`folder`/<rank>.webp), and the photos they are cut from,
    each photo once in the atlas's dataset/ folder: the unit record's `field`."""
    examples = []
    for rank, example in enumerate(entry.meta["examples"]):
        crop = publisher.unit_file(artifact, f"{folder}/{rank}.webp", entry.blobs[f"crop{rank}"].digest)
        digest = entry.blobs[f"photo{rank}"].digest
        photo = publisher.atlas_file(f"dataset/{digest[:20]}.webp", digest)
        examples.append({"source": publisher.dataset_source(example["digest"]), "activation": example["activation"],
                         "unit": example["unit"], "box": example["box"], "image": crop, "photo": photo,
                         "photo_size": example["size"]})
    return {field: examples}


def publish_diversity(artifact, entry, publisher) -> dict:
    """A filter's diversity set in its folder (diversity/<rank>.webp): `images.diversity`, the list of
    paths; `metrics.diversity`, their objectives in the same order; and each image's numbers and curve."""
    faces = entry.meta["faces"]
    paths = [publisher.unit_file(artifact, f"diversity/{rank}.webp", entry.blobs[f"image{rank}"].digest)
             for rank in range(faces)]
    return {"images": {"diversity": paths},
            "metrics": {"diversity": entry.meta["objectives"], "diversity_runs": entry.meta["runs"],
                        "diversity_similarity": entry.meta["similarity"],
                        "diversity_exact_weights": entry.meta.get("exact_weights")}}


SYNTHESIS_FACTS = ("objective", "mean_activation", "steps")
#: What a wiring weight is (atlasgen.model.wiring), in its recipe.
WIRING_WEIGHT = "sum of the kernel slice W[:, :, c, d], per-channel scales between the layers folded in"

#: Every kind, in the order the build runs them; their views show in this order too.
ALL_KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "probe-photo", "probe photos", "probe", ("image",),
            recipe=lambda c: {"probe": c.probe.digest},
            compute=compute.probe_photos,
            outputs=(Output("image", "probes/{probe}.webp", "image"),),
            facts=("width", "height"), record={"width": "width", "height": "height"}, needs_model=False,
        ),
        # The top k and the bottom k of one chunk of the dataset for every filter of a layer: one forward
        # pass per image makes every planned layer's, so the scan computes a chunk's artifacts of all
        # layers at once. ("bottom" came later: an entry without it is scanned again, its recipe the same.)
        Kind(
            "dataset-top", "dataset chunks", "chunk", ("top", "bottom"),
            recipe=lambda c: {"layer": c.layer, "images": list(c.chunk), "convention": DATASET_CONVENTION,
                              "short_side": c.dataset.short_side, "examples": c.dataset.examples},
            compute=compute.dataset_chunks,
            facts=("sizes", "skipped"), needs_dataset=True,
        ),
        Kind(
            "channel", "whole-filter images", "unit", ("image",),
            recipe=lambda c: {**_unit(c), "objective": "channel mean (pre-ReLU)", "params": c.params},
            compute=compute.whole_filter_images,
            outputs=(Output("image", "channel.webp", "images.channel"),),
            facts=SYNTHESIS_FACTS, metrics="channel", method="lucid",
            views=(View("channel", "Whole filter", "whole filter", "channel.html", image="channel", metrics="channel",
                        side="excites", default_column=True,
                        hint="build with --method lucid (or use the view maco), or leave channel out of --columns"),),
        ),
        # What inhibits the filter most: the same synthesis on the negated objective (Olah et al. 2017).
        Kind(
            "channel-negative", "negative whole-filter images", "unit", ("image",),
            recipe=lambda c: {**_unit(c), "objective": "channel mean (pre-ReLU), minimised", "params": c.params},
            compute=compute.negative_whole_filter_images,
            outputs=(Output("image", "channel-negative.webp", "images.channel_negative"),),
            facts=SYNTHESIS_FACTS, metrics="channel_negative", method="lucid",
            views=(View("negative", "Most negative", "most negative\n(whole filter)", "negative.html",
                        image="channel_negative", metrics="channel_negative", side="inhibits",
                        hint="build with --method lucid (or use the view maco-negative), or leave negative out of "
                             "--columns"),),
        ),
        # Several faces of the filter (Olah et al. 2017): --diversity images optimised together, each
        # pulled away from the others' texture; the set is one artifact, as its images are one batch.
        Kind(
            "diversity", "diversity images", "unit", ("image{rank}",),
            recipe=lambda c: {**_unit(c), "objective": "channel mean (pre-ReLU) + diversity", "faces": c.diversity,
                              "weight": DIVERSITY_WEIGHT, "exact_share": EXACT_SHARE, "params": c.params},
            compute=compute.diversity_images,
            facts=("faces", "objectives", "runs", "similarity"), publish=publish_diversity, method="lucid",
            planned=lambda c: c.diversity > 0,
            views=(View("diversity", "Diversity", "diversity", "diversity.html", shows="faces", image="diversity",
                        side="excites", tab=False,
                        hint="build with --diversity 2 or more (and --method lucid), or leave diversity out of --columns"),),
        ),
        # MACO (Fel et al. 2023): phase-only images on a natural spectrum, and where the gradient fell.
        Kind(
            "maco-channel", "MACO whole-filter images", "unit", ("image", "transparency"),
            recipe=lambda c: {**_unit(c), "method": "maco", "objective": "channel mean (pre-ReLU)",
                              "params": c.method_params["maco"]},
            compute=compute.maco_images,
            outputs=(Output("image", "maco-channel.webp", "images.maco_channel"),
                     Output("transparency", "maco-transparency.webp", "images.maco_transparency")),
            facts=SYNTHESIS_FACTS, metrics="maco", method="maco",
            views=(View("maco", "Whole filter (MACO)", "whole filter\n(MACO)", "maco.html", image="maco_channel",
                        metrics="maco", side="excites",
                        hint="build with --method lucid,maco, or leave maco out of --columns"),
                   View("maco-transparency", "MACO transparency", "MACO\ntransparency", "maco-transparency.html",
                        image="maco_transparency", side="excites", tab=False, column=False)),
        ),
        Kind(
            "maco-negative", "negative MACO whole-filter images", "unit", ("image",),
            recipe=lambda c: {**_unit(c), "method": "maco", "objective": "channel mean (pre-ReLU), minimised",
                              "params": c.method_params["maco"]},
            compute=compute.negative_maco_images,
            outputs=(Output("image", "maco-negative.webp", "images.maco_negative"),),
            facts=SYNTHESIS_FACTS, metrics="maco_negative", method="maco",
            views=(View("maco-negative", "Most negative (MACO)", "most negative\n(MACO)", "maco-negative.html",
                        image="maco_negative", metrics="maco_negative", side="inhibits",
                        hint="build with --method lucid,maco, or leave maco-negative out of --columns"),),
        ),
        # Where the filter fires on its own whole-filter image: a uniform texture, or a few hot spots.
        Kind(
            "channel-map", "maps on the whole-filter images", "unit", ("overlay",),
            recipe=lambda c: {**_unit(c), "image": c.keys[("channel", None)]},
            compute=compute.own_image_maps,
            outputs=(Output("overlay", "channel-map.webp", "images.channel_map"),),
            facts=("peak", "mean"), record={"metrics.own_image_peak": "peak"}, method="lucid",
            views=(View("channel-map", "Where it fires on its image", "where it fires\non its image",
                        "channel-map.html", image="channel_map", side="excites", tab=False, column=False),),
        ),
        # Not a method's: every atlas has its centre-neuron images, whichever whole-filter methods it has.
        Kind(
            "neuron", "centre-neuron images", "unit", ("image", "crop"),
            recipe=lambda c: {**_unit(c), "objective": "centre neuron (pre-ReLU)", "params": c.params},
            compute=compute.centre_neuron_images,
            outputs=(Output("image", "neuron.webp", "images.neuron"), Output("crop", "rf-crop.webp", "images.rf_crop")),
            facts=(*SYNTHESIS_FACTS, "rf_box", "changed_pixels_outside_box"), record={"rf_box": "rf_box"},
            metrics="neuron",
            views=(View("neuron", "Centre neuron", "centre neuron", "neuron.html", image="neuron", metrics="neuron",
                        tab=False, default_column=True, hint="leave neuron out of --columns"),
                   View("rf-crop", "Centre neuron (receptive field)", "receptive field\n(zoomed)", "rf-crop.html",
                        shows="rf-crop", image="rf_crop", default_column=True, hint="leave rf-crop out of --columns")),
        ),
        # The filter's own weights, for the layers that read the image: no synthesis parameters, so no
        # other setting recomputes it.
        Kind(
            "kernel", "first-layer kernels", "unit", ("image",),
            recipe=lambda c: {**_unit(c), "display": KERNEL_DISPLAY},
            compute=compute.kernel_images,
            outputs=(Output("image", "kernel.webp", "images.kernel"),),
            facts=("scale", "taps", "flipped"),
            record={"kernel.scale": "scale", "kernel.taps": "taps", "kernel.flipped": "flipped"}, reads_image=True,
            views=(View("kernel", "Kernels (RGB)", "kernel\n(RGB)", "kernel.html", shows="kernel", image="kernel",
                        hint="only a layer that reads the image has kernels (block1_conv1 in VGG16): leave kernel "
                             "out of --columns for other layers"),),
        ),
        # The top k units on the dataset, merged from the layer's chunks, and what each one saw: as many
        # crops and photos as it has examples.
        Kind(
            "examples", "dataset examples", "unit", ("crop{rank}", "photo{rank}"),
            recipe=lambda c: {**_unit(c), **c.examples, "display": EXAMPLE_DISPLAY},
            compute=compute.dataset_examples,
            facts=("examples",), publish=publish_examples, needs_dataset=True,
            views=(View("examples", "Top dataset example", "top dataset\nexamples", "examples.html", shows="examples",
                        place="section", side="excites", hint="leave examples out of --columns"),),
        ),
        # The bottom k units, lowest first, from the same chunks (their "bottom" blobs): what the filter
        # is most negative on, with the same crops and photos.
        Kind(
            "examples-negative", "negative dataset examples", "unit", ("crop{rank}", "photo{rank}"),
            recipe=lambda c: {**_unit(c), **c.examples, "display": EXAMPLE_DISPLAY, "order": "lowest pre-ReLU first"},
            compute=compute.negative_dataset_examples,
            facts=("examples",), needs_dataset=True,
            publish=functools.partial(publish_examples, field="dataset_examples_negative", folder="examples-negative"),
            views=(View("examples-negative", "Lowest dataset example", "lowest dataset\nexamples",
                        "examples-negative.html", shows="examples", place="section", side="inhibits",
                        examples="dataset_examples_negative", hint="leave examples-negative out of --columns"),),
        ),
        # No synthesis parameters: more steps must not recompute activation maps.
        Kind(
            "map", "activation maps", "unit-probe", ("raw",),
            recipe=lambda c: {**_unit(c), "probe": c.probe.digest},
            compute=compute.activation_maps,
            facts=("peak", "mean"), record={"peak": "peak", "mean": "mean"},
        ),
        # The colours depend on the filter's peak over every probe, so the view names all its maps:
        # a new probe re-colours the others' views without running the model.
        Kind(
            "map-view", "activation map views", "unit-probe", ("heatmap", "overlay"),
            recipe=lambda c: {
                **_unit(c), "probe": c.probe.digest, "map": c.keys[("map", c.probe.name)],
                "scale_from": [c.keys[("map", p.name)] for p in c.probes],
            },
            compute=compute.map_views,
            outputs=(Output("heatmap", "maps/{probe}/heatmap.webp", "images.heatmap"),
                     Output("overlay", "maps/{probe}/overlay.webp", "images.overlay")),
            facts=("scale",), record={"scale": "scale"}, needs_model=False,
            views=(View("maps", "Activation on", "activation map", "maps.html", shows="maps", place="section",
                        hint="leave maps out of --columns"),),
        ),
        # Which filters feed this one and which it feeds (Olah et al. 2020, Circuits), from the weights
        # alone: no synthesis parameters, so no other setting recomputes it. Its record is its facts.
        Kind(
            "wiring", "filter wiring", "unit", (),
            recipe=lambda c: {**_unit(c), "k": c.wiring_k, "weight": WIRING_WEIGHT},
            compute=compute.filter_wiring,
            facts=("wiring",), record={"wiring": "wiring"},
            views=(View("wiring", "Wiring", "wiring", "wiring.html", shows="wiring", place="section", column=False,
                        layer_template="wiring-layer.html"),),
        ),
    )
}

#: Every view, in the order the filter page shows them.
VIEWS: dict[str, View] = {view.id: view for kind in ALL_KINDS.values() for view in kind.views}


def kinds_for(methods=DEFAULT_METHODS) -> dict[str, Kind]:
    """The kinds a plan with these methods has, in the build's order."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}")
    return {name: kind for name, kind in ALL_KINDS.items() if kind.method is None or kind.method in methods}


#: The kinds of the default plan (whole-filter images by Lucid's method).
KINDS: dict[str, Kind] = kinds_for(DEFAULT_METHODS)
