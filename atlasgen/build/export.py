"""Export a finished plan from the store into the output folder: copy blobs to their files, write atlas.json.

It computes nothing: every image is a blob the build stored, and every number is a fact stored
beside it. Files are written atomically and only when their bytes change, and files that an
earlier export wrote and this plan no longer has are removed (only those).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

from atlasgen import __version__
from atlasgen.errors import AtlasgenError
from atlasgen.fs import OwnedFiles
from atlasgen.model.geometry import square
from atlasgen.build.kinds import ALL_KINDS, MAP_NORMALISATION
from atlasgen.manifest import (
    MANIFEST, SCHEMA_VERSION, DatasetRecord, ExampleRecord, Generator, LayerRecord, Manifest, MapRecord, ProbeRecord,
    SkippedFile, UnitRecord, Weights, unit_metrics,
)
from atlasgen.names import layer_folder, safe_name, unit_folder
from atlasgen.build.plan import ALGORITHM_VERSION, Artifact
from atlasgen.store import Store

STAGE = "export"
ATLAS_ID_LENGTH = 12


def export_atlas(prepared, store: Store) -> Path:
    """Writes every output of the plan and the manifest into the output folder; returns the manifest's path."""
    out = prepared.config.out
    plan = prepared.plan
    name = prepared.name
    # One stage per atlas, so atlases side by side in one folder never prune each other's files;
    # the single-atlas layout's "export" stage is taken over (and its files pruned) by the atlas it was.
    owned = OwnedFiles(out, f"{STAGE}:{name}", prepared.config.force, adopt=(STAGE,))
    written: dict[str, Artifact] = {}

    def publish(artifact: Artifact, folder: str) -> tuple[dict, dict[str, str]]:
        """Copies the artifact's output blobs to their files; its facts and {output name: path}."""
        entry = store.get(artifact.key)
        if entry is None:
            raise AtlasgenError(f"artifact {artifact.kind} of {artifact.layer or artifact.probe} vanished from the "
                                f"store {store.root} during the export; run atlasgen build again")
        paths = {}
        for output in ALL_KINDS[artifact.kind].outputs:
            path = folder + output.file.format(probe=safe_name(artifact.probe or ""))
            # Two names that clean to one file would overwrite each other: never write a path twice.
            other = written.setdefault(path, artifact)
            if other is not artifact:
                raise AtlasgenError(f"{path} would hold both {_describe(other)} and {_describe(artifact)}; rename one of them")
            owned.write(path, store.get_blob(entry.blobs[output.blob].digest))
            paths[output.name] = path
        return entry.meta, paths

    sources = {image.digest: image.source for image in prepared.dataset.images} if prepared.dataset else {}
    photos: dict[str, str] = {}  # blob digest -> the path it was written to

    def publish_examples(artifact: Artifact, folder: str) -> list[ExampleRecord]:
        """A filter's example crops in its folder, and their photos, each once, in the model's dataset/ folder."""
        entry = store.get(artifact.key)
        records = []
        for rank, example in enumerate(entry.meta["examples"]):
            crop = f"{folder}examples/{rank}.webp"
            if written.setdefault(crop, artifact) is not artifact:
                raise AtlasgenError(f"{crop} would hold both {_describe(written[crop])} and {_describe(artifact)}")
            owned.write(crop, store.get_blob(entry.blobs[f"crop{rank}"].digest))
            digest = entry.blobs[f"photo{rank}"].digest
            if digest not in photos:
                photos[digest] = f"{name}/dataset/{digest[:20]}.webp"
                owned.write(photos[digest], store.get_blob(digest))
            records.append(ExampleRecord(sources[example["digest"]], example["activation"], example["unit"],
                                         example["box"], crop, photos[digest], example["size"]))
        return records

    probes = []
    for artifact in plan.shared:
        facts, paths = publish(artifact, f"{name}/")
        probe = next(p for p in prepared.probes if p.name == artifact.probe)
        probes.append(ProbeRecord(probe.name, probe.digest, paths["photo"], facts["width"], facts["height"]))

    infos = {info.name: info for info in prepared.layers}
    layers = []
    for layer in plan.layers:
        units = []
        for f in layer.filters:
            folder = unit_folder(name, layer.name, f)
            facts, images, probe_images, examples = {}, {}, {}, []
            for (kind, probe), artifact in layer.unit(f).items():
                if kind == "examples":
                    examples = publish_examples(artifact, folder)
                    continue
                facts[(kind, probe)], paths = publish(artifact, folder)
                (images if probe is None else probe_images.setdefault(probe, {})).update(paths)
            maps = [
                MapRecord(p.name, probe_images.get(p.name, {}), facts[("map", p.name)]["peak"],
                          facts[("map", p.name)]["mean"], facts[("map-view", p.name)]["scale"])
                for p in prepared.probes
            ]
            neuron = facts[("neuron", None)]  # every method's atlas has its centre-neuron images
            units.append(UnitRecord(
                index=f, page=folder, images=images, rf_box=neuron["rf_box"], activation_maps=maps,
                metrics=unit_metrics(facts.get(("channel", None)), neuron, [m.mean for m in maps],
                                     maco=facts.get(("maco-channel", None)),
                                     best_example=examples[0].activation if examples else None,
                                     probe_peaks=[m.peak for m in maps],
                                     own_image_peak=facts.get(("channel-map", None), {}).get("peak")),
                dataset_examples=examples,
            ))
        info = infos[layer.name]
        layers.append(LayerRecord(
            name=layer.name, path=layer_folder(name, layer.name), filters=info.filters,
            r=square(info.field.r), S=square(info.field.S), P=square(info.field.P),
            output_size=square(info.field.size), centre_unit=list(info.centre_unit), units=units,
        ))
    loaded = prepared.loaded
    ident = atlas_id(prepared)
    manifest = Manifest(
        schema=SCHEMA_VERSION,
        generator=Generator("atlasgen", __version__, ALGORITHM_VERSION),
        model=plan.model,
        model_filters=prepared.model_filters,
        weights=Weights(loaded.source.kind, loaded.source.spec, loaded.source.label, loaded.fingerprint),
        input_convention=loaded.input_convention.describe(),
        preset=prepared.config.preset,
        parameters=prepared.params,
        probes=probes,
        activation_map_normalisation=MAP_NORMALISATION,
        layers=layers,
        methods=list(plan.methods),
        method_parameters={method: p.recipe() for method, p in (prepared.method_params or {}).items()},
        dataset=_dataset_record(prepared, store),
        name=name,
        atlas_id=ident,
        title=prepared.config.title or default_title(plan.model, loaded.source.label),
        authors=list(prepared.config.authors),
        built=_built_date(out / name, ident),
    )
    owned.write(f"{name}/{MANIFEST}", manifest.to_bytes())
    owned.finish()
    return out / name / MANIFEST


def atlas_id(prepared) -> str:
    """A short hash of everything that determines the images: which layers and filters are built
    does not enter, so an atlas that grows keeps its id."""
    dataset = prepared.dataset
    facts = {
        "model": prepared.plan.model, "weights": prepared.loaded.fingerprint, "methods": list(prepared.plan.methods),
        "parameters": prepared.params.recipe(),
        "method_parameters": {m: p.recipe() for m, p in (prepared.method_params or {}).items()},
        "probes": [p.digest for p in prepared.probes],
        "dataset": {"sha256": dataset.sha256, "short_side": dataset.short_side, "examples": dataset.examples}
        if dataset is not None else None,
        "algorithm": ALGORITHM_VERSION,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:ATLAS_ID_LENGTH]


def default_title(model: str, weights_label: str) -> str:
    return f"Feature-visualisation atlas of {model.upper()} ({weights_label})"


def _built_date(folder: Path, ident: str) -> str:
    """The day this atlas_id was first exported (kept from the atlas.json already there), else today (UTC)."""
    from atlasgen.manifest import ManifestError, load_manifest

    try:
        previous = load_manifest(folder)
    except ManifestError:
        previous = None
    if previous is not None and previous.atlas_id == ident and previous.built:
        return previous.built
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def _dataset_record(prepared, store: Store) -> DatasetRecord | None:
    from atlasgen.build.run import dataset_skipped
    from atlasgen.build.dataset import CONVENTION

    dataset = prepared.dataset
    if dataset is None or not prepared.plan.chunks:
        return None
    skipped = dataset_skipped(prepared, store) or []
    scanned = len(dataset.images) - (len(skipped) - len(dataset.refused))
    return DatasetRecord(dataset.name, scanned, dataset.short_side, dataset.sha256,
                         [SkippedFile(file, reason) for file, reason in skipped], dict(CONVENTION), dataset.examples,
                         dataset.builtin)


def _describe(artifact: Artifact) -> str:
    where = f"{artifact.layer} filter {artifact.filter}" if artifact.layer is not None else "the atlas"
    return f"the {artifact.kind} of {where}" + (f" on probe {artifact.probe!r}" if artifact.probe else "")
