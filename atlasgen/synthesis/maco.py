"""MACO (Fel et al., NeurIPS 2023): whole-filter images whose Fourier magnitude is fixed to a natural
image spectrum, so only the phase is optimised.

Read top to bottom: the natural spectrum (estimated offline from scikit-image's colour photos and
shipped as atlasgen/data/natural_spectrum.npy; `python -m atlasgen.synthesis.maco` rewrites it) ->
the parametrisation (`pre_image`, `to_pixels`: phase -> image) -> the transforms (random crops that
shrink over the run, Gaussian noise; every draw a hash of the filter key and step, so a filter's
image does not depend on its batch mates) -> the loop: `maco_step` advances a `MacoState` (Adam on
the phase; the accumulated magnitude of the objective's gradient on the pixels is the transparency
map) inside the compiled loop Lucid's method runs too (`optimise.compile_loop`) -> `maco_batch`,
which the build calls, and its `MacoImage` records.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from atlasgen.errors import AtlasgenError
from atlasgen.synthesis.images import (
    FilterImage, affine_gradient, best_contrast, check_batch, check_engine_precision, contrast_responses, evaluate,
    to_bytes, with_exact_extremes,
)
from atlasgen.synthesis.optimise import AdamMoments, LoopInputs, Step, compile_loop, run_loop, step_keys
from atlasgen.synthesis.transforms import hash32, uniform
from atlasgen.tf import tf

SPECTRUM_SIDE = 256
SPECTRUM_FILE = Path(__file__).resolve().parent.parent / "data" / "natural_spectrum.npy"
METHOD = "maco"
#: The MACO image that minimises its filter's pre-ReLU channel mean.
NEGATIVE = "maco-negative"


# --- the natural spectrum ------------------------------------------------------------------------


def _square(image: np.ndarray, side: int) -> np.ndarray:
    """The photo's centre square, resized to side x side, as float RGB in [0, 1]."""
    from PIL import Image

    h, w = image.shape[:2]
    cut = min(h, w)
    top, left = (h - cut) // 2, (w - cut) // 2
    square = Image.fromarray(image[top : top + cut, left : left + cut]).resize((side, side), Image.BICUBIC)
    return np.asarray(square, dtype=np.float32) / 255.0


def estimate_natural_spectrum(side: int = SPECTRUM_SIDE) -> np.ndarray:
    """Per colour channel, the mean magnitude of rfft2 over scikit-image's colour photos, each cut to
    its centre square and resized to side x side: float32 (3, side, side // 2 + 1)."""
    from atlasgen.synthesis.probes import natural_photos

    spectra = [np.abs(np.fft.rfft2(_square(photo.image, side).transpose(2, 0, 1))) for photo in natural_photos()]
    return np.mean(spectra, axis=0).astype(np.float32)


@functools.cache
def natural_spectrum() -> np.ndarray:
    """The shipped spectrum, (3, 256, 129)."""
    try:
        spectrum = np.load(SPECTRUM_FILE)
    except OSError:
        raise AtlasgenError(f"{SPECTRUM_FILE} is missing; reinstall atlasgen or run python -m atlasgen.synthesis.maco") from None
    return spectrum.astype(np.float32)


@functools.cache
def spectrum_digest() -> str:
    """sha256 of the shipped spectrum's values: part of every MACO recipe."""
    return hashlib.sha256(np.ascontiguousarray(natural_spectrum()).tobytes()).hexdigest()


@functools.cache
def magnitude(side: int) -> np.ndarray:
    """The natural spectrum at another image size: its log magnitude interpolated at that size's
    rfft2 frequencies (cycles per pixel); (3, side, side // 2 + 1), float32."""
    source = natural_spectrum()
    if side == source.shape[1]:
        return source
    from scipy.interpolate import RegularGridInterpolator

    n = source.shape[1]
    fy = np.fft.fftshift(np.fft.fftfreq(n))
    fx = np.fft.rfftfreq(n)
    ty, tx = np.meshgrid(np.fft.fftfreq(side), np.fft.rfftfreq(side), indexing="ij")
    points = np.stack([ty.ravel(), tx.ravel()], axis=1)
    out = []
    for channel in np.log(np.maximum(source, 1e-12)):
        grid = RegularGridInterpolator((fy, fx), np.fft.fftshift(channel, axes=0), bounds_error=False, fill_value=None)
        out.append(grid(points).reshape(ty.shape))
    # Magnitudes grow with the pixel count; the image is normalised after the inverse FFT anyway.
    return (np.exp(np.stack(out)) * (side / n) ** 2).astype(np.float32)


# --- parameters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MacoParams:
    """Every knob of a MACO run. Size, steps and seed come from the build; the rest were measured
    at small budgets (see the build's report)."""

    size: int = 128
    steps: int = 512
    seed: int = 0
    learning_rate: float = 0.3  # Adam on the phase, in radians (Xplique: Nadam 1.0; 0.3 measured best at 32 steps)
    crops: int = 4  # random crops per step, their objectives averaged (2, 4, 8 scored alike at 32 steps; cost grows with it)
    crop_start: float = 0.9  # crop side, as a fraction of the image side, at the first step...
    crop_end: float = 0.5  # ...shrinking linearly to this at the last
    crop_spread: float = 0.05  # each crop's side varies by up to this fraction around the schedule
    noise: float = 0.08  # sd of Gaussian noise on [0, 1] pixels (Xplique's noise_intensity)
    # Adam on each image's log contrast (its standardised image is scaled by exp of it before the
    # sigmoid); 0 keeps every image at unit contrast. The magnitude's shape stays the photos'; only
    # its scale is free, because some filters are driven hardest by faint texture (block5_conv1
    # filter 0 of the HED trunk is -58.7 on grey, -7.8 at an RGB sd of 8, far lower at unit contrast).
    contrast_learning_rate: float = 0.05
    # The log contrast stays at or below this: 0 lets an image grow fainter but never harsher than
    # unit contrast, where the sigmoid would start to flatten the photos' spectrum into posterised colour.
    max_log_contrast: float = 0.0
    precision: str = "float32"  # the model's compute, as SynthesisParams.precision; phase, Adam and objective stay float32
    # After the run, the image's contrast is scaled by whichever of these its filter scores highest
    # (SynthesisParams.contrast_search: fainter only, as the learned contrast).
    contrast_search: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 0.25, 0.15, 0.1)
    # From this fraction of the run on, each image is scored whole, without crops or noise, as it is
    # judged (SynthesisParams.settle_start; 1: never): by then the crops are half the image, zoomed 2x.
    settle_start: float = 0.75

    @classmethod
    def from_synthesis(cls, params) -> "MacoParams":
        """The MACO parameters of a build: the synthesis's size, steps, seed and precision, MACO's defaults."""
        return cls(size=params.size, steps=params.steps, seed=params.seed, precision=params.precision)

    def recipe(self) -> dict:
        """What names a MACO image: every parameter and the digest of the spectrum it starts from."""
        return {**asdict(self), "spectrum": spectrum_digest()}


def filter_key(seed: int, filter_id: int) -> int:
    """A stable 31-bit key per (seed, filter), apart from the Lucid method's keys."""
    digest = hashlib.sha256(f"maco:{seed}:{filter_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# --- the parametrisation -----------------------------------------------------------------------------


def initial_phase(keys, size: int) -> np.ndarray:
    """Each key's own uniform phase in [-pi, pi): (batch, 3, size, size // 2 + 1)."""
    return np.stack([
        np.random.default_rng(k).uniform(-np.pi, np.pi, (3, size, size // 2 + 1)) for k in keys
    ]).astype(np.float32)


def pre_image(phase, magnitude_tensor, size: int):
    """The fixed magnitude with the phase, back to pixels: (batch, size, size, 3), before normalisation.
    Its rfft2 magnitude equals the fixed one at every frequency that is not its own conjugate
    (the real-valued columns, DC and Nyquist, keep only their real part)."""
    spectrum = tf.complex(magnitude_tensor * tf.cos(phase), magnitude_tensor * tf.sin(phase))
    image = tf.signal.irfft2d(spectrum, fft_length=[size, size])
    return tf.transpose(image, (0, 2, 3, 1))


def to_pixels(image, log_contrast=None):
    """Each image to zero mean and unit sd, scaled by exp(log_contrast) (batch, 1, 1, 1) when given,
    then a sigmoid: pixels in (0, 1)."""
    mean, variance = tf.nn.moments(image, axes=[1, 2, 3], keepdims=True)
    standard = (image - mean) / tf.sqrt(variance + 1e-8)
    return tf.sigmoid(standard if log_contrast is None else standard * tf.exp(log_contrast))


# --- the transforms ----------------------------------------------------------------------------------


def crops_and_noise(images, keys, progress, params: MacoParams):
    """`params.crops` random crops of every image, resized back to its size, with Gaussian noise:
    (batch * crops, size, size, 3), crop c of image i at row i * crops + c. The crop side shrinks
    from crop_start to crop_end as `progress` goes from 0 to 1."""
    size, n = params.size, params.crops
    crop_keys = tf.reshape(hash32(keys[:, None] * 7919 + tf.range(n, dtype=tf.int64)[None, :]), [-1])
    centre = params.crop_start + (params.crop_end - params.crop_start) * progress
    side = tf.clip_by_value(centre + uniform(crop_keys, 10, -params.crop_spread, params.crop_spread), 0.05, 1.0)
    top = uniform(crop_keys, 11, 0.0, 1.0) * (1.0 - side)
    left = uniform(crop_keys, 12, 0.0, 1.0) * (1.0 - side)
    boxes = tf.stack([top, left, top + side, left + side], axis=1)
    index = tf.repeat(tf.range(tf.shape(images)[0]), n)
    crops = tf.image.crop_and_resize(images, boxes, index, [size, size])
    # Box-Muller on per-pixel hashes of each crop's key: the noise, too, is the filter's own.
    pixel = tf.range(size * size * 3, dtype=tf.int64)[None, :]
    seeds = crop_keys[:, None] * 1_000_003 + pixel
    u1 = uniform(seeds, 13, 1e-7, 1.0)
    u2 = uniform(seeds, 14, 0.0, 2 * np.pi)
    noise = tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos(u2)
    return crops + params.noise * tf.reshape(noise, tf.shape(crops))


# --- the loop ----------------------------------------------------------------------------------------


@dataclass
class MacoRun:
    """A MACO batch's results, before they become records."""

    images: np.ndarray  # (batch, size, size, 3) in (0, 1)
    pre: np.ndarray  # (batch, size, size, 3): the image before normalisation
    transparency: np.ndarray  # (batch, size, size) in [0, 1]
    history: np.ndarray  # (steps, batch): the mean objective over each step's crops


class MacoState(NamedTuple):
    """The loop state of a MACO batch: the phase, each image's log contrast, each with its Adam
    moments, and the accumulated magnitude of the objective's gradient on the pixels."""

    phase: Any  # (batch, 3, size, size // 2 + 1)
    moments: AdamMoments
    contrast: Any  # (batch, 1, 1, 1)
    contrast_moments: AdamMoments
    saliency: Any  # (batch, size, size)

    @classmethod
    def begin(cls, phase, size: int) -> "MacoState":
        """The state before the first step: unit contrast, zero moments and saliency."""
        batch = tf.shape(phase)[0]
        flat = tf.zeros([batch, 1, 1, 1])
        return cls(phase, AdamMoments.zeros_like(phase), flat, AdamMoments.zeros_like(flat),
                   tf.zeros([batch, size, size]))


def maco_step(engine, params: MacoParams, magnitude_tensor) -> Step:
    """One MACO step: Adam up the mean objective over each image's crops (down, where its sign in the
    inputs is -1), on its phase (and its log contrast, when that learns), adding the objective's
    gradient on the pixels to the saliency; from `params.settle_start` of the run on, the objective
    of the whole image, as it is judged. The scores it records are the objective itself, whatever
    the sign."""
    size = params.size

    def step(i, state: MacoState, inputs: LoopInputs):
        progress = tf.cast(i, tf.float32) / tf.maximum(tf.cast(inputs.steps - 1, tf.float32), 1.0)
        with tf.GradientTape() as tape:
            tape.watch([state.phase, state.contrast])
            image = to_pixels(pre_image(state.phase, magnitude_tensor, size), state.contrast)

            def cropped():
                crops = crops_and_noise(image, step_keys(inputs.keys, i), progress, params)
                maps = engine.own_maps(crops, tf.repeat(inputs.filter_ids, params.crops))
                return tf.reduce_mean(tf.reshape(tf.reduce_mean(maps, axis=[1, 2]), [-1, params.crops]), axis=1)

            if params.settle_start < 1:
                settled = tf.cast(i, tf.float32) >= params.settle_start * tf.cast(inputs.steps, tf.float32)
                scores = tf.cond(settled, lambda: tf.reduce_mean(engine.own_maps(image, inputs.filter_ids), axis=[1, 2]),
                                 cropped)
            else:
                scores = cropped()
            loss = -tf.reduce_sum(inputs.signs * scores)
        grad, contrast_grad, pixels = tape.gradient(loss, [state.phase, state.contrast, image])
        phase, moments = state.moments.update(state.phase, grad, i, params.learning_rate)
        contrast, contrast_moments = state.contrast, state.contrast_moments
        if params.contrast_learning_rate > 0:
            contrast, contrast_moments = contrast_moments.update(contrast, contrast_grad, i, params.contrast_learning_rate)
            contrast = tf.minimum(contrast, params.max_log_contrast)
        saliency = state.saliency + tf.reduce_sum(tf.abs(pixels), axis=-1)
        return MacoState(phase, moments, contrast, contrast_moments, saliency), scores

    return step


def compile_maco(engine, params: MacoParams):
    """The compiled loop of a MACO batch, maximising or minimising by each image's sign in the inputs:
    from the phase to (images, pre-images, saliency), history."""
    size = params.size
    magnitude_tensor = tf.constant(magnitude(size))

    def finish(state: MacoState):
        pre = pre_image(state.phase, magnitude_tensor, size)
        return to_pixels(pre, state.contrast), pre, state.saliency

    return compile_loop(lambda phase: MacoState.begin(phase, size), maco_step(engine, params, magnitude_tensor), finish)


def optimise_maco(engine, filter_ids: list[int], params: MacoParams, sign: int = 1) -> MacoRun:
    """Image i maximises the spatial mean of filter filter_ids[i]'s pre-ReLU map (minimises it, with
    `sign` -1), by Adam on its phase.

    One compiled graph per (parameters without steps, batch size), cached on the engine; steps and
    the sign are graph inputs."""
    check_engine_precision(engine, params)
    cache_key = (METHOD, replace(params, steps=0), len(filter_ids))
    keys = [filter_key(params.seed, f) for f in filter_ids]
    (images, pre, saliency), history = run_loop(
        engine, cache_key, lambda: compile_maco(engine, params), tf.constant(initial_phase(keys, params.size)),
        LoopInputs.of(keys, filter_ids, params.steps, sign),
    )
    return MacoRun(images.numpy(), pre.numpy(), normalise(saliency.numpy()), history.numpy())


def normalise(saliency: np.ndarray) -> np.ndarray:
    """Each map to [0, 1] by its own minimum and maximum (a constant map becomes 0)."""
    low = saliency.min(axis=(1, 2), keepdims=True)
    span = saliency.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (saliency - low) / np.where(span > 0, span, 1), 0).astype(np.float32)


# --- the records the build stores ------------------------------------------------------------------


def maco_batch_size(engine, params: MacoParams, wanted: int) -> int:
    """How many MACO images fit one batch in memory: each step runs `crops` images per filter."""
    from atlasgen.synthesis.engine import available_memory_bytes, choose_batch_size

    per_image = engine.bytes_per_image((params.size, params.size)) * params.crops
    return choose_batch_size(per_image, available_memory_bytes(), wanted)


def maco_batch(engine, filter_ids: list[int], params: MacoParams, sign: int = 1) -> list:
    """One batch of MACO whole-filter images: `MacoImage` records, with their transparency maps.
    With `sign` -1 each image minimises its filter's channel mean instead (kind "maco-negative"; the
    contrast search keeps the contrast its filter scores lowest, and there is no contrast response
    or faint verdict, as for Lucid's negative images). On a layer affine in the pixels, the layer's
    exact extreme replaces an image it scores beyond, as for Lucid's (`with_exact_extremes`)."""
    filter_ids = list(filter_ids)
    check_batch(engine, filter_ids, params)
    if params.crops < 1:
        raise AtlasgenError("MACO crops must be at least 1")
    run = optimise_maco(engine, filter_ids, params, sign)
    images = best_contrast(engine, to_bytes(run.images), filter_ids, params.contrast_search, sign)
    images, exact = with_exact_extremes(engine, images, filter_ids, sign)
    transparency = run.transparency
    if any(exact):
        # The exact extreme's own map: how much each pixel moves the objective, the same at every image.
        exact_map = normalise(np.abs(affine_gradient(engine, filter_ids, params.size)).sum(axis=-1))
        transparency = np.where(np.array(exact)[:, None, None], exact_map, transparency)
    objective, mean_act = evaluate(engine, images / 255.0, filter_ids)
    responses, faint = contrast_responses(engine, images, filter_ids, objective) if sign > 0 else ([None] * len(images),) * 2
    kind = METHOD if sign > 0 else NEGATIVE
    return [
        # An exact extreme is a saturated colour, not a faint image: the contrast facts are of optimised ones.
        MacoImage(engine.name, f, kind, images[i], float(objective[i]), float(mean_act[i]), run.history[:, i],
                  contrast_response=None if exact[i] else responses[i], faint=None if exact[i] else faint[i],
                  exact=exact[i], transparency=transparency[i])
        for i, f in enumerate(filter_ids)
    ]


def negative_maco_batch(engine, filter_ids: list[int], params: MacoParams) -> list:
    """One batch of negative MACO images: each minimises its filter's pre-ReLU channel mean."""
    return maco_batch(engine, filter_ids, params, sign=-1)


@dataclass
class MacoImage(FilterImage):
    """A MACO whole-filter image (kind "maco") and its transparency map, (h, w) in [0, 1]."""

    transparency: np.ndarray | None = None


def transparency_image(transparency: np.ndarray) -> np.ndarray:
    """The map as a grey uint8 RGB image, brightest where the objective's gradient was largest."""
    grey = np.round(np.clip(transparency, 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def main() -> None:
    """Writes atlasgen/data/natural_spectrum.npy from scikit-image's photos."""
    SPECTRUM_FILE.parent.mkdir(parents=True, exist_ok=True)
    spectrum = estimate_natural_spectrum()
    np.save(SPECTRUM_FILE, spectrum)
    print(f"wrote {SPECTRUM_FILE}: {spectrum.shape} {spectrum.dtype}")


if __name__ == "__main__":
    main()
