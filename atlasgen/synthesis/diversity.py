"""Several faces of one filter: N whole-filter images optimised together with Lucid's diversity term
(Olah et al. 2017), so that each maximises the filter's pre-ReLU mean while its texture differs from
the others'.

The N images of a filter run in one batch, each from its own start (a hash of the seed, the filter and
its place), with the same parametrisation, fitted transforms, learned contrast and contrast search as
the filter's whole-filter image; their objective adds `objectives.diversity`, the negative mean cosine
similarity between the Gram matrices of the activations that feed the layer. A layer affine in the
pixels has one best image, so its set images are each laid over it (`over_exact_extremes`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from atlasgen.params import DIVERSITY_WEIGHT, EXACT_SHARE, SynthesisParams
from atlasgen.synthesis.engine import LayerEngine
from atlasgen.synthesis.images import (
    NEUTRAL_BYTE, best_contrast, channel_batch_size, check_batch, check_engine_precision, evaluate, exact_extremes,
    fitted_to_field, to_bytes,
)
from atlasgen.synthesis.objectives import channel_mean, diversity, gram_similarity
from atlasgen.synthesis.optimise import ContrastLearning, FourierImage, optimise
from atlasgen.synthesis.transforms import standard
from atlasgen.tf import tf

@dataclass
class DiverseImages:
    """One filter's N images, each with its objective (pre-ReLU mean) and post-ReLU mean, and how alike
    they came out: the mean pairwise cosine similarity of their features' Gram matrices."""

    layer: str
    filter: int
    images: list[np.ndarray]  # uint8 (h, w, 3) each
    objectives: list[float]  # each image's pre-ReLU channel mean, without the diversity term
    mean_activations: list[float]
    similarity: float
    histories: list[np.ndarray]  # each image's channel mean along its run, (steps,), under that step's transforms
    # A layer affine in the pixels: each image's weight on the layer's exact extreme (`over_exact_extremes`).
    exact_weights: list[float] | None = None


def diversity_key(seed: int, filter_id: int, face: int) -> int:
    """A stable 31-bit key per (seed, filter, face): each face's own start and transforms."""
    digest = hashlib.sha256(f"{seed}:{filter_id}:face {face}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def diversity_batch(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams, faces: int,
                    weight: float = DIVERSITY_WEIGHT) -> list[DiverseImages]:
    """One batch: `faces` images of every filter of `filter_ids`, optimised together."""
    filter_ids = list(filter_ids)
    check_batch(engine, filter_ids, params)
    check_engine_precision(engine, params)
    param_f = FourierImage(params.size, params.size, params.init_sd, params.decay_power, params.decorrelate)
    fitted = fitted_to_field(params, min(engine.field((params.size, params.size)).extent)) if params.fit_transforms else params
    objective = channel_mean() + diversity(faces, weight, channel_mean())
    ids = [f for f in filter_ids for _ in range(faces)]
    keys = [diversity_key(params.seed, f, face) for f in filter_ids for face in range(faces)]
    transforms = standard(fitted.pad, fitted.jitter, fitted.scale, fitted.rotate_degrees, fitted.jitter_last)
    run = optimise(
        engine, objective, param_f, transforms, params.steps, filter_ids=ids, keys=keys,
        learning_rate=fitted.learning_rate, lr_schedule=fitted.lr_schedule,
        cache_key=("diversity", param_f, objective.description, replace(fitted, steps=0), len(ids)),
        contrast=ContrastLearning(fitted.contrast_learning_rate, fitted.max_log_contrast, fitted.contrast_start),
        settle_start=fitted.settle_start,
    )
    images = best_contrast(engine, to_bytes(run.images), ids, params.contrast_search)
    images, blends = over_exact_extremes(engine, images, ids)
    values, means = evaluate(engine, images / 255.0, ids)
    features = engine.features(tf.constant(images / 255.0, tf.float32))
    alike = gram_similarity(tf.cast(features, tf.float32), faces).numpy()
    out = []
    for k, f in enumerate(filter_ids):
        face = slice(k * faces, (k + 1) * faces)
        out.append(DiverseImages(engine.name, f, list(images[face]), [float(v) for v in values[face]],
                                 [float(v) for v in means[face]], float(alike[face].mean()),
                                 [run.history[:, i] for i in range(face.start, face.stop)],
                                 None if blends is None else blends[face]))
    return out


def over_exact_extremes(engine: LayerEngine, images: np.ndarray, ids: list[int]):
    """For a layer affine in the pixels, whose one best image is known (`exact_extremes`), each
    optimised image laid over it: (1 - a) x image + a x extreme, with the least weight a that keeps
    EXACT_SHARE of the extreme's gain over grey (an affine objective moves linearly in a, so a is
    solved for, not searched). The textures the diversity term pulled apart stay as visible as that
    allows. Elsewhere, the images as they are; the weights (None where not affine)."""
    if not engine.affine_in_pixels:
        return images, None
    extreme = exact_extremes(engine, ids, images.shape[1]).astype(np.float32)
    grey = np.full_like(extreme, NEUTRAL_BYTE)
    score = lambda x: evaluate(engine, x / 255.0, ids)[0]  # noqa: E731
    own, best, flat = score(images.astype(np.float32)), score(extreme), score(grey)
    target = flat + EXACT_SHARE * (best - flat)
    weight = np.clip((target - own) / np.maximum(best - own, 1e-12), 0.0, 1.0)
    blended = (1 - weight)[:, None, None, None] * images + weight[:, None, None, None] * extreme
    return np.clip(np.round(blended), 0, 255).astype(np.uint8), [float(w) for w in weight]


def diversity_batch_size(engine: LayerEngine, params: SynthesisParams, faces: int, wanted: int) -> int:
    """How many filters' `faces` images fit one batch in memory (at most `wanted` filters)."""
    return max(1, channel_batch_size(engine, params, wanted * faces) // faces)
