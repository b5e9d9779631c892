"""optimise(engine, objective, param_f, transforms, steps): the compiled loop, its explicit cache key,
and the Fourier parametrisation's per-key starts."""

import json

import numpy as np
import pytest

from atlasgen.synthesis import LayerEngine, objectives
from atlasgen.params import SynthesisParams
from atlasgen.synthesis.optimise import FourierImage, filter_key, optimise
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
