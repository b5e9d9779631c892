"""`atlasgen build` end to end on tiny real atlases: manifest, incremental, resume, corruption, shards."""

import io
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from atlasgen.build import run_build
from atlasgen.errors import AtlasgenError
from atlasgen.plan import BuildConfig
from atlasgen.progress import Progress
from atlasgen.store import Store
from conftest import cli_env

TINY = dict(preset="quick", layers=("block1_conv1",), filters="0-1", size=32, steps=4)
TINY_ARGS = ["--preset", "quick", "--layers", "block1_conv1", "--filters", "0-1", "--size", "32", "--steps", "4"]


def quiet():
    return Progress(stream=io.StringIO(), bars=False)


def config(tmp_path, **overrides):
    values = {**TINY, "store": tmp_path / "store", "out": tmp_path / "site", **overrides}
    return BuildConfig(**values)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(folder / "red.png")
    return folder


def test_build_writes_a_complete_manifest(tmp_path):
    result = run_build(config(tmp_path), quiet())
    assert result.complete and result.computed == 6
    site = tmp_path / "site"
    manifest = json.loads((site / "atlas.json").read_text())
    assert manifest["model"] == "vgg16" and manifest["weights"]["source"] == "hed-bsds500"
    assert "fine-tuned for edge detection" in manifest["weights"]["label"]
    assert len(manifest["weights"]["fingerprint"]) == 64
    assert manifest["parameters"]["steps"] == 4 and manifest["parameters"]["size"] == 32
    (layer,) = manifest["layers"]
    assert (layer["name"], layer["r"], layer["S"], layer["P"]) == ("block1_conv1", 3, 1, 1)
    assert [u["index"] for u in layer["units"]] == [0, 1]
    for unit in layer["units"]:
        for key in ("channel_image", "neuron_image", "rf_crop"):
            with Image.open(site / unit[key]) as image:
                assert image.format == "WEBP"
        assert unit["channel_image"] == f"vgg16/block1_conv1/{unit['index']}/channel.webp"
        (amap,) = unit["activation_maps"]
        assert amap["probe"] == "astronaut" and (site / amap["heatmap"]).is_file() and (site / amap["overlay"]).is_file()
        top, left, bottom, right = unit["rf_box"]
        assert (bottom - top, right - left) == (3, 3)
        assert unit["metrics"]["neuron"]["changed_pixels_outside_box"] == 0
        assert unit["metrics"]["channel"]["activation_vs_best_probe"] > 0
    assert (site / "probes" / "astronaut.webp").is_file()


def test_rebuilds_are_incremental(tmp_path, photo_dir):
    first = run_build(config(tmp_path), quiet())
    assert first.computed == 6
    manifest = tmp_path / "site" / "atlas.json"
    stamp = manifest.stat().st_mtime_ns
    assert run_build(config(tmp_path), quiet()).computed == 0
    assert manifest.stat().st_mtime_ns == stamp, "a no-op rebuild rewrites nothing"
    # A new probe photo: only its activation maps (one per filter).
    with_probe = config(tmp_path, probes=(photo_dir,))
    assert run_build(with_probe, quiet()).computed == 2
    # More steps: only the synthesised images (two per filter), not the maps.
    assert run_build(config(tmp_path, probes=(photo_dir,), steps=5), quiet()).computed == 4
    units = json.loads(manifest.read_text())["layers"][0]["units"]
    assert [m["probe"] for m in units[0]["activation_maps"]] == ["red"]


def run_cli_build(tmp_path, *extra, out="site"):
    args = [sys.executable, "-m", "atlasgen.cli", "build", *TINY_ARGS, "--store", str(tmp_path / "store"),
            "--out", str(tmp_path / out), *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())


def test_flipped_byte_is_caught_by_verify_and_repaired_by_the_next_build(tmp_path, run_cli):
    run_build(config(tmp_path), quiet())
    store = Store(tmp_path / "store")
    # A whole-filter image's blob: derived views would be re-derived without counting as computed.
    entries = [json.loads(p.read_text()) for p in (tmp_path / "store" / "index").rglob("*.json")]
    channel = next(e for e in entries if e["meta"]["recipe"]["kind"] == "channel")
    blob = store.blob_path(channel["blobs"]["image"]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = run_cli("verify", "--store", tmp_path / "store")
    assert result.returncode == 1 and "quarantined" in result.stdout
    assert run_build(config(tmp_path), quiet()).computed == 1
    assert store.verify().ok
    assert run_cli("verify", "--store", tmp_path / "store").returncode == 0


def test_sigkill_at_a_random_moment_then_resume(tmp_path):
    args = ["--filters", "0-5", "--steps", "40", "--batch-size", "1"]
    process = run_cli_build(tmp_path, *args)
    time.sleep(random.uniform(4.0, 9.0))  # TensorFlow takes ~3 s to start; then batches land
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert Store(tmp_path / "store").verify().ok
    resumed = run_cli_build(tmp_path, *args)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "atlas complete" in out
    assert Store(tmp_path / "store").verify().ok
    manifest = json.loads((tmp_path / "site" / "atlas.json").read_text())
    assert [u["index"] for u in manifest["layers"][0]["units"]] == list(range(6))


def test_two_builders_on_one_store(tmp_path):
    builders = [run_cli_build(tmp_path, "--filters", "0-3", "--steps", "10", "--batch-size", "1", out=f"site{i}") for i in (1, 2)]
    for builder in builders:
        out, err = builder.communicate(timeout=600)
        assert builder.returncode == 0, err
        assert "atlas complete" in out
    assert Store(tmp_path / "store").verify().ok
    first, second = ((tmp_path / f"site{i}" / "atlas.json").read_text() for i in (1, 2))
    assert first == second


def test_shards_fill_one_store_and_the_last_exports(tmp_path):
    first = run_build(config(tmp_path, filters="0-5", shard=(1, 2)), quiet())
    assert 0 < first.in_shard < first.planned and not first.complete and first.manifest is None
    second = run_build(config(tmp_path, filters="0-5", shard=(2, 2)), quiet())
    assert second.complete and second.computed == second.in_shard == first.planned - first.in_shard
    assert (tmp_path / "site" / "atlas.json").is_file()


def test_full_disk_fails_in_one_line_and_keeps_the_store_intact(tmp_path, monkeypatch):
    import errno

    run_build(config(tmp_path), quiet())
    before = Store(tmp_path / "store").verify()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("atlasgen.store._write_all", full)
    with pytest.raises(AtlasgenError, match="(?i)space"):
        run_build(config(tmp_path, steps=5), quiet())
    monkeypatch.undo()
    after = Store(tmp_path / "store").verify()
    assert after.ok and after.entries_checked == before.entries_checked


@pytest.mark.parametrize(
    "extra,fragments",
    [
        (["--layers", "block9_conv9"], ["block9_conv9", "does not exist"]),
        (["--layers", "block1_pool"], ["block1_pool", "not a convolution"]),
        (["--filters", "0-64"], ["out of range", "0-63"]),
        (["--shard", "3/2"], ["--shard"]),
    ],
)
def test_bad_build_input_is_one_line(tmp_path, run_cli, one_line_error, extra, fragments):
    result = run_cli("build", *TINY_ARGS, "--store", tmp_path / "store", "--out", tmp_path / "site", *extra)
    one_line_error(result, *fragments)
    assert not (tmp_path / "store" / "index").exists()


def test_bad_probe_and_unwritable_folders_are_one_line(tmp_path, run_cli, one_line_error):
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a photo")
    result = run_cli("build", *TINY_ARGS, "--store", tmp_path / "store", "--out", tmp_path / "site", "--probe", fake)
    one_line_error(result, "fake.jpg", "not an image")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = run_cli("build", *TINY_ARGS, "--store", blocker / "store", "--out", tmp_path / "site")
    one_line_error(result, "--store", "not writable")
    result = run_cli("build", *TINY_ARGS, "--store", tmp_path / "store", "--out", blocker / "site")
    one_line_error(result, "--out", "not writable")
    one_line_error(run_cli("verify", "--store", tmp_path / "nowhere"), "not a folder")


def test_progress_draws_bars_on_a_terminal_and_lines_elsewhere():
    stream = io.StringIO()
    progress = Progress(stream=stream, bars=True)
    progress.start(4)
    progress.layer("block1_conv1", 4)
    progress.advance(4, "channel images")
    progress.close()
    assert "atlas" in stream.getvalue() and "4/4" in stream.getvalue() and "artifact/s" in stream.getvalue()
    lines = io.StringIO()
    plain = Progress(stream=lines, bars=False)
    plain.start(2)
    plain.layer("block1_conv1", 2)
    plain.advance(1, "neuron images")
    assert "block1_conv1: neuron images 1/2; overall 1/2" in lines.getvalue() and "ETA" in lines.getvalue()
    assert "\r" not in lines.getvalue()


def test_status_and_gc_commands(tmp_path, run_cli):
    run_build(config(tmp_path), quiet())
    status = run_cli("status", *TINY_ARGS, "--store", tmp_path / "store", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["done"] == 6 and report["missing"] == 0
    more = run_cli("status", *TINY_ARGS, "--filters", "0-2", "--store", tmp_path / "store")
    assert "missing 3" in more.stdout
    orphan = Store(tmp_path / "store").put_blob(b"nobody refers to this")
    dry = run_cli("gc", "--store", tmp_path / "store", "--dry-run")
    assert "would remove 1" in dry.stdout and Store(tmp_path / "store").blob_path(orphan).exists()
    real = run_cli("gc", "--store", tmp_path / "store")
    assert "removed 1" in real.stdout and not Store(tmp_path / "store").blob_path(orphan).exists()
    assert Store(tmp_path / "store").verify().ok
