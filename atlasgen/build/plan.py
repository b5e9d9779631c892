"""The build plan: every artifact of an atlas, each with the recipe whose hash is its store key.

Which artifacts a filter has, and what each recipe holds, is the kinds registry's business
(`atlasgen.build.kinds`); this module walks the probes, the dataset's chunks, the layers and the
filters, asks every kind for its recipe, and says which shard each artifact belongs to.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

from atlasgen.build.artifacts import (
    ALGORITHM_VERSION, Artifact, DatasetRef, LayerPlan, Plan, ProbeRef, chunk_id,
)
from atlasgen.build.kinds import DEFAULT_METHODS, WIRING_K, Kind, RecipeContext, kinds_for
from atlasgen.errors import AtlasgenError
from atlasgen.store import recipe_key


def parse_filters(spec: str, count: int, layer: str) -> list[int]:
    """'0-7,12,40-47' to sorted unique indices; every index must exist in the layer."""
    if spec is None or spec.strip() == "all":
        return list(range(count))
    if not spec.strip():
        raise AtlasgenError("--filters is empty; give indices and ranges such as 0-7,12, or all")
    chosen: set[int] = set()
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise AtlasgenError(f"--filters {spec!r}: {part!r} is not an index or a range like 0-7; use e.g. 0-7,12,40-47")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise AtlasgenError(f"--filters {spec!r}: range {part.strip()} runs backwards; write it low-high")
        if high >= count:
            raise AtlasgenError(f"--filters {spec!r}: filter {high} is out of range for {layer}, which has filters 0-{count - 1}")
        chosen.update(range(low, high + 1))
    return sorted(chosen)


def in_shard(artifact: Artifact, shard: tuple[int, int]) -> bool:
    """All artifacts of one filter go to the same shard, chosen by a hash, so shards balance; so do
    all layers' artifacts of one dataset chunk (one forward pass makes them). Atlas-wide artifacts
    are cheap and every shard makes any that is missing."""
    k, n = shard
    if artifact.chunk is not None:
        digest = hashlib.sha256(f"chunk/{artifact.chunk}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % n == k - 1
    if artifact.layer is None:
        return True
    digest = hashlib.sha256(f"{artifact.layer}/{artifact.filter}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def make_plan(model: str, fingerprint: str, layers: list[tuple[str, list[int]]], params: dict,
              probes: list[ProbeRef], methods: tuple[str, ...] = DEFAULT_METHODS, method_params: dict | None = None,
              dataset: DatasetRef | None = None, image_readers: tuple[str, ...] = (), wiring_k: int = WIRING_K,
              diversity: int = 0) -> Plan:
    """Every artifact of every kind of these methods for these (layer, filters) and probe photos, in
    layer order. `method_params` holds each method's own parameters (e.g. {"maco": {...}}). With a
    dataset, also its chunks' scan artifacts, and every filter's examples. A kind that `reads_image`
    is planned only for `image_readers`, the layers that read the image itself (ModelGeometry's); one
    with `planned`, only when it says so (the diversity set, when `diversity` images are asked for)."""
    base = {"algorithm": ALGORITHM_VERSION, "model": model, "weights": fingerprint}
    context = RecipeContext(params, None, probes, {}, method_params=method_params or {}, dataset=dataset,
                            wiring_k=wiring_k, diversity=diversity)
    kinds = [kind for kind in kinds_for(methods).values() if (dataset is not None or not kind.needs_dataset)
             and (kind.planned is None or kind.planned(context))]

    def artifact(kind: Kind, context: RecipeContext, **where) -> Artifact:
        recipe = {**base, "kind": kind.name, **kind.recipe(context)}
        return Artifact(kind.name, recipe=recipe, key=recipe_key(recipe), **{"layer": None, "filter": None, **where})

    shared = [artifact(kind, _with(context, probe=probe), probe=probe.name)
              for kind in kinds if kind.scope == "probe" for probe in probes]
    chunks = [artifact(kind, _with(context, layer=name, chunk=tuple(digests)), layer=name, chunk=chunk_id(digests))
              for kind in kinds if kind.scope == "chunk" for digests in dataset.chunks for name, _ in layers]
    plan_layers = []
    for name, filters in layers:
        keys = [a.key for a in chunks if a.layer == name]
        examples = {"chunks": hashlib.sha256("\n".join(keys).encode()).hexdigest(), "examples": dataset.examples} \
            if dataset is not None else None
        made = []
        for f in filters:
            keys_of_unit: dict[tuple[str, str | None], str] = {}
            unit = _with(context, keys=keys_of_unit, layer=name, filter=f, examples=examples)
            for kind in (k for k in kinds if not k.reads_image or name in image_readers):
                for probe in probes if kind.scope == "unit-probe" else [None] if kind.scope == "unit" else []:
                    item = artifact(kind, _with(unit, probe=probe), layer=name, filter=f,
                                    probe=probe.name if probe else None)
                    keys_of_unit[(kind.name, item.probe)] = item.key
                    made.append(item)
        plan_layers.append(LayerPlan(name, list(filters), made))
    return Plan(model, fingerprint, plan_layers, shared, tuple(methods), chunks)


def _with(context: RecipeContext, **changes) -> RecipeContext:
    return replace(context, **changes)
