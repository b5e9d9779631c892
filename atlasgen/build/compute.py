"""How each artifact kind is computed: the functions the build runs for what the store lacks.

A compute function gets a `Job` (the missing artifacts of one kind in one layer, and the means to
make them) and yields, for each artifact as soon as it is done, its blobs and facts. The build
stores each one right away, so a kill loses at most the batch in flight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from atlasgen import codec
from atlasgen.errors import AtlasgenError
from atlasgen.build.artifacts import Artifact
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
    # The layer's LayerEngine in a precision ("float32", "mixed"), made on first use for each.
    make_engine: Callable[[str], object] = field(repr=False)
    log: Callable[[str], None] = field(default=lambda text: None, repr=False)  # one plain line for the build's log
    method_params: dict = field(default_factory=dict)  # method -> its parameters (e.g. "maco": MacoParams)
    dataset: object = None  # atlasgen.build.dataset.Dataset
    chunks: list = field(default_factory=list)  # the layer's dataset-chunk artifacts, in chunk order
    loaded: object = None  # atlasgen.model.weights.LoadedModel
    geometry: object = None  # atlasgen.model.layers.ModelGeometry: the model's layers and fields, computed once
    layers: list[str] = field(default_factory=list)  # every planned layer, in order

    @property
    def engine(self):
        """The layer's engine in the precision of the job's synthesis parameters (float32 without any)."""
        return self.engine_for(getattr(self.params, "precision", "float32"))

    def engine_for(self, precision: str):
        """The layer's engine that computes in `precision`."""
        return self.make_engine(precision)

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


def _synthesised(job: Job, what: str, sizer, blobs_and_facts, params=None, run=None) -> Results:
    """Images of the job's filters in batches (`run(engine, ids, params)`, by default the kind's
    Lucid synthesis), each stored with its blobs and the facts every synthesised image has."""
    from atlasgen.build.dataset import tf32_allowed
    from atlasgen.synthesis.engine import memory_budget

    from atlasgen.synthesis.images import synthesise

    params = params if params is not None else job.params
    run = run or (lambda engine, chunk, params: synthesise(engine, job.kind, chunk, params))
    engine = job.engine_for(params.precision)  # the synthesis refuses an engine of another precision
    by_filter = {a.filter: a for a in job.artifacts}
    ids = sorted(by_filter)
    where = f"{job.artifacts[0].layer}: {what}"
    if job.batch_size:
        size = min(job.batch_size, len(ids))
        job.log(f"{where} in batches of {size} (--batch-size)")
    else:
        size = sizer(engine, params, len(ids))
        job.log(f"{where} in batches of {size} (fit to {memory_budget().describe()}; --batch-size overrides)")
    tf32 = tf32_allowed()  # a fact of where the images are made (None on a CPU), not of their recipe
    for image in _fitting_memory(job, engine, ids, size, where, params, run):
        blobs, facts = blobs_and_facts(image)
        facts = {"objective": image.objective, "mean_activation": image.mean_activation,
                 "steps": int(len(image.history)), "objective_first_step": float(image.history[0]),
                 "curve": objective_curve(image.history, image.objective), **facts}
        if image.contrast_response is not None:
            facts.update(contrast_response=image.contrast_response, faint=image.faint)
        if getattr(image, "exact", None) is not None:
            facts["exact"] = image.exact
        facts["tf32"] = tf32
        yield by_filter[image.filter], blobs, facts


#: Points of an image's objective along its run that its facts keep (at most; fewer steps, fewer points).
CURVE_POINTS = 32


def objective_curve(history, objective: float) -> list[list[float]]:
    """[step, objective] along the run: the objective under that step's random transforms at up to
    CURVE_POINTS - 1 evenly spaced steps before the last, then [steps, the final image's own objective]
    (the stored one, judged without transforms)."""
    steps = len(history)
    picked = sorted({round(k * (steps - 2) / (CURVE_POINTS - 2)) for k in range(CURVE_POINTS - 1)}) if steps > 1 else []
    return [[i + 1, float(history[i])] for i in picked] + [[steps, float(objective)]]


def _fitting_memory(job: Job, engine, ids: list[int], size: int, where: str, params, run) -> Iterator:
    """Each filter's image once, as each batch finishes. A batch that runs out of memory is halved
    and retried, down to one image, and the smaller size holds for the rest of the job; the
    remaining filters are re-batched by `batches`, so every batch still has one size."""
    from atlasgen.synthesis.images import batches

    done: set[int] = set()
    todo = list(ids)
    while todo:
        for chunk in batches(todo, size):
            try:
                images = run(engine, chunk, params)
            except Exception as error:
                if not out_of_memory(error):
                    raise
                if len(chunk) == 1:
                    raise AtlasgenError(
                        f"{where} ran out of memory even for one image at --size {params.size}; use a smaller --size"
                    ) from None
                size = (len(chunk) + 1) // 2
                job.log(f"{where}: out of memory at batch {len(chunk)}, retrying at {size}")
                break
            for image in images:
                if image.filter not in done:
                    done.add(image.filter)
                    yield image
        else:
            return
        todo = [f for f in todo if f not in done]


# What TensorFlow's internal errors say when a GPU allocation fails ("Dst tensor is not initialized"
# is a copy to a GPU that had no room).
_OUT_OF_MEMORY = re.compile(
    r"out[ _]of[ _]memory|\boom\b|failed to allocate|resource_?exhausted|dst tensor is not initialized", re.IGNORECASE
)


def out_of_memory(error: BaseException) -> bool:
    """True for the errors of a batch too large for the device: TensorFlow's ResourceExhaustedError,
    Python's MemoryError, and an internal or unknown TensorFlow error that says it is out of memory."""
    from atlasgen.tf import tf

    if isinstance(error, (MemoryError, tf.errors.ResourceExhaustedError)):
        return True
    return isinstance(error, (tf.errors.InternalError, tf.errors.UnknownError)) and bool(_OUT_OF_MEMORY.search(str(error)))


def whole_filter_images(job: Job) -> Results:
    from atlasgen.synthesis.images import channel_batch_size

    yield from _synthesised(job, "whole-filter images", channel_batch_size,
                            lambda image: ({"image": codec.webp(image.image)}, {}))


def negative_whole_filter_images(job: Job) -> Results:
    """Whole-filter images that minimise their filter's pre-ReLU channel mean (Lucid's method)."""
    from atlasgen.synthesis.images import channel_batch_size

    yield from _synthesised(job, "negative whole-filter images", channel_batch_size,
                            lambda image: ({"image": codec.webp(image.image)}, {}))


def centre_neuron_images(job: Job) -> Results:
    from atlasgen.synthesis.images import neuron_batch_size, rf_crop

    def blobs_and_facts(image):
        blobs = {"image": codec.webp(image.image), "crop": codec.webp(rf_crop(image.image, image.box))}
        return blobs, {"rf_box": image.box.as_list(), "changed_pixels_outside_box": image.changed_outside_box}

    yield from _synthesised(job, "centre-neuron images", neuron_batch_size, blobs_and_facts)


def maco_images(job: Job) -> Results:
    """MACO whole-filter images (phase only, natural magnitude) and their transparency maps."""
    from atlasgen.synthesis.maco import MacoParams, maco_batch, maco_batch_size, transparency_image

    params = job.method_params.get("maco") or MacoParams.from_synthesis(job.params)

    def blobs_and_facts(image):
        return {"image": codec.webp(image.image), "transparency": codec.webp(transparency_image(image.transparency))}, {}

    yield from _synthesised(job, "MACO whole-filter images", maco_batch_size, blobs_and_facts, params, maco_batch)


def negative_maco_images(job: Job) -> Results:
    """MACO whole-filter images that minimise their filter's pre-ReLU channel mean (the image only)."""
    from atlasgen.synthesis.maco import MacoParams, maco_batch_size, negative_maco_batch

    params = job.method_params.get("maco") or MacoParams.from_synthesis(job.params)
    yield from _synthesised(job, "negative MACO whole-filter images", maco_batch_size,
                            lambda image: ({"image": codec.webp(image.image)}, {}), params, negative_maco_batch)


def diversity_images(job: Job) -> Results:
    """Each filter's diversity set (Lucid's method with the diversity term, `atlasgen.synthesis.diversity`):
    its `faces` images, optimised together in one batch, each stored with its numbers and curve."""
    from atlasgen.build.dataset import tf32_allowed
    from atlasgen.synthesis.diversity import diversity_batch, diversity_batch_size

    recipe = job.artifacts[0].recipe
    faces, weight = recipe["faces"], recipe["weight"]
    engine = job.engine_for(job.params.precision)
    by_filter = {a.filter: a for a in job.artifacts}
    ids = sorted(by_filter)
    where = f"{job.artifacts[0].layer}: diversity images ({faces} a filter)"
    # --batch-size counts images; a batch holds whole sets.
    size = max(1, min(job.batch_size // faces, len(ids))) if job.batch_size else \
        diversity_batch_size(engine, job.params, faces, len(ids))
    job.log(f"{where} in batches of {size} filters")
    tf32 = tf32_allowed()
    run = lambda engine, chunk, params: diversity_batch(engine, chunk, params, faces, weight)  # noqa: E731
    for made in _fitting_memory(job, engine, ids, size, where, job.params, run):
        blobs = {f"image{rank}": codec.webp(image) for rank, image in enumerate(made.images)}
        runs = [{"objective": objective, "mean_activation": mean, "steps": int(len(history)),
                 "curve": objective_curve(history, objective)}
                for objective, mean, history in zip(made.objectives, made.mean_activations, made.histories)]
        yield by_filter[made.filter], blobs, {"faces": len(made.images), "objectives": made.objectives,
                                              "runs": runs, "similarity": made.similarity,
                                              "exact_weights": made.exact_weights, "tf32": tf32}


def own_image_maps(job: Job) -> Results:
    """Each filter's post-ReLU map on its own stored whole-filter image, drawn over that image."""
    from atlasgen.synthesis.maps import render_map
    from atlasgen.tf import tf

    images = [codec.decode(job.store.get_blob(job.entry_meta(a.recipe["image"])[1].blobs["image"].digest))
              for a in job.artifacts]
    batch = tf.constant(np.stack(images).astype(np.float32) / 255.0)
    ids = tf.constant([a.filter for a in job.artifacts], tf.int32)
    # Always float32: its recipe names the image, not a precision.
    maps = np.maximum(job.engine_for("float32").own_maps(batch, ids, float32=True).numpy(), 0)
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
        maps = post_relu_maps(job.engine_for("float32"), probe, ids)  # float32: no precision in the recipe
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


def dataset_examples(job: Job, lowest: bool = False) -> Results:
    """Each filter's top k units over the dataset (`lowest`: its bottom k, lowest first), merged
    exactly from the layer's stored chunks (their blob "top", or "bottom"), with the crop of each
    unit's receptive field and the photo it is in. Waits (yields nothing) while another shard has not
    stored its chunks yet, or stored them before they held that blob."""
    from atlasgen.build.dataset import EXAMPLE_DISPLAY, PhotoCache, Top, merge, to_global

    blob = "bottom" if lowest else "top"
    entries = [job.store.get(a.key) for a in job.chunks]
    entries = [entry if entry is not None and blob in entry.blobs else None for entry in entries]
    layer = job.artifacts[0].layer
    missing = sum(entry is None for entry in entries)
    if missing:
        job.log(f"{layer}: dataset examples wait for {missing} chunks not stored yet (another shard's, or one "
                f"whose image changed during the scan); run atlasgen build again, without --shard, once they are done")
        return
    dataset = job.dataset
    index = dataset.index()
    top = None
    for artifact, entry in zip(job.chunks, entries):
        local = Top.from_bytes(job.store.get_blob(entry.blobs[blob].digest))
        chunk_top = to_global(local, artifact.recipe["images"], index)
        top = chunk_top if top is None else merge(top, chunk_top, lowest)
    photos = PhotoCache(dataset)
    encoded: dict[str, bytes] = {}
    engine = job.engine_for("float32")
    for artifact in job.artifacts:
        f = artifact.filter
        blobs, examples = {}, []
        for rank in range(top.activation.shape[1]):
            image_id = int(top.image[f, rank])
            if image_id < 0:
                break
            source = dataset.images[image_id]
            pixels = photos.get(source.digest)
            size = tuple(pixels.shape[:2])
            unit = [int(v) for v in top.unit[f, rank]]
            box = engine.field(size).unit_input(tuple(unit), size)
            blobs[f"crop{rank}"] = codec.webp(codec.zoomed_crop(pixels, box, EXAMPLE_DISPLAY, shrink=False))
            if source.digest not in encoded:  # the same photos recur across a layer's filters
                encoded[source.digest] = codec.webp(pixels, quality=codec.PHOTO_QUALITY)
            blobs[f"photo{rank}"] = encoded[source.digest]
            examples.append({"digest": source.digest, "activation": float(top.activation[f, rank]), "unit": unit,
                             "box": box.as_list(), "size": list(size)})
        yield artifact, blobs, {"examples": examples}


def negative_dataset_examples(job: Job) -> Results:
    """Each filter's bottom k units over the dataset, lowest first: `dataset_examples` of the chunks'
    "bottom" blobs."""
    yield from dataset_examples(job, lowest=True)


def dataset_chunks(job: Job) -> Results:
    """The dataset's missing chunks: one forward pass per image gives every planned layer's top k,
    each chunk's artifacts (one per layer) stored as soon as the chunk is done, so a kill loses at
    most the chunk in flight; each entry holds the layer's top k ("top") and bottom k ("bottom") of
    the chunk, from the same forward passes. Threads decode the next chunk while the model runs this one
    (`scan_chunks`). A chunk with an image that changed since it was hashed is not stored: the next
    build scans it again. Each chunk's facts say the precision it was scanned in (`scan_precision`)."""
    from atlasgen.build.dataset import Ranked, Scanner, host_cores, scan_batch_size, scan_chunks, scan_precision

    dataset = job.dataset
    by_digest = {image.digest: image for image in dataset.images}
    by_chunk: dict[str, list[Artifact]] = {}
    for artifact in job.artifacts:
        by_chunk.setdefault(artifact.chunk, []).append(artifact)
    groups = list(by_chunk.values())
    chunks = [tuple(by_digest[digest] for digest in artifacts[0].recipe["images"]) for artifacts in groups]
    batch = job.batch_size or scan_batch_size(job.geometry, job.layers, dataset.short_side)
    scanner = Scanner(job.loaded, job.layers)
    with scan_precision(dataset.tf32) as precision:
        job.log(f"dataset {dataset.name}: scanning {len(by_chunk)} of {len(dataset.chunks)} chunks "
                f"({dataset.short_side} px shorter side, batches of up to {batch}, {precision}, "
                f"{host_cores()} decoding threads)")
        scanned = scan_chunks(scanner, chunks, dataset.short_side, dataset.examples, batch, fit_shapes=not job.batch_size)
        try:
            for artifacts, (ranked, facts, changed) in zip(groups, scanned):
                if changed is not None:
                    job.log(f"dataset {dataset.name}: {changed} while the build ran; its chunk is not stored "
                            f"(run atlasgen build again to scan it)")
                    continue
                facts = {**facts, "precision": precision}  # a fact, not in the recipe: shards share chunks
                for artifact in artifacts:
                    layer = ranked[job.layers.index(artifact.layer)] or Ranked.empty(
                        job.geometry.filters(artifact.layer), dataset.examples)
                    yield artifact, layer.blobs(), facts
        except Exception as error:
            if not out_of_memory(error):
                raise
            raise AtlasgenError(f"dataset {dataset.name}: out of memory scanning images in batches of up to {batch} at "
                                f"--dataset-size {dataset.short_side}; use a smaller --batch-size or --dataset-size") from None
        finally:
            scanned.close()  # its decoding threads end with the scan, however it ends


def kernel_images(job: Job) -> Results:
    """Each filter's kernel of a layer that reads the image, as an image: its weights on the image's
    RGB channels (a BGR model's flipped), 0 as mid-grey and its largest absolute weight as 0 or 255
    (`codec.kernel_image`), enlarged by nearest neighbour; lossless, so the pixels give back the weights
    to within 8-bit rounding. No model is run: the weights are read from the loaded model."""
    kernel = np.asarray(job.loaded.model.get_layer(job.artifacts[0].layer).kernel, dtype=np.float64)
    flipped = job.loaded.input_convention.channel_order == "BGR"
    for artifact in job.artifacts:
        weights = kernel[:, :, :, artifact.filter]
        image, scale = codec.kernel_image(weights[:, :, ::-1] if flipped else weights)
        yield artifact, {"image": codec.lossless_webp(image)}, {
            "scale": scale, "taps": [int(weights.shape[0]), int(weights.shape[1])], "flipped": flipped}


def filter_wiring(job: Job) -> Results:
    """Each filter's wiring (`atlasgen.model.wiring`): the filters of the conv layer before that excite and
    inhibit it most and those of the next that it excites most, from the weights alone. The graph is
    walked and the layer's kernels read once for the job; nothing is run or optimised."""
    from atlasgen.model.wiring import LayerWiring, model_wiring

    model = job.loaded.model
    wired = LayerWiring(model, model_wiring(model), job.artifacts[0].layer)
    for artifact in job.artifacts:
        yield artifact, {}, {"wiring": wired.unit(artifact.filter, artifact.recipe["k"])}
