"""Export a finished plan from the store into the output folder: copy blobs to their files, write atlas.json.

It computes nothing: every image is a blob the build stored, and every number is a fact stored
beside it. Files are written atomically and only when their bytes change, and files that an
earlier export wrote and this plan no longer has are removed (only those).
"""

from __future__ import annotations

from pathlib import Path

from atlasgen import __version__
from atlasgen.errors import AtlasgenError
from atlasgen.fs import OwnedFiles
from atlasgen.geometry import square
from atlasgen.kinds import ALL_KINDS, MAP_NORMALISATION
from atlasgen.manifest import (
    MANIFEST, SCHEMA_VERSION, DatasetRecord, ExampleRecord, Generator, LayerRecord, Manifest, MapRecord, ProbeRecord,
    SkippedFile, UnitRecord, Weights, unit_metrics,
)
from atlasgen.names import layer_folder, safe_name, unit_folder
from atlasgen.plan import ALGORITHM_VERSION, Artifact
from atlasgen.store import Store

STAGE = "export"


def export_atlas(prepared, store: Store) -> Path:
    """Writes every output of the plan and the manifest into the output folder; returns the manifest's path."""
    out = prepared.config.out
    plan = prepared.plan
    owned = OwnedFiles(out, STAGE, prepared.config.force)
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
                photos[digest] = f"{safe_name(plan.model)}/dataset/{digest[:20]}.webp"
                owned.write(photos[digest], store.get_blob(digest))
            records.append(ExampleRecord(sources[example["digest"]], example["activation"], example["unit"],
                                         example["box"], crop, photos[digest], example["size"]))
        return records

    probes = []
    for artifact in plan.shared:
        facts, paths = publish(artifact, "")
        probe = next(p for p in prepared.probes if p.name == artifact.probe)
        probes.append(ProbeRecord(probe.name, probe.digest, paths["photo"], facts["width"], facts["height"]))

    infos = {info.name: info for info in prepared.layers}
    layers = []
    for layer in plan.layers:
        units = []
        for f in layer.filters:
            folder = unit_folder(plan.model, layer.name, f)
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
                                     best_example=examples[0].activation if examples else None),
                dataset_examples=examples,
            ))
        info = infos[layer.name]
        layers.append(LayerRecord(
            name=layer.name, path=layer_folder(plan.model, layer.name), filters=info.filters,
            r=square(info.field.r), S=square(info.field.S), P=square(info.field.P),
            output_size=square(info.field.size), centre_unit=list(info.centre_unit), units=units,
        ))
    loaded = prepared.loaded
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
    )
    owned.write(MANIFEST, manifest.to_bytes())
    owned.finish()
    return out / MANIFEST


def _dataset_record(prepared, store: Store) -> DatasetRecord | None:
    from atlasgen.build import dataset_skipped
    from atlasgen.dataset import CONVENTION

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
