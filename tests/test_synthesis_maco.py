"""MACO: phase-only images on a fixed natural spectrum, their transforms, the loop and the records."""

import numpy as np
import pytest

from atlasgen.synthesis import maco
from atlasgen.synthesis.maco import MacoParams

SIZE = 32
PARAMS = MacoParams(size=SIZE, steps=4, crops=2)


@pytest.fixture(scope="module")
def engine(hed_model):
    from atlasgen.synthesis import LayerEngine

    # Not block1_conv1: a layer affine in the pixels gets its exact extremes, whatever MACO made.
    return LayerEngine(hed_model, "block1_conv2")


def test_the_shipped_spectrum_is_a_natural_spectrum():
    spectrum = maco.natural_spectrum()
    assert spectrum.shape == (3, 256, 129) and spectrum.dtype == np.float32
    assert np.all(np.isfinite(spectrum)) and np.all(spectrum > 0)
    # Natural images: energy falls with frequency (1/f), in every channel.
    assert np.all(spectrum[:, 1, 1] > 10 * spectrum[:, 128, 128])
    assert len(maco.spectrum_digest()) == 64


def test_the_spectrum_is_interpolated_to_other_sizes():
    small = maco.magnitude(SIZE)
    assert small.shape == (3, SIZE, SIZE // 2 + 1) and small.dtype == np.float32
    assert np.all(np.isfinite(small)) and np.all(small > 0)
    assert small[:, 1, 1].mean() > small[:, SIZE // 2, SIZE // 2].mean()
    assert maco.magnitude(256) is maco.natural_spectrum()


def magnitude_of(pre: np.ndarray) -> np.ndarray:
    """|rfft2| per channel of (batch, h, w, 3) images: (batch, 3, h, w // 2 + 1)."""
    return np.abs(np.fft.rfft2(pre.transpose(0, 3, 1, 2).astype(np.float64)))


def assert_magnitude_is_fixed(pre: np.ndarray, size: int) -> None:
    # Every column but the self-conjugate ones (DC and Nyquist), whose imaginary parts irfft drops.
    got, want = magnitude_of(pre)[..., 1 : size // 2], maco.magnitude(size)[None, ..., 1 : size // 2]
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=1e-3, atol=1e-3 * want.max())


def test_any_phase_keeps_the_magnitude():
    from atlasgen.tf import tf

    phase = maco.initial_phase([1, 2], SIZE)
    pre = maco.pre_image(tf.constant(phase), tf.constant(maco.magnitude(SIZE)), SIZE).numpy()
    assert pre.shape == (2, SIZE, SIZE, 3)
    assert_magnitude_is_fixed(pre, SIZE)
    pixels = maco.to_pixels(tf.constant(pre)).numpy()
    assert pixels.min() > 0 and pixels.max() < 1


def test_crops_are_the_keys_own_and_shrink_over_the_run():
    from atlasgen.tf import tf

    images = tf.constant(np.random.default_rng(0).uniform(size=(2, SIZE, SIZE, 3)).astype(np.float32))
    params = MacoParams(size=SIZE, crops=3, noise=0.0)
    one = maco.crops_and_noise(images, tf.constant([5, 9], tf.int64), 0.0, params).numpy()
    swapped = maco.crops_and_noise(images[::-1], tf.constant([9, 5], tf.int64), 0.0, params).numpy()
    assert one.shape == (6, SIZE, SIZE, 3)
    np.testing.assert_allclose(one[:3], swapped[3:], atol=1e-6)
    noisy = maco.crops_and_noise(images, tf.constant([5, 9], tf.int64), 0.0, MacoParams(size=SIZE, crops=3)).numpy()
    assert 0.06 < np.std(noisy - one) < 0.1  # sd 0.08
    # Late crops are smaller: a zoomed-in crop of a smooth ramp spans a narrower range.
    ramp = tf.constant(np.broadcast_to(np.linspace(0, 1, SIZE, dtype=np.float32)[None, None, :, None], (1, SIZE, SIZE, 3)))
    early = maco.crops_and_noise(ramp, tf.constant([3], tf.int64), 0.0, params).numpy()
    late = maco.crops_and_noise(ramp, tf.constant([3], tf.int64), 1.0, params).numpy()
    span = lambda x: np.ptp(x[:, 0, :, 0], axis=1).mean()
    assert span(late) < 0.7 * span(early)


def test_a_maco_state_starts_at_unit_contrast_with_zero_moments_and_saliency():
    from atlasgen.tf import tf

    phase = tf.constant(maco.initial_phase([1, 2], SIZE))
    state = maco.MacoState.begin(phase, SIZE)
    assert state.phase is phase and state.contrast.shape == (2, 1, 1, 1) and state.saliency.shape == (2, SIZE, SIZE)
    assert state.moments.m.shape == phase.shape and state.contrast_moments.v.shape == (2, 1, 1, 1)
    assert all(not np.any(t.numpy()) for t in (state.contrast, state.saliency, *state.moments, *state.contrast_moments))


def test_a_batch_keeps_the_magnitude_and_gives_a_transparency_map(engine):
    run = maco.optimise_maco(engine, [0, 1], PARAMS)
    assert run.images.shape == (2, SIZE, SIZE, 3) and run.history.shape == (4, 2)
    assert_magnitude_is_fixed(run.pre, SIZE)
    assert run.transparency.shape == (2, SIZE, SIZE)
    assert run.transparency.min() >= 0 and run.transparency.max() <= 1
    assert all(np.ptp(t) > 0 for t in run.transparency)


def test_a_filters_image_does_not_depend_on_its_batch_mates(engine):
    alone = maco.maco_batch(engine, [1], PARAMS)[0]
    with_others = maco.maco_batch(engine, [3, 1], PARAMS)[1]
    assert alone.filter == with_others.filter == 1 and alone.kind == "maco"
    np.testing.assert_array_equal(alone.image, with_others.image)
    np.testing.assert_allclose(alone.transparency, with_others.transparency, atol=1e-5)
    other_seed = maco.maco_batch(engine, [1], MacoParams(size=SIZE, steps=4, crops=2, seed=1))[0]
    assert not np.array_equal(alone.image, other_seed.image)


def test_the_objective_improves_over_the_steps(engine):
    ids = [0, 1, 2, 3]
    start = maco.maco_batch(engine, ids, MacoParams(size=SIZE, steps=1, crops=2))
    longer = maco.maco_batch(engine, ids, MacoParams(size=SIZE, steps=16, crops=2))
    assert np.mean([i.objective for i in longer]) > np.mean([i.objective for i in start])
    assert all(np.mean(i.history[-4:]) > i.history[0] for i in longer)


def test_the_graph_is_cached_per_parameters_without_steps(engine):
    maco.maco_batch(engine, [0, 1], PARAMS)
    before = len(engine.compiled)
    maco.maco_batch(engine, [2, 3], MacoParams(size=SIZE, steps=6, crops=2))
    assert len(engine.compiled) == before


def test_the_recipe_names_the_spectrum():
    recipe = PARAMS.recipe()
    assert recipe["spectrum"] == maco.spectrum_digest() and recipe["crops"] == 2 and recipe["steps"] == 4
    from atlasgen.params import SynthesisParams

    assert MacoParams.from_synthesis(SynthesisParams(size=48, steps=7, seed=3)) == MacoParams(size=48, steps=7, seed=3)


def test_maco_takes_the_builds_precision_and_evaluates_in_float32(hed_model):
    from atlasgen.errors import AtlasgenError
    from atlasgen.synthesis import LayerEngine, SynthesisParams
    from atlasgen.synthesis.images import evaluate

    params = MacoParams.from_synthesis(SynthesisParams(size=SIZE, steps=2, precision="mixed"))
    assert params.precision == "mixed" and params.recipe()["precision"] == "mixed"
    assert MacoParams().recipe()["precision"] == "float32"
    mixed = LayerEngine(hed_model, "block2_conv1", precision="mixed")
    made = maco.maco_batch(mixed, [0, 3], params)
    objective, _ = evaluate(LayerEngine(hed_model, "block2_conv1"), np.stack([m.image for m in made]) / 255.0, [0, 3])
    assert [m.objective for m in made] == [float(v) for v in objective]
    with pytest.raises(AtlasgenError, match="computes in mixed and the parameters ask for float32"):
        maco.maco_batch(mixed, [0], MacoParams(size=SIZE, steps=1))
    with pytest.raises(AtlasgenError, match="computes in float32 and the parameters ask for mixed"):
        maco.optimise_maco(LayerEngine(hed_model, "block2_conv1"), [0], params)


def test_to_pixels_scales_the_standardised_image_by_the_contrast():
    from atlasgen.tf import tf

    image = tf.constant(np.random.default_rng(0).normal(3.0, 5.0, (1, 8, 8, 3)).astype(np.float32))
    full = maco.to_pixels(image).numpy()
    faint = maco.to_pixels(image, tf.constant(np.log(0.25), tf.float32, shape=(1, 1, 1, 1))).numpy()
    assert np.allclose(full, maco.to_pixels(image, tf.zeros((1, 1, 1, 1))).numpy())
    assert faint.std() < 0.4 * full.std() and abs(faint.mean() - 0.5) < 0.05


def test_a_filter_driven_by_faint_texture_gets_a_fainter_image(hed_model):
    """block3_conv1 filter 0 of the HED trunk is driven hardest by faint texture: a learned contrast
    (capped at unit) finds a fainter image and a higher objective; filter 1 keeps its contrast."""
    from atlasgen.synthesis import LayerEngine

    engine = LayerEngine(hed_model, "block3_conv1")
    # Without the search after the run, which would take a fixed-contrast image fainter too.
    fixed, free = (maco.maco_batch(engine, [0, 1], MacoParams(size=48, steps=24, crops=2, contrast_learning_rate=lr,
                                                              contrast_search=(1.0,)))
                   for lr in (0.0, 0.05))
    assert free[0].objective > fixed[0].objective + 5 and free[0].image.std() < 0.6 * fixed[0].image.std()
    assert free[1].image.std() == pytest.approx(fixed[1].image.std(), rel=0.1)
    assert MacoParams().recipe()["max_log_contrast"] == 0.0 and "contrast_learning_rate" in MacoParams().recipe()


def test_the_search_after_the_run_keeps_a_contrast_only_when_its_filter_scores_it_higher(hed_model):
    from atlasgen.synthesis import LayerEngine

    engine = LayerEngine(hed_model, "block3_conv1")
    plain, searched = (maco.maco_batch(engine, [0, 1], MacoParams(size=48, steps=24, crops=2, contrast_search=search))
                       for search in ((1.0,), MacoParams().contrast_search))
    for a, b in zip(plain, searched):
        assert b.objective >= a.objective - 0.1 and b.image.std() <= a.image.std() + 0.5  # fainter, never louder
    assert searched[0].objective > plain[0].objective  # filter 0 prefers faint texture


def test_from_settle_start_on_the_whole_image_is_scored_without_crops_or_noise(engine):
    from dataclasses import replace

    from atlasgen.tf import tf

    ids = [0, 1]
    params = MacoParams(size=SIZE, steps=1, crops=2, settle_start=0.0)
    keys = [maco.filter_key(0, f) for f in ids]
    start = maco.to_pixels(maco.pre_image(tf.constant(maco.initial_phase(keys, SIZE)),
                                          tf.constant(maco.magnitude(SIZE)), SIZE))
    whole = engine.own_maps(start, tf.constant(ids, tf.int32)).numpy().mean(axis=(1, 2))
    np.testing.assert_allclose(maco.optimise_maco(engine, ids, params).history[0], whole, rtol=1e-4, atol=1e-4)
    cropped = maco.optimise_maco(engine, ids, replace(params, settle_start=1.0)).history[0]
    assert not np.allclose(cropped, whole, rtol=1e-3, atol=1e-3)
    assert MacoParams().settle_start == 0.75 and "settle_start" in MacoParams().recipe()
