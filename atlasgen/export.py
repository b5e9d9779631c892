"""Export a finished plan from the store into the output folder: images, probe photos, atlas.json.

Every file is written atomically and only when its bytes change, so a no-op rebuild touches
nothing and a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from atlasgen import __version__, codec
from atlasgen.errors import AtlasgenError
from atlasgen.geometry import square
from atlasgen.model import safe_name
from atlasgen.plan import CHANNEL, MAP, NEURON
from atlasgen.store import ALGORITHM_VERSION, Store, recipe_key

MANIFEST = "atlas.json"
SCHEMA_VERSION = 1


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically replaces `path` with `data` unless it already holds exactly that; True if written."""
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
    except OSError as exc:
        raise AtlasgenError(f"cannot write {path} ({exc.strerror or exc}); check free space and permissions of --out") from None
    return True


def unit_folder(model: str, layer: str, filter_id: int) -> str:
    """The permanent, page-relative folder of one filter: <model>/<layer>/<filter>/."""
    return f"{safe_name(model)}/{safe_name(layer)}/{filter_id}/"


def _map_views(store: Store, raw_digest: str, scale: float, peak: float, probe) -> tuple[bytes, bytes]:
    """Heatmap and overlay of one stored map at the cross-probe scale, cached in the store."""
    from atlasgen.synthesis.maps import render_map

    recipe = {"algorithm": ALGORITHM_VERSION, "kind": "map-view", "raw": raw_digest, "scale": repr(scale),
              "peak": repr(peak), "probe": probe.digest}
    key = recipe_key(recipe)
    entry = store.get(key)
    if entry is None:
        relative = codec.decode(store.get_blob(raw_digest)).astype("float32") / 255.0 * peak
        heatmap, overlay = render_map(relative, scale, probe.image)
        entry = store.put(key, {"heatmap": codec.webp(heatmap), "overlay": codec.webp(overlay)}, {"recipe": recipe})
    return store.get_blob(entry.blobs["heatmap"].digest), store.get_blob(entry.blobs["overlay"].digest)


def export_atlas(prepared, store: Store) -> Path:
    """Writes every image of the plan and the manifest into the output folder; returns the manifest."""
    from atlasgen.synthesis.maps import NORMALISATION

    out = prepared.config.out
    plan = prepared.plan
    model = plan.model
    probes = {p.name: p for p in prepared.probes}
    probe_records = []
    for probe in prepared.probes:
        path = f"probes/{safe_name(probe.name)}.webp"
        write_if_changed(out / path, codec.webp(probe.image))
        probe_records.append({"name": probe.name, "sha256": probe.digest, "image": path,
                              "width": int(probe.image.shape[1]), "height": int(probe.image.shape[0])})
    infos = {info.name: info for info in prepared.layers}
    layers = []
    for layer in plan.layers:
        entries = {(a.kind, a.filter, a.probe): (a, store.get(a.key)) for a in layer.artifacts}
        units = []
        for f in layer.filters:
            folder = unit_folder(model, layer.name, f)
            channel = entries[(CHANNEL, f, None)][1]
            neuron = entries[(NEURON, f, None)][1]
            _export_blob(store, channel, "image", out / folder / "channel.webp")
            _export_blob(store, neuron, "image", out / folder / "neuron.webp")
            _export_blob(store, neuron, "crop", out / folder / "rf-crop.webp")
            maps = [(name, entries[(MAP, f, name)][1]) for name in probes]
            scale = max((entry.meta["peak"] for _, entry in maps), default=0.0)
            map_records = []
            for name, entry in maps:
                heat, over = _map_views(store, entry.blobs["raw"].digest, scale, entry.meta["peak"], probes[name])
                stem = safe_name(name)
                write_if_changed(out / folder / f"maps/{stem}.webp", heat)
                write_if_changed(out / folder / f"maps/{stem}-overlay.webp", over)
                map_records.append({
                    "probe": name, "heatmap": f"{folder}maps/{stem}.webp", "overlay": f"{folder}maps/{stem}-overlay.webp",
                    "peak": entry.meta["peak"], "mean": entry.meta["mean"], "scale": scale,
                })
            best_probe_mean = max((entry.meta["mean"] for _, entry in maps), default=0.0)
            units.append({
                "index": f,
                "page": folder,
                "channel_image": f"{folder}channel.webp",
                "neuron_image": f"{folder}neuron.webp",
                "rf_crop": f"{folder}rf-crop.webp",
                "rf_box": neuron.meta["rf_box"],
                "activation_maps": map_records,
                "metrics": _metrics(channel.meta, neuron.meta, best_probe_mean),
            })
        info = infos[layer.name]
        layers.append({
            "name": layer.name, "path": f"{safe_name(model)}/{safe_name(layer.name)}/", "filters": info.filters,
            "r": square(info.field.r), "S": square(info.field.S), "P": square(info.field.P),
            "output_size": square(info.field.size), "centre_unit": list(info.centre_unit), "units": units,
        })
    loaded = prepared.loaded
    manifest = {
        "schema": SCHEMA_VERSION,
        "generator": {"name": "atlasgen", "version": __version__, "algorithm": ALGORITHM_VERSION},
        "model": model,
        "weights": {"source": loaded.source.kind, "spec": loaded.source.spec, "label": loaded.source.label,
                    "fingerprint": loaded.fingerprint},
        "input_convention": loaded.input_convention.describe(),
        "preset": prepared.config.preset,
        "parameters": prepared.params.recipe(),
        "probes": probe_records,
        "activation_map_normalisation": NORMALISATION,
        "layers": layers,
    }
    path = out / MANIFEST
    write_if_changed(path, (json.dumps(manifest, indent=1, sort_keys=False) + "\n").encode())
    return path


def _export_blob(store: Store, entry, name: str, path: Path) -> None:
    write_if_changed(path, store.get_blob(entry.blobs[name].digest))


def _metrics(channel: dict, neuron: dict, best_probe_mean: float) -> dict:
    from atlasgen.synthesis.metrics import activation_vs_best_probe

    def ratio(value):
        return activation_vs_best_probe(value, best_probe_mean)

    return {
        "channel": {
            "objective": channel["objective"], "mean_activation": channel["mean_activation"],
            "activation_vs_best_probe": ratio(channel["mean_activation"]), "steps": channel["steps"],
        },
        "neuron": {
            "objective": neuron["objective"], "mean_activation": neuron["mean_activation"],
            "activation_vs_best_probe": ratio(neuron["mean_activation"]), "steps": neuron["steps"],
            "changed_pixels_outside_box": neuron["changed_pixels_outside_box"],
        },
        "best_probe_mean_activation": best_probe_mean,
    }
