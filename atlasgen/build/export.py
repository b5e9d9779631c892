"""Export a finished plan from the store into the output folder: copy blobs to their files, write atlas.json.

It computes nothing: every image is a blob the build stored, and every number is a fact stored
beside it. Each kind's declaration (`atlasgen.build.kinds`) says which files its blobs become and
what it adds to the record of its probe, unit or map; this module names no kind. Files are written
atomically and only when their bytes change, images before the atlas.json that names them, and files
that an earlier export wrote and this plan no longer has are removed (only those) once the pages that
showed them are rendered again.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from pathlib import Path
from typing import Callable

from atlasgen import __version__
from atlasgen.build.artifacts import ALGORITHM_VERSION, Artifact
from atlasgen.build.dataset import CONVENTION, chunks_precision, skipped_files
from atlasgen.build.kinds import ALL_KINDS, MAP_NORMALISATION, Kind, kinds_for
from atlasgen.errors import AtlasgenError
from atlasgen.fs import OutputFolder, OwnedFiles, output_folder, progress_lines
from atlasgen.manifest import (
    MANIFEST, SCHEMA_VERSION, DatasetRecord, Generator, Manifest, ManifestError, PrecisionRecord, SkippedFile,
    TransformsUsed, Weights, derive_metrics, image_metrics, load_manifest, to_json,
)
from atlasgen.model.conventions import meaning
from atlasgen.names import atlas_name, layer_folder, safe_name, unit_folder
from atlasgen.store import Store

STAGE = "export"
ATLAS_ID_LENGTH = 12


class Publisher:
    """Writes one atlas's files from the store's blobs, each path once, into files the export owns."""

    def __init__(self, out: Path, name: str, store: Store, owned: OwnedFiles, sources: dict[str, str]):
        self.out, self.name, self.store, self.owned = out, name, store, owned
        self.sources = sources  # dataset image digest -> its path in the dataset folder
        self.written: dict[str, Artifact] = {}
        self.shared: dict[str, str] = {}  # blob digest -> the atlas-wide path it was written to
        self.tf32: set = set()  # the synthesised images' "tf32" facts (None on a CPU or where unrecorded)

    def unit_file(self, artifact: Artifact, file: str, digest: str) -> str:
        """Writes a blob to a file under the artifact's own folder (the atlas's, for atlas-wide kinds)."""
        folder = unit_folder(self.name, artifact.layer, artifact.filter) if artifact.layer is not None else f"{self.name}/"
        path = folder + file
        # Two names that clean to one file would overwrite each other: never write a path twice.
        other = self.written.setdefault(path, artifact)
        if other is not artifact:
            raise AtlasgenError(f"{path} would hold both {_describe(other)} and {_describe(artifact)}; rename one of them")
        self.owned.write(path, self.store.get_blob(digest))
        return path

    def atlas_file(self, file: str, digest: str) -> str:
        """Writes a blob that many units share (a dataset photo) once, under the atlas's folder."""
        if digest not in self.shared:
            self.shared[digest] = f"{self.name}/{file}"
            self.owned.write(self.shared[digest], self.store.get_blob(digest))
        return self.shared[digest]

    def dataset_source(self, digest: str) -> str:
        return self.sources[digest]

    def part(self, artifact: Artifact) -> dict:
        """The artifact's files written, and its part of its record: its kind's outputs, record fields,
        numbers and published files."""
        entry = self.store.get(artifact.key)
        if entry is None:
            raise AtlasgenError(f"artifact {artifact.kind} of {artifact.layer or artifact.probe} vanished from the "
                                f"store {self.store.root} during the export; run atlasgen build again")
        kind: Kind = ALL_KINDS[artifact.kind]
        part: dict = {}
        for output in kind.outputs:
            file = output.file.format(probe=safe_name(artifact.probe or ""))
            _put(part, output.field, self.unit_file(artifact, file, entry.blobs[output.blob].digest))
        for field, fact in kind.record.items():
            _put(part, field, entry.meta[fact])
        if kind.metrics:
            _put(part, f"metrics.{kind.metrics}", image_metrics(entry.meta))
            self.tf32.add(entry.meta.get("tf32"))
        if kind.publish:
            _merge(part, kind.publish(artifact, entry, self))
        return part


def export_atlas(prepared, store: Store, folder: OutputFolder | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Writes every output of the plan, then the manifest, into the output folder (`folder`, whose
    lock the caller holds; without it, this takes the lock and prunes when done); returns the
    manifest's path. `log` gets a few progress lines ("export: N/M filters")."""
    out, plan, name = prepared.config.out, prepared.plan, prepared.name
    if folder is None:
        with output_folder(out, prepared.config.force, log=log) as folder:
            manifest = export_atlas(prepared, store, folder, log)
            folder.finish()
            return manifest
    previous = check_name(out, name, plan.model, prepared.loaded.fingerprint)  # again: another build may have written it
    # One stage per atlas, so atlases side by side in one folder never prune each other's files;
    # the single-atlas layout's "export" stage is taken over (and its files pruned) by the atlas it was.
    owned = folder.stage(f"{STAGE}:{name}", adopt=(STAGE,))
    sources = {image.digest: image.source for image in prepared.dataset.images} if prepared.dataset else {}
    publisher = Publisher(out, name, store, owned, sources)
    probes = []
    for probe in prepared.probes:
        record = {"name": probe.name, "sha256": probe.digest}
        for artifact in (a for a in plan.shared if a.probe == probe.name):
            _merge(record, publisher.part(artifact))
        probes.append(record)
    infos = {info.name: info for info in prepared.layers}
    tick = progress_lines(log, "export", sum(len(layer.filters) for layer in plan.layers), "filters")
    layers = []
    for layer in plan.layers:
        info = infos[layer.name]
        row = info.as_dict()
        layers.append({
            "name": layer.name, "path": layer_folder(name, layer.name), "filters": info.filters,
            **{key: row[key] for key in ("r", "S", "P", "output_size", "global", "read_after") if key in row},
            "centre_unit": list(info.centre_unit),
            "units": [tick(_unit(publisher, layer, f, prepared.probes)) for f in layer.filters],
            "synthesis": transforms_record(prepared, info.field),
        })
    ident = atlas_id(prepared)
    loaded = prepared.loaded
    # Checked against the schema as the site will read it, before it is written.
    manifest = Manifest.from_json(to_json({
        "schema": SCHEMA_VERSION, "generator": Generator("atlasgen", __version__, ALGORITHM_VERSION),
        "model": plan.model, "model_filters": prepared.model_filters,
        "weights": Weights(loaded.source.kind, loaded.source.spec, loaded.source.label, loaded.fingerprint),
        "input_convention": loaded.input_convention.describe(), "preset": prepared.config.preset,
        "preprocessing": meaning(loaded.input_convention),
        "parameters": prepared.params, "probes": probes, "activation_map_normalisation": MAP_NORMALISATION,
        "layers": layers, "methods": list(plan.methods),
        "method_parameters": {method: p.recipe() for method, p in prepared.method_params.items()},
        "dataset": _dataset_record(prepared, store), "precision": _precision_record(prepared, store, publisher),
        "name": name, "atlas_id": ident,
        "title": prepared.config.title or default_title(plan.model, loaded.source.label),
        "authors": list(prepared.config.authors), "built": _built_date(previous, ident),
    }))
    # The images are on disk before the manifest that names them; pages follow (render), and stale
    # files are pruned only after them (OutputFolder.finish), so the site stays whole while it changes.
    owned.write(f"{name}/{MANIFEST}", manifest.to_bytes())
    owned.flush()
    return out / name / MANIFEST


def transforms_record(prepared, field) -> dict:
    """A layer's `synthesis` record: by synthesised image the plan makes (its metrics' name), the
    transforms and learning rate it was optimised with at this layer's receptive field `field`,
    from the parameters by the synthesis's own functions (`transforms_used`, by synthesis kind)."""
    from atlasgen.synthesis.images import transforms_used

    used = transforms_used(prepared.params, field)
    fields = [f.name for f in dataclasses.fields(TransformsUsed)]
    planned = {a.kind for layer in prepared.plan.layers for a in layer.artifacts}
    return {kind.metrics or kind.name: {name: getattr(used[kind.name], name) for name in fields}
            for kind in kinds_for(prepared.plan.methods).values() if kind.name in used and kind.name in planned}


def check_name(out: Path, name: str, model: str, fingerprint: str) -> Manifest | None:
    """The atlas already in `out/name` (None if there is none, or its atlas.json cannot be read); an
    error if it is an atlas of another model or other weights: one name is one atlas, and its
    published URLs must not start showing other images."""
    try:
        previous = load_manifest(out / name)
    except ManifestError:
        return None
    if previous.model == model and previous.weights.fingerprint == fingerprint:
        return previous
    other = atlas_name(model, "file", fingerprint)  # the name a weights file gets: model and fingerprint
    raise AtlasgenError(
        f"--out {out} already holds the atlas {name!r} of other weights ({previous.model}, {previous.weights.label}, "
        f"sha256:{previous.weights.fingerprint[:12]}) and this build would replace it; give this one its own "
        f"name with --name (e.g. --name {other if other != name else other + '-2'})"
    )


def _unit(publisher: Publisher, layer, f: int, probes: list) -> dict:
    """One filter's record: every artifact's part, the maps in probe order, and the numbers derived from them."""
    document: dict = {"index": f, "page": unit_folder(publisher.name, layer.name, f)}
    maps: dict[str, dict] = {p.name: {"probe": p.name} for p in probes}
    for (_, probe), artifact in layer.unit(f).items():
        _merge(maps[probe] if probe is not None else document, publisher.part(artifact))
    document["activation_maps"] = [maps[p.name] for p in probes]
    return derive_metrics(document)


def _put(document: dict, field: str, value) -> None:
    """Sets a dotted field ("images.channel") of a nested document."""
    *parents, last = field.split(".")
    for key in parents:
        document = document.setdefault(key, {})
    document[last] = value


def _merge(document: dict, part: dict) -> None:
    """Merges a part into a document, object by object; a value is never set twice."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            _merge(document[key], value)
        elif key in document:
            raise ValueError(f"two kinds set {key!r}")
        else:
            document[key] = value


def atlas_id(prepared) -> str:
    """A short hash of everything that determines the images: which layers and filters are built
    does not enter, so an atlas that grows keeps its id."""
    dataset = prepared.dataset
    facts = {
        "model": prepared.plan.model, "weights": prepared.loaded.fingerprint, "methods": list(prepared.plan.methods),
        "parameters": prepared.params.recipe(),
        "method_parameters": {m: p.recipe() for m, p in prepared.method_params.items()},
        "probes": [p.digest for p in prepared.probes],
        "dataset": {"sha256": dataset.sha256, "short_side": dataset.short_side, "examples": dataset.examples}
        if dataset is not None else None,
        "algorithm": ALGORITHM_VERSION,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:ATLAS_ID_LENGTH]


def default_title(model: str, weights_label: str) -> str:
    return f"Feature-visualisation atlas of {model.upper()} ({weights_label})"


def _built_date(previous: Manifest | None, ident: str) -> str:
    """The day this atlas_id was first exported (kept from the atlas.json already there), else today (UTC)."""
    if previous is not None and previous.atlas_id == ident and previous.built:
        return previous.built
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def _dataset_record(prepared, store: Store) -> DatasetRecord | None:
    dataset = prepared.dataset
    if dataset is None or not prepared.plan.chunks:
        return None
    skipped = skipped_files(dataset, prepared.plan.layer_chunks(prepared.plan.layers[0].name), store) or []
    scanned = len(dataset.images) - (len(skipped) - len(dataset.refused))
    return DatasetRecord(dataset.name, scanned, dataset.short_side, dataset.sha256,
                         [SkippedFile(file, reason) for file, reason in skipped], dict(CONVENTION), dataset.examples,
                         dataset.builtin)


def _precision_record(prepared, store: Store, publisher: Publisher) -> PrecisionRecord:
    """The synthesis's precision, whether TF32 was allowed where its images were made (from their
    facts), and the scan's from its chunks' facts (float32 only if every chunk was)."""
    tf32 = True if True in publisher.tf32 else False if False in publisher.tf32 else None
    plan = prepared.plan
    scan = chunks_precision(plan.layer_chunks(plan.layers[0].name), store) if prepared.dataset and plan.chunks else None
    return PrecisionRecord(prepared.params.precision, tf32, scan)


def _describe(artifact: Artifact) -> str:
    where = f"{artifact.layer} filter {artifact.filter}" if artifact.layer is not None else "the atlas"
    return f"the {artifact.kind} of {where}" + (f" on probe {artifact.probe!r}" if artifact.probe else "")
