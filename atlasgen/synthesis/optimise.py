"""The optimiser loop, in Lucid's shape: `optimise(engine, objective, param_f, transforms, steps)`.

A batch of images, one filter each, runs all its steps inside one compiled graph. The compiled graph
is cached on the engine under a key the caller gives explicitly, so what makes two runs share a
graph is written down where the run is asked for, not inferred.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import numpy as np

from atlasgen.synthesis import param, transforms as transforms_mod
from atlasgen.synthesis.engine import LayerEngine
from atlasgen.synthesis.objectives import Objective
from atlasgen.tf import tf


ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8


@dataclass
class Optimised:
    """The batch's final images (float, [0, 1]) and each image's objective at every step."""

    images: np.ndarray  # (batch, h, w, 3)
    history: np.ndarray  # (steps, batch), objective under that step's transforms


def filter_key(seed: int, filter_id: int) -> int:
    """A stable 31-bit key per (seed, filter): it seeds the filter's start and its augmentations."""
    digest = hashlib.sha256(f"{seed}:{filter_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class FourierImage:
    """param_f: Lucid's parametrisation of a height x width image, one spectrum per filter key.

    `mask` (h, w) in {0, 1}, when given, pins every pixel where it is 0 at neutral grey."""

    height: int
    width: int
    init_sd: float = 0.01
    decay_power: float = 1.0
    decorrelate: bool = True
    mask: np.ndarray | None = field(default=None, compare=False, hash=False)

    def initial(self, keys: Sequence[int]) -> np.ndarray:
        """Each key's own N(0, sd) start, independent of which keys share its batch."""
        return np.concatenate(
            [param.initial_spectrum(1, self.height, self.width, self.init_sd, np.random.default_rng(k)) for k in keys],
            axis=1,
        )

    def graph(self):
        """The spectrum -> image function, with its constants, for use inside a compiled graph."""
        scale = tf.constant(param.spectrum_scale(self.height, self.width, self.decay_power))
        mask = None if self.mask is None else tf.constant(self.mask.astype(np.float32)[None, :, :, None])

        def render(spectrum):
            image = param.fourier_rgb(spectrum, scale, self.height, self.width, self.decorrelate)
            if mask is not None:
                image = transforms_mod.NEUTRAL + mask * (image - transforms_mod.NEUTRAL)
            return image

        return render


def optimise(
    engine: LayerEngine,
    objective: Objective,
    param_f: FourierImage,
    transforms: Sequence,
    steps: int,
    *,
    filter_ids: Sequence[int],
    keys: Sequence[int],
    learning_rate: float,
    cache_key: Hashable,
    lr_schedule: str = "constant",
) -> Optimised:
    """Maximises `objective` for image i on filter `filter_ids[i]`, by Adam on the spectra of `param_f`.

    `keys[i]` seeds image i's start and its random transforms. `cache_key` must name everything that
    shapes the compiled graph (objective, parametrisation, transforms, learning rate, batch size);
    `steps` is a graph input, so runs that differ only in length share one graph."""
    compiled = engine.compiled.get(cache_key)
    if compiled is None:
        compiled = engine.compiled[cache_key] = _compile(engine, objective, param_f, transforms, learning_rate, lr_schedule)
    spectrum = tf.constant(param_f.initial(keys))
    images, history = compiled(
        spectrum, tf.constant(list(keys), dtype=tf.int64), tf.constant(list(filter_ids), dtype=tf.int32), tf.constant(steps)
    )
    return Optimised(images.numpy(), history.numpy())


def adam_step(x, grad, m, v, i, lr):
    """One Adam step (a descent on `grad`) at step index `i`: the new x and moment estimates."""
    t = tf.cast(i + 1, tf.float32)
    m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad
    v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad)
    x = x - lr * (m / (1 - ADAM_BETA1**t)) / (tf.sqrt(v / (1 - ADAM_BETA2**t)) + ADAM_EPSILON)
    return x, m, v


def learning_rate_at(lr: float, schedule: str, step, steps):
    """The step's learning rate: constant, or a cosine from `lr` to a tenth of it at the last step."""
    if schedule == "constant":
        return tf.constant(lr, tf.float32)
    if schedule == "cosine":
        progress = tf.cast(step, tf.float32) / tf.maximum(tf.cast(steps - 1, tf.float32), 1.0)
        return lr * (0.1 + 0.9 * 0.5 * (1.0 + tf.cos(np.pi * progress)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; use constant or cosine")


def _compile(engine: LayerEngine, objective: Objective, param_f: FourierImage, transforms: Sequence, lr: float,
             schedule: str = "constant"):
    render = param_f.graph()
    augment = transforms_mod.compose(transforms)

    def step(i, spectrum, m, v, history, keys, ids, steps):
        with tf.GradientTape() as tape:
            tape.watch(spectrum)
            step_keys = transforms_mod.hash32(keys * 1_000_003 + tf.cast(i, tf.int64))
            scores = objective(engine.own_maps(augment(render(spectrum), step_keys), ids))
            loss = -tf.reduce_sum(scores)
        grad = tape.gradient(loss, spectrum)
        spectrum, m, v = adam_step(spectrum, grad, m, v, i, learning_rate_at(lr, schedule, i, steps))
        return i + 1, spectrum, m, v, history.write(i, scores)

    @tf.function(reduce_retracing=True)
    def run(spectrum, keys, ids, steps):
        history = tf.TensorArray(tf.float32, size=steps)
        zeros = tf.zeros_like(spectrum)
        _, spectrum, _, _, history = tf.while_loop(
            lambda i, *_: i < steps,
            lambda i, s, m, v, h: step(i, s, m, v, h, keys, ids, steps),
            (tf.constant(0), spectrum, zeros, zeros, history),
        )
        return render(spectrum), history.stack()

    return run
