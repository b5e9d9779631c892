"""Each synthesis lever on its own: activation and contrast of whole-filter images at 16/32/64/128 steps.

    python benchmarks/levers.py [--size 64] [--filters 8] [--steps 16,32,64,128] [--levers all]

hed-bsds500 weights, the first --filters filters of every conv layer of VGG16. For each lever
setting (a set of SynthesisParams overrides) and each step count it makes the whole-filter images
and prints one JSON line per layer with, per image:
  - `objective`: the filter's pre-ReLU spatial mean on the final, untransformed image (what the
    synthesis maximises);
  - `std`: the image's RGB standard deviation on 0..255 (contrast; under 16 is near-grey);
  - `best_crop`: the filter's largest pre-ReLU mean over size x size crops of scikit-image's photos.
The last lines are a table per lever, over all layers, at each step count: the median margin
(objective - best crop) / |best crop|, and the counts of images with std >= 16 and with objective >
best crop. Activation and contrast do not
depend on what else runs on the machine; the seconds printed do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np

from atlasgen.synthesis import LayerEngine, SynthesisParams, channel_images, natural_photos
from atlasgen.tf import tf
from atlasgen.model.weights import VGG16_LAYERS, load_model

CONTRAST_FLOOR = 16.0
LUCID = {"learning_rate": 0.05, "small_field_learning_rate": 0.05, "decay_power": 1.0, "fit_transforms": False}
LEVERS = {
    "defaults": {},  # today's SynthesisParams
    # ALGORITHM_VERSION 2's recipe, Lucid's: lr 0.05, 1/f, pad 12, jitter 8, scale 0.9-1.1, rotate 10, jitter 4
    "lucid": LUCID,
    "lr0.2": {**LUCID, "learning_rate": 0.2},
    "cosine": {**LUCID, "lr_schedule": "cosine"},
    "fit": {**LUCID, "fit_transforms": True},
    "fit+lr0.2": {**LUCID, "fit_transforms": True, "learning_rate": 0.2},
    "fit+lr0.2+cosine": {**LUCID, "fit_transforms": True, "learning_rate": 0.2, "lr_schedule": "cosine"},
}


def parse_like(default, text: str):
    """`text` as a value of the default's type; tuples are written with ':' (scale=1:1)."""
    if isinstance(default, bool):
        return text == "True"
    if isinstance(default, tuple):
        return tuple(float(v) for v in text.split(":"))
    return text if isinstance(default, str) else type(default)(float(text))


def lever_overrides(name: str) -> dict:
    """A named lever, or an ad-hoc one written as field=value pairs joined by '/' over today's
    defaults, e.g. "learning_rate=0.1/decay_power=1.5"."""
    if name in LEVERS:
        return LEVERS[name]
    defaults = SynthesisParams()
    out = {}
    for pair in name.split("/"):
        key, _, value = pair.partition("=")
        if not hasattr(defaults, key):
            raise SystemExit(f"unknown lever {name!r}: {key!r} is not a SynthesisParams field")
        out[key] = parse_like(getattr(defaults, key), value)
    return out


def crops(size: int) -> np.ndarray:
    out = []
    for photo in natural_photos():
        height, width = photo.image.shape[:2]
        for top in range(0, height - size + 1, size // 2):
            for left in range(0, width - size + 1, size // 2):
                out.append(photo.image[top : top + size, left : left + size])
    return np.stack(out).astype(np.float32) / 255.0


def pre_relu_means(engine: LayerEngine, images: np.ndarray, filter_ids: list[int]) -> np.ndarray:
    """[i, j]: filter j's spatial pre-ReLU mean on image i."""
    out = []
    for start in range(0, len(images), 32):
        maps = engine.maps(tf.constant(images[start : start + 32]), tf.constant(filter_ids, tf.int32)).numpy()
        out.append(maps.mean(axis=(1, 2)))
    return np.concatenate(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--steps", default="16,32,64,128")
    parser.add_argument("--levers", default="all", help="comma list of: " + ", ".join(LEVERS) + ", or field=value/field=value")
    parser.add_argument("--layers", default=",".join(VGG16_LAYERS))
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    levers = list(LEVERS) if args.levers == "all" else args.levers.split(",")
    loaded = load_model("hed-bsds500")
    filter_ids = list(range(args.filters))
    photos = crops(args.size)
    summary = {lever: {n: {"objective": [], "vivid": 0, "beats_crop": 0, "images": 0} for n in steps} for lever in levers}
    for layer in args.layers.split(","):
        engine = LayerEngine(loaded, layer)
        best_crop = pre_relu_means(engine, photos, filter_ids).max(axis=0)
        for lever in levers:
            for n in steps:
                params = replace(SynthesisParams(size=args.size, steps=n), **lever_overrides(lever))
                start = time.perf_counter()
                images = channel_images(engine, filter_ids, params)
                seconds = time.perf_counter() - start
                objective = np.array([i.objective for i in images])
                std = np.array([float(i.image.std()) for i in images])
                row = {"lever": lever, "layer": layer, "steps": n, "seconds": round(seconds, 2),
                       "objective": [round(float(o), 3) for o in objective], "std": [round(float(s), 1) for s in std],
                       "best_crop": [round(float(b), 3) for b in best_crop]}
                print(json.dumps(row), flush=True)
                cell = summary[lever][n]
                cell["objective"] += list((objective - best_crop) / np.maximum(np.abs(best_crop), 1e-6))
                cell["vivid"] += int((std >= CONTRAST_FLOOR).sum())
                cell["beats_crop"] += int((objective > best_crop).sum())
                cell["images"] += len(images)
    print("| lever | " + " | ".join(f"{n} steps: median margin over best crop, std >= 16, beats crop" for n in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for lever in levers:
        cells = []
        for n in steps:
            c = summary[lever][n]
            cells.append(f"{np.median(c['objective']):.2f}, {c['vivid']}/{c['images']}, {c['beats_crop']}/{c['images']}")
        print(f"| {lever} | " + " | ".join(cells) + " |")
    print(json.dumps({"summary": {lever: {str(n): {k: (float(np.median(v)) if k == "objective" else v)
                                                   for k, v in summary[lever][n].items()} for n in steps}
                                  for lever in levers}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
