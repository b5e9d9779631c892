"""How each artifact kind is computed: the functions the build runs for what the store lacks.

A compute function gets a `Job` (the missing artifacts of one kind in one layer, and the means to
make them) and yields, for each artifact as soon as it is done, its blobs and facts. The build
stores each one right away, so a kill loses at most the batch in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from atlasgen import codec
from atlasgen.errors import AtlasgenError
from atlasgen.plan import Artifact
from atlasgen.store import Store

Results = Iterator[tuple[Artifact, dict[str, bytes], dict]]


@dataclass
class Job:
    """The missing artifacts of one kind in one layer (or, for atlas-wide kinds, in the atlas)."""

    kind: str
    artifacts: list[Artifact]
    params: object  # atlasgen.synthesis.SynthesisParams
    probes: dict  # name -> atlasgen.synthesis.Probe, in the atlas's order
    store: Store
    batch_size: int | None  # None: fit to memory
    make_engine: Callable[[], object] = field(repr=False)  # the layer's LayerEngine, made on first use

    @property
    def engine(self):
        return self.make_engine()

    def entry_meta(self, key: str) -> tuple[dict, object]:
        """An upstream artifact's facts and entry, which the build made before this kind."""
        entry = self.store.get(key)
        if entry is None:
            raise AtlasgenError(f"artifact {key[:12]} vanished from the store during the build; run atlasgen build again")
        return entry.meta, entry


def probe_photos(job: Job) -> Results:
    for artifact in job.artifacts:
        image = job.probes[artifact.probe].image
        yield artifact, {"image": codec.webp(image)}, {"width": int(image.shape[1]), "height": int(image.shape[0])}


def _synthesised(job: Job, sizer, blobs_and_facts) -> Results:
    from atlasgen.synthesis.images import batches, synthesise

    engine = job.engine
    by_filter = {a.filter: a for a in job.artifacts}
    ids = sorted(by_filter)
    size = min(job.batch_size, len(ids)) if job.batch_size else sizer(engine, job.params, len(ids))
    for chunk in batches(ids, size):
        for image in {r.filter: r for r in synthesise(engine, job.kind, chunk, job.params)}.values():
            blobs, facts = blobs_and_facts(image)
            facts = {"objective": image.objective, "mean_activation": image.mean_activation,
                     "steps": int(len(image.history)), "objective_first_step": float(image.history[0]), **facts}
            yield by_filter[image.filter], blobs, facts


def whole_filter_images(job: Job) -> Results:
    from atlasgen.synthesis.images import channel_batch_size

    yield from _synthesised(job, channel_batch_size, lambda image: ({"image": codec.webp(image.image)}, {}))


def centre_neuron_images(job: Job) -> Results:
    from atlasgen.synthesis.images import neuron_batch_size, rf_crop

    def blobs_and_facts(image):
        blobs = {"image": codec.webp(image.image), "crop": codec.webp(rf_crop(image.image, image.box))}
        return blobs, {"rf_box": image.box.as_list(), "changed_pixels_outside_box": image.changed_outside_box}

    yield from _synthesised(job, neuron_batch_size, blobs_and_facts)


def own_image_maps(job: Job) -> Results:
    """Each filter's post-ReLU map on its own stored whole-filter image, drawn over that image."""
    from atlasgen.synthesis.maps import render_map
    from atlasgen.tf import tf

    images = [codec.decode(job.store.get_blob(job.entry_meta(a.recipe["image"])[1].blobs["image"].digest))
              for a in job.artifacts]
    batch = tf.constant(np.stack(images).astype(np.float32) / 255.0)
    maps = np.maximum(job.engine.own_maps(batch, tf.constant([a.filter for a in job.artifacts], tf.int32)).numpy(), 0)
    for artifact, image, raw in zip(job.artifacts, images, maps):
        peak = float(raw.max())
        _, overlay = render_map(raw, peak, image)
        yield artifact, {"overlay": codec.webp(overlay)}, {"peak": peak, "mean": float(raw.mean())}


def activation_maps(job: Job) -> Results:
    """Each filter's post-ReLU map on each probe photo, stored relative to its own peak, so that a
    new probe never forces the others' maps to be recomputed (the views apply the common scale)."""
    from atlasgen.synthesis.maps import post_relu_maps

    for name, probe in job.probes.items():
        mine = {a.filter: a for a in job.artifacts if a.probe == name}
        if not mine:
            continue
        ids = sorted(mine)
        maps = post_relu_maps(job.engine, probe, ids)
        for index, f in enumerate(ids):
            raw = maps[..., index]
            peak = float(raw.max())
            blob = codec.grey_png(raw / peak if peak > 0 else np.zeros_like(raw))
            yield mine[f], {"raw": blob}, {"probe": name, "peak": peak, "mean": float(raw.mean())}


def map_views(job: Job) -> Results:
    """Heatmap and overlay of a stored map, at the filter's scale over every probe photo."""
    from atlasgen.synthesis.maps import render_map

    for artifact in job.artifacts:
        scale = max(job.entry_meta(key)[0]["peak"] for key in artifact.recipe["scale_from"])
        meta, entry = job.entry_meta(artifact.recipe["map"])
        relative = codec.decode(job.store.get_blob(entry.blobs["raw"].digest)).astype(np.float32) / 255.0 * meta["peak"]
        heatmap, overlay = render_map(relative, scale, job.probes[artifact.probe].image)
        yield artifact, {"heatmap": codec.webp(heatmap), "overlay": codec.webp(overlay)}, {"scale": scale}
