"""`atlasgen build`: plan every artifact, compute what the store lacks in batches, export the atlas.

The story, top to bottom: resolve the config -> load model and probes -> plan -> ask the store
what is missing -> per layer, run the missing batches and store each batch as it finishes (a
kill loses at most the batch in flight) -> when the whole plan is in the store, export images
and write the manifest (and, with the site stage, the pages).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atlasgen import codec
from atlasgen.errors import AtlasgenError
from atlasgen.plan import CHANNEL, MAP, NEURON, BuildConfig, Plan, in_shard, make_plan, parse_filters
from atlasgen.progress import Progress
from atlasgen.store import Store


@dataclass
class Prepared:
    """A resolved build: config, model, probes, layer geometry, synthesis parameters and plan."""

    config: BuildConfig
    loaded: object
    probes: list
    layers: list  # atlasgen.layers.LayerInfo per planned layer
    params: object  # SynthesisParams
    plan: Plan


@dataclass
class BuildResult:
    planned: int
    in_shard: int
    computed: int
    complete: bool
    manifest: Path | None
    seconds: float
    layers: dict = field(default_factory=dict)
    rendered: object = None  # atlasgen.site.RenderResult once the atlas is complete


def ensure_writable(folder: Path, option: str) -> None:
    """Fails early, in one line, when `folder` cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AtlasgenError(f"{option} {folder} is not writable ({reason}); choose a folder you can write to") from None


def prepare(config: BuildConfig) -> Prepared:
    """Resolves the config against the model: bad layers, filters and probes fail here, in one line."""
    from atlasgen.layers import describe_layers
    from atlasgen.model import load_model
    from atlasgen.synthesis import SynthesisParams, load_probes

    config = config.resolved()
    if config.size < 8 or config.steps < 1:
        raise AtlasgenError(f"--size {config.size} / --steps {config.steps}: use a size of at least 8 and at least 1 step")
    probes = load_probes(list(config.probes))
    loaded = load_model(config.weights)
    infos = {info.name: info for info in describe_layers(loaded, config.size)}
    names = list(config.layers) if config.layers else list(infos)
    chosen = []
    for name in names:
        if name not in infos:
            kind = _layer_kind(loaded.model, name)
            raise AtlasgenError(
                f"layer {name!r} {kind} of {loaded.architecture}; use conv layers such as {', '.join(list(infos)[:3])} "
                f"(`atlasgen layers` lists them)"
            )
        chosen.append(infos[name])
    params = SynthesisParams(size=config.size, steps=config.steps, seed=config.seed)
    layer_filters = [(info.name, parse_filters(config.filters, info.filters, info.name)) for info in chosen]
    plan = make_plan(
        loaded.architecture, loaded.fingerprint, layer_filters, params.recipe(), [(p.name, p.digest) for p in probes]
    )
    return Prepared(config, loaded, probes, chosen, params, plan)


def _layer_kind(model, name: str) -> str:
    try:
        layer = model.get_layer(name)
    except ValueError:
        return "does not exist in the model"
    return f"is a {type(layer).__name__}, not a convolution,"


def run_build(config: BuildConfig, progress: Progress | None = None) -> BuildResult:
    start = time.perf_counter()
    config = config.resolved()
    store = Store(config.store)
    ensure_writable(config.store, "--store")
    ensure_writable(config.out, "--out")
    prepared = prepare(config)
    plan = prepared.plan
    mine = [a for a in plan.artifacts if in_shard(a.layer, a.filter, config.shard)]
    missing_keys = set(store.missing([a.key for a in mine]))
    todo = [a for a in mine if a.key in missing_keys]
    progress = progress or Progress(total=len(todo))
    progress.start(len(todo))
    per_layer = {}
    for layer in prepared.layers:
        work = [a for a in todo if a.layer == layer.name]
        per_layer[layer.name] = len(work)
        if work:
            _compute_layer(prepared, store, layer.name, work, progress)
    progress.close()
    complete = not store.missing([a.key for a in plan.artifacts])
    manifest = None
    if complete:
        from atlasgen.export import export_atlas

        from atlasgen.site import render_site

        manifest = export_atlas(prepared, store)
        rendered = render_site(config.out, config.base_url)
    else:
        rendered = None
    return BuildResult(
        len(plan.artifacts), len(mine), len(todo), complete, manifest, time.perf_counter() - start, per_layer, rendered
    )


def _compute_layer(prepared: Prepared, store: Store, layer: str, work: list, progress: Progress) -> None:
    from atlasgen.synthesis import LayerEngine, Optimiser
    from atlasgen.synthesis.images import batches, channel_batch_size, neuron_batch_size

    engine = LayerEngine(prepared.loaded, layer)
    optimiser = Optimiser(engine)
    params = prepared.params
    progress.layer(layer, len(work))
    wanted = prepared.config.batch_size
    for kind, sizer in ((CHANNEL, channel_batch_size), (NEURON, neuron_batch_size)):
        items = {a.filter: a for a in work if a.kind == kind}
        if not items:
            continue
        ids = sorted(items)
        size = min(wanted, len(ids)) if wanted else sizer(engine, params, len(ids))
        for chunk in batches(ids, size):
            results = _synthesise(kind, engine, chunk, params, optimiser)
            for result in {r.filter: r for r in results}.values():
                _store_image(store, items[result.filter], result)
            progress.advance(len(set(chunk)), f"{kind} images")
    maps = [a for a in work if a.kind == MAP]
    for probe in prepared.probes:
        mine = {a.filter: a for a in maps if a.probe == probe.name}
        if mine:
            _store_maps(store, engine, probe, mine)
            progress.advance(len(mine), "activation maps")


def _synthesise(kind, engine, chunk, params, optimiser):
    from atlasgen.synthesis import channel_images, neuron_images

    make = channel_images if kind == CHANNEL else neuron_images
    return make(engine, chunk, params, optimiser, batch_size=len(chunk))


def _store_image(store: Store, artifact, result) -> None:
    from atlasgen.synthesis import rf_crop

    blobs = {"image": codec.webp(result.image)}
    meta = {
        "objective": result.objective,
        "mean_activation": result.mean_activation,
        "steps": int(len(result.history)),
        "objective_first_step": float(result.history[0]),
    }
    if artifact.kind == NEURON:
        blobs["crop"] = codec.webp(rf_crop(result.image, result.box))
        meta["rf_box"] = result.box.as_list()
        meta["changed_pixels_outside_box"] = result.changed_outside_box
    store.put(artifact.key, blobs, {"recipe": artifact.recipe, **meta})


def _store_maps(store: Store, engine, probe, artifacts: dict) -> None:
    from atlasgen.synthesis.maps import post_relu_maps

    ids = sorted(artifacts)
    maps = post_relu_maps(engine, probe, ids)
    for index, f in enumerate(ids):
        raw = maps[..., index]
        peak = float(raw.max())
        # Stored relative to its own peak: the cross-probe scale is applied at export time, so a
        # new probe never forces the maps of the others to be recomputed.
        blob = codec.grey_png(raw / peak if peak > 0 else np.zeros_like(raw))
        meta = {"recipe": artifacts[f].recipe, "probe": probe.name, "peak": peak, "mean": float(raw.mean())}
        store.put(artifacts[f].key, {"raw": blob}, meta)


def build_status(config: BuildConfig) -> dict:
    """What the plan holds and what the store still lacks, per layer and kind."""
    prepared = prepare(config)
    store = Store(prepared.config.store)
    missing = set(store.missing([a.key for a in prepared.plan.artifacts]))
    layers = {}
    for layer in prepared.plan.layers:
        counts = {}
        for kind in (CHANNEL, NEURON, MAP):
            keys = [a.key for a in layer.artifacts if a.kind == kind]
            counts[kind] = {"planned": len(keys), "missing": sum(k in missing for k in keys)}
        layers[layer.name] = counts
    total = len(prepared.plan.artifacts)
    return {"planned": total, "missing": len(missing), "done": total - len(missing), "layers": layers}
