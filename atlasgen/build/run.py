"""`atlasgen build`: plan every artifact, compute what the store lacks, export the atlas.

The story, top to bottom: resolve the config -> load model, probes and dataset -> plan -> ask the
store what is missing -> compute the atlas-wide kinds, scan the dataset's missing chunks (one
forward pass per image for every planned layer), then per layer every kind in the registry's order,
storing each artifact as soon as it is done (a kill loses at most the batch in flight) -> check the
whole plan against the store -> when it is all there, export images and atlas.json and render the
pages.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

from atlasgen.build.compute import Job
from atlasgen.errors import AtlasgenError
from atlasgen.fs import check_writable, claim_folder
from atlasgen.build.kinds import kinds_for
from atlasgen.names import atlas_name
from atlasgen.build.plan import BuildConfig, DatasetRef, Plan, ProbeRef, in_shard, make_plan, parse_filters
from atlasgen.progress import Progress
from atlasgen.store import Store, usable_store


@dataclass
class Prepared:
    """A resolved build: config, model, probes, layer geometry, synthesis parameters and plan."""

    config: BuildConfig
    loaded: object  # atlasgen.model.weights.LoadedModel
    probes: list  # atlasgen.synthesis.Probe, in order
    layers: list  # atlasgen.model.layers.LayerInfo per planned layer
    model_filters: int  # every filter of every conv layer of the model
    params: object  # atlasgen.synthesis.SynthesisParams
    plan: Plan
    method_params: dict = None  # method -> its own parameters (e.g. "maco": MacoParams), for the chosen methods
    dataset: object = None  # atlasgen.build.dataset.Dataset: the images of the dataset examples
    name: str = ""  # the atlas's folder in the site (atlasgen.names.atlas_name)


@dataclass
class BuildResult:
    planned: int
    in_shard: int
    computed: int
    complete: bool
    manifest: Path | None
    seconds: float
    rendered: object = None  # atlasgen.site.RenderResult once the atlas is complete


def prepare(config: BuildConfig) -> Prepared:
    """Resolves the config against the model: bad layers, filters and probes fail here, in one line."""
    from atlasgen.build.dataset import open_dataset
    from atlasgen.model.layers import check_input_sizes, describe_layers
    from atlasgen.params import SynthesisParams
    from atlasgen.synthesis import load_probes
    from atlasgen.model.weights import load_model

    config = config.resolved()
    probes = load_probes(list(config.probes))
    dataset = open_dataset(config.dataset, config.dataset_size, config.examples, config.dataset_chunk)
    loaded = load_model(config.weights)
    every_layer = describe_layers(loaded, config.size)
    infos = {info.name: info for info in every_layer}
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
    params = SynthesisParams(size=config.size, steps=config.steps, seed=config.seed, precision=config.precision)
    check_input_sizes(loaded, [info.name for info in chosen], {p.name: p.image.shape[:2] for p in probes})
    _check_dataset_size(loaded, [info.name for info in chosen], config.dataset_size)
    _check_memory(loaded, [info.name for info in chosen], config.dataset_size, f"--dataset-size {config.dataset_size}")
    _check_memory(loaded, [info.name for info in chosen], config.size + 2 * params.pad, f"--size {config.size}")
    layer_filters = [(info.name, parse_filters(config.filters, info.filters, info.name)) for info in chosen]
    method_params = {}
    if "maco" in config.methods:
        from atlasgen.synthesis.maco import MacoParams

        method_params["maco"] = MacoParams.from_synthesis(params)
    plan = make_plan(
        loaded.architecture, loaded.fingerprint, layer_filters, params.recipe(), [ProbeRef(p.name, p.digest) for p in probes],
        config.methods, {method: p.recipe() for method, p in method_params.items()},
        DatasetRef([[image.digest for image in chunk] for chunk in dataset.chunks], dataset.short_side, dataset.examples),
    )
    name = atlas_name(loaded.architecture, loaded.source.kind, loaded.fingerprint, config.name)
    return Prepared(config, loaded, probes, chosen, sum(i.filters for i in every_layer), params, plan, method_params,
                    dataset, name)


def _check_dataset_size(loaded, layers: list[str], short_side: int) -> None:
    """Dataset images, at their shorter side, must give every planned layer a map."""
    from atlasgen.model import geometry
    from atlasgen.model.graph import spatial_ops
    from atlasgen.model.layers import smallest_size

    ops = spatial_ops(loaded.model)
    fields = geometry.receptive_fields(ops, (short_side, short_side))
    empty = [layer for layer in layers if min(fields[layer].size) < 1]
    if empty:
        raise AtlasgenError(f"--dataset-size {short_side} is too small for layer {empty[0]}; "
                            f"use at least {smallest_size(ops, layers, short_side)}")


def _check_memory(loaded, layers: list[str], side: int, option: str) -> None:
    """Refuses, before any tensor is made, a size whose single image cannot fit in memory."""
    from atlasgen.model.layers import activation_bytes
    from atlasgen.synthesis.engine import machine_available_bytes

    need = max(activation_bytes(loaded, layer, side) for layer in layers)
    have = machine_available_bytes()
    if need > have:
        raise AtlasgenError(
            f"{option} needs about {need / 2**30:.1f} GiB for one image (up to {layers[-1]}), and this machine has "
            f"{have / 2**30:.1f} GiB available; use a smaller --size"
        )


def _check_folders(config: BuildConfig) -> None:
    """The store and the output must be apart: neither may hold the other."""
    store, out = config.store.resolve(), config.out.resolve()
    if store == out or out.is_relative_to(store) or store.is_relative_to(out):
        raise AtlasgenError(
            f"--store {config.store} and --out {config.out} overlap; keep the store outside the site and the site outside the store"
        )
    claim_folder(config.out, config.force)
    if not usable_store(config.store):
        raise AtlasgenError(
            f"--store {config.store} is not empty and holds no atlasgen store; choose an empty or new folder for the store"
        )


def _layer_kind(model, name: str) -> str:
    try:
        layer = model.get_layer(name)
    except ValueError:
        return "does not exist in the model"
    return f"is a {type(layer).__name__}, not a convolution,"


def run_build(config: BuildConfig, progress: Progress | None = None) -> BuildResult:
    start = time.perf_counter()
    config = config.resolved()
    _check_folders(config)
    prepared = prepare(config)  # every bad input fails here, before a folder is made
    check_writable(config.store, "--store")
    check_writable(config.out, "--out")
    plan = prepared.plan
    mine = [a for a in plan.artifacts if in_shard(a, config.shard)]
    # Shared: builders run side by side; gc and verify wait for them (or refuse to run).
    with Store(config.store).lock(shared=True) as store:
        # Deep: a blob of the right size but the wrong bytes is quarantined and recomputed.
        missing = set(store.missing([a.key for a in mine], deep=True))
        todo = [a for a in mine if a.key in missing]
        progress = progress or Progress()
        progress.start(len(todo))
        if todo:
            progress.note(precision_note(prepared.params.precision))
        _compute(prepared, store, None, [a for a in todo if a.layer is None], progress)
        _scan(prepared, store, [a for a in todo if a.chunk is not None], progress)
        _check_dataset_readable(prepared, store, progress)
        for layer in plan.layers:
            _compute(prepared, store, layer.name, [a for a in todo if a.layer == layer.name and a.chunk is None], progress)
        progress.close()
        # Say "complete" only for what is in the store now, whatever else happened meanwhile.
        complete = not store.missing([a.key for a in plan.artifacts])
        manifest = rendered = None
        if complete:
            from atlasgen.build.export import export_atlas
            from atlasgen.site.render import render_site

            manifest = export_atlas(prepared, store)
            rendered = render_site(config.out, config.base_url, config.force, focus=prepared.name)
    return BuildResult(len(plan.artifacts), len(mine), len(todo), complete, manifest, time.perf_counter() - start, rendered)


def precision_note(precision: str) -> str:
    """The build log's one line on the precision the synthesis computes in."""
    what = "bfloat16 compute, float32 parameters and objective" if precision == "mixed" else "float32 throughout"
    return f"synthesis precision: {precision} ({what}; --precision overrides)"


def _compute(prepared: Prepared, store: Store, layer: str | None, work: list, progress: Progress) -> None:
    """Every kind's missing artifacts of one layer (or the atlas-wide ones), in the registry's order."""
    if not work:
        return
    progress.layer(layer or "atlas", len(work))
    make_engine = functools.cache(lambda precision: _engine(prepared, layer, precision))  # one per precision
    probes = {p.name: p for p in prepared.probes}
    for kind in kinds_for(prepared.plan.methods).values():
        artifacts = [a for a in work if a.kind == kind.name]
        if not artifacts:
            continue
        job = Job(kind.name, artifacts, prepared.params, probes, store, prepared.config.batch_size, make_engine,
                  log=progress.note, method_params=prepared.method_params or {}, dataset=prepared.dataset,
                  chunks=prepared.plan.layer_chunks(layer) if layer else [])
        for artifact, blobs, facts in kind.compute(job):
            store.put(artifact.key, blobs, {"recipe": artifact.recipe, **facts})
            progress.advance(1, kind.label)


def _scan(prepared: Prepared, store: Store, work: list, progress: Progress) -> None:
    """The dataset's missing chunks: one forward pass per image gives every planned layer's top k,
    each stored as soon as its chunk is done (a kill loses at most the chunk in flight)."""
    if not work:
        return
    from atlasgen.build.dataset import Scanner, Top, scan_batch_size, scan_chunk

    dataset = prepared.dataset
    layers = [layer.name for layer in prepared.plan.layers]
    filters = {info.name: info.filters for info in prepared.layers}
    by_digest = {image.digest: image for image in dataset.images}
    by_chunk: dict[str, list] = {}
    for artifact in work:
        by_chunk.setdefault(artifact.chunk, []).append(artifact)
    batch = prepared.config.batch_size or scan_batch_size(prepared.loaded, layers, dataset.short_side)
    progress.layer("dataset", len(work))
    progress.note(f"dataset {dataset.name}: scanning {len(by_chunk)} of {len(dataset.chunks)} chunks "
                  f"({dataset.short_side} px shorter side, batches of up to {batch})")
    scanner = Scanner(prepared.loaded, layers)
    for artifacts in by_chunk.values():
        chunk = tuple(by_digest[digest] for digest in artifacts[0].recipe["images"])
        tops, facts = scan_chunk(scanner, chunk, dataset.short_side, dataset.examples, batch)
        for artifact in artifacts:
            top = tops[layers.index(artifact.layer)] or Top.empty(filters[artifact.layer], dataset.examples)
            store.put(artifact.key, {"top": top.to_bytes()}, {"recipe": artifact.recipe, **facts})
            progress.advance(1, "dataset chunks")


def _check_dataset_readable(prepared: Prepared, store: Store, progress: Progress) -> None:
    """Says how many dataset images were skipped; a dataset of which none can be read is an error."""
    skipped = dataset_skipped(prepared, store)
    if skipped is None:
        return
    dataset = prepared.dataset
    readable = len(dataset.images) + len(dataset.refused) - len(skipped)
    if readable < 1:
        first = f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise AtlasgenError(f"--dataset {dataset.root} has no readable image{first}; give a folder of photos")
    if skipped:
        progress.note(f"dataset {dataset.name}: {len(skipped)} of {len(dataset.images) + len(dataset.refused)} image files "
                      f"skipped (listed in atlas.json under dataset.skipped)")


def dataset_skipped(prepared: Prepared, store: Store) -> list[tuple[str, str]] | None:
    """(source, reason) of every image file the dataset scan skipped, in source order; None while a chunk is missing."""
    if not prepared.plan.chunks:
        return None
    first_layer = prepared.plan.layers[0].name
    sources = {image.digest: image.source for image in prepared.dataset.images}
    skipped = list(prepared.dataset.refused)
    for artifact in prepared.plan.layer_chunks(first_layer):
        entry = store.get(artifact.key)
        if entry is None:
            return None
        digests = artifact.recipe["images"]
        skipped += [(sources[digests[index]], reason) for index, reason in entry.meta["skipped"]]
    return sorted(skipped)


def _engine(prepared: Prepared, layer: str, precision: str = "float32"):
    from atlasgen.synthesis import LayerEngine

    return LayerEngine(prepared.loaded, layer, precision)


def build_status(config: BuildConfig) -> dict:
    """What the plan holds and what the store still lacks, per layer and kind."""
    prepared = prepare(config)
    store = Store(prepared.config.store)
    missing = set(store.missing([a.key for a in prepared.plan.artifacts]))
    layers = {}
    for layer in prepared.plan.layers:
        counts = {}
        for kind in kinds_for(prepared.plan.methods).values():
            keys = [a.key for a in layer.artifacts if a.kind == kind.name]
            if keys:
                counts[kind.name] = {"planned": len(keys), "missing": sum(k in missing for k in keys)}
        chunk_keys = [a.key for a in prepared.plan.layer_chunks(layer.name)]
        if chunk_keys:
            counts["dataset-top"] = {"planned": len(chunk_keys), "missing": sum(k in missing for k in chunk_keys)}
        layers[layer.name] = counts
    total = len(prepared.plan.artifacts)
    return {"planned": total, "missing": len(missing), "done": total - len(missing), "layers": layers}
