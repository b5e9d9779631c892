"""Whole-filter and centre-neuron images on a few filters of the real trunk, at tiny sizes."""

import numpy as np
import pytest

from atlasgen.model import geometry
from atlasgen.errors import AtlasgenError
from atlasgen.synthesis import LayerEngine, SynthesisParams, channel_images, neuron_images, rf_crop, synthesise
from atlasgen.synthesis.images import NEUTRAL_BYTE, batches, changed_outside
from atlasgen.tf import tf

TINY = SynthesisParams(size=40, steps=12)


@pytest.fixture(scope="module")
def block1(hed_model):
    return LayerEngine(hed_model, "block1_conv1")


@pytest.fixture(scope="module")
def block3(hed_model):
    return LayerEngine(hed_model, "block3_conv1")


def test_channel_images_are_textured_deterministic_and_improve(block1):
    first = synthesise(block1, "channel", [0, 5, 9], TINY)
    compiled = len(block1.compiled)
    again = channel_images(block1, [0, 5, 9], TINY, batch_size=3)
    assert len(block1.compiled) == compiled, "the same batch reuses its compiled graph"
    for a, b in zip(first, again):
        assert a.image.shape == (40, 40, 3) and a.image.dtype == np.uint8
        assert a.image.std() > 2.0
        assert np.array_equal(a.image, b.image)
        assert a.history[-1] > a.history[0]
    assert not np.array_equal(first[0].image, first[1].image)


def test_a_filter_silent_on_grey_still_gets_an_image(block3):
    """Pre-ReLU objective: a filter whose ReLU output is zero everywhere still has a gradient."""
    grey = tf.fill((1, 40, 40, 3), 0.5)
    maps = block3.maps(grey, tf.range(64)).numpy()[0]
    silent = [f for f in range(64) if maps[..., f].max() < 0]
    assert silent, "expected some block3_conv1 filter to be silent on a grey image"
    (image,) = channel_images(block3, silent[:1], TINY)
    assert image.image.std() > 2.0
    assert image.history[-1] > image.history[0]


def test_filter_image_does_not_depend_on_batch_mates(block1):
    together = channel_images(block1, [3, 4, 6], TINY)[2].image.astype(int)
    alone = channel_images(block1, [6], TINY)[0].image.astype(int)
    assert np.abs(together - alone).mean() < 1.0


def test_neuron_images_change_nothing_outside_the_receptive_field(block3):
    params = SynthesisParams(size=64, steps=12)
    images = neuron_images(block3, [1, 2], params)
    for result in images:
        assert result.changed_outside_box == 0
        assert changed_outside(result.image, result.box) == 0
        inside = result.image[result.box.top : result.box.bottom, result.box.left : result.box.right]
        assert (inside != NEUTRAL_BYTE).any(axis=-1).mean() > 0.5
        assert result.history[-1] > result.history[0]


def test_a_neuron_whose_field_reaches_the_border_has_no_pad_and_settles(block3):
    """Beyond the image's border the judged image has no grey: a neuron whose field reaches it is
    optimised without a pad, so its unit is the same on the bare patch, and its second half settles."""
    from atlasgen.synthesis.images import _neuron_setup, field_reaches_border, transforms_used

    for size, border in ((64, False), (16, True)):  # block3_conv1's field is 24 px
        params = SynthesisParams(size=size, steps=12)
        field = block3.field((size, size))
        assert field_reaches_border(field, size) is border
        fitted = _neuron_setup(block3, params).params
        assert fitted == transforms_used(params, field)["neuron"]  # what atlas.json records is what runs
        if border:
            assert fitted.pad == 0 and fitted.untransformed_from == 6
        else:
            assert fitted.pad == 12 and fitted.untransformed_from is None  # 12 px: whole strides of 4
    assert _neuron_setup(block3, SynthesisParams(size=64, pad=10)).params.pad == 12  # rounded up to a stride
    (image,) = neuron_images(block3, [1], SynthesisParams(size=16, steps=12))
    assert image.changed_outside_box == 0 and image.history[-1] > image.history[0]
    assert image.box == block3.patch_plan(16).box


def test_changed_outside_counts_pixels_not_channels():
    image = np.full((10, 10, 3), NEUTRAL_BYTE, np.uint8)
    image[0, 0] = 0
    image[5, 5, 1] = 3
    image[2, 2] = 255  # inside the box below
    assert changed_outside(image, geometry.Box(1, 1, 4, 4)) == 2


def test_rf_crop_zooms_the_box_keeping_aspect_and_pixels():
    image = np.zeros((20, 20, 3), np.uint8)
    image[4:7, 4:7] = 200
    crop = rf_crop(image, geometry.Box(4, 4, 7, 7), display=30)
    assert crop.shape == (30, 30, 3) and np.all(crop == 200)
    wide = rf_crop(image, geometry.Box(0, 0, 5, 10), display=40)
    assert wide.shape == (20, 40, 3)


def test_bad_filters_and_layers_are_one_line_errors(hed_model, block1):
    with pytest.raises(AtlasgenError, match="out of range"):
        channel_images(block1, [64], TINY)


def test_batches_pad_the_last_one_to_reuse_the_graph():
    assert batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5, 5]]
    assert batches([1, 2, 3], 8) == [[1, 2, 3]]


@pytest.mark.parametrize("layer", ["block1_conv1", "block3_conv1"])
def test_neuron_images_drive_their_neuron_above_grey(hed_model, layer):
    """The final, untransformed image must excite the neuron: jitter larger than a small field broke this."""
    engine = LayerEngine(hed_model, layer)
    params = SynthesisParams(size=48, steps=24)
    plan = engine.patch_plan(48)
    grey = engine.maps(tf.fill((1, 48, 48, 3), 0.5), tf.constant([0, 1, 2], tf.int32)).numpy()[0][plan.unit]
    for result, baseline in zip(neuron_images(engine, [0, 1, 2], params), grey):
        assert result.objective > baseline + 1.0, (result.filter, result.objective, baseline)


# --- mixed precision ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def block2_mixed(hed_model):
    return LayerEngine(hed_model, "block2_conv1", precision="mixed")


@pytest.mark.parametrize("kind", ["channel", "neuron"])
def test_a_mixed_synthesis_stores_the_float32_evaluation_of_its_image(hed_model, block2_mixed, kind):
    from atlasgen.synthesis.images import evaluate

    params = SynthesisParams(size=32, steps=2, precision="mixed")
    made = synthesise(block2_mixed, kind, [0, 7], params)
    assert len(block2_mixed.compiled) >= 1
    images = np.stack([m.image for m in made]) / 255.0
    unit = block2_mixed.patch_plan(32).unit if kind == "neuron" else None
    # A float32 engine evaluates the same images to exactly what was stored.
    objective, mean = evaluate(LayerEngine(hed_model, "block2_conv1"), images, [0, 7], unit)
    assert [m.objective for m in made] == [float(v) for v in objective]
    assert [m.mean_activation for m in made] == [float(v) for v in mean]
    assert all(np.isfinite(m.history).all() and m.history.shape == (2,) for m in made)
    # The mixed engine's own computation of the same images is close to it.
    own = block2_mixed.own_maps(tf.constant(images, tf.float32), tf.constant([0, 7])).numpy()
    own = own.mean(axis=(1, 2)) if unit is None else own[:, unit[0], unit[1]]
    assert np.allclose(own, objective, rtol=0.05, atol=0.05 * np.abs(objective).max())


def test_an_engine_of_another_precision_is_refused(hed_model, block1, block2_mixed):
    from atlasgen.synthesis.images import channel_batch, neuron_batch

    mixed = SynthesisParams(size=32, steps=1, precision="mixed")
    exact = SynthesisParams(size=32, steps=1)
    for engine, params in ((block1, mixed), (block2_mixed, exact)):
        for run in (lambda: synthesise(engine, "channel", [0], params), lambda: channel_batch(engine, [0], params),
                    lambda: neuron_batch(engine, [0], params), lambda: channel_images(engine, [0], params)):
            with pytest.raises(AtlasgenError, match=f"computes in {engine.precision} and the parameters ask for "
                                                    f"{params.precision}") as raised:
                run()
            assert "\n" not in str(raised.value)


def test_the_precision_is_a_synthesis_parameter_of_every_recipe():
    assert SynthesisParams().precision == "float32" and SynthesisParams().recipe()["precision"] == "float32"
    assert SynthesisParams(precision="mixed").recipe()["precision"] == "mixed"


def test_transforms_are_fitted_to_the_receptive_field():
    from atlasgen.synthesis.images import FIELD_FOR_WARPS, fitted_to_field

    params = SynthesisParams(size=64, steps=8)
    small = fitted_to_field(params, 3)
    assert (small.pad, small.jitter, small.jitter_last) == (0, 1, 0)
    assert small.scale == (1.0, 1.0) and small.rotate_degrees == 0
    assert small.learning_rate == params.small_field_learning_rate
    middle = fitted_to_field(params, FIELD_FOR_WARPS)
    assert middle.pad == 0 and middle.jitter == 2 and middle.rotate_degrees == params.rotate_degrees
    assert middle.learning_rate == params.learning_rate
    large = fitted_to_field(params, 212)
    assert (large.pad, large.jitter, large.jitter_last, large.scale) == (0, params.jitter, params.jitter_last, params.scale)


def test_a_faint_image_is_faint_driven_only_when_louder_versions_score_lower(block1, monkeypatch):
    from atlasgen.synthesis import images

    flat = np.full((3, 8, 8, 3), 128, np.uint8)
    flat[:, ::2] = 130  # RGB sd 1: faint
    vivid = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 3)).astype(np.uint8)
    # Scores of the 4 images at each contrast scale (0.5, 1, 1.5, 2): image 0's filter scores louder
    # versions lower (faint-driven), image 1's prefers x1.5, image 2's is indifferent, image 3 is vivid.
    # Scale 1 is the image itself: its objective is given, not evaluated again.
    table = iter([np.array([2.0, 1.0, 3.0, 5.0]), np.array([1.0, 4.0, 3.0, 1.0]), np.array([0.5, 2.0, 3.0, 0.0])])
    monkeypatch.setattr(images, "evaluate", lambda engine, pixels, ids: (next(table), None))
    responses, faint = images.contrast_responses(block1, np.concatenate([flat, vivid]), [0, 1, 2, 3],
                                                 np.array([3.0, 3.0, 3.0, 4.0]))
    assert [[s for s, _ in r] for r in responses] == [[0.5, 1.0, 1.5, 2.0]] * 4
    assert [r[1][1] for r in responses] == [3.0, 3.0, 3.0, 4.0]  # x1 is the image itself
    assert faint == [True, False, False, False]  # image 3 is vivid, whatever the scores say


def test_whole_filter_images_carry_their_contrast_response(block1, block3):
    (image,) = synthesise(block3, "channel", [5], TINY)  # block1_conv1's is its exact extreme: none
    assert [s for s, _ in image.contrast_response] == [0.5, 1.0, 1.5, 2.0]
    assert image.contrast_response[1][1] == pytest.approx(image.objective, abs=1e-4)
    assert image.faint == (image.image.std() < 16 and image.contrast_response[2][1] < image.objective
                           and image.contrast_response[3][1] < image.objective)
    (neuron,) = synthesise(block1, "neuron", [5], TINY)
    assert neuron.contrast_response is None and neuron.faint is None


# --- negative images: what inhibits a filter most -----------------------------------------------


@pytest.mark.parametrize("layer,filters", [("block1_conv1", [0, 5, 9]), ("block3_conv1", [0, 3, 7])])
def test_a_negative_image_drives_its_filter_below_its_positive_image_and_grey(hed_model, layer, filters):
    from atlasgen.synthesis.images import evaluate

    engine = LayerEngine(hed_model, layer)
    positive = synthesise(engine, "channel", filters, TINY)
    negative = synthesise(engine, "channel-negative", filters, TINY)
    grey = evaluate(engine, np.full((len(filters), 40, 40, 3), 0.5, np.float32), filters)[0]
    for up, down, on_grey in zip(positive, negative, grey):
        assert (down.kind, down.filter, down.image.shape) == ("channel-negative", up.filter, (40, 40, 3))
        assert down.objective < on_grey < up.objective, (layer, down.filter, down.objective, on_grey, up.objective)
        # Its numbers are the channel mean itself: the stored one is the final image's, and the run went down.
        assert down.objective == pytest.approx(float(evaluate(engine, down.image[None] / 255.0, [down.filter])[0][0]))
        assert down.history[-1] < down.history[0]
        assert down.contrast_response is None and down.faint is None  # a verdict on maximising only


def test_the_contrast_search_keeps_the_lowest_candidate_for_a_negative_image(block1):
    from atlasgen.synthesis.images import best_contrast, evaluate, with_contrast

    images = np.random.default_rng(3).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    scales = (1.0, 0.5, 0.1)
    candidates = np.stack([evaluate(block1, with_contrast(images, s, grey), [0, 1, 2])[0]
                           for grey in (False, True) for s in scales], axis=1)
    for sign, pick in ((1, np.max), (-1, np.min)):
        chosen = evaluate(block1, best_contrast(block1, images, [0, 1, 2], scales, sign) / 255.0, [0, 1, 2])[0]
        # The chosen image is the best candidate, rounded back to bytes, or, where that one is faint, a
        # louder version of it that its filter prefers (louder_while_preferred).
        assert (sign * chosen >= sign * pick(candidates, axis=1) - 0.05).all(), (sign, chosen, candidates)


def test_a_negative_maco_image_drives_its_filter_below_its_positive_one(block1):
    from atlasgen.synthesis.maco import MacoParams, maco_batch, negative_maco_batch

    params = MacoParams(size=32, steps=8, crops=2)
    positive = maco_batch(block1, [0, 5], params)
    negative = negative_maco_batch(block1, [0, 5], params)
    for up, down in zip(positive, negative):
        assert down.kind == "maco-negative" and down.filter == up.filter
        assert down.objective < up.objective and down.history[-1] < down.history[0]
        assert down.contrast_response is None and down.faint is None and down.transparency.shape == (32, 32)


def test_a_layer_affine_in_the_pixels_gets_its_exact_extremes(block1, block3):
    """block1_conv1 reads the image through nothing but the (affine) input convention: its channel
    mean is affine in the pixels, so its extremes over [0, 1] images are known exactly."""
    from atlasgen.synthesis.images import evaluate, exact_extremes, negative_channel_images

    assert block1.affine_in_pixels and not block3.affine_in_pixels  # block3_conv1 has ReLUs and pools before it
    ids = [0, 5, 9]
    highest, lowest = exact_extremes(block1, ids, 40), exact_extremes(block1, ids, 40, sign=-1)
    assert set(np.unique(highest)) <= {0, NEUTRAL_BYTE, 255} and set(np.unique(lowest)) <= {0, NEUTRAL_BYTE, 255}
    rng = np.random.default_rng(0)
    others = rng.integers(0, 256, size=(3, 40, 40, 3)).astype(np.float32) / 255.0
    top, bottom = evaluate(block1, highest / 255.0, ids)[0], evaluate(block1, lowest / 255.0, ids)[0]
    assert (top > evaluate(block1, others, ids)[0]).all() and (bottom < evaluate(block1, others, ids)[0]).all()
    # The synthesis keeps whichever is more extreme: the exact one, and says so.
    positive, negative = channel_images(block1, ids, TINY), negative_channel_images(block1, ids, TINY)
    for image, best in zip(positive, top):
        assert image.exact and image.objective == pytest.approx(float(best), rel=1e-5)
        assert image.contrast_response is None and image.faint is None  # a saturated colour, not a faint image
    for image, least in zip(negative, bottom):
        assert image.exact and image.objective == pytest.approx(float(least), rel=1e-5)
    assert all(image.exact is None for image in channel_images(block3, [0], TINY))  # not affine: as optimised


def test_a_faint_image_grows_louder_while_its_filter_prefers_it(block1, monkeypatch):
    from atlasgen.synthesis import images

    rng = np.random.default_rng(1)
    faint = (128 + rng.normal(0, 2, (2, 16, 16, 3))).round().astype(np.uint8)
    vivid = rng.integers(0, 256, (1, 16, 16, 3)).astype(np.uint8)
    start = np.concatenate([faint, vivid])
    # Image 0's filter scores louder higher, image 1's quieter; image 2 is vivid and its filter wants louder.
    signs = np.array([1.0, -1.0, 1.0])

    scored = []

    def by_contrast(engine, pixels, ids, *, float32):
        scored.append((list(ids), float32))
        return signs[ids] * pixels.reshape(len(pixels), -1).std(axis=1), None

    monkeypatch.setattr(images, "evaluate", by_contrast)
    for sign in (1, -1):
        signs = sign * np.array([1.0, -1.0, 1.0])
        out = images.louder_while_preferred(block1, start, [0, 1, 2], sign)
        assert out[0].std() >= images.FAINT_STD > start[0].std()  # louder until no longer faint
        assert np.abs(out[0].astype(float).mean(axis=(0, 1)) - start[0].astype(float).mean(axis=(0, 1))).max() < 1.0
        np.testing.assert_array_equal(out[1], start[1])  # its filter prefers it faint
        np.testing.assert_array_equal(out[2], start[2])  # vivid: never made louder
    # Only faint images are scored, and in the engine's precision: it is a choice, not a stored number.
    assert scored and all(2 not in ids and not float32 for ids, float32 in scored)


def test_maco_images_of_a_layer_affine_in_the_pixels_are_its_exact_extremes(block1, block3):
    from atlasgen.synthesis.images import affine_gradient, exact_extremes
    from atlasgen.synthesis.maco import MacoParams, maco_batch, negative_maco_batch, normalise

    params, ids = MacoParams(size=32, steps=4, crops=2), [0, 5]
    gradient_map = normalise(np.abs(affine_gradient(block1, ids, 32)).sum(axis=-1))
    for made, sign in ((maco_batch(block1, ids, params), 1), (negative_maco_batch(block1, ids, params), -1)):
        for image, extreme, where in zip(made, exact_extremes(block1, ids, 32, sign), gradient_map):
            assert image.exact and np.array_equal(image.image, extreme)
            assert image.contrast_response is None and image.faint is None
            # Its transparency is how much each pixel moves the objective, not the optimised image's run.
            np.testing.assert_allclose(image.transparency, where, atol=1e-6)
    assert all(image.exact is None for image in maco_batch(block3, [0], params))  # not affine: as optimised


def test_a_layers_whole_filter_and_negative_images_share_one_compiled_graph(block3):
    from atlasgen.synthesis.images import negative_channel_images
    from atlasgen.synthesis.maco import MacoParams, maco_batch, negative_maco_batch

    block3.compiled.clear()
    channel_images(block3, [0, 1], TINY)
    maco_batch(block3, [0, 1], MacoParams(size=32, steps=2, crops=2))
    graphs = set(block3.compiled)
    negative_channel_images(block3, [0, 1], TINY)
    negative_maco_batch(block3, [0, 1], MacoParams(size=32, steps=2, crops=2))
    assert set(block3.compiled) == graphs and len(graphs) == 2  # the sign is an input of each method's graph
