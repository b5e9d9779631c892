"""How kinds are computed, without a model where none is needed: probe photos and map views."""

import numpy as np
import pytest

from atlasgen import codec
from atlasgen.build.compute import Job, map_views, probe_photos
from atlasgen.errors import AtlasgenError
from atlasgen.build.artifacts import Artifact
from atlasgen.store import Store
from atlasgen.codec import colour_map
from atlasgen.synthesis.probes import Probe


def no_engine(precision):
    raise AssertionError("this kind needs no model")


def job(store, kind, artifacts, probes):
    return Job(kind, artifacts, None, probes, store, None, no_engine)


def test_probe_photos_are_their_webp_and_size(tmp_path):
    photo = np.full((30, 40, 3), 90, np.uint8)
    art = Artifact("probe-photo", None, None, {}, "k", "cat")
    ((artifact, blobs, facts),) = list(probe_photos(job(Store(tmp_path), "probe-photo", [art], {"cat": Probe("cat", "d", photo)})))
    assert artifact is art and facts == {"width": 40, "height": 30}
    assert codec.decode(blobs["image"]).shape == (30, 40, 3)


def test_map_views_colour_each_map_at_the_filters_peak_over_every_probe(tmp_path):
    store = Store(tmp_path)
    photos = {n: Probe(n, "d" + n, np.zeros((32, 32, 3), np.uint8)) for n in "ab"}
    # Stored relative to its own peak: a's peak is 2, b's is 8, so the common scale is 8.
    raw = np.zeros((32, 32), np.float32)
    raw[8:24, 8:24] = 1.0
    keys = {}
    for name, peak in (("a", 2.0), ("b", 8.0)):
        keys[name] = f"{ord(name):064x}"
        store.put(keys[name], {"raw": codec.grey_png(raw)}, {"peak": peak, "mean": peak / 16})
    views = [Artifact("map-view", "l", 0, {"map": keys[n], "scale_from": [keys["a"], keys["b"]]}, f"v{n}", n) for n in "ab"]
    made = {a.probe: (blobs, facts) for a, blobs, facts in map_views(job(store, "map-view", views, photos))}
    assert made["a"][1] == made["b"][1] == {"scale": 8.0}
    heat_a, heat_b = (codec.decode(made[n][0]["heatmap"]).astype(int) for n in "ab")
    # b's hot square is drawn at 1 (the top colour), a's at 2/8 of it; both are 0 elsewhere.
    assert np.abs(heat_b[16, 16] - colour_map(np.array(1.0))).max() <= 12
    assert np.abs(heat_a[16, 16] - colour_map(np.array(0.25))).max() <= 12
    assert np.abs(heat_a[2, 2] - colour_map(np.array(0.0))).max() <= 12


def test_a_map_that_vanished_is_a_one_line_error(tmp_path):
    view = Artifact("map-view", "l", 0, {"map": "f" * 64, "scale_from": ["f" * 64]}, "v", "a")
    with pytest.raises(AtlasgenError, match="vanished from the store"):
        list(map_views(job(Store(tmp_path), "map-view", [view], {})))


# --- synthesis batches that run out of memory --------------------------------------------------


class StubEngine:
    """What the build's batching needs of an engine when the synthesis itself is faked."""

    name = "block3_conv1"
    filters = 64

    def __init__(self, precision="float32"):
        self.precision = precision

    def bytes_per_image(self, shape):
        return 1


def fake_synthesise(monkeypatch, fits: int):
    """Replaces the synthesis with one that runs out of memory above `fits` images; returns the
    batches it was asked for, in order."""
    from atlasgen.synthesis import images
    from atlasgen.tf import tf

    seen = []

    def synthesise(engine, kind, filter_ids, params):
        seen.append(list(filter_ids))
        if len(filter_ids) > fits:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[8,256,64,64]")
        return [images.FilterImage(engine.name, f, kind, np.full((8, 8, 3), f, np.uint8), float(f), 0.5, np.array([0.1, 0.2]))
                for f in filter_ids]

    monkeypatch.setattr(images, "synthesise", synthesise)
    return seen


def synthesis_job(filters, batch_size, lines, size=64, precision="float32"):
    from atlasgen.synthesis import SynthesisParams

    artifacts = [Artifact("channel", "block3_conv1", f, {}, f"k{f}") for f in filters]
    params = SynthesisParams(size=size, steps=2, precision=precision)
    return Job("channel", artifacts, params, {}, None, batch_size, StubEngine, lines.append)


def test_the_synthesis_gets_the_engine_of_its_parameters_precision(monkeypatch):
    from atlasgen.build.compute import whole_filter_images
    from atlasgen.synthesis import images

    engines = []

    def synthesise(engine, kind, filter_ids, params):
        engines.append(engine.precision)
        images.check_engine_precision(engine, params)  # what the real synthesis checks first
        return [images.FilterImage(engine.name, f, kind, np.zeros((8, 8, 3), np.uint8), 1.0, 0.5, np.array([0.1]))
                for f in filter_ids]

    monkeypatch.setattr(images, "synthesise", synthesise)
    for precision in ("float32", "mixed"):
        job = synthesis_job(range(3), 4, [], precision=precision)
        assert job.engine.precision == precision and len(list(whole_filter_images(job))) == 3
    assert engines == ["float32", "mixed"]


@pytest.mark.parametrize("count, sizes", [(9, [8, 4, 2, 2, 2, 2, 2]), (7, [7, 4, 2, 2, 2, 2])])
def test_a_batch_out_of_memory_is_halved_and_the_smaller_size_kept(monkeypatch, count, sizes):
    from atlasgen.build.compute import whole_filter_images

    seen, lines = fake_synthesise(monkeypatch, fits=2), []
    made = list(whole_filter_images(synthesis_job(range(count), 8, lines)))
    assert sorted(a.filter for a, _, _ in made) == list(range(count))  # each exactly once
    assert [len(batch) for batch in seen] == sizes  # later batches start at the size that fitted
    assert seen[-1] == [count - 1, count - 1]  # the last is padded to the same size, not a new graph
    assert lines == [
        f"block3_conv1: whole-filter images in batches of {sizes[0]} (--batch-size)",
        f"block3_conv1: whole-filter images: out of memory at batch {sizes[0]}, retrying at 4",
        "block3_conv1: whole-filter images: out of memory at batch 4, retrying at 2",
    ]
    assert made[0][2]["objective"] == 0.0 and made[0][2]["steps"] == 2


def test_images_are_yielded_as_their_batch_finishes(monkeypatch):
    from atlasgen.build.compute import whole_filter_images

    seen = fake_synthesise(monkeypatch, fits=2)
    results = whole_filter_images(synthesis_job(range(9), 8, []))
    first = next(results)
    assert first[0].filter == 0 and [len(batch) for batch in seen] == [8, 4, 2]
    assert len(list(results)) == 8


def test_one_image_out_of_memory_is_a_one_line_error(monkeypatch):
    from atlasgen.build.compute import whole_filter_images

    seen, lines = fake_synthesise(monkeypatch, fits=0), []
    with pytest.raises(AtlasgenError) as raised:
        list(whole_filter_images(synthesis_job(range(3), 8, lines, size=512)))
    assert str(raised.value) == (
        "block3_conv1: whole-filter images ran out of memory even for one image at --size 512; use a smaller --size"
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert [len(batch) for batch in seen] == [3, 2, 1]


def test_other_errors_are_not_retried(monkeypatch):
    from atlasgen.build.compute import whole_filter_images
    from atlasgen.synthesis import images

    calls = []

    def broken(engine, kind, filter_ids, params):
        calls.append(filter_ids)
        raise ValueError("not about memory")

    monkeypatch.setattr(images, "synthesise", broken)
    with pytest.raises(ValueError, match="not about memory"):
        list(whole_filter_images(synthesis_job(range(4), 4, [])))
    assert len(calls) == 1


def test_which_errors_mean_out_of_memory():
    from atlasgen.build.compute import out_of_memory
    from atlasgen.tf import tf

    assert out_of_memory(tf.errors.ResourceExhaustedError(None, None, "anything"))
    assert out_of_memory(MemoryError())
    assert out_of_memory(tf.errors.InternalError(None, None, "Failed to allocate 2.0GiB for a temporary buffer"))
    assert out_of_memory(tf.errors.InternalError(None, None, "CUDA_ERROR_OUT_OF_MEMORY: out of memory"))
    assert out_of_memory(tf.errors.InternalError(None, None, "OOM when allocating tensor with shape[64,512,28,28]"))
    assert out_of_memory(tf.errors.InternalError(None, None, "Dst tensor is not initialized."))
    assert out_of_memory(tf.errors.UnknownError(None, None, "CUDA_ERROR_OUT_OF_MEMORY"))
    assert not out_of_memory(tf.errors.InternalError(None, None, "cuDNN launch failure: room for improvement"))
    assert not out_of_memory(tf.errors.InvalidArgumentError(None, None, "OOM"))
    assert not out_of_memory(ValueError("out of memory"))


def test_a_batch_size_fitted_to_memory_is_logged(monkeypatch):
    from atlasgen.build.compute import whole_filter_images

    seen, lines = fake_synthesise(monkeypatch, fits=64), []
    made = list(whole_filter_images(synthesis_job(range(5), None, lines)))
    assert len(made) == 5 and [len(batch) for batch in seen] == [5]  # one byte an image: all in one batch
    (line,) = lines
    assert line.startswith("block3_conv1: whole-filter images in batches of 5 (fit to ")
    assert line.endswith(" GiB free on CPU; --batch-size overrides)")


def test_jobs_log_nothing_unless_given_a_log(tmp_path):
    assert Job("probe-photo", [], None, {}, Store(tmp_path), None, no_engine).log("a line") is None


# --- first-layer kernels ----------------------------------------------------------------------


@pytest.mark.parametrize("weights, layers, reader, flipped", [
    ("hed-bsds500", ("block1_conv1", "block2_conv1"), "block1_conv1", True),  # BGR-trained: drawn flipped
    ("custom", ("c1", "dilated"), "c1", False),  # a .keras model reads RGB as it is
])
def test_the_kernels_of_the_layer_that_reads_the_image_are_its_weights_in_rgb(
        tmp_path, tiny_config, custom_cnn_path, weights, layers, reader, flipped):
    from atlasgen.build.kinds import ALL_KINDS
    from atlasgen.build.run import prepare

    config = tiny_config(weights=str(custom_cnn_path) if weights == "custom" else weights, layers=layers)
    prepared = prepare(config)
    kernels = [a for a in prepared.plan.artifacts if a.kind == "kernel"]
    assert [(a.layer, a.filter) for a in kernels] == [(reader, 0), (reader, 1)]  # the first conv only
    loaded = prepared.loaded
    made = list(ALL_KINDS["kernel"].compute(Job("kernel", kernels, None, {}, Store(tmp_path / "s"), None, no_engine,
                                                 loaded=loaded)))
    kernel = np.asarray(loaded.model.get_layer(reader).kernel, dtype=np.float64)
    for artifact, blobs, facts in made:
        expected = kernel[:, :, ::-1, artifact.filter] if flipped else kernel[:, :, :, artifact.filter]
        assert facts == {"scale": pytest.approx(np.abs(expected).max()), "taps": [3, 3], "flipped": flipped}
        pixels = codec.decode(blobs["image"]).astype(np.float64)
        zoom = codec.kernel_zoom((3, 3))
        drawn = (pixels[zoom // 2 :: zoom, zoom // 2 :: zoom] - 127.5) / 127.5 * facts["scale"]
        assert np.abs(drawn - expected).max() <= 0.5 / 127.5 * facts["scale"] + 1e-9
