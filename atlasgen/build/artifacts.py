"""The build's value types: what the plan is made of (artifacts, per layer and atlas-wide) and what it
refers to (probe photos and dataset chunks, by content)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

#: In every recipe; bump it when synthesis changes, so that old artifacts are not reused.
# 6: the second half of a whole-filter run scores the bare image, as it is judged. 7: a centre neuron
# whose field reaches the image's border has no grey pad, and its second half scores the bare image too.
ALGORITHM_VERSION = 7


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


def chunk_id(digests: list[str]) -> str:
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()
