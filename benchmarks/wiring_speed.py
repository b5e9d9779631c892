"""Wiring speed: every filter's wiring (inputs, inhibitors, outputs) over every conv layer of a model.

    python benchmarks/wiring_speed.py [--weights hed-bsds500] [--k 6] [--rounds 3] [--store]

Runs the build's own compute function (`atlasgen.build.compute.filter_wiring`) on one job per layer,
as a build does: the graph walked and the layer's kernels read once per job, then each filter's top k
in numpy. Nothing is synthesised, so no GPU is needed. Prints, as JSON lines, each layer's filters and
seconds in the best of `--rounds`, then the total, the records' size in atlas.json (indent 1, as the
export writes it) and the time to check them all as atlas.json's reader does (`manifest.from_json`).
With `--store`, also the time to store every record in a fresh store (a build's fsynced writes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from atlasgen.build.compute import Job, filter_wiring
from atlasgen.build.plan import make_plan
from atlasgen.manifest import WiringRecord, from_json
from atlasgen.model.graph import conv_layers
from atlasgen.model.weights import load_model


def layer_job(loaded, layer: str, filters: int, k: int, store=None) -> Job:
    plan = make_plan(loaded.architecture, loaded.fingerprint, [(layer, list(range(filters)))], {}, [], wiring_k=k)
    artifacts = [a for a in plan.artifacts if a.kind == "wiring"]
    return Job("wiring", artifacts, None, {}, store, None, make_engine=None, loaded=loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="hed-bsds500")
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", action="store_true", help="also store every record in a fresh store")
    args = parser.parse_args()
    start = time.perf_counter()
    loaded = load_model(args.weights)
    print(json.dumps({"weights": args.weights, "k": args.k, "load_seconds": round(time.perf_counter() - start, 2)}))
    convs = conv_layers(loaded.model)
    best: dict[str, float] = {}
    records: dict[str, list] = {}
    for _ in range(args.rounds):
        for conv in convs:
            job = layer_job(loaded, conv.name, conv.filters, args.k)
            start = time.perf_counter()
            made = list(filter_wiring(job))
            seconds = time.perf_counter() - start
            best[conv.name] = min(best.get(conv.name, seconds), seconds)
            records[conv.name] = [facts["wiring"] for _, _, facts in made]
    for conv in convs:
        print(json.dumps({"layer": conv.name, "filters": conv.filters, "seconds": round(best[conv.name], 4)}))
    every = [record for conv in convs for record in records[conv.name]]
    start = time.perf_counter()
    for record in every:
        from_json(WiringRecord, record, "wiring")
    check = time.perf_counter() - start
    summary = {"filters": len(every), "layers": len(convs), "compute_seconds": round(sum(best.values()), 3),
               # As nested in atlas.json (layers[].units[].wiring), indented as the export writes it.
               "atlas_json_bytes": len(json.dumps({"layers": [{"units": [{"wiring": r} for r in every]}]}, indent=1)),
               "compact_bytes": len(json.dumps(every)),
               "check_seconds": round(check, 3)}
    if args.store:
        from atlasgen.store import Store

        with tempfile.TemporaryDirectory(prefix="wiring-store-", dir=Path.cwd()) as folder:
            store = Store(Path(folder) / "store")
            start = time.perf_counter()
            for conv in convs:
                for artifact, blobs, facts in filter_wiring(layer_job(loaded, conv.name, conv.filters, args.k)):
                    store.put(artifact.key, blobs, {"recipe": artifact.recipe, **facts})
            summary["compute_and_store_seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
