"""What a build is asked for: the presets and the build config, every value checked as given.

An empty or zero value is an error, never the preset's; a value that is not given (None) takes the
preset's. `BuildConfig.resolved()` is the one place both happen.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

from atlasgen.build.dataset import DEFAULT_CHUNK, DEFAULT_EXAMPLES, DEFAULT_SHORT_SIDE, check_options
from atlasgen.build.kinds import DEFAULT_METHODS, METHODS, WIRING_K
from atlasgen.errors import AtlasgenError
from atlasgen.model.applications import application
from atlasgen.model.weights import VGG16_LAYERS
from atlasgen.names import check_atlas_name
from atlasgen.params import MAX_DIVERSITY, PRECISIONS, check_precision


@dataclass(frozen=True)
class Preset:
    weights: str
    layers: tuple[str, ...] | None  # None: every conv layer
    filters: str | None  # None: every filter
    size: int
    steps: int
    diversity: int  # images in each filter's diversity set (0: none)


PRESETS = {
    # The README's offline main job: the first conv of every block, a few filters, minutes on a CPU.
    "quick": Preset("hed-bsds500", tuple(name for name in VGG16_LAYERS if name.endswith("_conv1")), "0-3", 64, 64, 2),
    # Publication settings for a GPU: every filter of every conv layer. Diversity 2, not 4: each image
    # costs a whole-filter image, and 4 would more than double the atlas (benchmarks/projection.py).
    "full": Preset("imagenet", None, None, 224, 512, 2),
}
DEFAULT_PRESET = "full"

#: More steps than this would need a history too large to keep, and years on a CPU.
MAX_STEPS = 100_000
#: The most links a filter's wiring lists in each direction: every one is in atlas.json, with its slice.
MAX_WIRING_K = 64
#: Whole-number options: (option, config field, least value, greatest value or None).
WHOLE_NUMBERS = (("--size", "size", 8, None), ("--steps", "steps", 1, MAX_STEPS),
                 ("--batch-size", "batch_size", 1, None), ("--seed", "seed", 0, None),
                 ("--wiring-k", "wiring_k", 1, MAX_WIRING_K), ("--diversity", "diversity", 0, MAX_DIVERSITY))
#: What the dataset options fall back to when not given.
DATASET_DEFAULTS = {"dataset_size": DEFAULT_SHORT_SIDE, "examples": DEFAULT_EXAMPLES, "dataset_chunk": DEFAULT_CHUNK}


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build is asked for; `None` fields fall back to the preset's value, and every
    other value is checked as given (an empty or zero value is an error, never the preset's)."""

    preset: str = DEFAULT_PRESET
    # A keras.applications model by name (atlasgen.model.applications); None: VGG16, or a .keras file's own.
    model: str | None = None
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
    methods: tuple[str, ...] = DEFAULT_METHODS  # whole-filter synthesis methods: lucid, maco or both
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
    # Each filter's wiring: its strongest inputs, inhibitors and outputs, this many of each (None: WIRING_K).
    wiring_k: int | None = None
    # Images in each filter's diversity set, optimised together (0: none; None: the preset's).
    diversity: int | None = None

    def resolved(self) -> "BuildConfig":
        """The config with every value checked and every value not given taken from the preset."""
        if self.preset not in PRESETS:
            raise AtlasgenError(f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        for check in (_check_selection, _check_numbers, _check_methods, _check_diversity, _check_texts, _check_dataset):
            check(self)
        preset = PRESETS[self.preset]
        given = {name: getattr(self, name) for name in ("weights", "layers", "filters", "size", "steps")}
        defaults = {name: getattr(preset, name) for name in given}
        if self.model not in (None, "vgg16"):
            # The preset's weights and layers are VGG16's: another model takes ImageNet's weights and
            # the preset's number of its own layers, spread over its depth (`spread_layers`).
            defaults.update(weights="imagenet", layers=None)
        given.update({name: getattr(self, name) for name in DATASET_DEFAULTS})
        defaults.update(DATASET_DEFAULTS)
        return replace(
            self,
            **{name: value if value is not None else defaults[name] for name, value in given.items()},
            methods=tuple(m for m in METHODS if m in self.methods),  # one order, each once
            precision=self.precision or default_precision(),
            wiring_k=self.wiring_k if self.wiring_k is not None else WIRING_K,
            # The preset's set is Lucid's: a MACO-only build has none (one asked for is checked above).
            diversity=self.diversity if self.diversity is not None else preset.diversity if "lucid" in self.methods else 0,
        )


def _check_selection(config: BuildConfig) -> None:
    if config.model is not None:
        application(config.model)  # empty or unknown: one line listing the names
    if config.weights is not None and not config.weights.strip():
        raise AtlasgenError("--weights is empty; give imagenet, random, hed-bsds500 or a weights file")
    if config.layers is not None and (not config.layers or not all(name.strip() for name in config.layers)):
        raise AtlasgenError("--layers has an empty name; give conv layer names such as block1_conv1,block3_conv1")
    if config.filters is not None and not config.filters.strip():
        raise AtlasgenError("--filters is empty; give indices and ranges such as 0-7,12, or all")


def _check_numbers(config: BuildConfig) -> None:
    for option, name, low, high in WHOLE_NUMBERS:
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low
                                  or high is not None and value > high):
            limit = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise AtlasgenError(f"{option} {value!r} is out of range; give a whole number {limit}")


def _check_diversity(config: BuildConfig) -> None:
    if config.diversity == 1:
        raise AtlasgenError("--diversity 1 is one image with no other to differ from; give 2 or more, or 0 to turn it off")
    if config.diversity and "lucid" not in config.methods:
        raise AtlasgenError(f"--diversity {config.diversity} uses Lucid's method; add lucid to --method, or give --diversity 0")


def _check_methods(config: BuildConfig) -> None:
    methods = config.methods
    if isinstance(methods, str) or not methods or not all(m.strip() for m in methods):
        raise AtlasgenError(f"--method is empty; give one or more of {', '.join(METHODS)}, e.g. lucid,maco")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise AtlasgenError(f"--method {unknown[0]!r} is not a synthesis method; use one or more of {', '.join(METHODS)}")
    if config.precision is not None:
        if not isinstance(config.precision, str) or not config.precision.strip():
            raise AtlasgenError(f"--precision is empty; give one of {', '.join(PRECISIONS)}")
        check_precision(config.precision, "--precision")


def _check_texts(config: BuildConfig) -> None:
    if config.base_url is not None:
        from atlasgen.site.render import check_base_url  # the rule the site applies

        check_base_url(config.base_url)
    if config.name is not None:
        check_atlas_name(config.name)
    for option, value in [("--title", config.title)] + [("--author", a) for a in config.authors]:
        # A control character, a line break or an undecodable byte (a lone surrogate) is not plain text.
        if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 300
                                  or any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value)):
            raise AtlasgenError(f"{option} {str(value)[:40]!r} must be plain text of 1 to 300 characters on one line")


def _check_dataset(config: BuildConfig) -> None:
    if config.dataset is not None and not str(config.dataset).strip():
        raise AtlasgenError("--dataset is empty; give a folder of images")
    check_options(*(getattr(config, name) if getattr(config, name) is not None else default
                    for name, default in DATASET_DEFAULTS.items()))


def spread_layers(convs: list[str], preset: str) -> list[str] | None:
    """For a model other than VGG16 with no --layers: as many of its conv layers as the preset names
    of VGG16's (quick: 5), evenly spread from the first to the last; None (every layer) for a preset
    that takes every layer."""
    count = len(PRESETS[preset].layers or ())
    if not count or count >= len(convs):
        return None
    return [convs[round(i * (len(convs) - 1) / (count - 1))] for i in range(count)]


def default_precision() -> str:
    """bfloat16 where it pays (a GPU's tensor cores), float32 where it does not."""
    from atlasgen.synthesis.engine import synthesis_device  # asks TensorFlow, so only when needed

    return "float32" if synthesis_device() == "CPU" else "mixed"


def parse_shard(spec: str) -> tuple[int, int]:
    """`--shard K/N` as (K, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise AtlasgenError(f"--shard {spec!r} is not K/N with 1 <= K <= N; use e.g. --shard 2/8")
    return int(match.group(1)), int(match.group(2))
