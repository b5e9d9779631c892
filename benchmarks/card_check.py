"""Issue 21's "Done when", checked on a real build: the whole card of every filter, recomputed independently.

    python benchmarks/card_check.py [--layers block3_conv2,block4_conv3] [--filters 5-8] [--size 64]
                                    [--steps 64] [--dataset-size 224] [--examples 6] [--workdir DIR]

Builds a small atlas with `atlasgen.build.run.run_build` (the function `atlasgen build` calls), on the
bundled HED trunk by default, of block1_conv1 (for its kernels) and --layers, filters --filters, into a
temp --store and --out, with --dataset a folder of real photos that no test uses (made here, below).
Then it reads `atlas.json` and the files it names, and checks each against a computation of its own
that shares nothing with atlasgen's engine: the model's input convention applied by hand, the model
run with plain Keras up to the conv layer's input and the layer's kernel applied with `keras.ops.conv`
and its bias, so every value is pre-ReLU; the photos decoded and resized by hand (PIL, EXIF
orientation, RGB, bicubic, shorter side to --dataset-size):

  a. negative: every `images.channel_negative` (and `images.maco_negative`), decoded from its WebP,
     has a pre-ReLU channel mean below its filter's lowest mean over the natural crops. The natural
     crops are every --size x --size window (stride --size/2) of the dataset photos as the build
     resized them: the same size as the synthesised image, so both means are over maps of the same
     size and the same padding at the border, which is the comparison the objective makes (a single
     dataset example is one unit, not a mean, and does not compare).
  b. bottom-k: `dataset_examples_negative` is exactly the true bottom k: each image's lowest pre-ReLU
     unit (the first in row-major order on ties), the k lowest over every dataset image (ties to the
     earlier image in path order), brute force: the same photos, units, values (within float32
     rounding of a batched forward pass), boxes (from the layer's r, S, P in atlas.json) and photo
     sizes, each crop file matching its box. `dataset_examples` (the top k) is checked the same way.
  c. curves: every synthesised image's `metrics.<view>.curve` has at least 16 points, steps in
     order, and ends at [steps, the stored objective].
  d. kernels: every `images.kernel` (block1_conv1) decodes to its filter's weights, flipped from
     the model's BGR to RGB, 0 at mid-grey and the largest absolute weight at 0 or 255, each weight
     an equal square: every pixel within 8-bit rounding. Also says for how many filters the unflipped
     weights would not match (the flip is seen).
  e. diversity: if the atlas has `images.diversity`, each image beats its filter's best natural crop
     and the set's images differ: each pair's layouts correlate under --max-correlation (the Pearson
     correlation of their pixels within each colour channel, averaged: diversity.layout_correlation).
     The correlation of all their pixels at once is reported beside it, not checked: a layer affine
     in the pixels must keep one saturated colour to beat the crops, and that colour alone puts it
     above 0.9. Without a set it prints 'diversity: not built' and does not fail.

One line per check, with counts; then a JSON line of every number. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from atlasgen.build.config import BuildConfig
from atlasgen.build.dataset import BUILTIN_PHOTOS
from atlasgen.build.run import run_build
from atlasgen.model.weights import load_model
from atlasgen.progress import Progress
from atlasgen.synthesis.probes import skimage_data
from atlasgen.tf import keras
from diversity import layout_correlation
from machine import in_workdir

CURVE_MIN_POINTS = 16


# --- the dataset: real photos that no test uses ----------------------------------------------


def make_dataset(folder: Path) -> list[str]:
    """Photos no test reads: matplotlib's two sample photographs, scikit-image's photos outside atlasgen's
    built-in corpus (cell, microaneurysms), and from each of the built-in corpus's 18 photos its middle
    two-thirds mirrored left to right (a new image: other pixels, other content hash)."""
    import matplotlib

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        if (sample / name).is_file():
            shutil.copyfile(sample / name, folder / f"mpl-{name}")
            made.append(f"mpl-{name}")
    for name in ("cell.png", "microaneurysms.png"):
        path = skimage_data("astronaut.png").parent / name
        if path.is_file():
            shutil.copyfile(path, folder / f"skimage-{name}")
            made.append(f"skimage-{name}")
    for name in BUILTIN_PHOTOS:
        with Image.open(skimage_data(name)) as photo:
            photo = photo.convert("RGB")
            w, h = photo.size
            middle = photo.crop((w // 6, h // 6, w - w // 6, h - h // 6)).transpose(Image.FLIP_LEFT_RIGHT)
            target = f"mirror-{Path(name).stem}.png"
            middle.save(folder / target)
            made.append(target)
    return made


def load_photo(path: Path, short_side: int) -> np.ndarray:
    """The convention, by hand: EXIF orientation, RGB, shorter side to short_side (bicubic)."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    w, h = image.size
    short = min(w, h)
    size = (short_side, round(h * short_side / short)) if w == short else (round(w * short_side / short), short_side)
    return np.asarray(image.resize(size, Image.BICUBIC))


# --- pre-ReLU maps, with plain Keras --------------------------------------------------------


class PreRelu:
    """A conv layer's pre-ReLU maps of RGB uint8 images: the model up to the layer's input, then the
    layer's kernel and bias by keras.ops.conv; the input convention applied here, by hand."""

    def __init__(self, loaded, layer: str):
        model = loaded.model
        conv = model.get_layer(layer)
        config = conv.get_config()
        assert tuple(config["strides"]) == (1, 1) and tuple(config["dilation_rate"]) == (1, 1), config
        self.padding = config["padding"]
        self.kernel = np.asarray(conv.kernel, np.float32)
        self.bias = np.asarray(conv.bias, np.float32) if config["use_bias"] else np.zeros(self.kernel.shape[-1], np.float32)
        reads_input = conv.input is model.inputs[0] or getattr(conv.input, "name", 0) == getattr(model.inputs[0], "name", 1)
        self.trunk = None if reads_input else keras.Model(model.inputs[0], conv.input)
        convention = loaded.input_convention
        self.bgr = convention.channel_order == "BGR"
        self.scale = float(convention.scale)
        self.mean = np.asarray(convention.mean, np.float32)

    def __call__(self, images: np.ndarray, batch: int = 16) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch):
            x = images[start:start + batch].astype(np.float32) / 255.0
            x = (x[..., ::-1] if self.bgr else x) * self.scale - self.mean
            features = x if self.trunk is None else self.trunk(x, training=False)
            maps = keras.ops.conv(features, self.kernel, strides=1, padding=self.padding) + self.bias
            out.append(np.asarray(maps))
        return np.concatenate(out)


def decode_file(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def windows(photos: list[np.ndarray], size: int) -> np.ndarray:
    stride = max(1, size // 2)
    out = []
    for photo in photos:
        h, w = photo.shape[:2]
        for top in range(0, h - size + 1, stride):
            for left in range(0, w - size + 1, stride):
                out.append(photo[top:top + size, left:left + size])
    return np.stack(out)


# --- the checks -------------------------------------------------------------------------------


def image_means(atlas: dict, out: Path, nets: dict, crop_means: dict, filters_of: dict, views: tuple[str, ...]):
    """Each image of `views` the atlas has: (unit, view, its pre-ReLU mean recomputed from its file, the
    filter's means over the natural crops)."""
    for layer in atlas["layers"]:
        for unit in layer["units"]:
            for view in views:
                path = unit["images"].get(view)
                if path is None:
                    continue
                f = unit["index"]
                mean = float(nets[layer["name"]](decode_file(out / path)[None])[0, :, :, f].mean())
                yield f"{layer['name']}/{f}", unit, view, mean, crop_means[layer["name"]][:, filters_of[layer["name"]].index(f)]


def check_negative(atlas: dict, out: Path, nets: dict, crop_means: dict, filters_of: dict) -> dict:
    """a. Each negative image's pre-ReLU mean (recomputed from its file) against its filter's lowest crop."""
    rows, failed, ratios = [], [], []
    for name, unit, view, mean, crops in image_means(atlas, out, nets, crop_means, filters_of,
                                                     ("channel_negative", "maco_negative")):
        lowest = float(crops.min())
        row = {"unit": name, "view": view, "mean": round(mean, 3), "lowest_crop": round(lowest, 3),
               "stored_objective": round(unit["metrics"][view]["objective"], 3)}
        rows.append(row)
        if not mean < lowest:
            failed.append(row)
        if lowest < 0:
            ratios.append(mean / lowest)
    return {"checked": len(rows), "failed": failed, "rows": rows,
            "min_ratio_to_lowest_crop": round(min(ratios), 2) if ratios else None,
            "median_ratio_to_lowest_crop": round(float(np.median(ratios)), 2) if ratios else None}


def positive_info(atlas: dict, out: Path, nets: dict, crop_means: dict, filters_of: dict) -> dict:
    """Not a check of issue 21, for comparison: each positive whole-filter image's pre-ReLU mean against
    its filter's best natural crop (benchmarks/synthesis_acceptance.py checks this on its own crops)."""
    above, total, below = 0, 0, []
    for name, _, view, mean, crops in image_means(atlas, out, nets, crop_means, filters_of, ("channel", "maco_channel")):
        best = float(crops.max())
        total += 1
        above += mean > best
        if not mean > best:
            below.append({"unit": name, "view": view, "mean": round(mean, 3), "best_crop": round(best, 3)})
    return {"above": above, "total": total, "not_above": below}


def brute_force(maps_of, sources: list[str], photos: list[np.ndarray], filters: list[int], k: int) -> dict:
    """Per filter: the true bottom k and top k over every photo, at most one unit per photo."""
    lows, highs = [], []  # per photo: (filters,) values and (filters, 2) units
    for photo in photos:
        maps = maps_of(photo[None])[0][:, :, filters]  # (h, w, filters)
        h, w, _ = maps.shape
        flat = maps.reshape(h * w, -1)
        for reduce, arg, into in ((np.min, np.argmin, lows), (np.max, np.argmax, highs)):
            where = arg(flat, axis=0)  # the first in row-major order on ties
            into.append((reduce(flat, axis=0), np.stack([where // w, where % w], axis=-1)))
    truth = {}
    for name, per_photo, lowest in (("negative", lows, True), ("top", highs, False)):
        values = np.stack([v for v, _ in per_photo])  # (photos, filters)
        units = np.stack([u for _, u in per_photo])
        for j, f in enumerate(filters):
            order = sorted(range(len(photos)), key=lambda i: ((values[i, j] if lowest else -values[i, j]), i))[:k]
            truth[(name, f)] = [{"source": sources[i], "activation": float(values[i, j]), "unit": [int(u) for u in units[i, j]]}
                                for i in order]
    return truth


def expected_box(layer: dict, unit: list[int], size: list[int]) -> list[int]:
    r, s, p = (layer[n] if isinstance(layer[n], list) else [layer[n]] * 2 for n in ("r", "S", "P"))
    top, left = unit[0] * s[0] - p[0], unit[1] * s[1] - p[1]
    return [max(0, top), max(0, left), min(size[0], top + r[0]), min(size[1], left + r[1])]


def check_examples(atlas: dict, out: Path, truths: dict, photos: dict, field: str, name: str) -> dict:
    """b. The stored examples against the brute force: photos, units, values, boxes, sizes and crops."""
    checked, failed, near_ties, crop_diffs, worst_value = 0, [], 0, [], 0.0
    for layer in atlas["layers"]:
        truth = truths[layer["name"]]
        for unit in layer["units"]:
            f = unit["index"]
            stored, true = unit.get(field, []), truth[(name, f)]
            checked += 1
            problems = []
            if len(stored) != len(true):
                problems.append(f"{len(stored)} examples, not {len(true)}")
            for rank, (s, t) in enumerate(zip(stored, true)):
                worst_value = max(worst_value, abs(s["activation"] - t["activation"]) / max(1.0, abs(t["activation"])))
                if (s["source"], s["unit"]) != (t["source"], t["unit"]):
                    # Two photos whose extreme values agree to float32 rounding may come in either order.
                    if abs(s["activation"] - t["activation"]) / max(1.0, abs(t["activation"])) < 1e-5:
                        near_ties += 1
                        continue
                    problems.append(f"rank {rank}: {s['source']} {s['unit']} ({s['activation']:.4f}), "
                                    f"not {t['source']} {t['unit']} ({t['activation']:.4f})")
                    continue
                if abs(s["activation"] - t["activation"]) > 1e-4 * max(1.0, abs(t["activation"])):
                    problems.append(f"rank {rank}: value {s['activation']} not {t['activation']}")
                photo = photos[s["source"]]
                if s["photo_size"] != list(photo.shape[:2]):
                    problems.append(f"rank {rank}: photo_size {s['photo_size']} not {list(photo.shape[:2])}")
                box = expected_box(layer, s["unit"], list(photo.shape[:2]))
                if s["box"] != box:
                    problems.append(f"rank {rank}: box {s['box']} not {box}")
                    continue
                crop = decode_file(out / s["image"])
                mine = Image.fromarray(photo[box[0]:box[2], box[1]:box[3]]).resize((crop.shape[1], crop.shape[0]), Image.NEAREST)
                diff = float(np.abs(np.asarray(mine, np.float32) - crop.astype(np.float32)).mean())
                crop_diffs.append(diff)
                if diff > 12:
                    problems.append(f"rank {rank}: crop differs from the box's pixels by {diff:.1f} grey levels on average")
                if not (out / s["photo"]).is_file():
                    problems.append(f"rank {rank}: photo file {s['photo']} missing")
            order_ok = all((a["activation"] <= b["activation"]) if name == "negative" else (a["activation"] >= b["activation"])
                           for a, b in zip(stored, stored[1:]))
            if not order_ok:
                problems.append("not in order")
            if problems:
                failed.append({"unit": f"{layer['name']}/{f}", "problems": problems})
    return {"checked": checked, "failed": failed, "near_ties": near_ties, "worst_relative_value_error": worst_value,
            "max_crop_mean_abs_diff": round(max(crop_diffs), 2) if crop_diffs else None}


def check_curves(atlas: dict) -> dict:
    """c. Every synthesised image's curve: >= 16 points, steps in order, the last [steps, objective]."""
    checked, failed, points = 0, [], []
    for layer in atlas["layers"]:
        for unit in layer["units"]:
            for view, numbers in unit["metrics"].items():
                if not isinstance(numbers, dict) or "objective" not in numbers:
                    continue
                checked += 1
                curve = numbers.get("curve") or []
                points.append(len(curve))
                where = f"{layer['name']}/{unit['index']} {view}"
                if len(curve) < CURVE_MIN_POINTS:
                    failed.append(f"{where}: {len(curve)} points")
                elif curve[-1] != [numbers["steps"], numbers["objective"]]:
                    failed.append(f"{where}: ends at {curve[-1]}, not [{numbers['steps']}, {numbers['objective']}]")
                elif any(b[0] <= a[0] for a, b in zip(curve, curve[1:])):
                    failed.append(f"{where}: steps out of order")
            # The diversity set's images: one record each (metrics.diversity_runs), its objective in metrics.diversity.
            runs, objectives = unit["metrics"].get("diversity_runs") or [], unit["metrics"].get("diversity") or []
            for i, numbers in enumerate(runs):
                checked += 1
                curve = numbers.get("curve") or []
                points.append(len(curve))
                where = f"{layer['name']}/{unit['index']} diversity[{i}]"
                if len(curve) < CURVE_MIN_POINTS:
                    failed.append(f"{where}: {len(curve)} points")
                elif curve[-1] != [numbers["steps"], numbers["objective"]]:
                    failed.append(f"{where}: ends at {curve[-1]}, not [{numbers['steps']}, {numbers['objective']}]")
                elif i < len(objectives) and objectives[i] != numbers["objective"]:
                    failed.append(f"{where}: objective {numbers['objective']}, metrics.diversity says {objectives[i]}")
            if objectives and len(runs) != len(objectives):
                failed.append(f"{layer['name']}/{unit['index']}: {len(objectives)} diversity objectives, {len(runs)} runs")
    return {"checked": checked, "failed": failed, "points": [min(points), max(points)] if points else None}


def check_kernels(atlas: dict, out: Path, loaded) -> dict:
    """d. Every kernel image against the weights: RGB (flipped from BGR), symmetric about grey."""
    checked, failed, flip_seen, worst = 0, [], 0, 0.0
    bgr = loaded.input_convention.channel_order == "BGR"
    for layer in atlas["layers"]:
        units = [u for u in layer["units"] if "kernel" in u["images"]]
        if not units:
            continue
        kernel = np.asarray(loaded.model.get_layer(layer["name"]).kernel, np.float64)
        for unit in units:
            f = unit["index"]
            checked += 1
            weights = kernel[:, :, :, f]
            rgb = weights[:, :, ::-1] if bgr else weights
            scale = np.abs(weights).max()
            pixels = decode_file(out / unit["images"]["kernel"]).astype(np.float64)
            th, tw = weights.shape[:2]
            zoom = pixels.shape[0] // th
            problems = []
            if pixels.shape[:2] != (th * zoom, tw * zoom) or pixels.shape[1] // tw != zoom:
                problems.append(f"size {pixels.shape[:2]} is not {th}x{tw} equal squares")
            else:
                squares = pixels.reshape(th, zoom, tw, zoom, 3)
                if np.ptp(squares, axis=(1, 3)).max() > 0:
                    problems.append("a weight's square is not one colour")
                read = squares[:, 0, :, 0, :]  # one pixel per weight
                back = (read - 127.5) / 127.5 * scale
                error = np.abs(back - rgb).max() / scale
                worst = max(worst, error)
                if error > 0.5 / 127.5 + 1e-9:  # within 8-bit rounding of 127.5 + 127.5 w / scale
                    problems.append(f"weights off by {error * 127.5:.2f} grey levels")
                unflipped = np.abs((read - 127.5) / 127.5 * scale - weights).max() / scale
                flip_seen += unflipped > 0.5 / 127.5 + 1e-9
                if 0 not in read and 255 not in read:
                    problems.append("its largest weight is not drawn at 0 or 255")
            record = unit.get("kernel") or {}
            if abs(record.get("scale", -1) - scale) > 1e-6 * scale or record.get("flipped") != bgr or record.get("taps") != [th, tw]:
                problems.append(f"kernel record {record} (scale {scale}, flipped {bgr})")
            if problems:
                failed.append({"unit": f"{layer['name']}/{f}", "problems": problems})
    return {"checked": checked, "failed": failed, "unflipped_would_fail": int(flip_seen),
            "worst_error_grey_levels": round(worst * 127.5, 3)}


def check_diversity(atlas: dict, out: Path, nets: dict, crop_means: dict, filters_of: dict, limit: float) -> dict | None:
    """e. The diversity set of each filter, if the atlas has one."""
    units = [(layer, unit) for layer in atlas["layers"] for unit in layer["units"] if unit["images"].get("diversity")]
    if not units:
        return None
    failed, correlations, layout_means, grams, beats, images = [], [], [], [], 0, 0
    for layer, unit in units:
        f = unit["index"]
        pictures = [decode_file(out / path) for path in unit["images"]["diversity"]]
        means = nets[layer["name"]](np.stack(pictures))[:, :, :, f].mean(axis=(1, 2))
        best = float(crop_means[layer["name"]][:, filters_of[layer["name"]].index(f)].max())
        images += len(pictures)
        beats += int((means > best).sum())
        flat = np.stack([p.astype(np.float64).ravel() for p in pictures])
        index_pairs = [(i, j) for i in range(len(flat)) for j in range(i + 1, len(flat))]
        pairs = [float(np.corrcoef(flat[i], flat[j])[0, 1]) for i, j in index_pairs]
        layouts = [layout_correlation(pictures[i], pictures[j]) for i, j in index_pairs]
        correlations.append(float(np.mean(pairs)) if pairs else None)
        layout_means.append(float(np.mean(layouts)) if layouts else None)
        if unit["metrics"].get("diversity_similarity") is not None:
            grams.append(unit["metrics"]["diversity_similarity"])
        problems = [f"image {i} mean {m:.3f} not above the best crop's {best:.3f}" for i, m in enumerate(means) if not m > best]
        if layouts and max(layouts) > limit:
            problems.append(f"a pair's layouts correlate {max(layouts):.3f} > {limit}")
        if problems:
            failed.append({"unit": f"{layer['name']}/{f}", "problems": problems})
    shown = [c for c in correlations if c is not None]
    laid = [c for c in layout_means if c is not None]
    return {"filters": len(units), "images": images, "beat_best_crop": beats, "failed": failed,
            "mean_pairwise_correlation": round(float(np.mean(shown)), 3) if shown else None,
            "max_mean_pairwise_correlation": round(max(shown), 3) if shown else None,
            "mean_pairwise_layout_correlation": round(float(np.mean(laid)), 3) if laid else None,
            "max_mean_pairwise_layout_correlation": round(max(laid), 3) if laid else None,
            "recorded_gram_similarity": round(float(np.mean(grams)), 3) if grams else None}


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="hed-bsds500")
    parser.add_argument("--layers", default="block3_conv2,block4_conv3",
                        help="conv layers besides block1_conv1 (always built, for its kernels)")
    parser.add_argument("--filters", default="5-8")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--dataset-size", type=int, default=224)
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--method", default="lucid")
    parser.add_argument("--diversity", type=int, default=2, help="images in each diversity set, where the build has "
                        "--diversity (0: none)")
    parser.add_argument("--max-correlation", type=float, default=0.9, help="diversity: the most any pair's layouts may correlate")
    parser.add_argument("--workdir", help="keep the dataset, store and site here (a rerun reuses the store); "
                        "default: a temp folder, removed after")
    args = parser.parse_args()

    return in_workdir(args.workdir, "card-check-", lambda work: run(args, work))


def run(args, work: Path) -> int:
    started = time.perf_counter()
    folder = work / "dataset"
    made = make_dataset(folder)
    layers = tuple(dict.fromkeys(["block1_conv1", *[name for name in args.layers.split(",") if name]]))
    config = BuildConfig(preset="quick", weights=args.weights, layers=layers, filters=args.filters, size=args.size,
                         steps=args.steps, dataset=folder, dataset_size=args.dataset_size, examples=args.examples,
                         methods=tuple(args.method.split(",")), store=work / "store", out=work / "site",
                         diversity=args.diversity)
    result = run_build(config, Progress(stream=sys.stderr, bars=False))
    build_s = time.perf_counter() - started
    if not result.complete:
        print(f"build: not complete ({result.missing} artifacts missing)")
        return 1
    out = work / "site"
    manifest = result.manifest
    atlas = json.loads(Path(manifest).read_text())
    print(f"build: {atlas['name']}, layers {', '.join(layers)}, filters {args.filters}, {args.size} px, {args.steps} "
          f"steps, {len(made)} photos at {args.dataset_size} px, {result.computed} artifacts computed in {build_s:.0f} s")

    loaded = load_model(args.weights)
    # The dataset as the build ordered it: by the bytes of the relative path (all names here are ASCII).
    sources = sorted(os.listdir(folder), key=os.fsencode)
    photos = {name: load_photo(folder / name, args.dataset_size) for name in sources}
    assert atlas["dataset"]["images"] == len(sources), (atlas["dataset"]["images"], len(sources))
    nets, crop_means, truths, filters_of = {}, {}, {}, {}
    crops = windows(list(photos.values()), args.size)
    k = args.examples
    for layer in atlas["layers"]:
        name = layer["name"]
        nets[name] = PreRelu(loaded, name)
        filters_of[name] = [unit["index"] for unit in layer["units"]]
        crop_means[name] = nets[name](crops)[:, :, :, filters_of[name]].mean(axis=(1, 2))
        truths[name] = brute_force(nets[name], sources, [photos[s] for s in sources], filters_of[name], k)

    negative = check_negative(atlas, out, nets, crop_means, filters_of)
    bottom = check_examples(atlas, out, truths, photos, "dataset_examples_negative", "negative")
    top = check_examples(atlas, out, truths, photos, "dataset_examples", "top")
    curves = check_curves(atlas)
    kernels = check_kernels(atlas, out, loaded)
    diversity = check_diversity(atlas, out, nets, crop_means, filters_of, args.max_correlation)

    by_layer = {}
    for row in negative["rows"]:
        layer = row["unit"].split("/")[0]
        by_layer.setdefault(layer, []).append(row)
    print(f"negative: {negative['checked'] - len(negative['failed'])}/{negative['checked']} negative images below their "
          f"filter's lowest natural crop ("
          + ", ".join(f"{view}: {sum(r['view'] == view for r in negative['rows']) - sum(r['view'] == view for r in negative['failed'])}"
                      f"/{sum(r['view'] == view for r in negative['rows'])}"
                      for view in dict.fromkeys(r["view"] for r in negative["rows"]))
          + f"; {len(crops)} crops of {args.size} px from {len(sources)} photos); mean / lowest "
          f"crop's mean: min {negative['min_ratio_to_lowest_crop']}, median {negative['median_ratio_to_lowest_crop']}"
          + "".join(f"; {layer} {min(r['mean'] for r in rows)} to {max(r['mean'] for r in rows)} (lowest crops "
                    f"{min(r['lowest_crop'] for r in rows)} to {max(r['lowest_crop'] for r in rows)})"
                    for layer, rows in by_layer.items()))
    for row in negative["failed"]:
        print(f"  NOT BELOW: {row}")
    positive = positive_info(atlas, out, nets, crop_means, filters_of)
    print(f"(positive, not checked: {positive['above']}/{positive['total']} whole-filter images above their filter's best "
          f"natural crop{'; not: ' + json.dumps(positive['not_above']) if positive['not_above'] else ''})")
    for label, report in (("bottom-k", bottom), ("top-k", top)):
        print(f"{label}: {report['checked'] - len(report['failed'])}/{report['checked']} filters' {k} examples exactly the "
              f"brute force's over {len(sources)} photos (photos, units, boxes, sizes; largest value difference "
              f"{report['worst_relative_value_error']:.1e} relative; {report['near_ties']} float32 near-ties; crops within "
              f"{report['max_crop_mean_abs_diff']} grey levels of their box)")
        for row in report["failed"]:
            print(f"  MISMATCH: {row}")
    print(f"curves: {curves['checked'] - len(curves['failed'])}/{curves['checked']} curves with >= {CURVE_MIN_POINTS} points "
          f"(from {curves['points'][0]} to {curves['points'][1]}) ending at the stored objective")
    for row in curves["failed"]:
        print(f"  BAD CURVE: {row}")
    print(f"kernels: {kernels['checked'] - len(kernels['failed'])}/{kernels['checked']} kernel images equal the weights "
          f"(RGB, flipped from BGR; worst {kernels['worst_error_grey_levels']} grey levels off; the unflipped weights "
          f"would fail for {kernels['unflipped_would_fail']} of them)")
    for row in kernels["failed"]:
        print(f"  BAD KERNEL: {row}")
    if diversity is None:
        print("diversity: not built")
    else:
        print(f"diversity: {diversity['beat_best_crop']}/{diversity['images']} images of {diversity['filters']} filters "
              f"beat their best natural crop; mean pairwise layout correlation "
              f"{diversity['mean_pairwise_layout_correlation']} (the most similar set "
              f"{diversity['max_mean_pairwise_layout_correlation']}); of all pixels at once "
              f"{diversity['mean_pairwise_correlation']} (most similar {diversity['max_mean_pairwise_correlation']}); "
              f"their recorded Gram similarity "
              f"{diversity['recorded_gram_similarity']}")
        for row in diversity["failed"]:
            print(f"  BAD DIVERSITY: {row}")
    failures = {"negative": len(negative["failed"]), "bottom_k": len(bottom["failed"]), "top_k": len(top["failed"]),
                "curves": len(curves["failed"]), "kernels": len(kernels["failed"]),
                "diversity": len(diversity["failed"]) if diversity else None}
    checked = {"negative": negative["checked"], "bottom_k": bottom["checked"], "top_k": top["checked"],
               "curves": curves["checked"], "kernels": kernels["checked"]}
    if checked["kernels"] == 0 or checked["negative"] == 0:
        failures["nothing_checked"] = 1
    passed = not any(failures.values())
    print(json.dumps({"passed": passed, "failures": failures, "checked": checked,
                      "negative": {key: value for key, value in negative.items() if key != "rows"}, "positive": positive,
                      "diversity": diversity,
                      "settings": {"weights": args.weights, "layers": list(layers), "filters": args.filters, "size": args.size,
                                   "steps": args.steps, "dataset_size": args.dataset_size, "examples": k, "diversity": args.diversity,
                                   "photos": len(sources), "method": args.method},
                      "seconds": {"build": round(build_s, 1), "total": round(time.perf_counter() - started, 1)}}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
