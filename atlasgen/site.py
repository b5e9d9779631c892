"""The static site: Jinja2 pages rendered from atlas.json into the output folder.

Read top to bottom: load the manifest (typed records, checked against their schema) -> copy static
assets -> render index, layer pages, filter pages, 404 and sitemap, each from a page context ->
prune pages an earlier render wrote and this one did not -> report sizes. Every link is
page-relative (`root` is the way back to the site's root), so the site works under /<repo>/ on
GitHub Pages and from any static file server; --base-url is used only for canonical and Open
Graph URLs and the sitemap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

import atlasgen
from atlasgen.fs import OwnedFiles
from atlasgen.manifest import MANIFEST, Manifest, load_manifest

LAYER_THUMB = 96
STRIP_THUMBS = 16
BIBTEX_SPECIAL = {c: "\\" + c for c in "{}%$&#_"}
STAGE = "site"


def templates_dir() -> Path:
    """The templates: inside the installed package (a wheel), or beside it in a source checkout."""
    package = Path(atlasgen.__file__).resolve().parent
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


@dataclass
class RenderResult:
    pages: int
    filters: int
    site_bytes: int
    bytes_per_filter: float
    model: str
    model_filters: int

    @property
    def projected_model_bytes(self) -> float:
        """The site's size for every filter of the model at these settings."""
        return self.bytes_per_filter * self.model_filters


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(templates_dir()),
        autoescape=select_autoescape(["html", "xml"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_site(out: Path, base_url: str | None = None, force: bool = False) -> RenderResult:
    """Renders every page of the atlas in `out` from its atlas.json. Without `force`, a folder that
    holds files atlasgen did not write (besides atlas.json) is refused."""
    atlas = load_manifest(out)
    env = environment()
    owned = OwnedFiles(out, STAGE, force, expected=frozenset({MANIFEST}))
    base = base_url.rstrip("/") + "/" if base_url else None
    for source in sorted((templates_dir() / "static").iterdir()):
        owned.write(f"static/{source.name}", source.read_bytes())
    common = {"atlas": atlas, "base_href": None, "canonical": None, "og_image": None, "thumb": LAYER_THUMB}
    probes = {p.name: p for p in atlas.probes}
    size = atlas.parameters.size

    def page(template: str, path: str, depth: int, **context) -> None:
        values = {**common, "root": "../" * depth, **context}
        if base and "canonical" not in context:
            values["canonical"] = base + path.removesuffix("index.html")
        owned.write(path, env.get_template(template).render(**values).encode())

    layers = atlas.layers
    first = whole_filter_image(layers[0].units[0]) if layers and layers[0].units else None
    page("index.html", "index.html", 0, strip=STRIP_THUMBS, thumb=64, og_image=base + first if base and first else None)
    for li, layer in enumerate(layers):
        prev_layer = layers[li - 1] if li > 0 else None
        next_layer = layers[li + 1] if li + 1 < len(layers) else None
        views = layer_views(layer, atlas.probes)
        page("layer.html", layer.path + "index.html", 2, layer=layer, views=views,
             prev_layer=prev_layer, next_layer=next_layer)
        units = layer.units
        for ui, unit in enumerate(units):
            top, left, bottom, right = unit.rf_box
            box = {"top": 100 * top / size, "left": 100 * left / size,
                   "height": 100 * (bottom - top) / size, "width": 100 * (right - left) / size}
            permalink = base + unit.page if base else unit.page
            page(
                "filter.html", unit.page + "index.html", 3,
                layer=layer, unit=unit, maps=[(m, probes[m.probe]) for m in unit.activation_maps], box=box, size=size,
                prev_unit=units[ui - 1] if ui > 0 else None, next_unit=units[ui + 1] if ui + 1 < len(units) else None,
                prev_layer=prev_layer, next_layer=next_layer, permalink=permalink,
                bibtex=bibtex(atlas, layer.name, unit.index, permalink),
                og_image=base + whole_filter_image(unit) if base else None,
            )
    # GitHub Pages serves the root 404.html at any depth, so it links from the site's own root.
    page("404.html", "404.html", 0, base_href=urlparse(base).path if base else "/")
    if base:
        urls = [base] + [base + layer.path for layer in layers] + [base + u.page for layer in layers for u in layer.units]
        owned.write("sitemap.xml", env.get_template("sitemap.xml").render(urls=urls).encode())
    owned.write(".nojekyll", b"")
    owned.finish()
    pages = 2 + len(layers) + atlas.units
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    per_filter = total / atlas.units if atlas.units else 0.0
    return RenderResult(pages, atlas.units, total, per_filter, atlas.model, atlas.model_filters)


#: The layer page's grids of whole-filter images: (view id, tab label, output name), shown when every unit has it.
IMAGE_VIEWS = (
    ("channel", "Whole filter", "channel"),
    ("maco", "Whole filter (MACO)", "maco_channel"),
    ("neuron", "Centre neuron (receptive field)", "rf_crop"),
)


def whole_filter_image(unit) -> str:
    """The unit's whole-filter image for thumbnails and previews: Lucid's, else MACO's."""
    return unit.images["channel"] if "channel" in unit.images else unit.images["maco_channel"]


def layer_views(layer, probes) -> list[dict]:
    """The layer page's tabs: a grid per synthesised image the units have, then each unit's top dataset
    example, then one per probe photo. A cell is (unit, image path, the dataset example it shows or None)."""
    units = layer.units
    views = [
        {"id": view, "label": label, "height": LAYER_THUMB, "crops": False,
         "cells": [(u, u.images[name], None) for u in units]}
        for view, label, name in IMAGE_VIEWS if units and all(name in u.images for u in units)
    ]
    if units and all(u.dataset_examples for u in units):
        views.append({"id": "examples", "label": "Top dataset example", "height": LAYER_THUMB, "crops": True,
                      "cells": [(u, u.dataset_examples[0].image, u.dataset_examples[0]) for u in units]})
    return views + [
        {"id": f"map-{i}", "label": f"Activation on {probe.name}",
         "height": round(LAYER_THUMB * probe.height / probe.width), "crops": False,
         "cells": [(u, u.activation_maps[i].images["overlay"], None) for u in units]}
        for i, probe in enumerate(probes)
    ]


def bibtex(atlas: Manifest, layer: str, index: int, url: str) -> str:
    def tex(text: str) -> str:
        return "".join(BIBTEX_SPECIAL.get(c, c) for c in str(text))

    key = "".join(c if c.isalnum() else "_" for c in f"atlasgen_{atlas.model}_{layer}_{index}")
    return (
        f"@misc{{{key},\n"
        f"  title = {{{{{tex(atlas.model.upper())} {tex(layer)}, filter {index}}}}},\n"
        f"  howpublished = {{\\url{{{url}}}}},\n"
        f"  note = {{Feature visualisation made with atlasgen {atlasgen.__version__}; weights: {tex(atlas.weights.label)}, "
        f"sha256:{atlas.weights.fingerprint[:16]}}}\n"
        f"}}"
    )
