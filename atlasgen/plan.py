"""The build plan: every artifact of an atlas, each with the recipe whose hash is its store key."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from atlasgen.errors import AtlasgenError
from atlasgen.store import ALGORITHM_VERSION, recipe_key

CHANNEL, NEURON, MAP = "channel", "neuron", "map"


@dataclass(frozen=True)
class Preset:
    weights: str
    layers: tuple[str, ...] | None  # None: every conv layer
    filters: str | None  # None: every filter
    size: int
    steps: int


PRESETS = {
    # The README's offline main job: the first conv of every block, a few filters, minutes on a CPU.
    "quick": Preset("hed-bsds500", ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"), "0-3", 64, 64),
    # Publication settings for a GPU: every filter of every conv layer.
    "full": Preset("imagenet", None, None, 224, 512),
}


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build is asked for; `None` fields fall back to the preset's value."""

    preset: str = "full"
    weights: str | None = None
    layers: tuple[str, ...] | None = None
    filters: str | None = None
    size: int | None = None
    steps: int | None = None
    probes: tuple[Path, ...] = ()
    store: Path = Path(".atlas-store")
    out: Path = Path("site")
    shard: tuple[int, int] = (1, 1)  # (K, N): this process does part K of N
    batch_size: int | None = None
    seed: int = 0
    base_url: str | None = None

    def resolved(self) -> "BuildConfig":
        if self.preset not in PRESETS:
            raise AtlasgenError(f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        p = PRESETS[self.preset]
        return BuildConfig(
            preset=self.preset,
            weights=self.weights or p.weights,
            layers=self.layers or p.layers,
            filters=self.filters if self.filters is not None else p.filters,
            size=self.size or p.size,
            steps=self.steps or p.steps,
            probes=self.probes, store=self.store, out=self.out, shard=self.shard,
            batch_size=self.batch_size, seed=self.seed, base_url=self.base_url,
        )


@dataclass(frozen=True)
class Artifact:
    """One thing the atlas needs: its kind, whose it is, and the recipe that names it."""

    kind: str  # CHANNEL, NEURON or MAP
    layer: str
    filter: int
    recipe: dict = field(compare=False, hash=False)
    key: str = ""
    probe: str | None = None  # MAP only: the probe's name


@dataclass
class LayerPlan:
    name: str
    filters: list[int]
    artifacts: list[Artifact]


@dataclass
class Plan:
    model: str
    fingerprint: str
    layers: list[LayerPlan]

    @property
    def artifacts(self) -> list[Artifact]:
        return [a for layer in self.layers for a in layer.artifacts]


def parse_filters(spec: str, count: int, layer: str) -> list[int]:
    """'0-7,12,40-47' to sorted unique indices; every index must exist in the layer."""
    if spec is None or spec.strip() in ("", "all"):
        return list(range(count))
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


def parse_shard(spec: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise AtlasgenError(f"--shard {spec!r} is not K/N with 1 <= K <= N; use e.g. --shard 2/8")
    return int(match.group(1)), int(match.group(2))


def in_shard(layer: str, filter_id: int, shard: tuple[int, int]) -> bool:
    """All artifacts of one filter go to the same shard, chosen by a hash, so shards balance."""
    k, n = shard
    digest = hashlib.sha256(f"{layer}/{filter_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def synthesis_recipe(kind: str, model: str, fingerprint: str, layer: str, filter_id: int, params: dict) -> dict:
    objective = "channel mean (pre-ReLU)" if kind == CHANNEL else "centre neuron (pre-ReLU)"
    return {
        "algorithm": ALGORITHM_VERSION, "kind": kind, "model": model, "weights": fingerprint,
        "layer": layer, "filter": filter_id, "objective": objective, "params": params,
    }


def map_recipe(model: str, fingerprint: str, layer: str, filter_id: int, probe_digest: str) -> dict:
    # No synthesis parameters: more steps must not recompute activation maps.
    return {
        "algorithm": ALGORITHM_VERSION, "kind": MAP, "model": model, "weights": fingerprint,
        "layer": layer, "filter": filter_id, "probe": probe_digest,
    }


def make_plan(model: str, fingerprint: str, layers: list[tuple[str, list[int]]], params: dict, probes) -> Plan:
    """Every artifact for these (layer, filters), in layer order; probes are (name, digest) pairs."""
    plan_layers = []
    for name, filters in layers:
        artifacts = []
        for f in filters:
            for kind in (CHANNEL, NEURON):
                recipe = synthesis_recipe(kind, model, fingerprint, name, f, params)
                artifacts.append(Artifact(kind, name, f, recipe, recipe_key(recipe)))
            for probe_name, digest in probes:
                recipe = map_recipe(model, fingerprint, name, f, digest)
                artifacts.append(Artifact(MAP, name, f, recipe, recipe_key(recipe), probe_name))
        plan_layers.append(LayerPlan(name, list(filters), artifacts))
    return Plan(model, fingerprint, plan_layers)
