"""How each synthesised image of a filter was made, for its page: the settings it ran with (method,
steps, learning rate, seed, precision, and the transforms fitted to its layer, from atlas.json) and
its objective along the run as a small plot's geometry, which `templates/macros.html` draws (`curve`).

Pure Python over the manifest's records: rendering imports neither the synthesis nor TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from atlasgen.build.kinds import ALL_KINDS, VIEWS
from atlasgen.manifest import Manifest, TransformsUsed

#: The curve's plot, in CSS px (its viewBox): the plotting area inside leaves room for the axis labels.
CURVE_WIDTH, CURVE_HEIGHT = 260, 112
CURVE_LEFT, CURVE_RIGHT, CURVE_TOP, CURVE_BOTTOM = 52, 252, 8, 84

#: The method a synthesised view's image is made by, when its kind belongs to none (the centre neuron's: Lucid's).
DEFAULT_METHOD = "lucid"
_METHOD_OF_VIEW = {view.id: kind.method or DEFAULT_METHOD for kind in ALL_KINDS.values() for view in kind.views}


@dataclass(frozen=True)
class CurvePlot:
    """An objective curve ([step, objective] pairs) placed in the plot: one point per entry."""

    points: list[tuple[float, float]]  # (x, y) in the viewBox, in the curve's order
    first_step: int
    last_step: int
    low: float  # the objective's range over the run
    high: float
    final: float  # the last entry's objective: the stored one
    width: int = CURVE_WIDTH
    height: int = CURVE_HEIGHT
    left: int = CURVE_LEFT
    right: int = CURVE_RIGHT
    top: int = CURVE_TOP
    bottom: int = CURVE_BOTTOM

    def y(self, objective: float) -> float:
        """Where an objective value is drawn: `high` at the top of the area, `low` at its bottom (a
        flat run in the middle)."""
        if self.high == self.low:
            return (self.top + self.bottom) / 2
        return self.bottom - (objective - self.low) / (self.high - self.low) * (self.bottom - self.top)

    def x(self, step: float) -> float:
        if self.last_step == self.first_step:
            return float(self.right)
        return self.left + (step - self.first_step) / (self.last_step - self.first_step) * (self.right - self.left)


def curve_plot(curve) -> CurvePlot | None:
    """The plot of an image's objective curve (metrics.<view>.curve); None when it has none."""
    if not curve:
        return None
    values = [float(v) for _, v in curve]
    axes = CurvePlot([], int(curve[0][0]), int(curve[-1][0]), min(values), max(values), values[-1])
    return replace(axes, points=[(round(axes.x(step), 2), round(axes.y(value), 2)) for step, value in curve])


@dataclass(frozen=True)
class Making:
    """How one synthesised image was made."""

    method: str  # "lucid" or "maco"
    steps: int
    seed: int
    precision: str  # "float32" or "mixed"
    learning_rate: float | None  # None: this atlas.json does not record it for the layer
    transforms: TransformsUsed | None  # the Lucid method's, fitted to the layer; None for MACO or unrecorded
    method_parameters: dict  # the method's own parameters (MACO's crops and noise), else empty


def making(atlas: Manifest, layer, view, metrics) -> Making:
    """The settings an image of `view` (with its numbers `metrics`) of a filter of `layer` ran with:
    its method's parameters in atlas.json (`parameters`, or `method_parameters` for a method that
    has its own), and the transforms and learning rate the layer's `synthesis` record says."""
    method = _METHOD_OF_VIEW.get(view.id, DEFAULT_METHOD)
    own = atlas.method_parameters.get(method, {}) if method != DEFAULT_METHOD else {}
    recorded = (layer.synthesis or {}).get(view.metrics or view.id)
    params = atlas.parameters
    learning_rate = recorded.learning_rate if recorded else own.get("learning_rate")
    return Making(method, metrics.steps, own.get("seed", params.seed), own.get("precision", params.precision),
                  learning_rate, recorded, own)


def image_label(name: str) -> str:
    """What the pages call a synthesised image by its metrics' name ("channel": "whole filter")."""
    return next((v.header.replace("\n", " ") for v in VIEWS.values() if v.metrics == name), name)
