"""Synthesis acceptance and throughput, in one run (issues 3 and 11).

    python benchmarks/synthesis_acceptance.py [--size 64] [--steps 64] [--filters 8] [--layers all]

With hed-bsds500 weights, on the first --filters filters of every conv layer of VGG16 (or of
--layers) it makes whole-filter and centre-neuron images, at the quick budget by default, then
prints and checks:
  - no flat (constant) image (for centre-neuron images: no flat receptive-field box);
  - every whole-filter image has an RGB standard deviation of at least --contrast (16) on 0..255,
    or is faint-driven: its filter scores louder versions of it (its deviation from its mean colour
    x1.5 and x2) lower than the image itself. Any other faint image has not converged, and the
    check names it;
  - every whole-filter image drives its filter above its best crop of scikit-image's natural
    photographs;
  - every filter responds more to its own image than to the other filters' images (a tie with an
    identical image, two filters sharing one exact extreme, is not a loss, and is listed).
A filter's response is the quantity the synthesis maximises, the spatial mean of its pre-ReLU
map; the post-ReLU comparison with the crops is printed beside it (not checked): early edge
filters fire harder on a photo's few sharp edges after the ReLU cuts their negative side.
  - zero changed pixels outside every centre neuron's receptive field.
With --negative it also makes every filter's negative whole-filter image (the same synthesis,
minimising the filter's pre-ReLU channel mean) and checks that each one drives its filter below
the filter's lowest mean over the same natural crops (and below its positive image).
It also times a naive loop (one filter at a time, the full conv network, pixel-space gradient
ascent) in the same process and prints both throughputs in image-steps per second.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from atlasgen.model.weights import VGG16_LAYERS, load_model
from atlasgen.synthesis import LayerEngine, SynthesisParams, channel_images, natural_photos, neuron_images
from atlasgen.synthesis.images import negative_channel_images
from atlasgen.tf import load
from levers import lever_overrides

tf, keras = load()

FLAT_STD = 2.0  # grey levels: below this an image counts as flat


def naive_throughput(loaded, layer: str, filter_ids: list[int], size: int, steps: int) -> float:
    """Image-steps per second of the textbook loop: one filter, whole network, pixels, no transforms."""
    model = loaded.model
    full = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    mean = tf.constant(np.array(loaded.input_convention.mean, np.float32))

    @tf.function
    def step(image, f):
        with tf.GradientTape() as tape:
            tape.watch(image)
            target, rest = full(image[..., ::-1] * 255.0 - mean, training=False)
            score = tf.reduce_mean(target[..., f])
        grad = tape.gradient(score, image)
        image = image + 0.01 * grad / (tf.math.reduce_std(grad) + 1e-8)
        return tf.clip_by_value(image, 0.0, 1.0), rest

    image = tf.random.uniform((1, size, size, 3), 0.4, 0.6, seed=0)
    step(image, tf.constant(filter_ids[0]))  # compile outside the clock
    start = time.perf_counter()
    for f in filter_ids:
        image = tf.random.uniform((1, size, size, 3), 0.4, 0.6, seed=f)
        for _ in range(steps):
            image, rest = step(image, tf.constant(f))
        rest.numpy()
    return len(filter_ids) * steps / (time.perf_counter() - start)


def responses(engine: LayerEngine, images: np.ndarray, filter_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """[i, j]: filter j's spatial mean on image i, pre-ReLU and post-ReLU."""
    pre, post = [], []
    for start in range(0, len(images), 16):
        batch = tf.constant(images[start : start + 16] / 255.0, tf.float32)
        maps = engine.maps(batch, tf.constant(filter_ids, tf.int32)).numpy()
        pre.append(maps.mean(axis=(1, 2)))
        post.append(np.maximum(maps, 0).mean(axis=(1, 2)))
    return np.concatenate(pre), np.concatenate(post)


def own_image_wins(pre: np.ndarray, images: list[np.ndarray], i: int) -> bool:
    """Whether filter i responds more to its own image than to any other filter's (pre[j, i]: filter
    i's response to image j). A tie with a pixel-identical image is not a loss: two filters of a layer
    affine in the pixels whose weights have the same signs share one exact extreme, which is each one's
    best image over all images."""
    return all(pre[j, i] < pre[i, i] or (pre[j, i] == pre[i, i] and np.array_equal(images[j], images[i]))
               for j in range(len(images)) if j != i)


def box_pixels(image) -> np.ndarray:
    """A neuron image's receptive field: the only place it may differ from grey."""
    b = image.box
    return image.image[b.top : b.bottom, b.left : b.right]


def crops(photos, size: int, stride: int) -> np.ndarray:
    out = []
    for photo in photos:
        height, width = photo.image.shape[:2]
        for top in range(0, height - size + 1, stride):
            for left in range(0, width - size + 1, stride):
                out.append(photo.image[top : top + size, left : left + size])
    return np.stack(out)


def negative_row(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams, crop_pre: np.ndarray,
                 positive: list) -> dict:
    """Each filter's negative whole-filter image against its lowest natural crop (pre-ReLU means):
    the row's numbers, and which filters' images are not below it."""
    start = time.perf_counter()
    negatives = negative_channel_images(engine, filter_ids, params)
    seconds = time.perf_counter() - start
    own_pre, _ = responses(engine, np.stack([n.image for n in negatives]), filter_ids)
    own = np.array([own_pre[i, i] for i in range(len(filter_ids))])
    lowest_crop = crop_pre.min(axis=0)
    return {
        "negative_s": round(seconds, 2),
        "negative_pre_relu_mean": [round(float(v), 3) for v in own],
        "lowest_crop_pre_relu_mean": [round(float(v), 3) for v in lowest_crop],
        "positive_pre_relu_mean": [round(float(p.objective), 3) for p in positive],
        "negative_rgb_std": [round(float(n.image.std()), 1) for n in negatives],
        "not_below_lowest_crop": [f for f, o, c in zip(filter_ids, own, lowest_crop) if not o < c],
        "not_below_positive": [f for f, o, p in zip(filter_ids, own, positive) if not o < p.objective],
        # The stored objective is the float32 evaluation of the final image: it must be this number.
        "objective_matches": bool(np.allclose([n.objective for n in negatives], own, rtol=1e-4, atol=1e-3)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--layers", default="all", help="comma list of conv layers, or all")
    parser.add_argument("--contrast", type=float, default=16.0, help="RGB std floor of whole-filter images")
    parser.add_argument("--set", default="", help="synthesis parameters other than today's defaults, as "
                        "field=value pairs joined by '/' (benchmarks/levers.py's syntax), e.g. contrast_learning_rate=0")
    parser.add_argument("--weights", default="hed-bsds500", help="weights source (atlasgen's --weights)")
    parser.add_argument("--first-filter", type=int, default=0, help="the first filter of each layer to take")
    parser.add_argument("--naive-filters", type=int, default=2)
    parser.add_argument("--naive-steps", type=int, default=16)
    parser.add_argument("--negative", action="store_true", help="also check every negative whole-filter image "
                        "against its filter's lowest natural crop")
    args = parser.parse_args()

    loaded = load_model(args.weights)
    overrides = lever_overrides(args.set) if args.set else {}
    params = SynthesisParams(size=args.size, steps=args.steps, **overrides)
    photo_crops = crops(natural_photos(), args.size, args.size // 2)
    filter_ids = list(range(args.first_filter, args.first_filter + args.filters))
    report, beats, selective, flat, outside, total, grey = [], 0, 0, 0, 0, 0, 0
    layers = VGG16_LAYERS if args.layers == "all" else tuple(args.layers.split(","))
    for layer in layers:
        engine = LayerEngine(loaded, layer)
        # Compile both graphs outside the clock: steps are a graph input, so one step suffices.
        warm = SynthesisParams(size=args.size, steps=1, **overrides)
        channel_images(engine, filter_ids, warm)
        neuron_images(engine, filter_ids, warm)
        if args.negative:
            negative_channel_images(engine, filter_ids, warm)
        start = time.perf_counter()
        channels = channel_images(engine, filter_ids, params)
        channel_s = time.perf_counter() - start
        start = time.perf_counter()
        neurons = neuron_images(engine, filter_ids, params)
        neuron_s = time.perf_counter() - start
        naive = naive_throughput(loaded, layer, filter_ids[: args.naive_filters], args.size, args.naive_steps)

        crop_pre, crop_post = responses(engine, photo_crops, filter_ids)
        best_crop, best_crop_post = crop_pre.max(axis=0), crop_post.max(axis=0)
        own_pre, own_post = responses(engine, np.stack([c.image for c in channels]), filter_ids)
        wins = [own_image_wins(own_pre, [c.image for c in channels], i) for i in range(len(channels))]
        for i, image in enumerate(channels):
            own = own_pre[i, i]
            beats += own > best_crop[i]
            selective += wins[i]
            flat += float(image.image.std()) < FLAT_STD
            unconverged = float(image.image.std()) < args.contrast and not image.faint
            grey += unconverged
            if unconverged:
                print(json.dumps({"not_converged": f"{layer}/{image.filter}", "rgb_std": round(float(image.image.std()), 1),
                                  "contrast_response": image.contrast_response}), flush=True)
            flat += float(box_pixels(neurons[i]).std()) < FLAT_STD
            outside += neurons[i].changed_outside_box
            total += 1
        row = {
            "layer": layer,
            "channel_s": round(channel_s, 2),
            "channel_image_steps_per_s": round(len(filter_ids) * args.steps / channel_s, 2),
            "neuron_s": round(neuron_s, 2),
            "neuron_image_steps_per_s": round(len(filter_ids) * args.steps / neuron_s, 2),
            "neuron_patch": list(engine.patch_plan(args.size).patch.as_list()),
            "naive_image_steps_per_s": round(naive, 2),
            "speedup_channel_vs_naive": round(len(filter_ids) * args.steps / channel_s / naive, 2),
            "speedup_neuron_vs_naive": round(len(filter_ids) * args.steps / neuron_s / naive, 2),
            "own_pre_relu_mean": [round(float(own_pre[i, i]), 3) for i in range(len(filter_ids))],
            "best_crop_pre_relu_mean": [round(float(b), 3) for b in best_crop],
            "own_post_relu_mean": [round(float(own_post[i, i]), 3) for i in range(len(filter_ids))],
            "best_crop_post_relu_mean": [round(float(b), 3) for b in best_crop_post],
            "own_image_wins": wins,
            "own_image_ties_with_the_same_image": [filter_ids[i] for i in range(len(filter_ids))
                                                   if wins[i] and not own_pre[i, i] > np.delete(own_pre[:, i], i).max()],
            "channel_rgb_std": [round(float(c.image.std()), 1) for c in channels],
            "faint_driven": [c.filter for c in channels if c.faint],
        }
        if args.negative:
            row.update(negative_row(engine, filter_ids, params, crop_pre, channels))
        report.append(row)
        print(json.dumps(row), flush=True)

    checks = {
        "no_flat_image": flat == 0,
        "faint_and_not_faint_driven": int(grey),
        "faint_driven": sum(len(row["faint_driven"]) for row in report),
        "beats_best_crop_fraction": beats / total,
        "own_image_fraction": selective / total,
        "changed_pixels_outside_box": int(outside),
    }
    # bool(): a failed comparison of NumPy counts is NumPy's bool, which json cannot write.
    passed = bool(flat == 0 and grey == 0 and beats == total and selective == total and outside == 0)
    checks["not_own_image"] = [f"{row['layer']}/{filter_ids[i]}" for row in report
                               for i, won in enumerate(row["own_image_wins"]) if not won]
    checks["below_best_crop"] = [f"{row['layer']}/{filter_ids[i]}" for row in report
                                 for i, (own, crop) in enumerate(zip(row["own_pre_relu_mean"], row["best_crop_pre_relu_mean"]))
                                 if own <= crop]
    if args.negative:
        above = [f"{row['layer']}/{f}" for row in report for f in row["not_below_lowest_crop"]]
        checks["negative_below_lowest_crop_fraction"] = 1 - len(above) / total
        checks["negative_not_below_lowest_crop"] = above
        checks["negative_not_below_positive"] = [f"{row['layer']}/{f}" for row in report for f in row["not_below_positive"]]
        checks["negative_objective_matches"] = all(row["objective_matches"] for row in report)
        passed = bool(passed and not above and not checks["negative_not_below_positive"]
                      and checks["negative_objective_matches"])
    settings = {"weights": args.weights, "size": args.size, "steps": args.steps, "filters": filter_ids, "set": args.set,
                "layers": list(layers), "negative": args.negative}
    print(json.dumps({"checks": checks, "passed": passed, "settings": settings}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
