"""Objectives, composable the way Lucid's are.

An objective maps `maps`, the pre-ReLU output of each batch element's own filter, shape
(batch, h, w), to one score per element, shape (batch,); one that `needs_features` also gets the
activations that feed the filter's layer, (batch, h', w', c). Objectives add, subtract and scale:
`channel_mean() + 0.5 * neuron(3, 3)` is an objective too, with a description to match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from atlasgen.tf import tf


@dataclass(frozen=True)
class Objective:
    """A score per batch element from its own filter's maps, and what it says in words (part of the cache key)."""

    score: Callable
    description: str
    needs_features: bool = False  # its score also takes the features that feed the layer
    # What a run records of it along the way (`tracked`); None: its score. A regulariser such as the
    # diversity term steers the images but is no part of the filter's objective, so it records zeros.
    track: Callable | None = None

    def __call__(self, maps, features=None):
        return self.score(maps, features) if self.needs_features else self.score(maps)

    def tracked(self, maps, features=None):
        """The part of the score that is the filter's objective: what a run's history records."""
        if self.track is None:
            return self(maps, features)
        return self.track(maps, features)

    def _joined(self, other: "Objective", score: Callable, track: Callable, description: str) -> "Objective":
        plain = self.track is None and other.track is None
        return Objective(lambda m, f=None: score(m, f), description, self.needs_features or other.needs_features,
                         None if plain else lambda m, f=None: track(m, f))

    def __add__(self, other: "Objective") -> "Objective":
        return self._joined(other, lambda m, f: self(m, f) + other(m, f),
                            lambda m, f: self.tracked(m, f) + other.tracked(m, f), f"{self.description} + {other.description}")

    def __neg__(self) -> "Objective":
        track = None if self.track is None else lambda m, f=None: -self.tracked(m, f)
        return Objective(lambda m, f=None: -self(m, f), f"-({self.description})", self.needs_features, track)

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-other)

    def __mul__(self, weight: float) -> "Objective":
        track = None if self.track is None else lambda m, f=None: weight * self.tracked(m, f)
        return Objective(lambda m, f=None: weight * self(m, f), f"{weight:g} * ({self.description})",
                         self.needs_features, track)

    __rmul__ = __mul__


def channel_mean() -> Objective:
    """The spatial mean of the filter's pre-ReLU map over the whole image."""
    return Objective(lambda maps: tf.reduce_mean(maps, axis=[1, 2]), "channel mean")


def neuron(y: int, x: int) -> Objective:
    """The pre-ReLU value of the single unit at (y, x) of the filter's map."""
    return Objective(lambda maps: maps[:, y, x], f"neuron ({y}, {x})")


def gram_similarity(features, group: int):
    """Each image's mean cosine similarity with the other images of its group (consecutive runs of
    `group` images), between the Gram matrices of their features, (batch, h, w, c): (batch,)."""
    flat = tf.reshape(features, [tf.shape(features)[0], -1, tf.shape(features)[-1]])
    gram = tf.matmul(flat, flat, transpose_a=True) / tf.cast(tf.shape(flat)[1], features.dtype)
    gram = tf.math.l2_normalize(tf.reshape(gram, [tf.shape(gram)[0], -1]), axis=1)
    grouped = tf.reshape(gram, [-1, group, tf.shape(gram)[-1]])
    cosine = tf.matmul(grouped, grouped, transpose_b=True)  # (groups, group, group)
    others = (tf.reduce_sum(cosine, axis=-1) - tf.linalg.diag_part(cosine)) / max(group - 1, 1)
    return tf.reshape(others, [-1])


def diversity(group: int, weight: float, scale: Objective) -> Objective:
    """Lucid's diversity term (Olah et al. 2017): minus each image's mean cosine similarity, between
    Gram matrices of the features that feed the layer, with the other images of its group of `group`
    images of one filter. It is weighted by `weight` times the size of `scale` on the image (held
    constant in the gradient), so that it pulls as hard on a filter whose objective is 1000 as on one
    whose objective is 1."""

    def score(maps, features):
        size = tf.stop_gradient(tf.abs(scale(maps)) + 1.0)
        return -weight * size * gram_similarity(tf.cast(features, tf.float32), group)

    return Objective(score, f"diversity of {group} ({weight:g} x |{scale.description}|)", needs_features=True,
                     track=lambda maps, features=None: tf.zeros_like(maps[:, 0, 0]))
