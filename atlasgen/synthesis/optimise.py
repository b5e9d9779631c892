"""The optimiser loop: a batch of images, one filter each, all steps inside one compiled graph."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace

import numpy as np

from atlasgen.synthesis import param, transforms
from atlasgen.synthesis.engine import LayerEngine
from atlasgen.synthesis.objectives import Objective
from atlasgen.tf import load

tf, _ = load()

ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class SynthesisParams:
    """Every knob of a synthesis run; Lucid's defaults except size and steps, which the caller sets."""

    size: int = 128
    steps: int = 512
    learning_rate: float = 0.05
    seed: int = 0
    init_sd: float = 0.01
    decay_power: float = 1.0
    decorrelate: bool = True
    pad: int = 12
    jitter: int = 8
    scale: tuple[float, float] = (0.9, 1.1)
    rotate_degrees: float = 10.0
    jitter_last: int = 4

    def recipe(self) -> dict:
        """The parameters as plain JSON values, for recipes and manifests."""
        values = asdict(self)
        values["scale"] = list(self.scale)
        return values


@dataclass
class Optimised:
    """The batch's final images (float, [0, 1]) and each image's objective at every step."""

    images: np.ndarray  # (batch, h, w, 3)
    history: np.ndarray  # (steps, batch), objective under that step's transforms


def filter_key(seed: int, filter_id: int) -> int:
    """A stable 31-bit key per (seed, filter): it seeds the filter's start and its augmentations."""
    digest = hashlib.sha256(f"{seed}:{filter_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def initial_spectra(filter_ids: list[int], height: int, width: int, params: SynthesisParams) -> np.ndarray:
    """Each filter's own N(0, sd) start, independent of which filters share its batch."""
    spectra = [
        param.initial_spectrum(1, height, width, params.init_sd, np.random.default_rng(filter_key(params.seed, f)))
        for f in filter_ids
    ]
    return np.concatenate(spectra, axis=1)


class Optimiser:
    """Compiles one graph per (engine, objective, image shape, batch, params) and reuses it."""

    def __init__(self, engine: LayerEngine):
        self.engine = engine
        self._compiled: dict = {}

    def run(
        self,
        filter_ids: list[int],
        objective: Objective,
        params: SynthesisParams,
        height: int,
        width: int,
        mask: np.ndarray | None = None,
    ) -> Optimised:
        """Maximises `objective` for each filter; `mask` (h, w) in {0, 1} pins pixels at neutral grey."""
        # Steps are a graph input, so runs that differ only in length share one compiled graph.
        key = (objective.description, height, width, len(filter_ids), replace(params, steps=0), mask is not None)
        if key not in self._compiled:
            self._compiled[key] = self._build(objective, params, height, width, mask is not None)
        compiled = self._compiled[key]
        spectrum = tf.constant(initial_spectra(filter_ids, height, width, params))
        keys = tf.constant([filter_key(params.seed, f) for f in filter_ids], dtype=tf.int64)
        ids = tf.constant(filter_ids, dtype=tf.int32)
        mask_t = tf.constant(np.ones((height, width), np.float32) if mask is None else mask.astype(np.float32))
        images, history = compiled(spectrum, keys, ids, mask_t, tf.constant(params.steps))
        return Optimised(images.numpy(), history.numpy())

    def _build(self, objective: Objective, params: SynthesisParams, height: int, width: int, masked: bool):
        engine = self.engine
        scale = tf.constant(param.spectrum_scale(height, width, params.decay_power))
        augment = transforms.compose(
            transforms.standard(params.pad, params.jitter, params.scale, params.rotate_degrees, params.jitter_last)
        )
        lr = params.learning_rate

        def render(spectrum, mask):
            image = param.fourier_rgb(spectrum, scale, height, width, params.decorrelate)
            if masked:
                image = transforms.NEUTRAL + mask[None, :, :, None] * (image - transforms.NEUTRAL)
            return image

        def step(i, spectrum, m, v, history, keys, ids, mask):
            with tf.GradientTape() as tape:
                tape.watch(spectrum)
                image = render(spectrum, mask)
                step_keys = transforms.hash32(keys * 1_000_003 + tf.cast(i, tf.int64))
                scores = objective(engine.own_maps(augment(image, step_keys), ids))
                loss = -tf.reduce_sum(scores)
            grad = tape.gradient(loss, spectrum)
            t = tf.cast(i + 1, tf.float32)
            m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad
            v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad)
            m_hat = m / (1 - ADAM_BETA1**t)
            v_hat = v / (1 - ADAM_BETA2**t)
            spectrum = spectrum - lr * m_hat / (tf.sqrt(v_hat) + ADAM_EPSILON)
            return i + 1, spectrum, m, v, history.write(i, scores)

        @tf.function(reduce_retracing=True)
        def optimise(spectrum, keys, ids, mask, steps):
            history = tf.TensorArray(tf.float32, size=steps)
            zeros = tf.zeros_like(spectrum)
            _, spectrum, _, _, history = tf.while_loop(
                lambda i, *_: i < steps,
                lambda i, s, m, v, h: step(i, s, m, v, h, keys, ids, mask),
                (tf.constant(0), spectrum, zeros, zeros, history),
            )
            return render(spectrum, mask), history.stack()

        return optimise
