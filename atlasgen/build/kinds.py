"""The artifact kinds: each declares, in one place, its recipe, its blobs, how it is computed and
where its files go in the site.

Adding a kind is an entry here, a compute function in `atlasgen.build.compute` and a template change.
The plan makes one artifact of every kind of the chosen methods (`kinds_for`) per scope item,
the build runs each kind's compute
function (in this order, so a kind may read the kinds above it from the store), and the export
copies each output blob to its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from atlasgen.build import compute
from atlasgen.build.dataset import EXAMPLE_DISPLAY
from atlasgen.build.plan import ProbeRef
from atlasgen.synthesis.maps import NORMALISATION

#: The synthesis methods of whole-filter images; a kind with a method is planned only when it is chosen.
METHODS = ("lucid", "maco")
DEFAULT_METHODS = ("lucid",)

Scope = Literal["unit", "unit-probe", "probe"]
#: What the colours of the map views mean, as atlas.json states it.
MAP_NORMALISATION = NORMALISATION


@dataclass(frozen=True)
class Output:
    """One blob of a kind, published as a file."""

    blob: str  # which blob of the entry
    name: str  # its name in the manifest's `images`
    file: str  # path under the unit's folder ("probe" scope: under the site's root); {probe} is the probe's safe name


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


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # what progress lines call a batch of them
    scope: Scope  # one per filter, per filter and probe photo, or per probe photo
    blobs: tuple[str, ...]
    recipe: Callable[[RecipeContext], dict]  # the recipe's fields beyond algorithm, kind, model and weights
    compute: Callable[[compute.Job], compute.Results]
    outputs: tuple[Output, ...] = ()
    needs_model: bool = True
    facts: tuple[str, ...] = field(default=())  # meta fields every entry of the kind must carry
    method: str | None = None  # planned only when this method is chosen; None: with every method
    needs_dataset: bool = False  # planned only when the atlas has a dataset


def _unit(context: RecipeContext) -> dict:
    return {"layer": context.layer, "filter": context.filter}


#: Every kind, in the order the build runs them.
ALL_KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "probe-photo", "probe photos", "probe", ("image",),
            recipe=lambda c: {"probe": c.probe.digest},
            compute=compute.probe_photos,
            outputs=(Output("image", "photo", "probes/{probe}.webp"),),
            needs_model=False, facts=("width", "height"),
        ),
        Kind(
            "channel", "whole-filter images", "unit", ("image",),
            recipe=lambda c: {**_unit(c), "objective": "channel mean (pre-ReLU)", "params": c.params},
            compute=compute.whole_filter_images,
            outputs=(Output("image", "channel", "channel.webp"),),
            facts=("objective", "mean_activation", "steps"), method="lucid",
        ),
        Kind(
            "neuron", "centre-neuron images", "unit", ("image", "crop"),
            recipe=lambda c: {**_unit(c), "objective": "centre neuron (pre-ReLU)", "params": c.params},
            compute=compute.centre_neuron_images,
            outputs=(Output("image", "neuron", "neuron.webp"), Output("crop", "rf_crop", "rf-crop.webp")),
            # Not a method's: every atlas has its centre-neuron images, whichever whole-filter methods it has.
            facts=("objective", "mean_activation", "steps", "rf_box", "changed_pixels_outside_box"),
        ),
        # Where the filter fires on its own whole-filter image: a uniform texture, or a few hot spots.
        Kind(
            "channel-map", "maps on the whole-filter images", "unit", ("overlay",),
            recipe=lambda c: {**_unit(c), "image": c.keys[("channel", None)]},
            compute=compute.own_image_maps,
            outputs=(Output("overlay", "channel_map", "channel-map.webp"),),
            facts=("peak", "mean"), method="lucid",
        ),
        # MACO (Fel et al. 2023): phase-only images on a natural spectrum, and where the gradient fell.
        Kind(
            "maco-channel", "MACO whole-filter images", "unit", ("image", "transparency"),
            recipe=lambda c: {**_unit(c), "method": "maco", "objective": "channel mean (pre-ReLU)",
                              "params": c.method_params["maco"]},
            compute=compute.maco_images,
            outputs=(Output("image", "maco_channel", "maco-channel.webp"),
                     Output("transparency", "maco_transparency", "maco-transparency.webp")),
            facts=("objective", "mean_activation", "steps"), method="maco",
        ),
        # The top k units on the dataset, merged from the layer's chunks, and what each one saw. Its
        # files (crops, and the photos they came from) are as many as the examples: the export
        # publishes them (`export.publish_examples`).
        Kind(
            "examples", "dataset examples", "unit", ("crop{rank}", "photo{rank}"),
            recipe=lambda c: {**_unit(c), **c.examples, "display": EXAMPLE_DISPLAY},
            compute=compute.dataset_examples,
            facts=("examples",), needs_dataset=True,
        ),
        # No synthesis parameters: more steps must not recompute activation maps.
        Kind(
            "map", "activation maps", "unit-probe", ("raw",),
            recipe=lambda c: {**_unit(c), "probe": c.probe.digest},
            compute=compute.activation_maps,
            facts=("peak", "mean"),
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
            outputs=(Output("heatmap", "heatmap", "maps/{probe}/heatmap.webp"), Output("overlay", "overlay", "maps/{probe}/overlay.webp")),
            needs_model=False, facts=("scale",),
        ),
    )
}


def kinds_for(methods=DEFAULT_METHODS) -> dict[str, Kind]:
    """The kinds a plan with these methods has, in the build's order."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}")
    return {name: kind for name, kind in ALL_KINDS.items() if kind.method is None or kind.method in methods}


#: The kinds of the default plan (whole-filter images by Lucid's method).
KINDS: dict[str, Kind] = kinds_for(DEFAULT_METHODS)
