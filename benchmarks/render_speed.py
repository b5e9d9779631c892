"""Rendering speed: every page of a full-size VGG16 atlas (4,224 filter pages) from a synthetic manifest.

    python benchmarks/render_speed.py [--out DIR]

No model runs: the manifest has VGG16's real layers and receptive fields and made-up metrics, and
no image files (pages only reference them). Prints the page count and seconds for a first render
and for a re-render (which rewrites nothing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from atlasgen.site import render_site

VGG16 = [  # name, filters, r, S, P
    ("block1_conv1", 64, 3, 1, 1), ("block1_conv2", 64, 5, 1, 2), ("block2_conv1", 128, 10, 2, 4),
    ("block2_conv2", 128, 14, 2, 6), ("block3_conv1", 256, 24, 4, 10), ("block3_conv2", 256, 32, 4, 14),
    ("block3_conv3", 256, 40, 4, 18), ("block4_conv1", 512, 60, 8, 26), ("block4_conv2", 512, 76, 8, 34),
    ("block4_conv3", 512, 92, 8, 42), ("block5_conv1", 512, 132, 16, 58), ("block5_conv2", 512, 164, 16, 74),
    ("block5_conv3", 512, 196, 16, 90),
]


def synthetic_manifest(layers=VGG16, probes=("astronaut",), size=224, model="vgg16") -> dict:
    """An atlas.json as export writes it, with made-up numbers and no images behind it."""

    def unit(layer: str, index: int) -> dict:
        folder = f"{model}/{layer}/{index}/"
        maps = [{"probe": p, "heatmap": f"{folder}maps/{p}.webp", "overlay": f"{folder}maps/{p}-overlay.webp",
                 "peak": 1.5, "mean": 0.25, "scale": 2.0} for p in probes]
        stats = {"objective": 3.0, "mean_activation": 2.0, "activation_vs_best_probe": 8.0, "steps": 512}
        return {"index": index, "page": folder, "channel_image": f"{folder}channel.webp",
                "neuron_image": f"{folder}neuron.webp", "rf_crop": f"{folder}rf-crop.webp",
                "rf_box": [100, 100, 124, 124], "activation_maps": maps,
                "metrics": {"channel": stats, "neuron": {**stats, "changed_pixels_outside_box": 0},
                            "best_probe_mean_activation": 0.25}}

    return {
        "schema": 1, "generator": {"name": "atlasgen", "version": "bench", "algorithm": 1}, "model": model,
        "weights": {"source": "imagenet", "spec": "imagenet", "label": "ImageNet (keras.applications VGG16)",
                    "fingerprint": "0" * 64},
        "input_convention": "BGR x255 minus mean", "preset": "full",
        "parameters": {"size": size, "steps": 512, "learning_rate": 0.05, "seed": 0, "init_sd": 0.01,
                       "decay_power": 1.0, "decorrelate": True, "pad": 12, "jitter": 8, "scale": [0.9, 1.1],
                       "rotate_degrees": 10.0, "jitter_last": 4},
        "probes": [{"name": p, "sha256": "1" * 64, "image": f"probes/{p}.webp", "width": 512, "height": 512} for p in probes],
        "activation_map_normalisation": "post-ReLU activation / the filter's maximum over all probe photos",
        "layers": [
            {"name": name, "path": f"{model}/{name}/", "filters": count, "r": r, "S": S, "P": P,
             "output_size": size // S, "centre_unit": [size // S // 2, size // S // 2],
             "units": [unit(name, i) for i in range(count)]}
            for name, count, r, S, P in layers
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="atlas-render-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "atlas.json").write_text(json.dumps(synthetic_manifest()))
    for label in ("first render", "re-render"):
        start = time.perf_counter()
        result = render_site(out, base_url="https://example.github.io/atlas/")
        print(json.dumps({"run": label, "pages": result.pages, "filters": result.filters,
                          "seconds": round(time.perf_counter() - start, 2)}))


if __name__ == "__main__":
    main()
