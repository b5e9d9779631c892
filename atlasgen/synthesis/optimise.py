"""The optimiser loop, in Lucid's shape: `optimise(engine, objective, param_f, transforms, steps)`.

A batch of images, one filter each, runs all its steps inside one compiled graph. Both synthesis
methods (this one, Lucid's, and MACO's) run the same loop, `compile_loop`: a state record (a
NamedTuple of tensors) that `step(i, state, inputs)` advances once per step, returning the batch's
scores, which the loop records. The compiled graph is cached on the engine under a key the caller
gives explicitly, so what makes two runs share a graph is written down where the run is asked for,
not inferred.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, NamedTuple, Sequence

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


# --- Adam and the learning rate ----------------------------------------------------------------------


def adam_step(x, grad, m, v, i, lr):
    """One Adam step (a descent on `grad`) at step index `i`: the new x and moment estimates."""
    t = tf.cast(i + 1, tf.float32)
    m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad
    v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * tf.square(grad)
    x = x - lr * (m / (1 - ADAM_BETA1**t)) / (tf.sqrt(v / (1 - ADAM_BETA2**t)) + ADAM_EPSILON)
    return x, m, v


class AdamMoments(NamedTuple):
    """Adam's first (`m`) and second (`v`) moment estimates of one variable, part of a loop state."""

    m: Any
    v: Any

    @classmethod
    def zeros_like(cls, x) -> "AdamMoments":
        """The moments before the first step."""
        zeros = tf.zeros_like(x)
        return cls(zeros, zeros)

    def update(self, x, grad, i, lr) -> tuple[Any, "AdamMoments"]:
        """`adam_step` on x: the new x and the moments after it."""
        x, m, v = adam_step(x, grad, self.m, self.v, i, lr)
        return x, AdamMoments(m, v)


def learning_rate_at(lr: float, schedule: str, step, steps):
    """The step's learning rate: constant, or a cosine from `lr` to a tenth of it at the last step."""
    if schedule == "constant":
        return tf.constant(lr, tf.float32)
    if schedule == "cosine":
        progress = tf.cast(step, tf.float32) / tf.maximum(tf.cast(steps - 1, tf.float32), 1.0)
        return lr * (0.1 + 0.9 * 0.5 * (1.0 + tf.cos(np.pi * progress)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; use constant or cosine")


# --- the loop both methods run ----------------------------------------------------------------------


class LoopInputs(NamedTuple):
    """What a compiled loop takes besides its start: graph inputs, so they never force a new graph."""

    keys: Any  # int64 (batch,): each image's filter key
    filter_ids: Any  # int32 (batch,): each image's filter
    steps: Any  # int32 scalar
    # float32 (batch,): +1 where an image maximises its objective, -1 where it minimises it. An input, so
    # a layer's whole-filter and negative images share one compiled graph.
    signs: Any

    @classmethod
    def of(cls, keys: Sequence[int], filter_ids: Sequence[int], steps: int, sign: int = 1) -> "LoopInputs":
        """The inputs of one run, as tensors."""
        return cls(tf.constant(list(keys), tf.int64), tf.constant(list(filter_ids), tf.int32), tf.constant(steps),
                   tf.fill([len(keys)], float(sign)))


def step_keys(keys, i):
    """Each image's key for step `i`: its random draws at that step depend on its filter key alone."""
    return transforms_mod.hash32(keys * 1_000_003 + tf.cast(i, tf.int64))


#: step(i, state, inputs) -> (the next state, the batch's scores at step i, (batch,) float32).
Step = Callable[[Any, Any, LoopInputs], tuple[Any, Any]]


def run_steps(step: Step, state, inputs: LoopInputs):
    """Inside a compiled graph: `inputs.steps` calls of `step` in one while-loop. The final state and
    every step's scores, (steps, batch)."""
    history = tf.TensorArray(tf.float32, size=inputs.steps)

    def body(i, state, history):
        state, scores = step(i, state, inputs)
        return i + 1, state, history.write(i, scores)

    _, state, history = tf.while_loop(lambda i, *_: i < inputs.steps, body, (tf.constant(0), state, history))
    return state, history.stack()


def compile_loop(begin: Callable, step: Step, finish: Callable):
    """The compiled loop of a synthesis method: a tf.function of (start, inputs: LoopInputs) that
    runs `step` from the state `begin(start)` and returns (finish(final state), scores of every step)."""

    @tf.function(reduce_retracing=True)
    def run(start, inputs):
        state, history = run_steps(step, begin(start), inputs)
        return finish(state), history

    return run


def run_loop(engine: LayerEngine, cache_key: Hashable, build: Callable[[], Callable], start, inputs: LoopInputs):
    """Runs the compiled loop cached on the engine under `cache_key`, compiling it with `build()` the
    first time: (what its `finish` gives, history), as tensors."""
    compiled = engine.compiled.get(cache_key)
    if compiled is None:
        compiled = engine.compiled[cache_key] = build()
    return compiled(start, inputs)


# --- Lucid's method: Adam on a Fourier spectrum -----------------------------------------------------


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
        """The (spectrum, log contrast or None) -> image function, with its constants, for use inside a
        compiled graph."""
        scale = tf.constant(param.spectrum_scale(self.height, self.width, self.decay_power))
        mask = None if self.mask is None else tf.constant(self.mask.astype(np.float32)[None, :, :, None])

        def render(spectrum, log_contrast=None):
            image = param.fourier_rgb(spectrum, scale, self.height, self.width, self.decorrelate, log_contrast)
            if mask is not None:
                image = transforms_mod.NEUTRAL + mask * (image - transforms_mod.NEUTRAL)
            return image

        return render


class SpectrumState(NamedTuple):
    """The loop state of Lucid's method: the batch's spectra, each image's log contrast, and their
    Adam moments."""

    spectrum: Any  # (2, batch, 3, h, w // 2 + 1)
    moments: AdamMoments
    contrast: Any  # (batch, 1, 1, 1): each image's log contrast, 0 at the start
    contrast_moments: AdamMoments

    @classmethod
    def begin(cls, spectrum) -> "SpectrumState":
        """The state before the first step: unit contrast, zero moments."""
        contrast = tf.zeros([tf.shape(spectrum)[1], 1, 1, 1])
        return cls(spectrum, AdamMoments.zeros_like(spectrum), contrast, AdamMoments.zeros_like(contrast))


@dataclass(frozen=True)
class ContrastLearning:
    """How each image's log contrast learns: Adam at `learning_rate` (0: it stays at unit contrast
    and takes no part in the image), capped at `max_log_contrast`."""

    learning_rate: float = 0.0
    max_log_contrast: float = 0.0
    start: float = 0.0  # the fraction of the run after which it learns (before: the texture forms at unit contrast)

    def rate(self, i, steps):
        """The learning rate at step i of `steps`."""
        begun = tf.cast(i, tf.float32) >= self.start * tf.cast(steps, tf.float32)
        return tf.where(begun, self.learning_rate, 0.0)

    def of(self, state: SpectrumState):
        """The log contrast the image is rendered with, or None when it does not learn."""
        return state.contrast if self.learning_rate > 0 else None


def spectrum_step(engine: LayerEngine, objective: Objective, render: Callable, augment: Callable, lr: float,
                  schedule: str = "constant", contrast: ContrastLearning = ContrastLearning(),
                  settle_start: float = 1.0) -> Step:
    """One step of Lucid's method: Adam up the objective of each image's own filter (down, where its
    sign in the inputs is -1), on its transformed image; with a learning contrast, Adam moves each
    image's log contrast too. From `settle_start` of the run on (a fraction of its steps; 1: never),
    each image is scored untransformed, as it will be judged: the transforms have shaped its texture
    by then, and the last steps refine the image itself."""

    def scored(image, inputs: LoopInputs):
        features = engine.features(image) if objective.needs_features else None
        maps = engine.own_maps(image, inputs.filter_ids, features=features)
        scores = objective(maps, features)
        # Recorded without its regularisers: the filter's objective.
        return scores, scores if objective.track is None else objective.tracked(maps, features)

    def step(i, state: SpectrumState, inputs: LoopInputs):
        with tf.GradientTape() as tape:
            tape.watch([state.spectrum, state.contrast])
            image = render(state.spectrum, contrast.of(state))
            seen = augment(image, step_keys(inputs.keys, i))
            if settle_start >= 1:
                scores, tracked = scored(seen, inputs)
            else:
                settled = tf.cast(i, tf.float32) >= settle_start * tf.cast(inputs.steps, tf.float32)
                if seen.shape.as_list()[1:] == image.shape.as_list()[1:]:
                    # One model graph, not two branches of it: compiling it is a good part of a small build.
                    scores, tracked = scored(tf.where(settled, image, seen), inputs)
                else:  # a pad: the bare image has another shape
                    scores, tracked = tf.cond(settled, lambda: scored(image, inputs), lambda: scored(seen, inputs))
            loss = -tf.reduce_sum(inputs.signs * scores)
        grad, contrast_grad = tape.gradient(loss, [state.spectrum, state.contrast])
        spectrum, moments = state.moments.update(state.spectrum, grad, i, learning_rate_at(lr, schedule, i, inputs.steps))
        log_contrast, contrast_moments = state.contrast, state.contrast_moments
        if contrast.learning_rate > 0:
            log_contrast, contrast_moments = contrast_moments.update(log_contrast, contrast_grad, i,
                                                                     contrast.rate(i, inputs.steps))
            log_contrast = tf.minimum(log_contrast, contrast.max_log_contrast)
        return SpectrumState(spectrum, moments, log_contrast, contrast_moments), tracked

    return step


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
    contrast: ContrastLearning = ContrastLearning(),
    settle_start: float = 1.0,
    sign: int = 1,
) -> Optimised:
    """Maximises `objective` for image i on filter `filter_ids[i]`, by Adam on the spectra of `param_f`.

    `keys[i]` seeds image i's start and its random transforms. `cache_key` must name everything that
    shapes the compiled graph (objective, parametrisation, transforms, learning rates, batch size);
    `steps` is a graph input, so runs that differ only in length share one graph. `contrast`: how
    each image's contrast learns (by default it does not); `settle_start`: the fraction of the run after
    which each image is scored untransformed (by default, never); `sign` -1 minimises the objective
    instead, in the same graph. The history is the objective itself, whatever the sign."""

    def build():
        render = param_f.graph()
        step = spectrum_step(engine, objective, render, transforms_mod.compose(transforms), learning_rate, lr_schedule,
                             contrast, settle_start)
        return compile_loop(SpectrumState.begin, step, lambda state: render(state.spectrum, contrast.of(state)))

    images, history = run_loop(
        engine, cache_key, build, tf.constant(param_f.initial(keys)), LoopInputs.of(keys, filter_ids, steps, sign)
    )
    return Optimised(images.numpy(), history.numpy())
