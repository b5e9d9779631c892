"""The static site: Jinja2 pages rendered from atlas.json into the output folder.

Read top to bottom: load the manifest -> copy static assets -> render index, layer pages, filter
pages, 404 and sitemap, each from a page context -> report sizes. Every link is page-relative
(`root` is the way back to the site's root), so the site works under /<repo>/ on GitHub Pages
and from any static file server; --base-url is used only for canonical and Open Graph URLs and
the sitemap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from atlasgen import __version__
from atlasgen.errors import AtlasgenError
from atlasgen.export import MANIFEST, write_if_changed

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
FULL_VGG16_FILTERS = 4224
LAYER_THUMB = 96
STRIP_THUMBS = 16
BIBTEX_SPECIAL = {c: "\\" + c for c in "{}%$&#_"}


@dataclass
class RenderResult:
    pages: int
    filters: int
    site_bytes: int
    bytes_per_filter: float
    projected_full_vgg16_bytes: float


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "xml"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def load_manifest(out: Path) -> dict:
    path = out / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise AtlasgenError(f"{path} does not exist; run `atlasgen build` first (render reads its manifest)") from None
    except (OSError, ValueError) as exc:
        raise AtlasgenError(f"{path} is not a readable atlas manifest ({exc}); rebuild with `atlasgen build`") from None


def render_site(out: Path, base_url: str | None = None) -> RenderResult:
    """Renders every page of the atlas in `out` from its atlas.json."""
    atlas = load_manifest(out)
    env = environment()
    base = base_url.rstrip("/") + "/" if base_url else None
    _copy_static(out)
    common = {"atlas": atlas, "base_href": None, "canonical": None, "og_image": None, "thumb": LAYER_THUMB}
    probe_sizes = {p["name"]: (p["width"], p["height"]) for p in atlas["probes"]}

    def page(template: str, path: str, depth: int, **context) -> None:
        values = {**common, "root": "../" * depth, **context}
        if base and "canonical" not in context:
            values["canonical"] = base + path.removesuffix("index.html")
        write_if_changed(out / path, env.get_template(template).render(**values).encode())

    pages = 0
    layers = atlas["layers"]
    first_image = layers[0]["units"][0]["channel_image"] if layers and layers[0]["units"] else None
    page("index.html", "index.html", 0, strip=STRIP_THUMBS, thumb=64,
         og_image=base + first_image if base and first_image else None)
    pages += 1
    for li, layer in enumerate(layers):
        prev_layer = layers[li - 1] if li > 0 else None
        next_layer = layers[li + 1] if li + 1 < len(layers) else None
        views = [
            {"id": "channel", "label": "Whole filter", "height": LAYER_THUMB,
             "cells": [(u, u["channel_image"]) for u in layer["units"]]},
            {"id": "neuron", "label": "Centre neuron (receptive field)", "height": LAYER_THUMB,
             "cells": [(u, u["rf_crop"]) for u in layer["units"]]},
        ] + [
            {"id": f"map-{i}", "label": f"Activation on {probe['name']}",
             "height": round(LAYER_THUMB * probe["height"] / probe["width"]),
             "cells": [(u, u["activation_maps"][i]["overlay"]) for u in layer["units"]]}
            for i, probe in enumerate(atlas["probes"])
        ]
        page("layer.html", layer["path"] + "index.html", 2, layer=layer, views=views,
             prev_layer=prev_layer, next_layer=next_layer)
        pages += 1
        units = layer["units"]
        for ui, unit in enumerate(units):
            size = atlas["parameters"]["size"]
            top, left, bottom, right = unit["rf_box"]
            box = {"top": 100 * top / size, "left": 100 * left / size,
                   "height": 100 * (bottom - top) / size, "width": 100 * (right - left) / size}
            maps = [{**m, "width": probe_sizes[m["probe"]][0], "height": probe_sizes[m["probe"]][1]}
                    for m in unit["activation_maps"]]
            permalink = base + unit["page"] if base else unit["page"]
            page(
                "filter.html", unit["page"] + "index.html", 3,
                layer=layer, unit={**unit, "activation_maps": maps}, box=box, size=size,
                prev_unit=units[ui - 1] if ui > 0 else None, next_unit=units[ui + 1] if ui + 1 < len(units) else None,
                prev_layer=prev_layer, next_layer=next_layer, permalink=permalink,
                bibtex=bibtex(atlas, layer["name"], unit["index"], permalink),
                og_image=base + unit["channel_image"] if base else None,
            )
            pages += 1
    # GitHub Pages serves the root 404.html at any depth, so it links from the site's own root.
    page("404.html", "404.html", 0, base_href=urlparse(base).path if base else "/")
    pages += 1
    if base:
        urls = [base] + [base + layer["path"] for layer in layers] + [base + u["page"] for layer in layers for u in layer["units"]]
        write_if_changed(out / "sitemap.xml", env.get_template("sitemap.xml").render(urls=urls).encode())
    write_if_changed(out / ".nojekyll", b"")
    filters = sum(len(layer["units"]) for layer in layers)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    per_filter = total / filters if filters else 0.0
    return RenderResult(pages, filters, total, per_filter, per_filter * FULL_VGG16_FILTERS)


def bibtex(atlas: dict, layer: str, index: int, url: str) -> str:
    def tex(text: str) -> str:
        return "".join(BIBTEX_SPECIAL.get(c, c) for c in str(text))

    key = "".join(c if c.isalnum() else "_" for c in f"atlasgen_{atlas['model']}_{layer}_{index}")
    return (
        f"@misc{{{key},\n"
        f"  title = {{{{{tex(atlas['model'].upper())} {tex(layer)}, filter {index}}}}},\n"
        f"  howpublished = {{\\url{{{url}}}}},\n"
        f"  note = {{Feature visualisation made with atlasgen {__version__}; weights: {tex(atlas['weights']['label'])}, "
        f"sha256:{atlas['weights']['fingerprint'][:16]}}}\n"
        f"}}"
    )


def _copy_static(out: Path) -> None:
    for source in sorted((TEMPLATES / "static").iterdir()):
        write_if_changed(out / "static" / source.name, source.read_bytes())
