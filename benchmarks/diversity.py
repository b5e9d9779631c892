"""How different a filter's diversity set is, against as many images from different seeds without the term.

    python benchmarks/diversity.py [--layers block3_conv2,block4_conv2] [--filters 6] [--faces 2]
                                   [--size 64] [--steps 64] [--weight 1.0]

With hed-bsds500 weights, for the first --filters filters of each layer, it makes:
  - the filter's diversity set: --faces images optimised together with Lucid's diversity term
    (atlasgen.synthesis.diversity, as the build makes them);
  - --faces whole-filter images without the term, each from its own seed (0, 1, ...), as the build
    makes the whole-filter image.
For both it prints how alike the images of a filter are, averaged over the filters:
  - the mean pairwise cosine similarity of the Gram matrices of the features that feed the layer
    (what the term pulls apart; 1: the same texture);
  - the mean pairwise Pearson correlation of their pixels;
  - the same within each colour channel (their layouts: a colour they share is not likeness).
And it checks that every diversity image drives its filter above the filter's best crop of
scikit-image's natural photographs (pre-ReLU spatial means, as benchmarks/synthesis_acceptance.py
does), and that the term makes the sets less alike than the seeds do. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace

import numpy as np

from atlasgen.model.weights import load_model
from atlasgen.synthesis import LayerEngine, SynthesisParams, channel_images, natural_photos
from atlasgen.synthesis.diversity import diversity_batch
from atlasgen.synthesis.objectives import gram_similarity
from atlasgen.tf import tf
from synthesis_acceptance import crops, responses


def gram_alike(engine: LayerEngine, images: list[np.ndarray]) -> float:
    features = engine.features(tf.constant(np.stack(images) / 255.0, tf.float32))
    return float(gram_similarity(tf.cast(features, tf.float32), len(images)).numpy().mean())


def pixel_alike(images: list[np.ndarray]) -> float:
    flat = [image.astype(np.float64).ravel() for image in images]
    return float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in itertools.combinations(flat, 2)]))


def layout_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two images' layouts are: the Pearson correlation of their pixels within each colour
    channel, averaged over the channels that vary in both (1.0 when none does). Unlike the correlation
    of all pixels at once, a colour both images share does not count as likeness: a set that must keep
    one saturated colour to beat natural photos (a layer affine in the pixels) correlates above 0.9
    by that colour alone, however differently its images are laid out."""
    values = [np.corrcoef(a[..., c].astype(np.float64).ravel(), b[..., c].astype(np.float64).ravel())[0, 1]
              for c in range(a.shape[-1]) if a[..., c].std() > 0 and b[..., c].std() > 0]
    return float(np.mean(values)) if values else 1.0


def layout_alike(images: list[np.ndarray]) -> float:
    return float(np.mean([layout_correlation(a, b) for a, b in itertools.combinations(images, 2)]))


def layer_report(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams, faces: int, weight: float,
                 photo_crops: np.ndarray) -> dict:
    sets = diversity_batch(engine, filter_ids, params, faces, weight)
    seeded = [channel_images(engine, filter_ids, replace(params, seed=seed))
              for seed in range(faces)]
    best_crop = responses(engine, photo_crops, filter_ids)[0].max(axis=0)
    rows = []
    for i, made in enumerate(sets):
        alone = [seeded[seed][i].image for seed in range(faces)]
        rows.append({
            "filter": made.filter,
            "gram_with_term": gram_alike(engine, made.images), "gram_seeds": gram_alike(engine, alone),
            "pixels_with_term": pixel_alike(made.images), "pixels_seeds": pixel_alike(alone),
            "layout_with_term": layout_alike(made.images), "layout_seeds": layout_alike(alone),
            "objectives": [round(v, 3) for v in made.objectives], "best_crop": round(float(best_crop[i]), 3),
            "below_best_crop": [rank for rank, v in enumerate(made.objectives) if v <= best_crop[i]],
        })
    return {"layer": engine.name, "filters": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="block3_conv2,block4_conv2")
    parser.add_argument("--filters", type=int, default=6)
    parser.add_argument("--faces", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--weights", default="hed-bsds500")
    args = parser.parse_args()

    loaded = load_model(args.weights)
    params = SynthesisParams(size=args.size, steps=args.steps)
    photo_crops = crops(natural_photos(), args.size, args.size // 2)
    reports = [layer_report(LayerEngine(loaded, layer), list(range(args.filters)), params, args.faces, args.weight,
                            photo_crops) for layer in args.layers.split(",")]
    rows = [row for report in reports for row in report["filters"]]
    summary = {name: round(float(np.mean([row[name] for row in rows])), 3)
               for name in ("gram_with_term", "gram_seeds", "pixels_with_term", "pixels_seeds",
                                                                "layout_with_term", "layout_seeds")}
    below = [f"{report['layer']}/{row['filter']}#{rank}" for report in reports for row in report["filters"]
             for rank in row["below_best_crop"]]
    summary.update(images=len(rows) * args.faces, below_best_crop=below, faces=args.faces, weight=args.weight,
                   size=args.size, steps=args.steps)
    print(json.dumps(reports, indent=1))
    print(json.dumps(summary))
    return 0 if not below and summary["gram_with_term"] < summary["gram_seeds"] else 1


if __name__ == "__main__":
    sys.exit(main())
