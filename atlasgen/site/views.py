"""The views of a filter, from the kinds registry's one table (`atlasgen.build.kinds.VIEWS`): which a
unit has, the layer page's tabs and their cells, and the images a figure's cell draws.

Every view shows one of these: an image of the unit (`image`), a list of them (`faces`, the diversity
set), the zoomed receptive-field crop
(`rf-crop`, whose size follows the box), its kernel (`kernel`, whose size follows its taps), its dataset
examples (`examples`) or its activation maps on the probe photos (`maps`, one tab per photo). A new image
kind is a new row of the table and nothing here.
"""

from __future__ import annotations

from atlasgen.build.kinds import VIEWS, View
from atlasgen.codec import RF_CROP_DISPLAY, kernel_size, zoomed_size

LAYER_THUMB = 96
#: The dataset examples a figure's examples cell shows, side by side (highest first; lowest, for the negative ones).
EXAMPLES_IN_CELL = 3
#: The views `atlasgen figure --columns` can draw, and those it draws when not asked.
COLUMNS: dict[str, View] = {view.id: view for view in VIEWS.values() if view.column}
DEFAULT_COLUMNS = tuple(view.id for view in COLUMNS.values() if view.default_column)


def examples_of(view: View, unit) -> list:
    """The dataset examples an examples view shows: the unit's record field `view.examples` (top k,
    highest first, or bottom k, lowest first)."""
    return getattr(unit, view.examples, None) or []


def example_anchor(view: View) -> str:
    """The id prefix of an examples view's context figures on the filter page ("example-" for the top
    examples, so their links stay what they were; "<view id>-" for any other)."""
    return "example-" if view.examples == "dataset_examples" else f"{view.id}-"


def has_view(view: View, unit) -> bool:
    """Whether the atlas built this view for the unit."""
    if view.shows == "examples":
        return bool(examples_of(view, unit))
    if view.shows == "wiring":
        return getattr(unit, "wiring", None) is not None
    if view.shows == "maps":
        return bool(unit.activation_maps) and all("overlay" in m.images and "heatmap" in m.images
                                                  for m in unit.activation_maps)
    return view.image in unit.images


def unit_views(unit) -> list[View]:
    """The views the unit has, in the filter page's order."""
    return [view for view in VIEWS.values() if has_view(view, unit)]


def thumbnail(unit) -> str:
    """The unit's picture for thumbnails and previews: its first image view (the whole-filter image, by
    the first method built), else any image it has."""
    shown = (unit.images[v.image] for v in VIEWS.values() if v.shows == "image" and v.image in unit.images)
    return next(shown, None) or next(p if isinstance(p, str) else p[0] for p in unit.images.values())


def image_size(view: View, unit, size: int) -> tuple[int, int]:
    """(width, height) in pixels of the image an image view shows; `size` is the synthesised images' side."""
    if view.shows == "kernel":
        return kernel_size(unit.kernel.taps)
    return zoomed_size(unit.rf_box, RF_CROP_DISPLAY) if view.shows == "rf-crop" else (size, size)


def layer_tabs(layer, probes, size: int) -> list[dict]:
    """The layer page's tabs: one per view with a tab that every unit of the layer has (a map view: one
    per probe photo). A cell is (unit, image path, the dataset example it shows or None, the image's
    natural (width, height) in pixels)."""
    units = layer.units
    tabs = []
    for view in VIEWS.values():
        if not (view.tab and units and all(has_view(view, u) for u in units)):
            continue
        if view.layer_template:  # the tab draws its own cells: one per unit, the unit's picture
            tabs.append({"id": view.id, "label": view.label, "height": LAYER_THUMB, "crops": False, "metrics": None,
                         "include": f"views/{view.layer_template}", "cells": [(u, thumbnail(u), None, (size, size)) for u in units]})
            continue
        if view.shows == "maps":
            tabs += [{"id": f"map-{i}", "label": f"{view.label} {probe.name}",
                      "height": round(LAYER_THUMB * probe.height / probe.width), "crops": False, "metrics": None,
                      "cells": [(u, u.activation_maps[i].images["overlay"], None, (probe.width, probe.height)) for u in units]}
                     for i, probe in enumerate(probes)]
        elif view.shows == "examples":
            firsts = [(u, examples_of(view, u)[0]) for u in units]
            tabs.append({"id": view.id, "label": view.label, "height": LAYER_THUMB, "crops": True, "metrics": None,
                         "anchor": example_anchor(view) + "1",
                         "cells": [(u, first.image, first, _box_size(first.box)) for u, first in firsts]})
        else:
            tabs.append({"id": view.id, "label": view.label, "height": LAYER_THUMB, "crops": False, "metrics": view.metrics,
                         "cells": [(u, u.images[view.image], None, image_size(view, u, size)) for u in units]})
    return tabs


def faint_units(layer) -> list:
    """The units of the layer with a faint-driven whole-filter image, by any method."""
    return [u for u in layer.units if any(m.faint for m in u.metrics.images.values())]


def cell_images(view: View, unit) -> list[str]:
    """The paths of the images a figure's cell of this view draws, left to right."""
    if view.shows == "examples":
        return [example.image for example in examples_of(view, unit)[:EXAMPLES_IN_CELL]]
    if view.shows == "maps":
        return [unit.activation_maps[0].images["heatmap"]]
    if view.shows == "faces":
        return list(unit.images[view.image])
    return [unit.images[view.image]]


def _box_size(box) -> tuple[int, int]:
    top, left, bottom, right = box
    return right - left, bottom - top
