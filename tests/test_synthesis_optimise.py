"""optimise(engine, objective, param_f, transforms, steps): the compiled loop, its explicit cache key,
and the Fourier parametrisation's per-key starts."""

import json
from typing import Any, NamedTuple

import numpy as np
import pytest

from atlasgen.synthesis import LayerEngine, objectives
from atlasgen.params import SynthesisParams
from atlasgen.synthesis.optimise import (
    ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, AdamMoments, FourierImage, LoopInputs, compile_loop, filter_key, optimise,
)
from atlasgen.synthesis.transforms import standard


@pytest.fixture(scope="module")
def block1(hed_model):
    return LayerEngine(hed_model, "block1_conv1")


def test_filter_keys_are_stable_and_distinct():
    # Pinned: a change would silently change every image of every atlas.
    assert filter_key(0, 0) == 171340460 and filter_key(3, 7) == 325117133
    assert len({filter_key(0, f) for f in range(512)}) == 512


def test_each_key_has_its_own_start_whatever_its_batch_mates():
    param_f = FourierImage(16, 20)
    together = param_f.initial([11, 22, 33])
    assert together.shape == (2, 3, 3, 16, 11)
    assert np.array_equal(together[:, 2], param_f.initial([33])[:, 0])
    assert not np.array_equal(together[:, 0], together[:, 1])
    assert abs(together.std() - 0.01) < 0.002


def run(engine, steps, cache_key, mask=None, ids=(0, 3)):
    return optimise(
        engine, objectives.channel_mean(), FourierImage(24, 24, mask=mask), standard(4, 2, (0.95, 1.05), 5, 1), steps,
        filter_ids=list(ids), keys=[filter_key(0, f) for f in ids], learning_rate=0.05, cache_key=cache_key,
    )


def test_the_cache_key_names_the_compiled_graph_and_steps_are_an_input(block1):
    block1.compiled.clear()
    short = run(block1, 3, "test-a")
    longer = run(block1, 6, "test-a")
    assert list(block1.compiled) == ["test-a"]
    assert short.history.shape == (3, 2) and longer.history.shape == (6, 2)
    assert short.images.shape == (2, 24, 24, 3) and 0 < short.images.min() and short.images.max() < 1
    # The same start and transforms: the first three steps agree.
    assert np.allclose(short.history, longer.history[:3], rtol=1e-4, atol=1e-4)
    assert longer.history[-1].mean() > longer.history[0].mean()
    run(block1, 3, "test-b")
    assert list(block1.compiled) == ["test-a", "test-b"]


class Descent(NamedTuple):
    x: Any
    moments: AdamMoments


def test_the_shared_loop_records_each_steps_scores_and_threads_a_named_state():
    # A toy method: Adam down x**2 from each filter's start; the score is x before the step.
    from atlasgen.tf import tf

    def step(i, state, inputs):
        x, moments = state.moments.update(state.x, 2 * state.x, i, 0.1)
        return Descent(x, moments), state.x * tf.cast(inputs.filter_ids, tf.float32)

    loop = compile_loop(lambda x: Descent(x, AdamMoments.zeros_like(x)), step, lambda state: state.x)
    start = np.array([1.0, -2.0], np.float32)
    final, history = loop(tf.constant(start), LoopInputs.of([5, 6], [1, 3], 4))
    x, m, v, want = start.astype(np.float64), 0.0, 0.0, []
    for t in range(1, 5):
        want.append(x * [1, 3])
        m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * 2 * x
        v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * (2 * x) ** 2
        x = x - 0.1 * (m / (1 - ADAM_BETA1**t)) / (np.sqrt(v / (1 - ADAM_BETA2**t)) + ADAM_EPSILON)
    assert history.shape == (4, 2)
    np.testing.assert_allclose(history.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(final.numpy(), x, rtol=1e-5)
    _, longer = loop(tf.constant(start), LoopInputs.of([5, 6], [1, 3], 7))
    assert longer.shape == (7, 2) and loop.experimental_get_tracing_count() == 1


def test_a_mask_pins_pixels_at_neutral_grey(block1):
    mask = np.zeros((24, 24), np.float32)
    mask[8:16, 4:20] = 1
    result = run(block1, 4, "test-mask", mask=mask)
    outside = result.images[:, mask == 0]
    assert np.all(outside == 0.5)
    assert np.abs(result.images[:, mask == 1] - 0.5).max() > 0.001


def test_parameters_are_plain_json_for_recipes():
    recipe = SynthesisParams(size=64, steps=10).recipe()
    assert json.loads(json.dumps(recipe)) == recipe and recipe["scale"] == [0.9, 1.1]
    assert recipe["learning_rate"] == 0.05 and recipe["pad"] == 12 and recipe["jitter"] == 8


def test_the_defaults_are_issue_11s_recipe():
    params = SynthesisParams()
    assert (params.learning_rate, params.small_field_learning_rate, params.decay_power) == (0.05, 0.1, 1.5)
    assert params.fit_transforms
    assert (params.contrast_learning_rate, params.max_log_contrast, params.contrast_start) == (0.4, 0.0, 0.75)  # algorithm 6
    assert params.settle_start == 0.5  # algorithm 6: the second half of a whole-filter run scores the bare image


def test_a_learned_contrast_scales_the_deviation_from_the_mean_colour_and_never_past_the_cap(block1):
    from atlasgen.synthesis import param
    from atlasgen.synthesis.objectives import Objective
    from atlasgen.synthesis.optimise import ContrastLearning
    from atlasgen.tf import tf

    image = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32))
    scaled = param.scale_contrast(image, tf.constant([[[[0.0]]], [[[np.log(0.5)]]]], tf.float32)).numpy()
    mean = image.numpy().mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(scaled[0], image.numpy()[0], atol=1e-6)  # log contrast 0: unchanged
    np.testing.assert_allclose(scaled[1] - mean[1], 0.5 * (image.numpy()[1] - mean[1]), atol=1e-6)
    np.testing.assert_allclose(scaled.mean(axis=(1, 2)), mean[:, 0, 0], atol=1e-6)  # the mean colour stays

    param_f = FourierImage(16, 16, init_sd=0.5, decay_power=1.5)
    common = dict(filter_ids=[0, 1], keys=[1, 2], learning_rate=0.05)
    learning = ContrastLearning(learning_rate=0.5, max_log_contrast=0.0)

    def run(objective, contrast, name):
        return optimise(block1, objective, param_f, [], 10, cache_key=name, contrast=contrast, **common).images

    # An objective that wants a flat map: with a learned contrast the images fade far faster.
    flat = Objective(lambda maps: -tf.math.reduce_variance(maps, axis=[1, 2]), "flat map")
    assert run(flat, learning, "flat-learned").std() < 0.5 * run(flat, ContrastLearning(), "flat").std()
    # One that wants a loud map: the log contrast is capped at 0, so it adds nothing to the spectrum's own.
    loud = -1 * flat
    np.testing.assert_allclose(run(loud, learning, "loud-learned"), run(loud, ContrastLearning(), "loud"), atol=1e-5)


@pytest.mark.parametrize("pad", [0, 4])  # the same shape as the bare image (one model graph), or another
def test_from_settle_start_on_each_image_is_scored_untransformed(block1, pad):
    param_f = FourierImage(24, 24)
    ids = [0, 3]
    common = dict(filter_ids=ids, keys=[filter_key(0, f) for f in ids], learning_rate=0.05)
    transforms = standard(pad, 2, (0.95, 1.05), 5, 1)

    def run(transforms, settle_start, name):
        return optimise(block1, objectives.channel_mean(), param_f, transforms, 6, cache_key=(name, pad),
                        settle_start=settle_start, **common)

    # Settled from the start: the run of no transforms at all.
    settled, bare = run(transforms, 0.0, "settle-0"), run([], 1.0, "bare")
    np.testing.assert_allclose(settled.images, bare.images, atol=1e-6)
    np.testing.assert_allclose(settled.history, bare.history, rtol=1e-5, atol=1e-5)
    # Settled from half-way: the transformed run's first 3 steps, then the bare image's.
    half, never = run(transforms, 0.5, "settle-half"), run(transforms, 1.0, "never")
    np.testing.assert_allclose(half.history[:3], never.history[:3], rtol=1e-5, atol=1e-5)
    assert not np.allclose(half.history[3:], never.history[3:], rtol=1e-3, atol=1e-3)


def test_the_first_untransformed_step_is_settle_start_of_the_run():
    assert SynthesisParams(steps=64, settle_start=0.75).untransformed_from == 48
    assert SynthesisParams(steps=10, settle_start=0.5).untransformed_from == 5
    assert SynthesisParams(steps=7, settle_start=0.5).untransformed_from == 4  # step 3.5 on: steps 4, 5, 6
    assert SynthesisParams(steps=64, settle_start=1.0).untransformed_from is None
    assert "untransformed_from" not in SynthesisParams().recipe()  # settle_start names it
