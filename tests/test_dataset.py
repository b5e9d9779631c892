"""Dataset examples: discovery, the resize convention, chunking, exact top-k merging, and the scan
through real builds (against a brute-force search, after SIGKILL, with an image added, sharded)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atlasgen.build import dataset
from atlasgen.build.dataset import SourceImage, Top, chunk_images, load_image, merge, open_dataset, top_of_images
from atlasgen.errors import AtlasgenError
from support import cli_env, read_until


def photo(seed: int, size=(48, 36)) -> Image.Image:
    """A small textured photo, different for every seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((w, h), Image.BILINEAR)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def make_folder(root: Path, count: int, start: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        size = (40 + 8 * (i % 3), 36 + 4 * (i % 2))
        photo(i, size).save(sub / (f"img{i:03d}.png" if i % 3 else f"IMG{i:03d}.JPG"))
    return root


def fake(name: str, seed: int) -> SourceImage:
    return SourceImage(name, Path(name), hashlib.sha256(str(seed).encode()).hexdigest())


# --- discovery and the convention ---------------------------------------------------------------


def test_discovery_is_recursive_case_blind_and_ignores_other_files(tmp_path):
    make_folder(tmp_path / "d", 4)
    (tmp_path / "d" / "notes.txt").write_text("not an image")
    (tmp_path / "d" / "deep" / "er").mkdir(parents=True)
    photo(99).save(tmp_path / "d" / "deep" / "er" / "x.WebP", format="WEBP")
    found = open_dataset(tmp_path / "d", 32, 3, 4)
    assert [i.source for i in found.images] == sorted(i.source for i in found.images)
    assert "deep/er/x.WebP" in [i.source for i in found.images]
    assert len(found.images) == 5 and not found.refused
    assert all(i.digest == hashlib.sha256(i.path.read_bytes()).hexdigest() for i in found.images)


def test_links_empty_files_and_duplicates_are_refused_with_reasons(tmp_path):
    folder = make_folder(tmp_path / "d", 2)
    (folder / "empty.png").write_bytes(b"")
    first = sorted(folder.rglob("*.png"))[0]
    (folder / "copy.png").write_bytes(first.read_bytes())
    outside = tmp_path / "outside.png"
    photo(5).save(outside)
    (folder / "link.png").symlink_to(outside)
    (folder / "linked-dir").symlink_to(tmp_path, target_is_directory=True)  # not followed: no loop, nothing outside
    found = open_dataset(folder, 32, 3, 4)
    reasons = dict(found.refused)
    assert reasons["empty.png"] == "an empty file"
    assert "symbolic link" in reasons["link.png"]
    assert reasons["copy.png"].startswith("the same bytes as") or any(
        r.startswith("the same bytes as") for r in reasons.values())
    assert len(found.images) == 2


@pytest.mark.parametrize("problem", ["missing", "file", "no-images", "empty-string"])
def test_a_folder_that_is_not_a_dataset_is_one_line(tmp_path, problem):
    target = {"missing": tmp_path / "nope", "file": tmp_path / "f.png", "no-images": tmp_path / "d",
              "empty-string": Path("")}[problem]
    (tmp_path / "f.png").write_bytes(b"x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "readme.txt").write_text("x")
    with pytest.raises(AtlasgenError) as error:
        open_dataset(target if problem != "empty-string" else "", 32, 3, 4)
    assert "\n" not in str(error.value) and "--dataset" in str(error.value)


@pytest.mark.parametrize("option", [(0, 9, 32), (224, 0, 32), (224, 9, 0), (-1, 9, 32), (224, 9, True)])
def test_zero_and_negative_options_are_errors(option):
    with pytest.raises(AtlasgenError):
        dataset.check_options(*option)


def test_exif_orientation_is_applied_before_the_resize():
    wide = photo(1, (60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a viewer shows it tall
    pixels = load_image(jpeg_bytes(wide, exif=exif.tobytes()), 20)
    assert pixels.shape == (40, 20, 3)
    plain = load_image(jpeg_bytes(wide), 20)
    assert plain.shape == (20, 40, 3)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "I;16"])
def test_every_mode_becomes_rgb_by_pillows_convert(mode):
    source = photo(2, (30, 20))
    image = source.convert(mode) if mode != "I;16" else source.convert("L").convert("I;16")
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    pixels = load_image(buffer.getvalue(), 10)
    expected = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").resize((15, 10), Image.BICUBIC)
    assert pixels.shape == (10, 15, 3) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, np.asarray(expected))


@pytest.mark.parametrize("size,short,expected", [((300, 200), 224, (336, 224)), ((201, 300), 224, (224, 334)),
                                                 ((333, 250), 224, (298, 224)), ((50, 50), 224, (224, 224))])
def test_the_longer_side_is_pythons_round(size, short, expected):
    assert dataset.resized(Image.new("RGB", size), short).size == expected
    assert expected[0] == (short if size[0] <= size[1] else round(size[0] * short / size[1]))


@pytest.mark.parametrize("data,reason", [(b"", "not an image"), (b"GIF89a not really", "not an image")])
def test_unreadable_bytes_raise_unreadable(data, reason):
    with pytest.raises(dataset.Unreadable, match=reason):
        load_image(data, 32)


def test_a_truncated_jpeg_is_unreadable():
    data = jpeg_bytes(photo(3, (64, 64)))
    with pytest.raises(dataset.Unreadable):
        load_image(data[: len(data) // 2], 32)


# --- chunks and merging --------------------------------------------------------------------------


def test_chunks_are_content_defined_and_an_added_image_changes_only_its_chunk():
    rng = np.random.default_rng(0)
    images = sorted((fake(f"{i:04d}", int(rng.integers(0, 2**62))) for i in range(400)), key=lambda i: i.source)
    before = chunk_images(images, 8)
    assert sum(len(c) for c in before) == 400 and 20 < len(before) < 100
    assert max(len(c) for c in before) <= dataset.MAX_CHUNK_FACTOR * 8
    for trial in range(20):
        new = fake(f"{int(rng.integers(0, 400)):04d}x", int(rng.integers(0, 2**62)))
        after = chunk_images(sorted(images + [new], key=lambda i: i.source), 8)
        changed = set(after) - set(before)
        assert all(new in c for c in changed) or len(changed) == 2  # its chunk; or split in two at it
        assert len(changed) <= 2 and len(set(before) - set(after)) <= 2


def test_merged_chunk_tops_equal_the_top_of_everything():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(50, 7)).astype(np.float32)
    values[10, 3] = values[30, 3] = 9.0  # a tie: the lower id wins
    positions = rng.integers(0, 20, size=(50, 7, 2)).astype(np.int32)
    ids = np.arange(50, dtype=np.int64)
    whole = top_of_images(values, positions, ids, 5)
    merged = Top.empty(7, 5)
    for part in np.array_split(np.arange(50), [3, 17, 18, 40]):
        merged = merge(merged, top_of_images(values[part], positions[part], ids[part], 5))
    assert np.array_equal(merged.activation, whole.activation)
    assert np.array_equal(merged.image, whole.image) and np.array_equal(merged.unit, whole.unit)
    assert whole.image[3, 0] == 10 and whole.image[3, 1] == 30
    brute = np.argsort(-values, axis=0, kind="stable")[:5].T
    assert np.array_equal(whole.image, brute)


def test_merged_chunk_bottoms_equal_the_bottom_of_everything():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(50, 7)).astype(np.float32)
    values[12, 4] = values[33, 4] = -9.0  # a tie: the lower id wins
    positions = rng.integers(0, 20, size=(50, 7, 2)).astype(np.int32)
    ids = np.arange(50, dtype=np.int64)
    whole = top_of_images(values, positions, ids, 5, lowest=True)
    merged = Top.empty(7, 5, lowest=True)
    for part in np.array_split(np.arange(50), [3, 17, 18, 40]):
        merged = merge(merged, top_of_images(values[part], positions[part], ids[part], 5, lowest=True), lowest=True)
    assert np.array_equal(merged.activation, whole.activation)
    assert np.array_equal(merged.image, whole.image) and np.array_equal(merged.unit, whole.unit)
    assert whole.image[4, 0] == 12 and whole.image[4, 1] == 33
    assert np.array_equal(whole.image, np.argsort(values, axis=0, kind="stable")[:5].T)  # lowest first
    few = top_of_images(values[:2], positions[:2], ids[:2], 5, lowest=True)
    assert (few.image[:, 2:] == -1).all() and np.isposinf(few.activation[:, 2:]).all()


def test_a_chunk_of_fewer_images_than_k_pads_with_none():
    top = top_of_images(np.ones((2, 3), np.float32), np.zeros((2, 3, 2), np.int32), np.array([4, 7]), 5)
    assert top.image[:, :2].tolist() == [[4, 7]] * 3 and (top.image[:, 2:] == -1).all()
    again = Top.from_bytes(top.to_bytes())
    assert np.array_equal(again.image, top.image) and np.array_equal(again.activation, top.activation)


# --- real builds -------------------------------------------------------------------------------

LAYERS = ("block1_conv2", "block2_conv1")
SHORT = 40


def dataset_config(tmp_path, folder, **overrides):
    from atlasgen.build.config import BuildConfig

    return BuildConfig(**{"preset": "quick", "layers": LAYERS, "filters": "0-3", "size": 24, "steps": 1,
                          "store": tmp_path / "store", "out": tmp_path / "site", "dataset": folder,
                          "dataset_size": SHORT, "examples": 3, "dataset_chunk": 2, **overrides})


def build(config, notes=None):
    from atlasgen.build.run import run_build
    from atlasgen.progress import Progress

    stream = io.StringIO()
    result = run_build(config, Progress(stream=stream, bars=False))
    if notes is not None:
        notes.append(stream.getvalue())
    return result


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    folder = make_folder(root / "photos", 7)
    (folder / "broken.jpg").write_bytes(jpeg_bytes(photo(50, (64, 64)))[:300])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpeg").write_text("not a photo at all")
    (folder / "ignored.txt").write_text("ignored")
    exif = Image.Exif()
    exif[0x0112] = 8
    (folder / "turned.jpg").write_bytes(jpeg_bytes(photo(60, (64, 44)), exif=exif.tobytes()))
    notes = []
    result = build(dataset_config(root, folder), notes)
    assert result.complete
    return root, folder, json.loads((root / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text()), notes[0]


def test_every_example_top_and_bottom_is_the_true_extreme_found_by_brute_force(scanned, hed_model):
    from atlasgen.synthesis import LayerEngine
    from atlasgen.tf import tf

    root, folder, atlas, _ = scanned
    readable = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            readable[path.relative_to(folder).as_posix()] = load_image(path.read_bytes(), SHORT)
        except dataset.Unreadable:
            pass
    assert len(readable) == 8
    for layer in atlas["layers"]:
        engine = LayerEngine(hed_model, layer["name"])
        per_image = {}
        for source, pixels in readable.items():
            maps = engine.maps(tf.constant(pixels[None].astype(np.float32) / 255.0), tf.constant([0, 1, 2, 3])).numpy()[0]
            per_image[source] = maps
        for unit in layer["units"]:
            f = unit["index"]
            # The top k by each image's highest unit, and the bottom k by each image's lowest, lowest first.
            best = sorted(((m[..., f].max(), s) for s, m in per_image.items()), key=lambda t: (-t[0], t[1]))
            worst = sorted(((m[..., f].min(), s) for s, m in per_image.items()), key=lambda t: (t[0], t[1]))
            for examples, ranked, folder in ((unit["dataset_examples"], best, "examples"),
                                             (unit["dataset_examples_negative"], worst, "examples-negative")):
                assert len(examples) == 3
                assert [e["source"] for e in examples] == [s for _, s in ranked[:3]]
                for rank, (e, (value, source)) in enumerate(zip(examples, ranked)):
                    assert e["activation"] == pytest.approx(value, rel=1e-3, abs=1e-3)
                    maps = per_image[source][..., f]
                    y, x = e["unit"]
                    assert maps[y, x] == pytest.approx(value, rel=1e-3, abs=1e-3)
                    h, w = readable[source].shape[:2]
                    box = engine.field((h, w)).unit_box((y, x)).clipped((h, w))
                    assert e["box"] == box.as_list() and e["photo_size"] == [h, w]
                    assert e["image"] == f"{unit['page']}{folder}/{rank}.webp"
                    crop = Image.open(root / "site" / e["image"])
                    assert max(crop.size) >= min(dataset.EXAMPLE_DISPLAY, max(box.height, box.width))
                    # The same photo file, once in the atlas, whichever list an image's unit is in.
                    assert (root / "site" / e["photo"]).is_file() and e["photo"].split("/")[-2] == "dataset"
                assert len({e["source"] for e in examples}) == len(examples)  # one unit per image
            assert unit["dataset_examples_negative"][0]["activation"] < unit["dataset_examples"][-1]["activation"]


def test_skipped_files_are_listed_with_reasons_and_counted_in_the_log(scanned):
    _, _, atlas, notes = scanned
    record = atlas["dataset"]
    skipped = {s["file"]: s["reason"] for s in record["skipped"]}
    assert set(skipped) == {"broken.jpg", "empty.png", "text.jpeg"}
    assert skipped["empty.png"] == "an empty file"
    assert record["images"] == 8 and record["short_side"] == SHORT and record["name"] == "photos"
    assert record["sha256"] == open_dataset(scanned[1], SHORT, 3, 2).sha256
    assert "3 of 11 image files skipped" in notes
    assert atlas["schema"] == 3


def test_an_added_image_rescans_only_its_chunk(tmp_path):
    from atlasgen.build.run import prepare

    folder = make_folder(tmp_path / "photos", 9)
    config = dataset_config(tmp_path, folder)
    build(config)
    before = {a.key for a in prepare(config).plan.chunks}
    # An image that does not end a chunk, so it joins one chunk instead of splitting it.
    for seed in range(100, 200):
        candidate = photo(seed, (44, 40))
        buffer = io.BytesIO()
        candidate.save(buffer, format="PNG")
        if int(hashlib.sha256(buffer.getvalue()).hexdigest()[:12], 16) % 2:
            (folder / "a" / "added.png").write_bytes(buffer.getvalue())
            break
    after = {a.key for a in prepare(config).plan.chunks}
    new = after - before
    assert len(new) == len(LAYERS) and len(before - after) == len(LAYERS)
    notes = []
    result = build(config, notes)
    assert result.complete
    assert "scanning 1 of" in notes[0]
    atlas = json.loads((tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    assert atlas["dataset"]["images"] == 10


def test_a_chunk_stored_before_its_bottom_blob_is_scanned_again_and_nothing_else(tmp_path):
    """A store made before the bottom k: its chunk entries hold only "top", and no filter has negative
    examples. The next build extends it: it scans those chunks again (their recipes, and so the top
    examples' keys, unchanged) and makes the negative examples; everything else is found in the store."""
    from atlasgen.build.run import build_status, prepare
    from atlasgen.store import Store

    folder = make_folder(tmp_path / "photos", 6)
    config = dataset_config(tmp_path, folder)
    assert build(config).complete
    site = tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json"
    before = json.loads(site.read_text())
    plan = prepare(config).plan
    store = Store(config.store)
    for artifact in plan.chunks:  # as an older atlasgen stored them: the same key and facts, "top" only
        entry = store.get(artifact.key)
        store.put(artifact.key, {"top": store.get_blob(entry.blobs["top"].digest)}, entry.meta)
    negative = [a for a in plan.artifacts if a.kind == "examples-negative"]
    for artifact in negative:
        store.entry_path(artifact.key).unlink()
    assert len(negative) == 2 * 4 and len(plan.chunks) >= 2 * 2
    status = build_status(config)
    assert status["missing"] == len(plan.chunks) + len(negative)
    assert all(counts["dataset-top"]["missing"] == counts["dataset-top"]["planned"] for counts in status["layers"].values())
    notes = []
    result = build(config, notes)
    assert result.complete and result.computed == len(plan.chunks) + len(negative)
    assert f"scanning {len(plan.chunks) // 2} of {len(plan.chunks) // 2} chunks" in notes[0]
    assert all(set(store.get(a.key).blobs) == {"top", "bottom"} for a in plan.chunks)
    assert json.loads(site.read_text()) == before  # the same examples, top and bottom, as a fresh build's
    assert build(config).computed == 0


def test_a_sharded_scan_equals_an_unsharded_one(tmp_path):
    folder = make_folder(tmp_path / "photos", 8)
    whole = dataset_config(tmp_path / "one", folder)
    build(whole)
    parts = dataset_config(tmp_path / "two", folder)
    from dataclasses import replace

    first = build(replace(parts, shard=(1, 2)))
    second = build(replace(parts, shard=(2, 2)))
    assert not first.complete  # its examples wait for the chunks of shard 2
    merged = build(parts)
    assert merged.complete
    a = json.loads((tmp_path / "one" / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    b = json.loads((tmp_path / "two" / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    for field in ("dataset_examples", "dataset_examples_negative"):
        assert [u[field] for l in a["layers"] for u in l["units"]] == [u[field] for l in b["layers"] for u in l["units"]]
    assert a["dataset"] == b["dataset"]


@pytest.mark.slow
def test_a_scan_killed_mid_way_resumes_from_its_stored_chunks(tmp_path):
    from atlasgen.build.run import prepare
    from atlasgen.store import Store

    # One layer, so one artifact a chunk: a stored artifact is a whole stored chunk. 24 photos of
    # one chunk each, at 160 px through to block5: the scan's work is 24 forward passes.
    folder = make_folder(tmp_path / "photos", 24)
    config = dataset_config(tmp_path, folder, layers=("block5_conv1",), filters="0", dataset_size=160, dataset_chunk=1)
    plan = prepare(config).plan
    keys = [a.key for a in plan.chunks]
    assert len(keys) == 24
    args = ["--preset", "quick", "--layers", ",".join(config.layers), "--filters", "0", "--size", "24", "--steps", "1",
            "--store", config.store, "--out", config.out, "--dataset", folder, "--dataset-size", "160",
            "--examples", "3", "--dataset-chunk", "1"]
    process = subprocess.Popen([sys.executable, "-m", "atlasgen.cli", "build", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0, env=cli_env())
    try:
        # The build's plain progress (its stderr is not a terminal) says "dataset: dataset chunks
        # 1/24; ..." just after it stored the first chunk, with 23 forward passes still to do: kill
        # it there.
        read_until(process.stderr, "dataset chunks 1/24")
    finally:
        process.kill()  # SIGKILL
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "the build ended before it was killed"
    store = Store(config.store)
    stored = {k: store.entry_path(k).stat().st_mtime_ns for k in keys if store.has(k)}
    assert 0 < len(stored) < len(keys), "killed mid-scan: some chunks stored, not all"
    done_before = sum(store.has(a.key) for a in plan.artifacts)
    notes = []
    result = build(config, notes)
    assert result.complete
    # Only the chunks the killed build did not store are scanned, and nothing stored is redone.
    assert f"scanning {len(keys) - len(stored)} of {len(keys)} chunks" in notes[0]
    assert result.computed == len(plan.artifacts) - done_before
    assert all(store.entry_path(k).stat().st_mtime_ns == t for k, t in stored.items())


@pytest.mark.parametrize("case", ["missing", "nothing-readable"])
def test_a_dataset_without_readable_images_is_one_line_and_keeps_the_store(tmp_path, cli, one_line_error, case):
    from atlasgen.store import Store

    good = make_folder(tmp_path / "good", 3)
    args = ["build", "--preset", "quick", "--layers", "block1_conv1", "--filters", "0", "--size", "24", "--steps", "1",
            "--store", tmp_path / "store", "--out", tmp_path / "site", "--dataset-size", "32", "--dataset"]
    assert cli(*args, good).returncode == 0
    store = Store(tmp_path / "store")
    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*") if p.is_file() and p.name != "lock")
    bad = tmp_path / "bad"
    bad.mkdir()
    if case == "nothing-readable":
        (bad / "a.jpg").write_text("no")
        (bad / "b.png").write_bytes(b"")
    one_line_error(cli(*args, bad), "--dataset")
    after = {p.relative_to(store.root) for p in store.root.rglob("*") if p.is_file()}
    assert set(before) <= after
    again = cli(*args, good)
    assert again.returncode == 0 and ", 0 computed now" in again.stdout


# --- shapes, names, changes and folders (issue 19) ------------------------------------------------

STRIPS = {"strip10x1000.png": (10, 1000), "strip1x1000.png": (1, 1000), "strip1x100000.png": (1, 100_000)}


def strip_folder(root: Path) -> Path:
    """Two ordinary photos and three strips whose resized longer side is over WebP's 16383 px at 224."""
    folder = make_folder(root, 2)
    for name, (w, h) in STRIPS.items():
        Image.new("RGB", (w, h), (90, 120, 150)).save(folder / name)
    return folder


def cli_args(tmp_path, folder, *extra):
    return ["build", "--preset", "quick", "--layers", "block1_conv1", "--filters", "0-1", "--size", "24", "--steps", "1",
            "--store", tmp_path / "store", "--out", tmp_path / "site", "--examples", "3", "--dataset", folder, *extra]


def test_the_resized_size_is_capped_by_webp_and_memory(hed_model):
    from atlasgen.model.layers import model_geometry

    webp = dataset.SizeCap(224)
    assert "over WebP's limit of 16383 px a side" in webp.refusal(10, 1000)
    assert "224x224000" in webp.refusal(1, 1000) and webp.refusal(1, 100_000)
    assert webp.refusal(1000, 10) and webp.refusal(224, 16383) is None and webp.refusal(300, 200) is None
    geometry = model_geometry(hed_model)
    need = geometry.activation_bytes("block1_conv1", (224, 448))
    cap = dataset.SizeCap(224, geometry, "block1_conv1", need)
    assert cap.refusal(200, 400) is None and cap.refusal(400, 200) is None  # 224 x 448 exactly fits
    reason = cap.refusal(200, 420)  # 224 x 470
    assert "block1_conv1" in reason and "--dataset-size" in reason and "--size " not in reason
    # Refused from the header, before a pixel is decoded.
    with pytest.raises(dataset.Unreadable, match="WebP"):
        load_image(_strip_png(1, 100_000), 224)


def _strip_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_capped_moves_images_to_refused_and_none_left_is_one_line(tmp_path):
    folder = strip_folder(tmp_path / "d")
    opened = open_dataset(folder, 224, 3, 2)
    capped = opened.capped(dataset.SizeCap(224))
    assert {source for source, _ in capped.refused} == set(STRIPS)
    assert len(capped.images) == 2 and capped.chunks and capped.sha256 != opened.sha256
    only = tmp_path / "strips"
    only.mkdir()
    Image.new("RGB", (1, 1000)).save(only / "s.png")
    with pytest.raises(AtlasgenError, match="no image that fits after the resize") as error:
        open_dataset(only, 224, 3, 2).capped(dataset.SizeCap(224))
    assert "\n" not in str(error.value)


def test_extreme_strips_are_skipped_with_reasons_and_a_rebuild_computes_nothing(tmp_path, cli):
    folder = strip_folder(tmp_path / "photos")
    first = cli(*cli_args(tmp_path, folder, "--dataset-size", "224"))
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stdout + first.stderr and "atlas complete" in first.stdout
    atlas = json.loads((tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    skipped = {s["file"]: s["reason"] for s in atlas["dataset"]["skipped"]}
    assert set(skipped) == set(STRIPS) and all("WebP" in reason for reason in skipped.values())
    assert atlas["dataset"]["images"] == 2
    again = cli(*cli_args(tmp_path, folder, "--dataset-size", "224"))
    assert again.returncode == 0 and ", 0 computed now" in again.stdout


def test_display_names_are_valid_text_and_never_alike():
    assert dataset.display_name(b"bad\xff\xfe.png") == "bad\\xff\\xfe.png"
    assert dataset.display_name("caf\u00e9/\u732b.png") == "caf\u00e9/\u732b.png"  # valid UTF-8 as it is
    assert dataset.display_name(b"a\\b.png") == "a\\\\b.png"
    assert dataset.display_name(b"bad\\xff.png") != dataset.display_name(b"bad\xff.png")
    assert dataset.display_name(b"\xed\xb2\x80.png") == "\\xed\\xb2\\x80.png"  # an encoded surrogate is not UTF-8
    assert dataset.display_name(os.fsdecode(b"x\xff.png")) == "x\\xff.png"
    for raw in (b"bad\xff\xfe.png", b"\xed\xb2\x80.png", b"ok.png"):
        dataset.display_name(raw).encode("utf-8")  # strict: no lone surrogate


def test_names_sort_by_their_bytes(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for i, raw in enumerate([b"b.png", b"\xc3\xa9.png", b"a\xff.png", b"a.png"]):
        photo(i).save(os.path.join(os.fsencode(folder), raw), format="PNG")
    found = open_dataset(folder, 32, 3, 4)
    assert [i.source for i in found.images] == ["a.png", "a\\xff.png", "b.png", "\u00e9.png"]
    assert not found.refused


def test_a_file_name_that_is_not_utf8_builds_renders_and_rebuilds(tmp_path, cli):
    folder = make_folder(tmp_path / os.fsdecode(b"ph\xf6tos"), 2)  # the folder's own name is not UTF-8 either
    raw = os.fsencode(folder)
    photo(70).save(os.path.join(raw, b"bad\xff\xfe.png"), format="PNG")
    os.mkdir(os.path.join(raw, b"sub\xe9"))
    photo(71).save(os.path.join(raw, b"sub\xe9", b"p.png"), format="PNG")
    with open(os.path.join(raw, b"broken\xff.jpg"), "wb") as handle:
        handle.write(b"not a jpeg")
    args = cli_args(tmp_path, folder, "--dataset-size", "32", "--examples", "4")
    first = cli(*args)
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr
    site = tmp_path / "site"
    text = (site / "vgg16-hed-bsds500" / "atlas.json").read_bytes().decode("utf-8")  # strict
    assert "\\ud" not in text.lower()
    atlas = json.loads(text)
    assert [s["file"] for s in atlas["dataset"]["skipped"]] == ["broken\\xff.jpg"]
    assert atlas["dataset"]["name"] == "ph\\xf6tos"
    sources = {e["source"] for layer in atlas["layers"] for u in layer["units"] for e in u["dataset_examples"]}
    assert {"bad\\xff\\xfe.png", "sub\\xe9/p.png"} <= sources
    unit = atlas["layers"][0]["units"][0]
    page = (site / unit["page"] / "index.html").read_text(encoding="utf-8")
    assert "bad\\xff\\xfe.png" in page
    unit_json = (site / unit["page"] / "unit.json").read_bytes().decode("utf-8")
    assert "\\ud" not in unit_json.lower()
    assert "bad\\\\xff\\\\xfe.png" in unit_json
    assert cli("render", "--out", site).returncode == 0
    again = cli(*args)
    assert again.returncode == 0 and ", 0 computed now" in again.stdout, again.stderr


@pytest.mark.parametrize("how", ["rewritten", "removed"])
def test_an_image_that_changes_mid_scan_is_scanned_again_next_time(tmp_path, monkeypatch, cli, how):
    from atlasgen.build.run import prepare
    from atlasgen.store import Store

    folder = make_folder(tmp_path / "photos", 5)
    config = dataset_config(tmp_path, folder)
    real_scan, touched = dataset.scan_chunks, {}

    def scan_then_change(scanner, chunks, *args, **kwargs):
        # The first chunk's first image changes after it was hashed, before the scan reads it.
        path = chunks[0][0].path
        touched.update(path=path, source=chunks[0][0].source, data=path.read_bytes())
        if how == "removed":
            path.unlink()
        else:
            photo(99, (44, 40)).save(path, format="PNG")
        return real_scan(scanner, chunks, *args, **kwargs)

    monkeypatch.setattr(dataset, "scan_chunks", scan_then_change)
    notes = []
    result = build(config, notes)
    assert not result.complete and not result.sharded and result.missing >= 1
    assert f"{touched['source']} " in notes[0] and "while the build ran; its chunk is not stored" in notes[0]
    store = Store(config.store)
    touched["path"].write_bytes(touched["data"])  # as it was when it was hashed
    plan = prepare(config).plan
    digest = hashlib.sha256(touched["data"]).hexdigest()
    assert not any(store.has(a.key) for a in plan.chunks if digest in a.recipe["images"])
    monkeypatch.setattr(dataset, "scan_chunks", real_scan)
    again = build(config)
    assert again.complete
    atlas = json.loads((tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    assert atlas["dataset"]["skipped"] == [] and atlas["dataset"]["images"] == 5
    verified = cli("verify", "--store", config.store)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """A real site and store (one tiny build), for the cases below to copy."""
    base = tmp_path_factory.mktemp("apart")
    photos = make_folder(base / "photos", 2)
    result = build(dataset_config(base, photos, layers=("block1_conv1",), filters="0", dataset_size=32))
    assert result.complete
    return base


@pytest.mark.parametrize("case", ["dataset-in-out", "out-in-dataset", "dataset-in-store", "store-in-dataset",
                                  "probe-in-out", "out-in-probe-folder", "probe-in-store"])
def test_inputs_and_outputs_must_be_apart(tmp_path, built_site, cli, one_line_error, case):
    import shutil

    base = tmp_path / "w"
    shutil.copytree(built_site, base, symlinks=True)
    out, store, photos = base / "site", base / "store", base / "photos"
    probe, option = None, "--dataset"
    if case == "dataset-in-out":
        photos = out / "vgg16-hed-bsds500"  # the site's own published photos
    elif case == "out-in-dataset":
        out = photos / "site"
        shutil.move(base / "site", out)
    elif case == "dataset-in-store":
        photos = make_folder(store / "photos", 2)
    elif case == "store-in-dataset":
        store = photos / "store"
        shutil.move(base / "store", store)
    else:
        option = "--probe"
        probe = {"probe-in-out": out / "p.png", "out-in-probe-folder": base, "probe-in-store": store / "p.png"}[case]
        photo(3, (64, 64)).save(probe if probe.suffix else base / "p.png")
    before = {str(p): p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = cli("build", "--preset", "quick", "--layers", "block1_conv1", "--filters", "0", "--size", "24",
                 "--steps", "1", "--store", store, "--out", out, "--dataset", photos, "--dataset-size", "32",
                 "--examples", "3", "--dataset-chunk", "2", *(["--probe", probe] if probe else []))
    line = one_line_error(result, option, "overlap")
    assert ("--out" in line) != ("--store" in line)
    assert {str(p): p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing computed or written


class RecordingScanner:
    """A stand-in for Scanner: one layer, one filter, and the batch sizes it was given."""

    layers = ["x"]

    def __init__(self):
        self.batches = []

    def peaks(self, images):
        self.batches.append(images.shape)
        n = images.shape[0]
        flat = images.reshape(n, -1)
        return [(flat.max(axis=1, keepdims=True).astype(np.float32), np.zeros((n, 1, 2), np.int32),
                 flat.min(axis=1, keepdims=True).astype(np.float32), np.zeros((n, 1, 2), np.int32))]


def test_wide_images_go_in_smaller_batches_when_the_batch_is_fitted(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for i in range(4):
        photo(i, (400, 40)).save(folder / f"wide{i}.png")
    chunk = tuple(open_dataset(folder, 40, 3, 100).images)
    fitted, given = RecordingScanner(), RecordingScanner()
    tops, facts = dataset.scan_chunk(fitted, chunk, 40, 3, 4, fit_shapes=True)
    dataset.scan_chunk(given, chunk, 40, 3, 4)
    # 40 x 400 is 16,000 px, 2.5 times the (2 x 40)^2 a batch was sized for: batches of 4 * 6400 // 16000 = 1.
    assert [b[0] for b in fitted.batches] == [1, 1, 1, 1] and [b[0] for b in given.batches] == [4]
    assert facts == {"sizes": [[40, 400]] * 4, "skipped": []}
    assert tops[0].top.image.shape == tops[0].bottom.image.shape == (1, 3)


def test_memory_advice_on_the_dataset_path_names_the_dataset_options(tmp_path, monkeypatch):
    from atlasgen.build.run import prepare
    from atlasgen.synthesis import engine

    folder = make_folder(tmp_path / "photos", 2)
    monkeypatch.setattr(engine, "machine_available_bytes", lambda: 64 << 20)
    with pytest.raises(AtlasgenError) as error:
        prepare(dataset_config(tmp_path, folder, dataset_size=1024))
    assert "--dataset-size 1024 needs about" in str(error.value) and str(error.value).endswith("use a smaller --dataset-size")
    monkeypatch.undo()

    def out_of_memory(self, images):
        raise MemoryError()

    monkeypatch.setattr(dataset.Scanner, "peaks", out_of_memory)
    with pytest.raises(AtlasgenError) as error:
        build(dataset_config(tmp_path, folder))
    assert "out of memory" in str(error.value) and "--batch-size or --dataset-size" in str(error.value)
    assert "--size" not in str(error.value).replace("--dataset-size", "")


# --- the threaded scan ---------------------------------------------------------------------------


def mixed_chunks(folder: Path, short: int, chunk: int) -> list:
    """A folder's chunks with photos of several shapes and formats, an EXIF-turned one and files
    that cannot be decoded, so the scan batches by shape and skips."""
    make_folder(folder, 11)
    (folder / "broken.jpg").write_bytes(jpeg_bytes(photo(50, (64, 64)))[:300])
    (folder / "text.jpeg").write_text("not a photo at all")
    exif = Image.Exif()
    exif[0x0112] = 6
    (folder / "turned.jpg").write_bytes(jpeg_bytes(photo(60, (64, 44)), exif=exif.tobytes()))
    return open_dataset(folder, short, 3, chunk).chunks


def test_the_threaded_scan_gives_exactly_what_the_serial_one_gives(tmp_path, hed_model):
    chunks = mixed_chunks(tmp_path / "photos", SHORT, 3)
    assert len(chunks) >= 3
    scanner = dataset.Scanner(hed_model, list(LAYERS))
    serial = [dataset.scan_chunk(scanner, chunk, SHORT, 3, 2, fit_shapes=True) for chunk in chunks]
    threaded = list(dataset.scan_chunks(scanner, chunks, SHORT, 3, 2, fit_shapes=True, workers=4))
    assert len(threaded) == len(chunks)
    assert any(facts["skipped"] for _, facts in serial)
    for (tops, facts), (threaded_tops, threaded_facts, changed) in zip(serial, threaded):
        assert changed is None and threaded_facts == facts
        for ranked, other_ranked in zip(tops, threaded_tops):
            assert (ranked is None) == (other_ranked is None)
            for top, other in zip(ranked or (), other_ranked or ()):  # the top k, then the bottom k
                # bit for bit: the same pixels in the same batches
                assert top.activation.tobytes() == other.activation.tobytes()
                assert np.array_equal(top.image, other.image) and np.array_equal(top.unit, other.unit)
    for chunk in chunks:  # and the pixels themselves
        with dataset.decoding_threads(4) as pool:
            decoded = dataset.Decoded.of([f.result() for f in [pool.submit(dataset.decode_image, i, SHORT) for i in chunk]])
        reference = dataset.decode_chunk(chunk, SHORT)
        assert decoded.sizes == reference.sizes and decoded.skipped == reference.skipped
        assert all(np.array_equal(decoded.pixels[i], reference.pixels[i]) for i in reference.pixels)


def test_the_next_chunk_decodes_in_threads_while_the_model_runs_and_no_further(tmp_path, monkeypatch):
    import threading

    folder = make_folder(tmp_path / "photos", 6)
    chunks = open_dataset(folder, SHORT, 3, 1).chunks  # one image a chunk
    assert len(chunks) == 6
    order = [image.digest for chunk in chunks for image in chunk]
    started, threads = [], set()
    next_started = threading.Condition()
    real_decode = dataset.decode_image

    def decode(image, short_side):
        with next_started:
            started.append(order.index(image.digest))
            threads.add(threading.current_thread().name)
            next_started.notify_all()
        return real_decode(image, short_side)

    class Waiting(RecordingScanner):
        """Runs chunk i only once chunk i + 1 has started decoding: a serial scan would wait forever."""

        def peaks(self, images):
            i = len(self.batches)
            with next_started:
                assert max(started) <= i + 1, f"chunk {max(started)} decoded while chunk {i} ran: too far ahead"
                if i + 1 < len(chunks):
                    assert next_started.wait_for(lambda: i + 1 in started, timeout=30), "no prefetch"
            return super().peaks(images)

    monkeypatch.setattr(dataset, "decode_image", decode)
    scanned = list(dataset.scan_chunks(Waiting(), chunks, SHORT, 3, 4, workers=2))
    assert [changed for _, _, changed in scanned] == [None] * 6
    assert sorted(started) == list(range(6)) and all(name.startswith("atlasgen-decode") for name in threads)


def test_a_changed_image_stops_only_its_chunk_in_the_threaded_scan(tmp_path):
    from dataclasses import replace

    folder = make_folder(tmp_path / "photos", 6)
    chunks = open_dataset(folder, SHORT, 3, 1).chunks
    chunks[2] = (replace(chunks[2][0], digest="0" * 64),)  # it no longer reads as it was hashed
    scanned = list(dataset.scan_chunks(RecordingScanner(), chunks, SHORT, 3, 4, workers=3))
    assert [changed is not None for _, _, changed in scanned] == [False, False, True, False, False, False]
    assert str(scanned[2][2]) == f"{chunks[2][0].source} changed"
    serial = [dataset.scan_chunk(RecordingScanner(), chunk, SHORT, 3, 4) for i, chunk in enumerate(chunks) if i != 2]
    assert [facts for _, facts, changed in scanned if changed is None] == [facts for _, facts in serial]


def test_hashing_in_threads_keeps_the_order_the_first_of_equal_files_and_the_reasons(tmp_path):
    folder = make_folder(tmp_path / "photos", 8)
    (folder / "a" / "zz-copy.png").write_bytes((folder / "a" / "img001.png").read_bytes())
    (folder / "empty.png").write_bytes(b"")
    opened = open_dataset(folder, SHORT, 3, 2)
    assert [i.source for i in opened.images] == sorted(i.source for i in opened.images)
    assert dict(opened.refused) == {"a/zz-copy.png": "the same bytes as a/img001.png", "empty.png": "an empty file"}
    assert all(i.digest == hashlib.sha256(i.path.read_bytes()).hexdigest() and i.size for i in opened.images)


# --- precision ------------------------------------------------------------------------------------


def test_a_cpu_build_records_float32_and_no_tf32(scanned):
    from atlasgen.build.run import prepare
    from atlasgen.store import Store

    root, folder, atlas, notes = scanned
    assert atlas["precision"] == {"synthesis": "float32", "synthesis_tf32": None, "scan": "float32"}
    assert ", float32, " in notes and "decoding threads)" in notes
    plan = prepare(dataset_config(root, folder)).plan
    store = Store(root / "store")
    assert {store.get(a.key).meta["precision"] for a in plan.chunks} == {"float32"}
    assert all("precision" not in a.recipe for a in plan.chunks)  # a fact: shards on other machines share chunks
    synthesised = [a for a in plan.artifacts if a.kind in ("channel", "neuron")]
    assert synthesised and {store.get(a.key).meta["tf32"] for a in synthesised} == {None}
    page = (root / "site" / atlas["layers"][0]["units"][0]["page"] / "index.html").read_text()
    assert "exactly the highest, scanned in full float32" in page and "TF32" not in page


def test_a_chunk_scanned_in_tf32_makes_the_scan_not_float32_and_drops_the_exact_claim(tmp_path):
    from atlasgen.build.run import prepare
    from atlasgen.store import Store

    folder = make_folder(tmp_path / "photos", 5)
    config = dataset_config(tmp_path, folder)
    assert build(config).complete
    plan = prepare(config).plan
    store = Store(config.store)
    first = plan.chunks[0].recipe["images"]
    for artifact in (a for a in plan.chunks if a.recipe["images"] == first):  # one chunk, every layer's entry
        entry = store.get(artifact.key)
        blobs = {name: store.get_blob(ref.digest) for name, ref in entry.blobs.items()}
        store.put(artifact.key, blobs, {**entry.meta, "precision": "tf32"})  # as a GPU scan with TF32 stores it
    again = build(config)
    assert again.complete and again.computed == 0
    atlas = json.loads((tmp_path / "site" / "vgg16-hed-bsds500" / "atlas.json").read_text())
    assert atlas["precision"]["scan"] == "tf32"
    page = (tmp_path / "site" / atlas["layers"][0]["units"][0]["page"] / "index.html").read_text()
    assert "highest pre-ReLU activations as computed in TF32 (approximate) on photos" in page
    assert "exactly the highest" not in page


def test_the_scan_disables_tf32_on_a_gpu_unless_mixed_is_asked_and_restores_it(monkeypatch):
    from atlasgen.synthesis import engine
    from atlasgen.tf import tf

    setting = tf.config.experimental
    with dataset.scan_precision(allow_tf32=True) as precision:  # this machine: a CPU, where TF32 does not apply
        assert precision == "float32" and dataset.tf32_allowed() is None
    monkeypatch.setattr(engine, "synthesis_device", lambda: "GPU:0")
    before = setting.tensor_float_32_execution_enabled()
    try:
        setting.enable_tensor_float_32_execution(True)
        with dataset.scan_precision() as precision:
            assert precision == "float32" and not setting.tensor_float_32_execution_enabled()
        assert setting.tensor_float_32_execution_enabled()  # restored
        with dataset.scan_precision(allow_tf32=True) as precision:
            assert precision == "tf32" and setting.tensor_float_32_execution_enabled()
        setting.enable_tensor_float_32_execution(False)  # disabled by the user: mixed does not enable it
        with dataset.scan_precision(allow_tf32=True) as precision:
            assert precision == "float32" and not setting.tensor_float_32_execution_enabled()
        assert not setting.tensor_float_32_execution_enabled() and dataset.tf32_allowed() is False
    finally:
        setting.enable_tensor_float_32_execution(before)


@pytest.mark.parametrize("precision,tf32", [(None, False), ("float32", False), ("mixed", True)])
def test_only_an_explicit_precision_mixed_lets_the_scan_use_tf32(tmp_path, precision, tf32):
    from atlasgen.build.run import prepare

    folder = make_folder(tmp_path / "photos", 2)
    assert prepare(dataset_config(tmp_path, folder, precision=precision)).dataset.tf32 is tf32
