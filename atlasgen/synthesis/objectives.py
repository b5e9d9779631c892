"""Objectives, composable the way Lucid's are.

An objective maps `maps`, the pre-ReLU output of each batch element's own filter, shape
(batch, h, w), to one score per element, shape (batch,). Objectives add, subtract and scale:
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

    def __call__(self, maps):
        return self.score(maps)

    def __add__(self, other: "Objective") -> "Objective":
        return Objective(lambda m: self(m) + other(m), f"{self.description} + {other.description}")

    def __neg__(self) -> "Objective":
        return Objective(lambda m: -self(m), f"-({self.description})")

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-other)

    def __mul__(self, weight: float) -> "Objective":
        return Objective(lambda m: weight * self(m), f"{weight:g} * ({self.description})")

    __rmul__ = __mul__


def channel_mean() -> Objective:
    """The spatial mean of the filter's pre-ReLU map over the whole image."""
    return Objective(lambda maps: tf.reduce_mean(maps, axis=[1, 2]), "channel mean")


def neuron(y: int, x: int) -> Objective:
    """The pre-ReLU value of the single unit at (y, x) of the filter's map."""
    return Objective(lambda maps: maps[:, y, x], f"neuron ({y}, {x})")
