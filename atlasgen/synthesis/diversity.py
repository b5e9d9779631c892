"""Several faces of one filter: N whole-filter images optimised together with Lucid's diversity term
(Olah et al. 2017), so that each maximises the filter's pre-ReLU mean while its texture differs from
the others'.

The N images of a filter run in one batch, each from its own start (a hash of the seed, the filter and
its place), with the same parametrisation, fitted transforms, learned contrast and contrast search as
the filter's whole-filter image; their objective adds `objectives.diversity`, the negative mean cosine
similarity between the Gram matrices of the activations that feed the layer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from atlasgen.params import SynthesisParams
from atlasgen.synthesis.engine import LayerEngine
from atlasgen.synthesis.images import (
    best_contrast, channel_batch_size, check_batch, check_engine_precision, evaluate, fitted_to_field, to_bytes,
)
from atlasgen.synthesis.objectives import channel_mean, diversity, gram_similarity
from atlasgen.synthesis.optimise import ContrastLearning, FourierImage, optimise
from atlasgen.synthesis.transforms import standard
from atlasgen.tf import tf

#: The diversity term's weight, relative to the size of the filter's objective on each image.
DEFAULT_WEIGHT = 1.0


@dataclass
class DiverseImages:
    """One filter's N images, each with its objective (pre-ReLU mean) and post-ReLU mean, and how alike
    they came out: the mean pairwise cosine similarity of their features' Gram matrices."""

    layer: str
    filter: int
    images: list[np.ndarray]  # uint8 (h, w, 3) each
    objectives: list[float]
    mean_activations: list[float]
    similarity: float
    steps: int


def diversity_key(seed: int, filter_id: int, face: int) -> int:
    """A stable 31-bit key per (seed, filter, face): each face's own start and transforms."""
    digest = hashlib.sha256(f"{seed}:{filter_id}:face {face}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def diversity_batch(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams, faces: int,
                    weight: float = DEFAULT_WEIGHT) -> list[DiverseImages]:
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
    )
    images = best_contrast(engine, to_bytes(run.images), ids, params.contrast_search)
    values, means = evaluate(engine, images / 255.0, ids)
    features = engine.features(tf.constant(images / 255.0, tf.float32))
    alike = gram_similarity(tf.cast(features, tf.float32), faces).numpy()
    out = []
    for k, f in enumerate(filter_ids):
        face = slice(k * faces, (k + 1) * faces)
        out.append(DiverseImages(engine.name, f, list(images[face]), [float(v) for v in values[face]],
                                 [float(v) for v in means[face]], float(alike[face].mean()), params.steps))
    return out


def diversity_batch_size(engine: LayerEngine, params: SynthesisParams, faces: int, wanted: int) -> int:
    """How many filters' `faces` images fit one batch in memory (at most `wanted` filters)."""
    return max(1, channel_batch_size(engine, params, wanted * faces) // faces)
