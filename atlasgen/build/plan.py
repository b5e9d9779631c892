"""The build plan: every artifact of an atlas, each with the recipe whose hash is its store key.

Which artifacts a filter has, and what each recipe holds, is the kinds registry's business
(`atlasgen.build.kinds`); this module walks layers, filters and probes and asks it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from atlasgen.errors import AtlasgenError
from atlasgen.store import recipe_key
from atlasgen.model.weights import VGG16_LAYERS

#: In every recipe; bump it when synthesis changes, so that old artifacts are not reused.
ALGORITHM_VERSION = 3


@dataclass(frozen=True)
class Preset:
    weights: str
    layers: tuple[str, ...] | None  # None: every conv layer
    filters: str | None  # None: every filter
    size: int
    steps: int


PRESETS = {
    # The README's offline main job: the first conv of every block, a few filters, minutes on a CPU.
    "quick": Preset("hed-bsds500", tuple(name for name in VGG16_LAYERS if name.endswith("_conv1")), "0-3", 64, 64),
    # Publication settings for a GPU: every filter of every conv layer.
    "full": Preset("imagenet", None, None, 224, 512),
}


#: More steps than this would need a history too large to keep, and years on a CPU.
MAX_STEPS = 100_000


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build is asked for; `None` fields fall back to the preset's value, and every
    other value is checked as given (an empty or zero value is an error, never the preset's)."""

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
    force: bool = False  # write into a non-empty --out that holds no atlas of ours
    methods: tuple[str, ...] = ("lucid",)  # whole-filter synthesis methods: lucid, maco or both
    # float32 or mixed (bfloat16 compute, float32 parameters); None: mixed where TensorFlow sees a
    # GPU, float32 on the CPU. Part of every synthesis recipe.
    precision: str | None = None
    # Dataset examples: a folder of images (None: scikit-image's bundled photos), the shorter side
    # they are resized to, examples per filter and images per chunk (None: the defaults).
    dataset: Path | None = None
    dataset_size: int | None = None
    examples: int | None = None
    dataset_chunk: int | None = None
    # The atlas's folder, the first segment of its URLs; None: atlasgen.names.atlas_name's rule.
    name: str | None = None
    # For citations, stored in atlas.json: the atlas's own title (None: one made from the model and
    # weights) and its authors.
    title: str | None = None
    authors: tuple[str, ...] = ()

    def resolved(self) -> "BuildConfig":
        if self.preset not in PRESETS:
            raise AtlasgenError(f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        p = PRESETS[self.preset]
        if self.weights is not None and not self.weights.strip():
            raise AtlasgenError("--weights is empty; give imagenet, hed-bsds500 or a weights file")
        if self.layers is not None and (not self.layers or not all(name.strip() for name in self.layers)):
            raise AtlasgenError("--layers has an empty name; give conv layer names such as block1_conv1,block3_conv1")
        if self.filters is not None and not self.filters.strip():
            raise AtlasgenError("--filters is empty; give indices and ranges such as 0-7,12, or all")
        for option, value, low, high in (("--size", self.size, 8, None), ("--steps", self.steps, 1, MAX_STEPS),
                                         ("--batch-size", self.batch_size, 1, None), ("--seed", self.seed, 0, None)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low
                                      or high is not None and value > high):
                limit = f"from {low} to {high}" if high is not None else f"of at least {low}"
                raise AtlasgenError(f"{option} {value!r} is out of range; give a whole number {limit}")
        from atlasgen.build.kinds import METHODS

        if isinstance(self.methods, str) or not self.methods or not all(m.strip() for m in self.methods):
            raise AtlasgenError(f"--method is empty; give one or more of {', '.join(METHODS)}, e.g. lucid,maco")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise AtlasgenError(f"--method {unknown[0]!r} is not a synthesis method; use one or more of {', '.join(METHODS)}")
        from atlasgen.synthesis import engine

        if self.precision is not None:
            if not isinstance(self.precision, str) or not self.precision.strip():
                raise AtlasgenError(f"--precision is empty; give one of {', '.join(engine.PRECISIONS)}")
            engine.check_precision(self.precision, "--precision")
        if self.base_url is not None and not self.base_url.startswith(("https://", "http://")):
            raise AtlasgenError(f"--base-url {self.base_url!r} is not an http(s) URL; give e.g. https://user.github.io/repo/")
        from atlasgen.build import dataset
        from atlasgen.names import check_atlas_name

        if self.name is not None:
            check_atlas_name(self.name)
        for option, value in [("--title", self.title)] + [("--author", a) for a in self.authors]:
            if value is not None and (not value.strip() or len(value) > 300 or any(ord(c) < 32 for c in value)):
                raise AtlasgenError(f"{option} {value[:40]!r} must be plain text of 1 to 300 characters on one line")
        if self.dataset is not None and not str(self.dataset).strip():
            raise AtlasgenError("--dataset is empty; give a folder of images")
        dataset.check_options(*(value if value is not None else default for value, default in (
            (self.dataset_size, dataset.DEFAULT_SHORT_SIDE), (self.examples, dataset.DEFAULT_EXAMPLES),
            (self.dataset_chunk, dataset.DEFAULT_CHUNK))))
        # Not given: bfloat16 where it pays (a GPU's tensor cores), float32 where it does not.
        precision = self.precision or ("float32" if engine.synthesis_device() == "CPU" else "mixed")
        return replace(
            self,
            weights=self.weights if self.weights is not None else p.weights,
            layers=self.layers if self.layers is not None else p.layers,
            filters=self.filters if self.filters is not None else p.filters,
            size=self.size if self.size is not None else p.size,
            steps=self.steps if self.steps is not None else p.steps,
            methods=tuple(m for m in METHODS if m in self.methods),  # one order, each once
            precision=precision,
            dataset_size=self.dataset_size if self.dataset_size is not None else dataset.DEFAULT_SHORT_SIDE,
            examples=self.examples if self.examples is not None else dataset.DEFAULT_EXAMPLES,
            dataset_chunk=self.dataset_chunk if self.dataset_chunk is not None else dataset.DEFAULT_CHUNK,
        )


@dataclass(frozen=True)
class Artifact:
    """One thing the atlas needs: its kind, whose it is, and the recipe that names it."""

    kind: str  # a name in atlasgen.build.kinds.ALL_KINDS
    layer: str | None  # None for atlas-wide kinds (probe photos)
    filter: int | None
    recipe: dict = field(compare=False, hash=False)
    key: str = ""
    probe: str | None = None  # per-probe kinds: the probe's name
    chunk: str | None = None  # dataset chunks: the chunk's id (a hash of its images' digests)


@dataclass
class LayerPlan:
    name: str
    filters: list[int]
    artifacts: list[Artifact]

    def unit(self, filter_id: int) -> dict[tuple[str, str | None], Artifact]:
        """This filter's artifacts by (kind, probe)."""
        return self._units.get(filter_id, {})

    @functools.cached_property
    def _units(self) -> dict[int, dict[tuple[str, str | None], Artifact]]:
        # Built once: the export asks for every filter of a layer that may have 512.
        units: dict[int, dict] = {}
        for a in self.artifacts:
            units.setdefault(a.filter, {})[(a.kind, a.probe)] = a
        return units


@dataclass
class Plan:
    model: str
    fingerprint: str
    layers: list[LayerPlan]
    shared: list[Artifact]  # atlas-wide artifacts: one per probe photo
    methods: tuple[str, ...] = ("lucid",)
    # The dataset scan: one artifact per chunk and planned layer (its top k for every filter), in chunk order.
    chunks: list[Artifact] = field(default_factory=list)

    @property
    def artifacts(self) -> list[Artifact]:
        return self.shared + self.chunks + [a for layer in self.layers for a in layer.artifacts]

    def layer_chunks(self, layer: str) -> list[Artifact]:
        return [a for a in self.chunks if a.layer == layer]


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


def parse_shard(spec: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise AtlasgenError(f"--shard {spec!r} is not K/N with 1 <= K <= N; use e.g. --shard 2/8")
    return int(match.group(1)), int(match.group(2))


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


@dataclass(frozen=True)
class ProbeRef:
    name: str
    digest: str  # sha256 of the photo's bytes


@dataclass(frozen=True)
class DatasetRef:
    """What the plan needs of a dataset: its chunks (each a list of image digests) and its convention."""

    chunks: list[list[str]]
    short_side: int
    examples: int


#: The resize convention of dataset images, by name; a new convention gets a new name.
DATASET_CONVENTION = "exif-rgb-bicubic-shorter-side"


def chunk_id(digests: list[str]) -> str:
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def make_plan(model: str, fingerprint: str, layers: list[tuple[str, list[int]]], params: dict,
              probes: list[ProbeRef], methods: tuple[str, ...] = ("lucid",), method_params: dict | None = None,
              dataset: DatasetRef | None = None) -> Plan:
    """Every artifact of every kind of these methods for these (layer, filters) and probe photos, in
    layer order. `method_params` holds each method's own parameters (e.g. {"maco": {...}}). With a
    dataset, also its chunks' scan artifacts, and every filter's examples."""
    from atlasgen.build.kinds import RecipeContext, kinds_for

    KINDS = kinds_for(methods)
    method_params = method_params or {}

    base = {"algorithm": ALGORITHM_VERSION, "model": model, "weights": fingerprint}

    def artifact(kind, context: RecipeContext, layer=None, filter_id=None, probe=None) -> Artifact:
        recipe = {**base, "kind": kind.name, **kind.recipe(context)}
        return Artifact(kind.name, layer, filter_id, recipe, recipe_key(recipe), probe.name if probe else None)

    shared = [
        artifact(kind, RecipeContext(params, probe, probes, {}, method_params=method_params), probe=probe)
        for kind in KINDS.values() if kind.scope == "probe" for probe in probes
    ]
    chunks: list[Artifact] = []
    examples: dict[str, dict] = {}
    if dataset is not None:
        for digests in dataset.chunks:
            for name, _ in layers:
                recipe = {**base, "kind": "dataset-top", "layer": name, "images": list(digests),
                          "convention": DATASET_CONVENTION, "short_side": dataset.short_side, "examples": dataset.examples}
                chunks.append(Artifact("dataset-top", name, None, recipe, recipe_key(recipe), chunk=chunk_id(digests)))
        for name, _ in layers:
            keys = [a.key for a in chunks if a.layer == name]
            examples[name] = {"chunks": hashlib.sha256("\n".join(keys).encode()).hexdigest(), "examples": dataset.examples}
    plan_layers = []
    for name, filters in layers:
        artifacts = []
        for f in filters:
            made: dict[tuple[str, str | None], str] = {}
            for kind in KINDS.values():
                if kind.needs_dataset and dataset is None:
                    continue
                for probe in probes if kind.scope == "unit-probe" else [None] if kind.scope == "unit" else []:
                    context = RecipeContext(params, probe, probes, made, name, f, method_params, examples.get(name))
                    item = artifact(kind, context, name, f, probe)
                    made[(kind.name, item.probe)] = item.key
                    artifacts.append(item)
        plan_layers.append(LayerPlan(name, list(filters), artifacts))
    return Plan(model, fingerprint, plan_layers, shared, tuple(methods), chunks)
