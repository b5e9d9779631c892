"""Whole-filter and centre-neuron images, and receptive-field crops: the records the build stores."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from atlasgen.model import geometry
from atlasgen.codec import RF_CROP_DISPLAY, zoomed_crop
from atlasgen.errors import AtlasgenError
from atlasgen.synthesis import objectives
from atlasgen.synthesis.engine import LayerEngine, PatchPlan, available_memory_bytes, choose_batch_size
from atlasgen.params import SynthesisParams
from atlasgen.synthesis.optimise import ContrastLearning, FourierImage, Optimised, filter_key, optimise
from atlasgen.synthesis.transforms import NEUTRAL, standard
from atlasgen.tf import tf

NEUTRAL_BYTE = int(np.round(NEUTRAL * 255))
CHANNEL, NEURON = "channel", "neuron"
#: The whole-filter image that minimises its filter's pre-ReLU channel mean: what inhibits it most.
CHANNEL_NEGATIVE = "channel-negative"
#: A filter's diversity set (atlasgen.synthesis.diversity): whole-filter images optimised together.
DIVERSITY = "diversity"

# Jitter moves the field's content under the neuron; beyond a fraction of the field the neuron
# mostly sees grey and the image stops being about it (at block1_conv1, r = 3, jitter 8 made the
# final image drive the neuron negative).
JITTER_PER_FIELD, LAST_JITTER_PER_FIELD = 1 / 8, 1 / 16
#: Fields smaller than this get no random zoom or turn in whole-filter images.
FIELD_FOR_WARPS = 16
#: The contrasts a whole-filter image is judged at, relative to its own.
CONTRAST_SCALES = (0.5, 1.0, 1.5, 2.0)
#: An image's RGB standard deviation (0..255) under this is faint; it is then faint-driven when its
#: filter scores both louder versions (x1.5, x2) lower, and otherwise has not converged.
FAINT_STD = 16.0
#: After the contrast search, a faint image grows louder by the best of these factors (about its mean
#: colour) while its filter scores that higher: a faint image is shown only where faint is its filter's
#: own choice. Vivid images are never made louder, so a vivid filter keeps the image its run gave.
LOUDER_SCALES = (1.25, 1.5, 2.0)
#: The most rounds of that.
LOUDER_ROUNDS = 4


@dataclass
class FilterImage:
    """One synthesised image and what it achieved."""

    layer: str
    filter: int
    kind: str  # "channel", "channel-negative" or "neuron"
    image: np.ndarray  # uint8 (h, w, 3)
    objective: float  # pre-ReLU objective on the final image, no transforms
    mean_activation: float  # the filter's post-ReLU spatial mean on the final image
    history: np.ndarray  # objective at every step, under that step's transforms
    box: geometry.Box | None = None  # neuron images: the receptive field, clipped
    changed_outside_box: int | None = None  # neuron images: pixels not neutral outside the box
    # Whole-filter images: [scale, objective] with the image's deviation from its mean colour scaled
    # by each of CONTRAST_SCALES (clipped to the pixel range), and whether the filter is faint-driven.
    contrast_response: list[list[float]] | None = None
    faint: bool | None = None
    # Whole-filter images of a layer affine in the pixels: whether the image is the exact extreme
    # (`exact_extremes`), which scored beyond the optimised one.
    exact: bool | None = None


def to_bytes(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8, rounded."""
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def check_engine_precision(engine: LayerEngine, params) -> None:
    """The engine must compute in the precision the parameters (and so the recipes) name."""
    wanted = params.precision
    if engine.precision != wanted:
        raise AtlasgenError(
            f"the engine of {engine.name} computes in {engine.precision} and the parameters ask for {wanted}; "
            f"make it with LayerEngine(loaded, layer, precision={wanted!r})"
        )


def check_batch(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams) -> None:
    """A one-line error unless every filter is the layer's, and steps and size make an image it can see."""
    bad = [f for f in filter_ids if not 0 <= f < engine.filters]
    if bad:
        raise AtlasgenError(
            f"filter {bad[0]} is out of range for layer {engine.name}; use 0-{engine.filters - 1}"
        )
    if params.steps < 1 or params.size < 1:
        raise AtlasgenError("steps and size must be at least 1")
    if min(engine.output_size((params.size, params.size))) < 1:
        raise AtlasgenError(f"--size {params.size} is too small for layer {engine.name}; use a larger --size")


def batches(filter_ids: list[int], batch_size: int) -> list[list[int]]:
    """Batches of `batch_size`; the last is padded with repeats so every batch reuses one graph."""
    out = []
    for start in range(0, len(filter_ids), batch_size):
        chunk = list(filter_ids[start : start + batch_size])
        if len(filter_ids) > batch_size and len(chunk) < batch_size:
            chunk += [chunk[-1]] * (batch_size - len(chunk))
        out.append(chunk)
    return out


def _batch_size(engine: LayerEngine, shape: geometry.Pair, wanted: int) -> int:
    return choose_batch_size(engine.bytes_per_image(shape), available_memory_bytes(), wanted)


def channel_batch_size(engine: LayerEngine, params: SynthesisParams, wanted: int) -> int:
    """How many whole-filter images fit one batch in memory (at most `wanted`)."""
    side = params.size + 2 * params.pad
    return _batch_size(engine, (side, side), wanted)


def neuron_batch_size(engine: LayerEngine, params: SynthesisParams, wanted: int) -> int:
    """How many centre-neuron images fit one batch in memory (at most `wanted`)."""
    setup = _neuron_setup(engine, params)
    pad = setup.params.pad
    shape = (setup.plan.patch.height + 2 * pad, setup.plan.patch.width + 2 * pad)
    return _batch_size(engine, shape, wanted)


def evaluate(engine: LayerEngine, images: np.ndarray, filter_ids: list[int], unit=None, *, float32: bool = True):
    """Pre-ReLU objective and post-ReLU mean of each image's own filter, without transforms.

    In float32 whatever the engine's precision, so that what is stored stays comparable across
    precisions; with `float32` false, in the engine's precision: a choice among candidate images is
    made in the precision they were optimised in (in "mixed", bfloat16 at about half the cost)."""
    maps = engine.own_maps(tf.constant(images, tf.float32), tf.constant(filter_ids, tf.int32), float32=float32).numpy()
    objective = maps.mean(axis=(1, 2)) if unit is None else maps[:, unit[0], unit[1]]
    return objective, np.maximum(maps, 0).mean(axis=(1, 2))


def with_contrast(images: np.ndarray, scale, towards_grey=False) -> np.ndarray:
    """uint8 images with their deviation from their own mean colour (or, `towards_grey`, from neutral
    grey: colour and contrast together) scaled, by image (`scale` and `towards_grey` are one value or
    one per image), clipped to 0..255, as float pixels in [0, 1]."""
    pixels = images.astype(np.float32)
    per_image = (-1, 1, 1, 1)
    grey = np.asarray(towards_grey).reshape(per_image) if np.ndim(towards_grey) else towards_grey
    centre = np.where(grey, NEUTRAL_BYTE, pixels.mean(axis=(1, 2), keepdims=True))
    scale = np.asarray(scale, np.float32).reshape(per_image) if np.ndim(scale) else scale
    return np.clip(centre + scale * (pixels - centre), 0, 255) / 255.0


def best_contrast(engine: LayerEngine, images: np.ndarray, filter_ids: list[int], scales, sign: int = 1) -> np.ndarray:
    """Each uint8 image at whichever of `scales` its filter scores highest (the first on ties), each
    scale taken about the image's own mean colour and about neutral grey (fainter colour too); with
    `sign` -1, whichever it scores lowest (a negative image: the one that inhibits it most). Then a
    faint image grows louder while its filter prefers that (`louder_while_preferred`)."""
    if len(scales) >= 2:
        candidates = [(s, grey) for grey in (False, True) for s in scales]
        scores = np.stack([evaluate(engine, with_contrast(images, s, grey), filter_ids, float32=False)[0]
                           for s, grey in candidates], axis=1)
        best = [candidates[k] for k in np.argmax(sign * scores, axis=1)]
        images = to_bytes(with_contrast(images, [s for s, _ in best], [grey for _, grey in best]))
    return louder_while_preferred(engine, images, filter_ids, sign)


def is_faint(images: np.ndarray) -> np.ndarray:
    """For each uint8 image (batch, h, w, 3), whether its RGB sd is under FAINT_STD."""
    return images.reshape(len(images), -1).std(axis=1) < FAINT_STD


def louder_while_preferred(engine: LayerEngine, images: np.ndarray, filter_ids: list[int], sign: int = 1) -> np.ndarray:
    """Each faint uint8 image (RGB sd under FAINT_STD) scaled about its mean colour by the best of
    LOUDER_SCALES while its filter scores that beyond the image (higher; with `sign` -1, lower), for
    at most LOUDER_ROUNDS rounds; every other image as it is."""
    for _ in range(LOUDER_ROUNDS):
        faint = np.flatnonzero(is_faint(images))
        if not len(faint):
            break
        # Only the faint images are scored: the rest are never made louder.
        quiet, ids = images[faint], [filter_ids[k] for k in faint]
        own = sign * evaluate(engine, quiet / 255.0, ids, float32=False)[0]
        louder = np.stack([sign * evaluate(engine, with_contrast(quiet, s), ids, float32=False)[0]
                           for s in LOUDER_SCALES], axis=1)
        gains = louder.max(axis=1) > own
        if not gains.any():
            break
        scale = np.ones(len(images), np.float32)
        scale[faint[gains]] = np.asarray(LOUDER_SCALES)[np.argmax(louder, axis=1)][gains]
        images = to_bytes(with_contrast(images, scale))
    return images


def contrast_responses(engine: LayerEngine, images: np.ndarray, filter_ids: list[int],
                       objective: np.ndarray) -> tuple[list, list]:
    """Each whole-filter image's objective with its deviation from its mean colour scaled by each of
    CONTRAST_SCALES (clipped to 0..255), as [[scale, objective], ...], and whether its filter is
    faint-driven: the image is faint (RGB sd < FAINT_STD) and louder versions (x1.5 and x2) score
    lower than the image itself. images: uint8 (batch, h, w, 3); objective: each image's own (float32)
    `evaluate`, which is its response at scale 1."""
    scores = np.stack([objective if s == 1.0 else evaluate(engine, with_contrast(images, s), filter_ids)[0]
                       for s in CONTRAST_SCALES], axis=1)
    responses = [[[s, float(v)] for s, v in zip(CONTRAST_SCALES, row)] for row in scores]
    own = CONTRAST_SCALES.index(1.0)
    louder = [CONTRAST_SCALES.index(s) for s in (1.5, 2.0)]
    faint = [bool(quiet and all(row[k] < row[own] for k in louder)) for quiet, row in zip(is_faint(images), scores)]
    return responses, faint


def fitted_to_field(params: SynthesisParams, field: int) -> SynthesisParams:
    """Whole-filter transforms no larger than the layer's receptive field allows: a jitter of 8 px
    moves a 10 px field's pattern by most of a period, and turning or zooming a 3 px edge detector's
    texture every step cancels the gradient it follows."""
    small = field < FIELD_FOR_WARPS
    return replace(
        params,
        # No grey pad: the final image is judged without one, and a grey border costs filters that
        # grey drives down (block5_conv1's filter 0 is -59 on grey) what the image itself gains.
        pad=0,
        jitter=min(params.jitter, max(1, round(field * JITTER_PER_FIELD))),
        jitter_last=min(params.jitter_last, round(field * LAST_JITTER_PER_FIELD)),
        learning_rate=params.small_field_learning_rate if small else params.learning_rate,
        scale=(1.0, 1.0) if small else params.scale,
        rotate_degrees=0.0 if small else params.rotate_degrees,
    )


def field_reaches_border(field: geometry.Field, size: int) -> bool:
    """Whether the centre unit's receptive field, on a size x size image, reaches the image's border:
    its patch then ends where the image does."""
    box = field.unit_box(field.centre_unit((size, size)))
    return box.top <= 0 or box.left <= 0 or box.bottom >= size or box.right >= size


def fitted_to_patch(params: SynthesisParams, field: int, stride: geometry.Pair, at_border: bool) -> SynthesisParams:
    """A centre-neuron image's transforms on its receptive-field patch (`field` the layer's receptive
    field, `stride` its effective stride, `at_border` whether it reaches the image's border): the pad
    in whole strides, or the neuron would see its field on another grid alignment, and jitter no
    more than a fraction of the field."""
    step = math.lcm(*stride)
    # No grey pad where the field reaches the border: there the judged image has no grey beyond its
    # edge, and the pad made every step of a deep layer's neuron dearer (block5_conv1 at 128 px: a
    # 160 px canvas for a 128 px image, 1.56x the pixels).
    pad = -(-params.pad // step) * step if params.pad and not at_border else 0
    return replace(
        params,
        pad=pad,
        jitter=min(params.jitter, int(field * JITTER_PER_FIELD)),
        jitter_last=min(params.jitter_last, int(field * LAST_JITTER_PER_FIELD)),
        # With a pad every step is transformed: the neuron's unit is indexed on the padded canvas, so
        # the bare image would put another unit there. Without one, the bare patch is what is judged.
        settle_start=1.0 if pad else params.settle_start,
    )


def transforms_used(params: SynthesisParams, field: geometry.Field) -> dict[str, SynthesisParams]:
    """What each kind of image of a layer whose receptive field is `field` (at `params.size`) is
    optimised with, by kind: the whole-filter image's transforms fitted to the field when
    `fit_transforms` is on (`fitted_to_field`, as `channel_batch` does), the centre neuron's fitted to
    its patch (`fitted_to_patch`, as `neuron_batch` does). The record atlas.json keeps per layer."""
    channel = fitted_to_field(params, min(field.extent)) if params.fit_transforms else params
    # The negative image and the diversity set are whole-filter images too, fitted the same way.
    return {CHANNEL: channel, CHANNEL_NEGATIVE: channel, DIVERSITY: channel,
            NEURON: fitted_to_patch(params, min(field.extent), field.S, field_reaches_border(field, params.size))}


def _run(engine: LayerEngine, kind: str, objective, param_f: FourierImage, params: SynthesisParams,
         filter_ids: list[int], sign: int = 1) -> Optimised:
    check_engine_precision(engine, params)
    transforms = standard(params.pad, params.jitter, params.scale, params.rotate_degrees, params.jitter_last)
    # Everything that shapes the graph; steps do not (they are a graph input).
    cache_key = (kind, param_f, objective.description, replace(params, steps=0), len(filter_ids))
    return optimise(
        engine, objective, param_f, transforms, params.steps, filter_ids=filter_ids,
        keys=[filter_key(params.seed, f) for f in filter_ids], learning_rate=params.learning_rate,
        cache_key=cache_key, lr_schedule=params.lr_schedule,
        contrast=ContrastLearning(params.contrast_learning_rate, params.max_log_contrast, params.contrast_start),
        settle_start=params.settle_start, sign=sign,
    )


def channel_batch(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams,
                  sign: int = 1) -> list[FilterImage]:
    """One batch of images, each maximising the spatial mean of its filter's pre-ReLU output; with
    `sign` -1, minimising it (the same synthesis on the negated objective, kind "channel-negative").

    Every number stays the channel mean itself (the objective, its history along the run), so a
    negative image's is low. A negative image has no contrast response or faint verdict: they say
    whether louder versions of an image its filter prefers score lower, a question of maximising."""
    param_f = FourierImage(params.size, params.size, params.init_sd, params.decay_power, params.decorrelate)
    if params.fit_transforms:
        params = fitted_to_field(params, min(engine.field((params.size, params.size)).extent))
    run = _run(engine, CHANNEL, objectives.channel_mean(), param_f, params, filter_ids, sign)
    images = best_contrast(engine, to_bytes(run.images), filter_ids, params.contrast_search, sign)
    images, exact = with_exact_extremes(engine, images, filter_ids, sign)
    objective, mean_act = evaluate(engine, images / 255.0, filter_ids)
    responses, faint = contrast_responses(engine, images, filter_ids, objective) if sign > 0 else ([None] * len(images),) * 2
    kind = CHANNEL if sign > 0 else CHANNEL_NEGATIVE
    return [
        # An exact extreme is a saturated colour, not a faint image: the contrast facts are of optimised ones.
        FilterImage(engine.name, f, kind, images[i], float(objective[i]), float(mean_act[i]), run.history[:, i],
                    contrast_response=None if exact[i] else responses[i], faint=None if exact[i] else faint[i],
                    exact=exact[i])
        for i, f in enumerate(filter_ids)
    ]


def affine_gradient(engine: LayerEngine, filter_ids: list[int], size: int) -> np.ndarray:
    """For a layer affine in the pixels, the gradient of each filter's channel mean on the pixels of a
    size x size image in [0, 1]: the same at every image, so taken at grey. (len(filter_ids), size, size, 3)."""
    grey = tf.fill([len(filter_ids), size, size, 3], np.float32(NEUTRAL))
    with tf.GradientTape() as tape:
        tape.watch(grey)
        maps = engine.own_maps(grey, tf.constant(filter_ids, tf.int32), float32=True)
        total = tf.reduce_sum(tf.reduce_mean(maps, axis=[1, 2]))
    return tape.gradient(total, grey).numpy()


def exact_extremes(engine: LayerEngine, filter_ids: list[int], size: int, sign: int = 1) -> np.ndarray:
    """For a layer affine in the pixels (`LayerEngine.affine_in_pixels`), each filter's exact maximum
    of its channel mean over every image in [0, 1] (with `sign` -1, its minimum): each pixel's colour
    channel at 255 where the objective's gradient is positive, 0 where it is negative, neutral where
    nothing depends on it. uint8, (len(filter_ids), size, size, 3)."""
    gradient = sign * affine_gradient(engine, filter_ids, size)
    return np.where(gradient > 0, 255, np.where(gradient < 0, 0, NEUTRAL_BYTE)).astype(np.uint8)


def with_exact_extremes(engine: LayerEngine, images: np.ndarray, filter_ids: list[int], sign: int = 1):
    """The optimised uint8 images, each replaced by its filter's exact extreme where the layer is affine
    in the pixels and the extreme scores beyond it; and, per image, whether it was (None: not affine)."""
    if not engine.affine_in_pixels:
        return images, [None] * len(images)
    exact = exact_extremes(engine, filter_ids, images.shape[1], sign)
    better = sign * evaluate(engine, exact / 255.0, filter_ids)[0] > sign * evaluate(engine, images / 255.0, filter_ids)[0]
    return np.where(better[:, None, None, None], exact, images), [bool(b) for b in better]


def negative_channel_batch(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams) -> list[FilterImage]:
    """One batch of negative whole-filter images: each minimises its filter's pre-ReLU channel mean."""
    return channel_batch(engine, filter_ids, params, sign=-1)


def neuron_batch(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams) -> list[FilterImage]:
    """One batch of images, each maximising the pre-ReLU value of its filter's centre unit and
    changing only that unit's receptive field.

    Only the stride-aligned receptive-field patch is optimised; everything outside the clipped box
    is pinned to neutral grey by a mask, then the patch is pasted into a neutral canvas."""
    setup = _neuron_setup(engine, params)
    plan, patch, box = setup.plan, setup.plan.patch, setup.plan.box
    fitted = setup.params
    param_f = FourierImage(patch.height, patch.width, fitted.init_sd, fitted.decay_power, fitted.decorrelate, setup.mask)
    run = _run(engine, NEURON, setup.objective, param_f, fitted, filter_ids)
    canvas = np.full((len(filter_ids), params.size, params.size, 3), NEUTRAL_BYTE, np.uint8)
    canvas[:, patch.top : patch.bottom, patch.left : patch.right] = to_bytes(run.images)
    value, mean_act = evaluate(engine, canvas / 255.0, filter_ids, plan.unit)
    return [
        FilterImage(
            engine.name, f, NEURON, canvas[i], float(value[i]), float(mean_act[i]), run.history[:, i],
            box=box, changed_outside_box=changed_outside(canvas[i], box),
        )
        for i, f in enumerate(filter_ids)
    ]


SYNTHESISERS = {CHANNEL: channel_batch, CHANNEL_NEGATIVE: negative_channel_batch, NEURON: neuron_batch}


def synthesise(engine: LayerEngine, kind: str, filter_ids: list[int], params: SynthesisParams) -> list[FilterImage]:
    """One batch of `kind` images ("channel", "channel-negative" or "neuron"): image i maximises
    filter_ids[i] (a "channel-negative" image minimises it).

    The caller chooses the batch (the build sizes it to memory); nothing here re-batches."""
    check_batch(engine, filter_ids, params)
    return SYNTHESISERS[kind](engine, list(filter_ids), params)


def channel_images(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams,
                   batch_size: int | None = None) -> list[FilterImage]:
    """Whole-filter images of any number of filters, in batches that fit memory."""
    return _in_batches(engine, CHANNEL, filter_ids, params, batch_size or channel_batch_size(engine, params, len(filter_ids)))


def negative_channel_images(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams,
                            batch_size: int | None = None) -> list[FilterImage]:
    """Negative whole-filter images (each minimising its filter's channel mean) of any number of
    filters, in batches that fit memory."""
    size = batch_size or channel_batch_size(engine, params, len(filter_ids))
    return _in_batches(engine, CHANNEL_NEGATIVE, filter_ids, params, size)


def neuron_images(engine: LayerEngine, filter_ids: list[int], params: SynthesisParams,
                  batch_size: int | None = None) -> list[FilterImage]:
    """Centre-neuron images of any number of filters, in batches that fit memory."""
    return _in_batches(engine, NEURON, filter_ids, params, batch_size or neuron_batch_size(engine, params, len(filter_ids)))


def _in_batches(engine, kind, filter_ids, params, batch_size) -> list[FilterImage]:
    check_batch(engine, filter_ids, params)
    results: dict[int, FilterImage] = {}
    for chunk in batches(list(filter_ids), batch_size):
        for image in synthesise(engine, kind, chunk, params):
            results.setdefault(image.filter, image)
    return [results[f] for f in filter_ids]


@dataclass(frozen=True)
class _NeuronSetup:
    plan: PatchPlan
    mask: np.ndarray  # (patch h, patch w): 1 inside the clipped box
    params: SynthesisParams  # what the optimiser runs with: pad and jitter fitted to the field
    objective: objectives.Objective


def _neuron_setup(engine: LayerEngine, params: SynthesisParams) -> _NeuronSetup:
    plan = engine.patch_plan(params.size)
    patch, box = plan.patch, plan.box
    mask = np.zeros((patch.height, patch.width), np.float32)
    mask[box.top - patch.top : box.bottom - patch.top, box.left - patch.left : box.right - patch.left] = 1
    full = engine.field(plan.image_size)
    fitted = fitted_to_patch(params, min(full.extent), plan.stride, field_reaches_border(full, params.size))
    pad = fitted.pad
    unit = (plan.unit_in_patch[0] + pad // plan.stride[0], plan.unit_in_patch[1] + pad // plan.stride[1])
    return _NeuronSetup(plan, mask, fitted, objectives.neuron(*unit))


def changed_outside(image: np.ndarray, box: geometry.Box) -> int:
    """Pixels outside the box that differ from neutral grey in any channel."""
    changed = np.any(image != NEUTRAL_BYTE, axis=-1)
    changed[box.top : box.bottom, box.left : box.right] = False
    return int(changed.sum())


def rf_crop(image: np.ndarray, box: geometry.Box, display: int = RF_CROP_DISPLAY) -> np.ndarray:
    """The box cut out, its longer side scaled to `display`; nearest-neighbour keeps pixels honest."""
    return zoomed_crop(image, box, display)
