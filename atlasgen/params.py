"""The parameters of a synthesis run, as a plain value: what every synthesis recipe and atlas.json
record. Pure Python, so reading an atlas never imports the synthesis machinery."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from atlasgen.errors import AtlasgenError

#: What a synthesis computes in: float32 throughout, or "mixed": the trunk and the target layer's
#: convolution in bfloat16 with float32 variables, the maps returned (and everything after them) in float32.
PRECISIONS = ("float32", "mixed")
#: The diversity term's weight (atlasgen.synthesis.objectives.diversity), relative to the size of the
#: filter's objective on each image: 1 measured images as unlike as at 3 and still above every natural
#: crop; 3 pulled some below it (block3_conv1 and block4_conv1, filters 0-5, 64 px).
DIVERSITY_WEIGHT = 1.0
#: A diversity image of a layer affine in the pixels keeps at least this share of its exact extreme's
#: gain over grey (atlasgen.synthesis.diversity.over_exact_extremes).
EXACT_SHARE = 0.9
#: The largest diversity set (--diversity): each image costs what a whole-filter image does.
MAX_DIVERSITY = 16


def check_precision(precision, option: str = "precision") -> str:
    """The precision if it is one of PRECISIONS; a one-line error naming them otherwise."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise AtlasgenError(f"{option} {precision!r} is not a precision; use one of {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class SynthesisParams:
    """Every knob of a synthesis run; Lucid's defaults except size and steps, which the caller sets."""

    size: int = 128
    steps: int = 512
    learning_rate: float = 0.05
    # Whole-filter images of layers whose field is under images.FIELD_FOR_WARPS: there the fitted
    # transforms barely move the image, so a larger step stays on the objective's path.
    small_field_learning_rate: float = 0.1
    seed: int = 0
    init_sd: float = 0.01
    # 1.5 rather than Lucid's 1.0: Adam moves every coefficient about one step a step, so the low
    # frequencies (colour, layout) need a larger scale to travel in 64 steps what they do in 512.
    decay_power: float = 1.5
    decorrelate: bool = True
    pad: int = 12
    jitter: int = 8
    scale: tuple[float, float] = (0.9, 1.1)
    rotate_degrees: float = 10.0
    jitter_last: int = 4
    # Whole-filter transforms fitted to the layer's receptive field (small fields get small moves).
    fit_transforms: bool = True
    # "constant", or "cosine": from learning_rate down to a tenth of it over the run.
    lr_schedule: str = "constant"
    # Adam on each image's log contrast: the deviation of its pre-sigmoid image from its mean colour is
    # scaled by exp of it, so a filter driven hardest by faint input reaches its faint optimum in the
    # steps there are (Adam moves every Fourier coefficient about one step a step, far too slowly to
    # shrink them all together). 0 turns it off.
    contrast_learning_rate: float = 0.4
    # The log contrast stays at or below this: 0 lets an image grow fainter than its spectrum makes it,
    # never harsher, so a vivid filter keeps the image its spectrum gives.
    max_log_contrast: float = 0.0
    # The fraction of the run after which the contrast learns: before it, the texture forms at unit contrast.
    contrast_start: float = 0.75
    # The fraction of a whole-filter run after which each image is scored untransformed, as it is judged
    # (1: never). The transforms have shaped the texture by then, and the second half refines the image
    # itself: with it (and the contrast learning at 0.4), filters 0-7 of all 13 layers at the quick
    # budget scored 10-40% higher and each responded most to its own image (algorithm 6). A centre
    # neuron settles too where its field reaches the image's border (it then has no pad: algorithm 7).
    settle_start: float = 0.5
    # After the run, the whole-filter image's deviation from its mean colour, or from neutral grey, is
    # scaled by whichever of these factors its filter scores highest: a last step the one way the learned
    # contrast may go, fainter (never louder: every factor is at most 1); about grey, paler in colour too.
    contrast_search: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 0.25, 0.15, 0.1)
    # "float32", or "mixed": the model computes in bfloat16 (float32 variables); the image, its
    # parametrisation, the transforms, Adam and the objective stay float32. The engine must match.
    precision: str = "float32"

    @property
    def untransformed_from(self) -> int | None:
        """The first step scored untransformed (`settle_start` of the run), or None: every step is transformed."""
        return math.ceil(self.settle_start * self.steps) if self.settle_start < 1 else None

    def recipe(self) -> dict:
        """The parameters as plain JSON values, for recipes and manifests."""
        values = asdict(self)
        values["scale"] = list(self.scale)
        values["contrast_search"] = list(self.contrast_search)
        return values
