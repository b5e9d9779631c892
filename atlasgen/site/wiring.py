"""A filter's wiring as the pages and figures show it, from atlas.json's `wiring` (manifest.WiringRecord).

Each link is resolved against the atlas: a filter that was built links to its page (and shows its
picture), one that was not is named and never linked. Each kernel slice is drawn as a small diverging
heatmap: its weights binned into WIRING_LEVELS colour classes (static/atlas.css `.w0` … `.w10`, blue
for negative, white for 0, red for positive), on one scale per page, so the slices of a page compare.
"""

from __future__ import annotations

from dataclasses import dataclass

from atlasgen.manifest import Manifest, UnitRecord, WiringLink, WiringRecord

#: Colour classes of a slice's weights: 0 is the most negative, the middle one 0, the last the most positive.
WIRING_LEVELS = 11
#: CSS px per weight of a drawn slice.
SLICE_CELL = 10
#: The inputs a cell of the layer page's wiring grid lists.
LAYER_INPUTS = 3

#: What each list is, on the filter page: (field, heading, the wiring end it links to).
GROUPS = (("inputs", "Inputs: what excites it most", "source"),
          ("inhibitors", "Inhibitors: what inhibits it most", "source"),
          ("outputs", "Outputs: what it excites most", "target"))


@dataclass(frozen=True)
class WiredFilter:
    """One link as a page draws it: the link, the linked filter's unit when the atlas built it, and
    its slice's cells as (x, y, colour class)."""

    link: WiringLink
    unit: UnitRecord | None
    cells: list[tuple[int, int, str]]
    columns: int  # the slice's width and height, in weights
    rows: int

    @property
    def width(self) -> int:
        """The drawn slice's width in CSS px."""
        return SLICE_CELL * self.columns

    @property
    def height(self) -> int:
        return SLICE_CELL * self.rows


@dataclass(frozen=True)
class WiringGroup:
    id: str  # inputs, inhibitors or outputs
    heading: str
    layer: str | None  # the layer the links are in; None when the wiring is not claimed that way
    links: list[WiredFilter]
    reason: str | None  # why no wiring is claimed that way, or None


@dataclass(frozen=True)
class WiringView:
    groups: list[WiringGroup]
    scale: float  # the largest absolute weight of any slice shown: the ends of the colour key
    key: list[tuple[str, float]]  # (colour class, the weight at its middle), most negative first
    folded: dict[str, list[str]]


class BuiltUnits:
    """The units an atlas built, by (layer name, filter), made once per atlas."""

    def __init__(self):
        self.atlas: Manifest | None = None
        self.units: dict[tuple[str, int], UnitRecord] = {}

    def __call__(self, atlas: Manifest) -> dict[tuple[str, int], UnitRecord]:
        if atlas is not self.atlas:
            self.atlas = atlas
            self.units = {(layer.name, unit.index): unit for layer in atlas.layers for unit in layer.units}
        return self.units


built_units = BuiltUnits()


def level(weight: float, scale: float) -> str:
    """The colour class of `weight` on a key from -scale to scale."""
    middle = WIRING_LEVELS // 2
    if scale <= 0:
        return f"w{middle}"
    step = round(weight / scale * middle)
    return f"w{middle + max(-middle, min(middle, step))}"


def slice_scale(wiring: WiringRecord) -> float:
    """The largest absolute weight of any slice of the wiring."""
    return max((abs(w) for name, *_ in GROUPS for link in getattr(wiring, name) for row in link.slice for w in row),
               default=0.0)


def wired(link: WiringLink, built: dict, scale: float) -> WiredFilter:
    cells = [(x, y, level(w, scale)) for y, row in enumerate(link.slice) for x, w in enumerate(row)]
    return WiredFilter(link, built.get((link.layer, link.filter)), cells, len(link.slice[0]), len(link.slice))


def wiring_view(atlas: Manifest, unit: UnitRecord) -> WiringView | None:
    """What the filter page's Wiring section shows of `unit` (None when atlas.json has no wiring for it)."""
    wiring = unit.wiring
    if wiring is None:
        return None
    built = built_units(atlas)
    scale = slice_scale(wiring)
    groups = []
    for name, heading, end in GROUPS:
        layer = getattr(wiring, end)
        way = "inputs" if end == "source" else "outputs"
        groups.append(WiringGroup(name, heading, layer.name if layer else None,
                                  [wired(link, built, scale) for link in getattr(wiring, name)], wiring.unclaimed.get(way)))
    middle = WIRING_LEVELS // 2
    key = [(f"w{i}", scale * (i - middle) / middle) for i in range(WIRING_LEVELS)]
    return WiringView(groups, scale, key, wiring.folded)


def top_inputs(atlas: Manifest, unit: UnitRecord, count: int = LAYER_INPUTS) -> list[tuple[WiringLink, UnitRecord | None]]:
    """The unit's strongest inputs for the layer page, each with its unit when the atlas built it."""
    if unit.wiring is None:
        return []
    built = built_units(atlas)
    return [(link, built.get((link.layer, link.filter))) for link in unit.wiring.inputs[:count]]
