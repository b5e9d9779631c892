"""`atlasgen build` end to end on tiny real atlases: incremental, resume after SIGKILL, two builders,
shards, a flipped byte, a full disk."""

import dataclasses
import errno
import re
import json
from pathlib import Path
import signal
import subprocess
import sys

import pytest
from PIL import Image

from atlasgen.build.run import build_status, run_build
from atlasgen.build.config import BuildConfig
from atlasgen.errors import AtlasgenError
from atlasgen.store import Store
from support import TINY_ARGS, cli_env


def computed_by_kind(store_root, before: set[str]) -> dict[str, int]:
    """Kinds of the index entries that appeared since `before` (a set of entry paths)."""
    counts: dict[str, int] = {}
    for path in (store_root / "index").rglob("*.json"):
        if str(path) not in before:
            kind = json.loads(path.read_text())["meta"]["recipe"]["kind"]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def entries(store_root) -> set[str]:
    return {str(p) for p in (store_root / "index").rglob("*.json")}


def test_build_computes_every_kind_and_rebuilds_are_incremental(tmp_path, tiny_config, quiet, photo_dir):
    store = tmp_path / "store"
    first = run_build(tiny_config(), quiet)
    # Every kind of every filter, and the probe photo: 2 filters x 11 (channel, channel-negative,
    # diversity, neuron, channel-map, kernel, examples, examples-negative, wiring, and map + map-view of
    # the one probe), the probe photo, and the 2 chunks of the 18 built-in photos.
    assert first.complete and first.computed == first.planned == 25
    made = computed_by_kind(store, set())
    # Each kind once a filter (the probe photo once), and the built-in photos' 2 chunks.
    assert made == {"probe-photo": 1, "dataset-top": 2, "channel": 2, "channel-negative": 2, "diversity": 2, "channel-map": 2,
                    "neuron": 2, "kernel": 2, "examples": 2, "examples-negative": 2, "map": 2, "map-view": 2,
                    "wiring": 2}
    manifest = tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json"
    stamp = manifest.stat().st_mtime_ns
    assert run_build(tiny_config(), quiet).computed == 0
    assert manifest.stat().st_mtime_ns == stamp, "a no-op rebuild rewrites nothing"
    # A second probe photo: its photo, its maps, and new views of both probes' maps (the common
    # scale may change); no synthesis.
    seen = entries(store)
    run_build(tiny_config(probes=(photo_dir / "red.png", photo_dir / "blue.png")), quiet)
    made = computed_by_kind(store, seen)
    assert (made["probe-photo"], made["map"], made["map-view"]) == (2, 4, 4)
    assert not {"channel", "neuron", "kernel", "wiring"} & set(made)
    # More steps: only the synthesised images.
    seen = entries(store)
    run_build(tiny_config(probes=(photo_dir / "red.png", photo_dir / "blue.png"), steps=5), quiet)
    made = computed_by_kind(store, seen)
    assert (made["channel"], made["channel-negative"], made["diversity"], made["neuron"]) == (2, 2, 2, 2)
    assert not {"probe-photo", "map", "map-view", "kernel", "examples", "examples-negative", "wiring"} & set(made)
    units = json.loads(manifest.read_text())["layers"][0]["units"]
    assert [m["probe"] for m in units[0]["activation_maps"]] == ["red", "blue"]


def test_status_counts_every_kind(built_atlas):
    report = build_status(dataclasses.replace(built_atlas, filters="0-3"))
    # 2 layers x 4 filters x 10 (channel, channel-negative, diversity, neuron, channel-map, examples,
    # examples-negative, wiring, and map + map-view of the one probe), block1_conv1's 4 kernels, the probe
    # photo, and 2 chunks a layer (the 18 built-in photos); missing: filter 3 of each layer, 2 x 10, and
    # its kernel in block1_conv1.
    assert report["planned"] == 89 and report["missing"] == 21
    assert list(report["layers"]["block1_conv1"]) == ["dataset-top", "channel", "channel-negative", "diversity", "channel-map",
                                                       "neuron", "kernel", "examples", "examples-negative", "map",
                                                       "map-view", "wiring"]
    assert "kernel" not in report["layers"]["block2_conv1"]  # it reads block1's channels, not the image
    assert report["layers"]["block2_conv1"]["map-view"] == {"planned": 4, "missing": 1}


def cli_build(tmp_path, *extra, out="site"):
    args = [sys.executable, "-m", "atlasgen.cli", "build", *TINY_ARGS, "--store", str(tmp_path / "store"),
            "--out", str(tmp_path / out), *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_build_then_resume(tmp_path, tiny_config, quiet):
    args = ["--filters", "0-3", "--steps", "8", "--batch-size", "1"]
    process = cli_build(tmp_path, *args)
    # Synchronise on the build's own progress: the first line that reports a whole-filter image.
    for line in process.stderr:
        if "whole-filter images" in line:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    process.stderr.close()
    store = Store(tmp_path / "store")
    assert store.verify().ok
    done_before = len(entries(tmp_path / "store"))
    # 47 in all: 4 filters x 11 (channel, channel-negative, diversity, neuron, channel-map, kernel,
    # examples, examples-negative, wiring, and map + map-view of the one probe), the probe photo, and the
    # 2 chunks of the 18 built-in photos.
    assert 0 < done_before < 47, "killed in the middle"
    # Resumed in this process: only what the killed one did not store.
    resumed = run_build(tiny_config(filters="0-3", steps=8, batch_size=1), quiet)
    assert resumed.complete and resumed.computed == 47 - done_before
    assert store.verify().ok
    manifest = json.loads((tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    assert [u["index"] for u in manifest["layers"][0]["units"]] == list(range(4))


@pytest.mark.slow
def test_two_builders_on_one_store(tmp_path, tiny_config, quiet):
    """A second process and this one build the same atlas into one store at the same time."""
    other = cli_build(tmp_path, "--filters", "0-2", "--steps", "6", "--batch-size", "1", out="site1")
    for line in other.stderr:  # start when the other one has planned and starts computing
        if "artifacts to compute" in line:
            break
    mine = run_build(tiny_config(filters="0-2", steps=6, batch_size=1, out=tmp_path / "site2"), quiet)
    out, err = other.communicate(timeout=600)
    assert other.returncode == 0, err
    assert "atlas complete" in out and mine.complete
    assert Store(tmp_path / "store").verify().ok
    first, second = ((tmp_path / f"site{i}" / "vgg16-hed-bsds500" / "atlas.json").read_text() for i in (1, 2))
    assert first == second


def test_shards_fill_one_store_and_the_last_exports(tmp_path, tiny_config, quiet):
    first = run_build(tiny_config(filters="0-3", shard=(1, 2)), quiet)
    assert 0 < first.in_shard < first.planned and not first.complete and first.manifest is None
    second = run_build(tiny_config(filters="0-3", shard=(2, 2)), quiet)
    # The probe photo is atlas-wide: every shard makes it if it is missing.
    assert second.complete and second.computed == second.in_shard - 1 == first.planned - first.in_shard
    assert (tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").is_file()


def flip_a_byte_of_a_whole_filter_image(store: Store) -> Path:
    docs = [json.loads(p.read_text()) for p in (store.root / "index").rglob("*.json")]
    channel = next(d for d in docs if d["meta"]["recipe"]["kind"] == "channel")
    blob = store.blob_path(channel["blobs"]["image"]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))  # same size: only its hash tells
    return blob


def test_flipped_byte_is_caught_by_verify(atlas_copy):
    store = Store(atlas_copy.store)
    flip_a_byte_of_a_whole_filter_image(store)
    report = store.verify()
    assert not report.ok and len(report.quarantined_blobs) == 1


def test_flipped_byte_is_quarantined_and_recomputed_by_the_next_build(atlas_copy, quiet):
    """No verify first: the build itself re-hashes what it finds (status and build used to disagree)."""
    store = Store(atlas_copy.store)
    blob = flip_a_byte_of_a_whole_filter_image(store)
    assert run_build(atlas_copy, quiet).computed == 1
    assert store.verify().ok and len(list((atlas_copy.store / "quarantine").rglob("*"))) >= 1
    assert blob.is_file()


def test_full_disk_fails_in_one_line_and_keeps_the_store_intact(atlas_copy, quiet, monkeypatch):
    before = Store(atlas_copy.store).verify()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("atlasgen.fs.write_all", full)
    with pytest.raises(AtlasgenError, match="(?i)space"):
        run_build(dataclasses.replace(atlas_copy, steps=5), quiet)
    monkeypatch.undo()
    after = Store(atlas_copy.store).verify()
    assert after.ok and after.entries_checked == before.entries_checked


def test_the_map_on_the_whole_filter_image_is_the_filters_own_map(built_atlas, hed_model):
    """channel-map: the filter's post-ReLU map on its stored whole-filter image, peak where it is brightest."""
    import numpy as np

    from atlasgen.synthesis import LayerEngine
    from atlasgen.tf import tf

    site = built_atlas.out
    unit = json.loads((site / "vgg16-hed-bsds500" / "atlas.json").read_text())["layers"][1]["units"][2]
    with Image.open(site / unit["images"]["channel"]) as channel, Image.open(site / unit["images"]["channel_map"]) as drawn:
        image = np.asarray(channel.convert("RGB"))
        assert drawn.size == channel.size
    engine = LayerEngine(hed_model, "block2_conv1")
    own = np.maximum(engine.own_maps(tf.constant(image[None] / 255.0, tf.float32), tf.constant([2])).numpy()[0], 0)
    docs = [json.loads(p.read_text()) for p in (built_atlas.store / "index").rglob("*.json")]
    (entry,) = [d for d in docs if (d["meta"]["recipe"]["kind"], d["meta"]["recipe"].get("layer"),
                                    d["meta"]["recipe"].get("filter")) == ("channel-map", "block2_conv1", 2)]
    assert entry["meta"]["peak"] == pytest.approx(float(own.max()), rel=1e-4)
    assert entry["meta"]["mean"] == pytest.approx(float(own.mean()), rel=1e-4)


def test_a_model_with_names_tensorflow_refuses_builds_and_shows_them_escaped(tmp_path, keras, quiet):
    L = keras.layers
    image = keras.Input((48, 48, 3), name="the image")
    x = L.Conv2D(4, 3, padding="same", name="my conv")(image)
    x = L.Conv2D(4, 3, strides=2, name="<b>x&y")(x)
    x = L.Dense(2)(L.Flatten()(x))
    path = tmp_path / "odd.keras"
    keras.Model(image, x, name="odd model").save(path)
    config = BuildConfig(preset="quick", weights=str(path), layers=("my conv", "<b>x&y"), filters="0-1", size=32,
                         steps=2, store=tmp_path / "store", out=tmp_path / "site")
    assert run_build(config, quiet).complete
    (found,) = (tmp_path / "site").glob("*/atlas.json")
    manifest = json.loads(found.read_text())
    assert found.parent.name == manifest["name"]
    assert manifest["name"].startswith("odd-model-") and manifest["name"].endswith(manifest["weights"]["fingerprint"][:8])
    assert [layer["name"] for layer in manifest["layers"]] == ["my conv", "<b>x&y"]
    second = manifest["layers"][1]
    assert re.fullmatch(r"odd-model-[0-9a-f]{6}-[0-9a-f]{8}/b-x-y-[0-9a-f]{6}/", second["path"])
    page = (tmp_path / "site" / second["units"][0]["page"] / "index.html").read_text()
    assert "&lt;b&gt;x&amp;y" in page and "<b>x&y" not in page


def test_a_build_with_both_methods_shows_both_whole_filter_images(tmp_path, tiny_config, quiet):
    result = run_build(tiny_config(methods=("maco", "lucid")), quiet)
    assert result.complete
    made = computed_by_kind(tmp_path / "store", set())
    assert made["maco-channel"] == made["maco-negative"] == made["channel"] == made["channel-negative"] == 2
    atlas = json.loads((tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    assert atlas["methods"] == ["lucid", "maco"]
    assert atlas["method_parameters"]["maco"]["steps"] == 4 and atlas["method_parameters"]["maco"]["size"] == 32
    unit = atlas["layers"][0]["units"][0]
    assert {"channel", "channel_negative", "maco_channel", "maco_transparency", "maco_negative"} <= set(unit["images"])
    assert unit["metrics"]["maco"]["steps"] == 4 and unit["metrics"]["channel"]["steps"] == 4
    # Each method's negative image is below its positive one: the filter's pre-ReLU mean, minimised.
    metrics = unit["metrics"]
    assert metrics["maco_negative"]["objective"] < metrics["maco"]["objective"]
    assert metrics["channel_negative"]["objective"] < metrics["channel"]["objective"]
    for name in ("channel", "channel_negative", "maco_channel", "maco_transparency", "maco_negative"):
        with Image.open(tmp_path / "site" / unit["images"][name]) as image:
            assert image.size == (32, 32)
    page = (tmp_path / "site" / unit["page"] / "index.html").read_text()
    for name in ("channel.webp", "maco-channel.webp", "maco-transparency.webp", "channel-negative.webp",
                 "maco-negative.webp"):
        assert re.search(rf'<img src="[./]*{re.escape(unit["page"])}{name}" width="32" height="32"[^>]* alt="[^"]+"', page), name
    layer_page = (tmp_path / "site" / atlas["layers"][0]["path"] / "index.html").read_text()
    assert "Whole filter (MACO)" in layer_page and "Most negative (MACO)" in layer_page
    # Adding MACO kept every Lucid artifact: a lucid-only rebuild computes nothing.
    assert run_build(tiny_config(), quiet).computed == 0
    assert json.loads((tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())["methods"] == ["lucid"]


def test_a_maco_only_build_has_no_lucid_whole_filter_images(tmp_path, tiny_config, quiet):
    """The centre-neuron images belong to no method: a MACO-only atlas has them too."""
    assert run_build(tiny_config(methods=("maco",)), quiet).complete
    made = computed_by_kind(tmp_path / "store", set())
    assert "channel" not in made and made["neuron"] == 2 and made["maco-channel"] == 2
    assert "channel-negative" not in made and made["maco-negative"] == 2
    atlas = json.loads((tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    unit = atlas["layers"][0]["units"][1]
    assert atlas["methods"] == ["maco"] and "channel" not in unit["images"] and "neuron" in unit["images"]
    assert "channel" not in unit["metrics"] and unit["metrics"]["neuron"]["changed_pixels_outside_box"] == 0
    assert isinstance(unit["metrics"]["maco"]["objective"], float)
    assert len(unit["rf_box"]) == 4
    assert "maco-channel.webp" in (tmp_path / "site" / unit["page"] / "index.html").read_text()
    assert "maco-channel.webp" in (tmp_path / "site" / "index.html").read_text()


def test_a_mixed_precision_build_records_its_precision_and_keeps_the_maps(tmp_path, tiny_config):
    import io

    from atlasgen.progress import Progress

    log = io.StringIO()
    config = tiny_config(layers=("block2_conv1",), methods=("lucid", "maco"), precision="mixed")
    assert run_build(config, Progress(stream=log, bars=False)).complete
    lines = log.getvalue().splitlines()
    precision_lines = [line for line in lines if "precision" in line]
    assert precision_lines == ["synthesis precision: mixed (bfloat16 compute, float32 parameters and objective; "
                               "--precision overrides)"]
    atlas = json.loads((tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    assert atlas["parameters"]["precision"] == "mixed" and atlas["method_parameters"]["maco"]["precision"] == "mixed"
    assert "mixed precision (bfloat16" in (tmp_path / "site" / "vgg16-hed-bsds500" / "index.html").read_text()
    store = Store(tmp_path / "store")
    recipes = [json.loads(p.read_text())["meta"]["recipe"] for p in (tmp_path / "store" / "index").rglob("*.json")]
    assert {r["params"]["precision"] for r in recipes if r["kind"] in ("channel", "neuron", "maco-channel")} == {"mixed"}
    # In float32 the images are other artifacts; the maps on the probe photos are the same ones.
    report = build_status(dataclasses.replace(config, precision="float32"))
    counts = report["layers"]["block2_conv1"]
    assert counts["channel"]["missing"] == counts["neuron"]["missing"] == counts["maco-channel"]["missing"] == 2
    assert counts["channel-negative"]["missing"] == counts["maco-negative"]["missing"] == 2
    assert counts["map"]["missing"] == 0 and counts["map-view"]["missing"] == 0
    assert store.verify().ok
