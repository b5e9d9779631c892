"""The page budget's byte model (atlasgen/build/budget.py), measured: a built site's bytes, part by part.

    python benchmarks/page_budget.py SITE [SITE...]

For each SITE (an --out with one atlas) it prints, as one JSON line, the atlas's settings and its bytes
split the way the model splits them:
  - synth_per_pixel: a filter's synthesised images (whole-filter, negative, the map on the whole-filter
    image, centre neuron, each diversity image, each MACO image), bytes per image per pixel of size²;
  - fixed_per_filter: the receptive-field crop (224 px) and the first layer's kernel, per filter;
  - per_example: one dataset-example crop (96 px), the top and bottom examples alike;
  - map_per_pixel: one probe's heatmap and overlay, per pixel of the probe photo;
  - text_per_filter: the filter's page, its unit.json and its share of atlas.json and its layer's page;
  - layer_base: a layer page less its filters' share (the layer page's bytes the model charges per layer);
  - dataset_per_pixel: the shared dataset photos, per pixel at the dataset size;
  - probe_per_pixel: the shared probe photos, per pixel;
  - file_list_per_filter: --out/.atlasgen-files.json (every file atlasgen wrote) over the filters;
  - site_shared: the site's own files (root pages, static/) and the atlas's index and search.json.
The constants in budget.py were read from these lines on quick builds of the offline trunk (see there).
Each line ends with the byte model's estimate for the same atlas (its settings and layers, as its
atlas.json records them) and how far that is from the bytes built.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image

from atlasgen.build.budget import Settings, atlas_bytes

SYNTH = ("channel.webp", "channel-negative.webp", "channel-map.webp", "neuron.webp")
FIXED = ("rf-crop.webp", "kernel.webp")
TEXT = ("index.html", "unit.json")
FILE_LIST = ".atlasgen-files.json"


def parts(site: Path) -> dict:
    """The atlas in `site` measured part by part (the module's docstring)."""
    atlas = next(p.parent for p in site.glob("*/atlas.json"))
    manifest = json.loads((atlas / "atlas.json").read_text())
    size, filters = manifest["parameters"]["size"], sum(len(layer["units"]) for layer in manifest["layers"])
    sums = dict.fromkeys(("synth", "fixed", "examples", "maps", "text", "layers"), 0)
    counts = dict.fromkeys(("synth", "examples"), 0)
    for layer in manifest["layers"]:
        sums["layers"] += (site / layer["path"] / "index.html").stat().st_size
        for unit in layer["units"]:
            _unit(site / unit["page"], sums, counts)
    probe_pixels = sum(p["width"] * p["height"] for p in manifest["probes"])
    dataset = [Image.open(p).size for p in (atlas / "dataset").glob("*.webp")]
    listed = (site / FILE_LIST).stat().st_size
    shared = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and atlas not in p.parents) - listed
    shared += sum((atlas / name).stat().st_size for name in ("index.html", "search.json"))
    layer_share = sums["layers"] / filters  # folded into text below, and reported alone
    return {
        "site": str(site), "size": size, "filters": filters, "layers": len(manifest["layers"]),
        "steps": manifest["parameters"]["steps"], "examples": counts["examples"] / filters / 2,
        "synth_views": counts["synth"] / filters,
        "synth_per_pixel": sums["synth"] / counts["synth"] / size**2,
        "fixed_per_filter": sums["fixed"] / filters,
        "per_example": sums["examples"] / max(counts["examples"], 1),
        "map_per_pixel": sums["maps"] / filters / probe_pixels,
        "text_per_filter": (sums["text"] + (atlas / "atlas.json").stat().st_size) / filters + layer_share,
        "layer_page_per_filter": layer_share,
        "dataset_per_pixel": _bytes(atlas / "dataset") / max(sum(w * h for w, h in dataset), 1),
        "dataset_images": len(dataset),
        "probe_per_pixel": _bytes(atlas / "probes") / probe_pixels,
        "file_list_per_filter": listed / filters,
        "site_shared": shared,
        "site_bytes": shared + listed + sum(p.stat().st_size for p in atlas.rglob("*") if p.is_file()),
    }


def estimate(site: Path) -> float:
    """The byte model's estimate of the atlas in `site`, from its atlas.json (scikit-image's 18 photos
    when the dataset is the bundled one; otherwise the photos it shows)."""
    atlas = next(p.parent for p in site.glob("*/atlas.json"))
    manifest = json.loads((atlas / "atlas.json").read_text())
    unit = manifest["layers"][0]["units"][0]
    dataset = manifest.get("dataset") or {}
    settings = Settings(
        manifest["parameters"]["size"], manifest["parameters"]["steps"], len(unit["images"].get("diversity") or []),
        len(unit.get("dataset_examples") or []), tuple(manifest.get("methods") or ["lucid"]),
        tuple(p["width"] * p["height"] for p in manifest["probes"]),
        18 if dataset.get("builtin") else len(list((atlas / "dataset").glob("*"))), dataset.get("short_side", 0))
    return atlas_bytes(settings, [(layer["name"], len(layer["units"]), layer.get("r")) for layer in manifest["layers"]])


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file())


def _unit(folder: Path, sums: dict, counts: dict) -> None:
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        size, name, parent = path.stat().st_size, path.name, path.parent.name
        if name in TEXT:
            sums["text"] += size
        elif name in FIXED:
            sums["fixed"] += size
        elif parent in ("examples", "examples-negative"):
            sums["examples"] += size
            counts["examples"] += 1
        elif path.parent.parent.name == "maps":
            sums["maps"] += size
        elif name in SYNTH or parent == "diversity" or name.startswith("maco"):
            sums["synth"] += size
            counts["synth"] += 1
        else:
            raise SystemExit(f"{path}: a file the byte model does not know; add it to a part")


def main() -> None:
    for site in sys.argv[1:]:
        measured = parts(Path(site))
        guess = estimate(Path(site))
        measured.update(estimate=round(guess), estimate_error=f"{100 * (guess / measured['site_bytes'] - 1):+.1f}%")
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in measured.items()}))


if __name__ == "__main__":
    main()
