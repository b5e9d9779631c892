"""`atlasgen build`: plan every artifact, compute what the store lacks, export the atlas.

The story, top to bottom: resolve the config -> load model, probes and dataset, and walk the model's
geometry once -> plan -> ask the store what is missing -> compute the atlas-wide kinds (probe photos,
then the dataset's chunks: one forward pass per image for every planned layer), then per layer every
kind in the registry's order, storing each artifact as soon as it is done (a kill loses at most the
batch in flight) -> check the whole plan against the store -> when it is all there, export images and
atlas.json and render the pages.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path

from atlasgen.build.artifacts import DatasetRef, Plan, ProbeRef
from atlasgen.build.budget import Budget, Settings, page_budget
from atlasgen.build.compute import Job
from atlasgen.build.config import BuildConfig, spread_layers
from atlasgen.build.dataset import SizeCap, open_dataset, skipped_files
from atlasgen.build.export import check_name, export_atlas
from atlasgen.build.kinds import ALL_KINDS, kinds_for, required_blobs
from atlasgen.build.plan import in_shard, make_plan, parse_filters
from atlasgen.errors import AtlasgenError
from atlasgen.fs import check_writable, claim_folder, output_folder
from atlasgen.model.layers import LayerInfo, ModelGeometry, check_input_sizes, model_geometry
from atlasgen.names import atlas_name
from atlasgen.params import SynthesisParams
from atlasgen.progress import Progress
from atlasgen.store import Store, usable_store


@dataclass
class Prepared:
    """A resolved build: config, model and its geometry, probes, synthesis parameters, dataset and plan."""

    config: BuildConfig
    loaded: object  # atlasgen.model.weights.LoadedModel
    geometry: ModelGeometry  # the model's layers and fields, computed once for every stage
    probes: list  # atlasgen.synthesis.Probe, in order
    layers: list[LayerInfo]  # each planned layer at the synthesis size
    params: SynthesisParams
    plan: Plan
    method_params: dict  # method -> its own parameters (e.g. "maco": MacoParams), for the chosen methods
    dataset: object  # atlasgen.build.dataset.Dataset: the images of the dataset examples
    name: str  # the atlas's folder in the site (atlasgen.names.atlas_name)

    @property
    def model_filters(self) -> int:
        """Every filter of every conv layer of the model."""
        return sum(conv.filters for conv in self.geometry.convs)


@dataclass
class BuildResult:
    planned: int
    in_shard: int
    computed: int
    complete: bool
    manifest: Path | None
    seconds: float
    rendered: object = None  # atlasgen.site.render.RenderResult once the atlas is complete
    missing: int = 0  # artifacts of the plan the store still lacks at the end (other shards' work, or skipped)
    sharded: bool = False  # this process did one part of several (--shard K/N)


def prepare(config: BuildConfig) -> Prepared:
    """Resolves the config against the model: bad layers, filters and probes fail here, in one line."""
    from atlasgen.model.weights import load_model
    from atlasgen.synthesis import load_probes

    tf32 = config.precision == "mixed"  # as given: only an explicit --precision mixed lets the scan use TF32
    config = config.resolved()
    probes = load_probes(list(config.probes))
    dataset = open_dataset(config.dataset, config.dataset_size, config.examples, config.dataset_chunk, tf32=tf32)
    loaded = load_model(config.weights, config.model)
    geometry = model_geometry(loaded)
    if config.layers is None and config.model not in (None, "vgg16"):
        spread = spread_layers([c.name for c in geometry.convs], config.preset)
        config = replace(config, layers=tuple(spread) if spread else None)
    chosen = _chosen_layers(loaded, geometry, config)
    params = SynthesisParams(size=config.size, steps=config.steps, seed=config.seed, precision=config.precision)
    _check_sizes(geometry, [info.name for info in chosen], probes, config, params)
    dataset = dataset.capped(_size_cap(geometry, chosen[0].name, dataset.short_side))
    method_params = _method_params(config.methods, params)
    plan = make_plan(
        loaded.architecture, loaded.fingerprint,
        [(info.name, parse_filters(config.filters, info.filters, info.name)) for info in chosen],
        params.recipe(), [ProbeRef(p.name, p.digest) for p in probes], config.methods,
        {method: p.recipe() for method, p in method_params.items()},
        DatasetRef([[image.digest for image in chunk] for chunk in dataset.chunks], dataset.short_side, dataset.examples),
        image_readers=geometry.image_readers, wiring_k=config.wiring_k, diversity=config.diversity,
    )
    name = atlas_name(loaded.architecture, loaded.source.kind, loaded.fingerprint, config.name)
    return Prepared(config, loaded, geometry, probes, chosen, params, plan, method_params, dataset, name)


def _chosen_layers(loaded, geometry: ModelGeometry, config: BuildConfig) -> list[LayerInfo]:
    infos = {info.name: info for info in geometry.layers(config.size)}
    names = list(config.layers) if config.layers else list(infos)
    for name in names:
        if name not in infos:
            raise AtlasgenError(
                f"layer {name!r} {_layer_kind(loaded.model, name)} of {loaded.architecture}; use conv layers such as "
                f"{', '.join(list(infos)[:3])} (`atlasgen layers` lists them)"
            )
    return [infos[name] for name in names]


def _method_params(methods: tuple[str, ...], params: SynthesisParams) -> dict:
    """Each chosen method's own parameters beyond the synthesis parameters."""
    if "maco" not in methods:
        return {}
    from atlasgen.synthesis.maco import MacoParams

    return {"maco": MacoParams.from_synthesis(params)}


def _check_sizes(geometry: ModelGeometry, layers: list[str], probes: list, config: BuildConfig,
                 params: SynthesisParams) -> None:
    """Probe photos and dataset images must give every planned layer a map, and one image at each
    size must fit in memory: refused before any tensor is made."""
    check_input_sizes(geometry, layers, {p.name: p.image.shape[:2] for p in probes})
    side = config.dataset_size
    empty = geometry.too_small(layers, (side, side))
    if empty:
        raise AtlasgenError(f"--dataset-size {side} is too small for layer {empty}; "
                            f"use at least {geometry.smallest_size(layers, side)}")
    _check_memory(geometry, layers, side, f"--dataset-size {side}")
    _check_memory(geometry, layers, config.size + 2 * params.pad, f"--size {config.size}")


def _check_memory(geometry: ModelGeometry, layers: list[str], side: int, option: str) -> None:
    from atlasgen.synthesis.engine import machine_available_bytes

    need = max(geometry.activation_bytes(layer, side) for layer in layers)
    have = machine_available_bytes()
    if need > have:
        raise AtlasgenError(
            f"{option} needs about {need / 2**30:.1f} GiB for one image (up to {layers[-1]}), and this machine has "
            f"{have / 2**30:.1f} GiB available; use a smaller {option.split()[0]}"
        )


def _size_cap(geometry: ModelGeometry, layer: str, side: int) -> SizeCap:
    """What one dataset image may become after the resize: WebP's side, and the memory the scan's device has now."""
    from atlasgen.synthesis.engine import machine_available_bytes, memory_budget

    return SizeCap(side, geometry, layer, min(machine_available_bytes(), memory_budget().free))


def _check_folders(config: BuildConfig) -> None:
    """The store and the output must be apart: neither may hold the other."""
    store, out = config.store.resolve(), config.out.resolve()
    if store == out or out.is_relative_to(store) or store.is_relative_to(out):
        raise AtlasgenError(
            f"--store {config.store} and --out {config.out} overlap; keep the store outside the site and the site outside the store"
        )
    # Inputs apart from outputs: a build that read its own output would never settle.
    inputs = [("--dataset", config.dataset)] if config.dataset is not None else []
    for option, given in inputs + [("--probe", probe) for probe in config.probes]:
        for other, folder in (("--out", config.out), ("--store", config.store)):
            path, where = Path(given).resolve(), folder.resolve()
            if path == where or path.is_relative_to(where) or where.is_relative_to(path):
                raise AtlasgenError(f"{option} {given} and {other} {folder} overlap; keep what a build reads "
                                    f"outside what it writes, and what it writes outside what it reads")
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
    # One name, one atlas: never compute an atlas that would replace another one's pages.
    check_name(config.out, prepared.name, prepared.plan.model, prepared.loaded.fingerprint)
    check_writable(config.store, "--store")
    check_writable(config.out, "--out")
    budget = budget_of(prepared)  # said once the work is counted, before any is done; never enforced
    plan = prepared.plan
    mine = [a for a in plan.artifacts if in_shard(a, config.shard)]
    # Shared: builders run side by side; gc and verify wait for them (or refuse to run).
    with Store(config.store).lock(shared=True) as store:
        # Deep: a blob of the right size but the wrong bytes is quarantined and recomputed.
        missing = set(store.missing([a.key for a in mine], deep=True, blobs=declared_blobs(mine)))
        todo = [a for a in mine if a.key in missing]
        progress = progress or Progress()
        progress.start(len(todo))
        progress.note(budget.line())
        if todo:
            progress.note(precision_note(prepared.params.precision))
        _compute(prepared, store, "atlas", [a for a in todo if a.layer is None], progress)
        _compute(prepared, store, "dataset", [a for a in todo if a.chunk is not None], progress)
        _check_dataset_readable(prepared, store, progress)
        for layer in plan.layers:
            _compute(prepared, store, layer.name, [a for a in todo if a.layer == layer.name and a.chunk is None], progress)
        progress.close()
        # Say "complete" only for what is in the store now, whatever else happened meanwhile.
        still_missing = len(store.missing([a.key for a in plan.artifacts], blobs=declared_blobs(plan.artifacts)))
        complete = not still_missing
        manifest = rendered = None
        if complete:
            from atlasgen.site.render import render_site

            # Writers of one --out take turns only here: images, atlas.json, pages, then the prune.
            with output_folder(config.out, config.force, log=progress.note) as folder:
                manifest = export_atlas(prepared, store, folder, progress.note)
                rendered = render_site(config.out, config.base_url, config.force, focus=prepared.name, folder=folder,
                                       log=progress.note)
    return BuildResult(len(plan.artifacts), len(mine), len(todo), complete, manifest, time.perf_counter() - start,
                       rendered, still_missing, config.shard != (1, 1))


def budget_of(prepared: Prepared) -> Budget:
    """The page budget (build.budget) of the planned atlas, and of every filter of the model at its settings."""
    config, dataset = prepared.config, prepared.dataset
    settings = Settings(
        size=config.size, steps=config.steps, diversity=config.diversity, methods=config.methods,
        examples=dataset.examples if dataset else 0, dataset_images=len(dataset.images) if dataset else 0,
        dataset_side=dataset.short_side if dataset else 0,
        probe_pixels=tuple(int(p.image.shape[0]) * int(p.image.shape[1]) for p in prepared.probes),
    )
    fields = {info.name: None if info.field.whole is not None else max(info.field.r)
              for info in prepared.geometry.layers(config.size)}
    layers = [(conv.name, conv.filters, fields.get(conv.name)) for conv in prepared.geometry.convs]
    planned = [(layer.name, len(layer.filters), fields.get(layer.name)) for layer in prepared.plan.layers]
    return page_budget(prepared.plan.model, settings, layers, planned)


def declared_blobs(artifacts: list) -> dict[str, tuple[str, ...]]:
    """Each artifact's key -> the blobs its kind declares that every entry holds (`kinds.required_blobs`):
    the store counts an entry without one of them as missing (an older entry of a kind that has since
    declared another blob, such as a dataset chunk stored before its "bottom"), and the build extends it."""
    return {a.key: required_blobs(ALL_KINDS[a.kind]) for a in artifacts}


def precision_note(precision: str) -> str:
    """The build log's one line on the precision the synthesis computes in."""
    what = "bfloat16 compute, float32 parameters and objective" if precision == "mixed" else "float32 throughout"
    return f"synthesis precision: {precision} ({what}; --precision overrides)"


def _compute(prepared: Prepared, store: Store, section: str, work: list, progress: Progress) -> None:
    """Every kind's missing artifacts of one section (a layer, the atlas-wide ones or the dataset's
    chunks), in the registry's order, each stored as soon as it is made."""
    if not work:
        return
    progress.layer(section, len(work))
    layer = work[0].layer if work[0].chunk is None else None
    make_engine = functools.cache(lambda precision: _engine(prepared, layer, precision))  # one per precision
    for kind in kinds_for(prepared.plan.methods).values():
        artifacts = [a for a in work if a.kind == kind.name]
        if not artifacts:
            continue
        job = Job(kind.name, artifacts, prepared.params, {p.name: p for p in prepared.probes}, store,
                  prepared.config.batch_size, make_engine, log=progress.note, method_params=prepared.method_params,
                  dataset=prepared.dataset, chunks=prepared.plan.layer_chunks(layer) if layer else [],
                  loaded=prepared.loaded, geometry=prepared.geometry, layers=[l.name for l in prepared.plan.layers])
        for artifact, blobs, facts in kind.compute(job):
            store.put(artifact.key, blobs, {"recipe": artifact.recipe, **facts})
            progress.advance(1, kind.label)


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
    return skipped_files(prepared.dataset, prepared.plan.layer_chunks(prepared.plan.layers[0].name), store)


def _engine(prepared: Prepared, layer: str, precision: str = "float32"):
    from atlasgen.synthesis import LayerEngine

    return LayerEngine(prepared.loaded, layer, precision, prepared.geometry)


def build_status(config: BuildConfig) -> dict:
    """What the plan holds and what the store still lacks, per layer and kind."""
    prepared = prepare(config)
    store = Store(prepared.config.store)
    missing = set(store.missing([a.key for a in prepared.plan.artifacts], blobs=declared_blobs(prepared.plan.artifacts)))
    layers = {}
    for layer in prepared.plan.layers:
        counts = {}
        of_layer = layer.artifacts + prepared.plan.layer_chunks(layer.name)
        for kind in kinds_for(prepared.plan.methods).values():
            keys = [a.key for a in of_layer if a.kind == kind.name]
            if keys:
                counts[kind.name] = {"planned": len(keys), "missing": sum(k in missing for k in keys)}
        layers[layer.name] = counts
    total = len(prepared.plan.artifacts)
    return {"planned": total, "missing": len(missing), "done": total - len(missing), "layers": layers}
