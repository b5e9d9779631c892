"""The page budget: an atlas's bytes on GitHub Pages, estimated from its settings before anything is built.

GitHub Pages publishes sites of at most 1 GB. `atlasgen build` says, in one log line right after the
plan is made, whether every filter of the model's conv layers at these settings (what the after-build
line "all N filters of M at these settings" projects) fits; when it does not, which settings would, each
computed from this byte model. It never stops a build.

The byte model, per filter: its synthesised images (whole-filter, negative, the map on the whole-filter
image, centre neuron, each diversity image, each MACO image) grow with the image size as
SYNTH_BYTES * (size / 64) ** SYNTH_POWER each (WebP compresses a larger image better: under size²);
the receptive-field crop (224 px, cut from the whole-filter image) RF_CROP_BYTES from 64 px up; each
dataset-example crop (top and bottom) by its layer's receptive field (`example_bytes`); each probe's
heatmap and overlay MAP_BYTES_PER_PIXEL per pixel of the probe photo; and its text (the filter's page,
unit.json, its shares of atlas.json, of its layer's page and of the file list) TEXT_BYTES at the quick
preset's settings, plus or minus
TEXT_PER_EXAMPLE, TEXT_PER_VIEW, TEXT_PER_PROBE and TEXT_PER_POINT for each example, view, probe and
curve point more or fewer. Per atlas: the dataset photos it shows (DATASET_BYTES_PER_PIXEL at the
dataset size), the probe photos (PROBE_BYTES_PER_PIXEL), a layer page each (LAYER_PAGE_BYTES) and
SITE_BYTES (the root pages, static/, the atlas's index and search.json).

How the constants were measured: `python benchmarks/page_budget.py SITE...` on builds of the offline
trunk, each `atlasgen build --preset quick --store S --out SITE` (20 filters: 0-3 of the five
blockN_conv1 layers, 64 steps, diversity 2, 9 examples, scikit-image's photos and astronaut probe) with
--size 32, 64, 96 and (--filters 0) 224, then at 32 px with --examples 3, with --diversity 0, with two
probes (--probe a folder of astronaut and coffee) and with --steps 8. The synthesised images' constants
are the least-squares fit of log bytes on log size over the four sizes; the text's per-example,
per-view, per-probe and per-point bytes are the differences between the 32 px builds; the example
crops' constants come from each layer's mean crop (below). Each of these builds' whole site is within
3.5% of the model's estimate (4.57 MB against 4.48 at 32 px; 1.84 against 1.79 at 224 px), and so are
builds the other constants were not read from: --size 64 --steps 512 --filters 0, 1.44 MB against 1.41
(+2.3%; 512 steps make the images a little larger, the curves no longer); block1_conv1 alone, +3.5%;
block3_conv1 and block5_conv1, +5.7%; ResNet50 with random weights (--model resnet50 --weights random
--preset quick --filters 0-1 --size 32 --steps 8), 3.06 MB against 2.89 (+5.8%).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from atlasgen.errors import AtlasgenError

#: GitHub Pages: "Published GitHub Pages sites may be no larger than 1 GB."
PAGES_LIMIT = 1_000_000_000
#: The synthesised images: bytes of one at 64 px, and how they grow with the size (measured per image:
#: 631 B at 32 px, 2,007 at 64, 4,062 at 96, 15,098 at 224; the fit gives 645, 2,002, 3,882, 15,503).
SYNTH_BYTES = 2001.5
SYNTH_POWER = 1.634
#: The receptive-field crop (shown at 224 px, cut from the whole-filter image) and the first layer's
#: kernel, per filter: 7,541 B at 64 px, 7,909 at 96, 7,052 at 224 (the crop shows the field, not the
#: image), 4,620 at 32 (a field cut from a smaller image); below 64 px as (size / 64) ** RF_CROP_POWER.
RF_CROP_BYTES = 7500.0
RF_CROP_POWER = 0.70
#: One dataset-example crop, by its layer's receptive field r at the dataset's size: a field up to
#: EXAMPLE_DISPLAY (96 px) is zoomed to 96 px and weighs EXAMPLE_ZOOM_BYTES x 96 x r (its detail grows
#: with r); a larger one is cut as it is, min(r, the photo's shorter side) a side, at
#: EXAMPLE_BYTES_PER_PIXEL; a global field's crop is the whole photo. Measured per layer (B per crop):
#: VGG16 r = 3: 137, 10: 654, 24: 680, 60: 2,126, 132: 3,295; ResNet50 (random weights, 8 steps)
#: r = 7: 590, 35: 1,309, 99: 2,511, 259: 9,881, 483: 18,091.
EXAMPLE_DISPLAY = 96
EXAMPLE_ZOOM_BYTES = 0.35
EXAMPLE_BYTES_PER_PIXEL = 0.25
#: One probe's heatmap and overlay, per pixel of the probe photo (at most 512 px a side): 0.191 with
#: the astronaut, 0.209 with the astronaut and coffee.
MAP_BYTES_PER_PIXEL = 0.200
#: A filter's text at the quick preset's settings (9 examples, diversity 2, one probe, 32 curve points
#: a curve): its page, unit.json, its share of atlas.json and of its layer page and its 1,684 B of the
#: list of the files atlasgen wrote (--out/.atlasgen-files.json: 34,973 B at 20 filters, 8,031 at 4);
#: then what each example (top or bottom), synthesised view, probe and curve point adds: 123,752 B at
#: 32 px less the layer page's 4,178 a filter, plus its 2,594; at --examples 3, 101,263 (1,874 an
#: example); at --diversity 0, 109,318 (2 views and their 64 curve points); with 2 probes, 126,986
#: (3,234 a probe); at --steps 8 (9 points a curve, not 32), 108,120 (136 B a point over 5 curves).
TEXT_BYTES = 123_852.0
TEXT_PER_EXAMPLE = 1874.0
TEXT_PER_VIEW = 2868.0
TEXT_PER_PROBE = 3234.0
TEXT_PER_POINT = 135.9
#: A layer page: 8,977 B with one filter (--size 224 --filters 0), 16,760 with four: 6,383 and 2,594 a filter.
LAYER_PAGE_BYTES = 6383.0
#: The text's settings as measured.
TEXT_AT = {"examples": 9, "views": 6, "probes": 1, "points": 5 * 32}
#: Shared by an atlas's filters: the dataset photos per pixel (0.1605), the probe photos per pixel
#: (0.2018 and 0.2276), the rest (root pages, static/, the atlas's index and search.json, the file
#: list's own 1,295 B: 40,236 to 46,997 B).
DATASET_BYTES_PER_PIXEL = 0.1605
PROBE_BYTES_PER_PIXEL = 0.215
SITE_BYTES = 43_000.0
#: A dataset photo's pixels over its shorter side squared (scikit-image's 18 photos: 1.32).
DATASET_ASPECT = 1.32
#: Curve points a synthesised image's run records (build.compute.CURVE_POINTS).
CURVE_POINTS = 32
#: Sizes a suggestion may name: a whole number of 8 px, at least this.
SMALLEST_SIZE = 16


@dataclass(frozen=True)
class Settings:
    """What the bytes of an atlas depend on."""

    size: int
    steps: int
    diversity: int
    examples: int
    methods: tuple[str, ...]
    probe_pixels: tuple[int, ...]  # each probe photo's pixels
    dataset_images: int
    dataset_side: int

    @property
    def views(self) -> int:
        """Synthesised images per filter: the centre neuron, Lucid's whole-filter, negative, its map and
        diversity set, MACO's image, transparency and negative."""
        lucid = 3 + self.diversity if "lucid" in self.methods else 0
        return 1 + lucid + (3 if "maco" in self.methods else 0)


def example_bytes(s: Settings, field: int | None) -> float:
    """One dataset-example crop of a layer whose receptive field is `field` px a side (None: global)."""
    if field is not None and field <= EXAMPLE_DISPLAY:
        return EXAMPLE_ZOOM_BYTES * EXAMPLE_DISPLAY * field
    pixels = DATASET_ASPECT * s.dataset_side**2 if field is None else min(field, s.dataset_side) ** 2
    return EXAMPLE_BYTES_PER_PIXEL * pixels


def filter_bytes(s: Settings, field: int | None) -> float:
    """One filter's bytes in the site at these settings, of a layer whose receptive field is `field`
    px a side (None: global)."""
    synth = s.views * SYNTH_BYTES * (s.size / 64) ** SYNTH_POWER
    crops = RF_CROP_BYTES * min(1.0, s.size / 64) ** RF_CROP_POWER + 2 * s.examples * example_bytes(s, field)
    maps = MAP_BYTES_PER_PIXEL * sum(s.probe_pixels)
    return synth + crops + maps + text_bytes(s)


def text_bytes(s: Settings) -> float:
    """A filter's page, unit.json and its shares of atlas.json and its layer page."""
    points = min(s.steps + 1, CURVE_POINTS) * (s.views - 1)  # every synthesised image but the map has a curve
    return (TEXT_BYTES + TEXT_PER_EXAMPLE * 2 * (s.examples - TEXT_AT["examples"])
            + TEXT_PER_VIEW * (s.views - TEXT_AT["views"]) + TEXT_PER_PROBE * (len(s.probe_pixels) - TEXT_AT["probes"])
            + TEXT_PER_POINT * (points - TEXT_AT["points"]))


def shared_bytes(s: Settings, filters: int) -> float:
    """An atlas's bytes that no one filter owns: the dataset photos its `filters` filters' examples
    can come from (at most two sets of examples a filter, each a photo of its own), the probe photos,
    the root pages and static files."""
    photos = min(s.dataset_images, 2 * s.examples * filters)
    dataset = DATASET_BYTES_PER_PIXEL * photos * DATASET_ASPECT * s.dataset_side**2
    return dataset + PROBE_BYTES_PER_PIXEL * sum(s.probe_pixels) + SITE_BYTES


#: A layer as the budget sees it: its name, its filters (in the atlas), its receptive field (None: global).
Layer = tuple[str, int, "int | None"]


def atlas_bytes(s: Settings, layers: list[Layer]) -> float:
    """The site's bytes for an atlas of these layers (and as many filters of each) at these settings."""
    own = sum(count * filter_bytes(s, field) + LAYER_PAGE_BYTES for _, count, field in layers if count)
    return shared_bytes(s, sum(count for _, count, _ in layers)) + own


@dataclass(frozen=True)
class Budget:
    """The page budget of one build: the planned atlas and the whole model at its settings."""

    model: str
    planned: int  # filters this build shows
    planned_bytes: float
    model_filters: int  # every filter of the model's conv layers
    model_bytes: float
    suggestions: tuple[str, ...]  # settings that would fit, when the whole model does not

    @property
    def fits(self) -> bool:
        return self.model_bytes <= PAGES_LIMIT

    def line(self) -> str:
        """The build log's one line."""
        head = (f"page budget: this atlas's {self.planned:,} filters ~ {_size(self.planned_bytes)}; all "
                f"{self.model_filters:,} filters of {self.model} at these settings ~ {_size(self.model_bytes)}")
        if self.fits:
            return f"{head}, within GitHub Pages' 1 GB"
        tail = "; ".join(self.suggestions) if self.suggestions else "no single setting brings it under"
        return f"{head}, over GitHub Pages' 1 GB (the build goes on); would fit: {tail}"


def page_budget(model: str, settings: Settings, layers: list[Layer], planned: list[Layer]) -> Budget:
    """The budget of an atlas of the `planned` layers (each with the filters it shows) of a model whose
    conv layers are `layers` ((name, filters, field), in order) at these settings."""
    _check(settings, layers, planned)
    total = sum(count for _, count, _ in layers)
    model_bytes = atlas_bytes(settings, layers)
    suggestions = () if model_bytes <= PAGES_LIMIT else tuple(_suggestions(settings, layers))
    return Budget(model, sum(count for _, count, _ in planned), atlas_bytes(settings, planned), total, model_bytes,
                  suggestions)


def _check(settings: Settings, layers: list[Layer], planned: list[Layer]) -> None:
    numbers = [settings.size, settings.steps, settings.examples, settings.dataset_side, settings.diversity,
               settings.dataset_images, *settings.probe_pixels, *(n for _, n, _ in layers + planned),
               *(field for _, _, field in layers + planned if field is not None)]
    if not layers or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in numbers):
        raise AtlasgenError("the page budget needs whole, non-negative numbers and at least one conv layer")


def _suggestions(s: Settings, layers: list[Layer]) -> list[str]:
    """Each change of one setting that brings every filter of the model under the limit, computed."""
    found = [_smaller_size(s, layers)]
    if s.diversity:
        found.append(_without_diversity(s, layers))
    found.append(_fewer_examples(s, layers))
    if len(s.probe_pixels) > 1 and _fits(replace(s, probe_pixels=(min(s.probe_pixels),)), layers):
        found.append("one probe photo")
    found += [_first_filters(s, layers), _first_layers(s, layers)]
    return [text for text in found if text]


def _without_diversity(s: Settings, layers: list[Layer]) -> str | None:
    """--diversity 0, and the largest --size with it if it alone is not enough."""
    plain = replace(s, diversity=0)
    if _fits(plain, layers):
        return "--diversity 0"
    smaller = _smaller_size(plain, layers)
    return f"--diversity 0 with {smaller}" if smaller else None


def _fits(s: Settings, layers: list[Layer]) -> bool:
    return atlas_bytes(s, layers) <= PAGES_LIMIT


def _smaller_size(s: Settings, layers: list[Layer]) -> str | None:
    """The largest --size (a multiple of 8, smaller than the one given) at which every filter fits."""
    size = (s.size - 1) // 8 * 8
    while size >= SMALLEST_SIZE and not _fits(replace(s, size=size), layers):
        size -= 8
    return f"--size {size}" if size >= SMALLEST_SIZE else None


def _fewer_examples(s: Settings, layers: list[Layer]) -> str | None:
    """The most --examples (fewer than given) at which every filter fits."""
    fitting = [n for n in range(s.examples - 1, 0, -1) if _fits(replace(s, examples=n), layers)]
    return f"--examples {fitting[0]}" if fitting else None


def first_filters(layers: list[Layer], k: int) -> list[Layer]:
    """The layers with at most their first k filters each (--filters 0-(k-1))."""
    return [(name, min(k, count), field) for name, count, field in layers]


def _first_filters(s: Settings, layers: list[Layer]) -> str | None:
    """The most filters a layer, the same on every layer, at which the model fits."""
    low, high = 0, max(count for _, count, _ in layers)  # low fits (nothing but the shared files), high does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _fits(s, first_filters(layers, middle)) else (low, middle)
    if not low or not _fits(s, first_filters(layers, low)):
        return None
    shown = sum(count for _, count, _ in first_filters(layers, low))
    return f"--filters {f'0-{low - 1}' if low > 1 else '0'} ({shown:,} filters)"


def _first_layers(s: Settings, layers: list[Layer]) -> str | None:
    """The most of the model's first conv layers, every filter of each, that fit."""
    first = 0
    while first < len(layers) and _fits(s, layers[:first + 1]):
        first += 1
    if not first:
        return None
    shown = sum(count for _, count, _ in layers[:first])
    last = layers[first - 1][0]
    return f"--layers with its first {first} of {len(layers)} conv layers, up to {last} ({shown:,} filters)"


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
