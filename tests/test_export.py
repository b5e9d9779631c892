"""The export: it copies stored blobs to their files and writes atlas.json, computes nothing, and
prunes only the files an earlier export wrote."""

import hashlib
import json
import math

import pytest

from PIL import Image

from atlasgen.build.run import prepare, run_build
from atlasgen.errors import AtlasgenError
from atlasgen.build.export import export_atlas
from atlasgen.fs import LOCK_FILE, OWNED_RECORD
from atlasgen.manifest import load_manifest
from atlasgen.store import Store


def test_manifest_describes_the_atlas(built_atlas):
    site = built_atlas.out
    manifest = json.loads((site / "vgg16-hed-bsds500" / "atlas.json").read_text())
    assert manifest["schema"] == 3 and manifest["model"] == "vgg16" and manifest["model_filters"] == 4224
    assert manifest["weights"]["source"] == "hed-bsds500"
    assert "fine-tuned for edge detection" in manifest["weights"]["label"]
    assert len(manifest["weights"]["fingerprint"]) == 64
    assert manifest["parameters"]["steps"] == 4 and manifest["parameters"]["size"] == 32
    assert manifest["probes"] == [{"name": "astronaut", "sha256": manifest["probes"][0]["sha256"],
                                   "image": "vgg16-hed-bsds500/probes/astronaut.webp", "width": 512, "height": 512}]
    layer, second = manifest["layers"]
    assert (layer["name"], layer["r"], layer["S"], layer["P"]) == ("block1_conv1", 3, 1, 1)
    assert (second["name"], second["r"], second["S"], second["P"], second["path"]) == ("block2_conv1", 10, 2, 4, "vgg16-hed-bsds500/block2_conv1/")
    assert [u["index"] for u in layer["units"]] == [0, 1, 2]
    for unit in layer["units"]:
        folder = f"vgg16-hed-bsds500/block1_conv1/{unit['index']}/"
        assert unit["page"] == folder
        assert unit["images"] == {"channel": folder + "channel.webp", "neuron": folder + "neuron.webp",
                                  "rf_crop": folder + "rf-crop.webp", "channel_map": folder + "channel-map.webp",
                                  "kernel": folder + "kernel.webp",  # block1_conv1 reads the image: its kernels
                                  "channel_negative": folder + "channel-negative.webp",
                                  "diversity": [folder + "diversity/0.webp", folder + "diversity/1.webp"]}  # quick: 2
        assert len(unit["metrics"]["diversity"]) == len(unit["metrics"]["diversity_runs"]) == 2
        assert 0 <= unit["metrics"]["diversity_similarity"] <= 1
        for path in [p for value in unit["images"].values() for p in ([value] if isinstance(value, str) else value)]:
            with Image.open(site / path) as image:
                assert image.format == "WEBP"
        (amap,) = unit["activation_maps"]
        assert amap["probe"] == "astronaut" and amap["scale"] == amap["peak"]
        assert amap["images"] == {"heatmap": folder + "maps/astronaut/heatmap.webp", "overlay": folder + "maps/astronaut/overlay.webp"}
        top, left, bottom, right = unit["rf_box"]
        assert (bottom - top, right - left) == (3, 3)
        metrics = unit["metrics"]
        assert metrics["neuron"]["changed_pixels_outside_box"] == 0
        assert metrics["channel"]["activation_vs_best_probe"] > 0
        assert metrics["channel"]["changed_pixels_outside_box"] is None
        channel = metrics["channel"]
        # block1_conv1 is affine in the pixels: its whole-filter images are its exact extremes, which
        # have no contrast response (a saturated colour, not a faint image); block2_conv1's, below, do.
        assert channel["exact"] is True and metrics["channel_negative"]["exact"] is True
        assert channel["contrast_response"] is None and channel["faint"] is None
        assert metrics["neuron"]["faint"] is None and metrics["neuron"].get("exact") is None
        # Its run: every step of these 4 (at most 31 before the last), ending at the stored objective.
        for objective, run in zip(metrics["diversity"], metrics["diversity_runs"]):  # each diversity image's too
            assert [step for step, _ in run["curve"]] == [1, 2, 3, 4] and run["curve"][-1][1] == objective == run["objective"]
        for image in ("channel", "neuron"):
            curve = metrics[image]["curve"]
            assert [step for step, _ in curve] == [1, 2, 3, 4] and curve[-1][1] == metrics[image]["objective"]
    for unit in second["units"]:
        channel = unit["metrics"]["channel"]
        # Its contrast response (x1 is the image itself) and the verdict on it; not exact (ReLUs before it).
        assert [s for s, _ in channel["contrast_response"]] == [0.5, 1.0, 1.5, 2.0]
        assert channel["contrast_response"][1][1] == pytest.approx(channel["objective"], abs=1e-4)
        assert isinstance(channel["faint"], bool) and channel.get("exact") is None
    assert load_manifest(site / "vgg16-hed-bsds500").units == 6


def test_export_only_copies_stored_blobs(atlas_copy, monkeypatch):
    store = Store(atlas_copy.store)
    stored = {p.parent.name + p.name for p in (atlas_copy.store / "blobs").rglob("*") if p.is_file()}
    site = atlas_copy.out
    images = [p for p in site.rglob("*.webp")]
    examples = [p for p in images if p.parent.name == "examples"]
    negative = [p for p in images if p.parent.name == "examples-negative"]
    photos = [p for p in images if p.parent.name == "dataset"]
    # The probe photo, 6 filters x 9 files: channel, channel-negative, the 2 diversity images, neuron,
    # rf-crop, channel-map, and the probe's heatmap + overlay; and the kernels of block1_conv1's 3 filters
    assert len(images) - len(examples) - len(negative) - len(photos) == 58
    assert len(examples) == len(negative) == 6 * 9  # 9 examples a filter, top and bottom
    assert 9 <= len(photos) <= 18  # from the 18 built-in photos, each once whichever list it is in
    for path in images:
        assert hashlib.sha256(path.read_bytes()).hexdigest() in stored, path
    # With every encoder and model call broken, the export still runs: it computes nothing.
    for name in ("atlasgen.codec.webp", "atlasgen.codec.grey_png", "atlasgen.synthesis.maps.render_map",
                 "atlasgen.codec.lossless_webp", "atlasgen.codec.kernel_image"):
        monkeypatch.setattr(name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("export computed")))
    for path in images:
        path.unlink()
    export_atlas(prepare(atlas_copy), store)
    assert all(path.is_file() for path in images)


def test_stale_outputs_are_pruned_and_a_users_files_never_touched(tmp_path, tiny_config, quiet, photo_dir):
    site = tmp_path / "site"
    run_build(tiny_config(filters="0-2", probes=(photo_dir / "red.png",)), quiet)
    (site / "notes.md").write_text("mine")
    (site / "vgg16-hed-bsds500" / "mine.webp").write_bytes(b"also mine")
    assert (site / "vgg16-hed-bsds500/block1_conv1/2/index.html").is_file()
    assert (site / "vgg16-hed-bsds500/block1_conv1/0/maps/red/heatmap.webp").is_file()
    run_build(tiny_config(filters="0", probes=(photo_dir / "blue.png",)), quiet)
    assert not (site / "vgg16-hed-bsds500/block1_conv1/1").exists() and not (site / "vgg16-hed-bsds500/block1_conv1/2").exists()
    assert not (site / "vgg16-hed-bsds500/block1_conv1/0/maps/red/heatmap.webp").exists() and not (site / "vgg16-hed-bsds500/probes/red.webp").exists()
    assert (site / "vgg16-hed-bsds500/block1_conv1/0/maps/blue/overlay.webp").is_file() and (site / "vgg16-hed-bsds500/probes/blue.webp").is_file()
    assert (site / "notes.md").read_text() == "mine" and (site / "vgg16-hed-bsds500" / "mine.webp").read_bytes() == b"also mine"
    record = json.loads((site / OWNED_RECORD).read_text())
    export = record["export:vgg16-hed-bsds500"]
    assert "notes.md" not in export + record["site"]
    assert "vgg16-hed-bsds500/block1_conv1/0/index.html" in record["site"] and "vgg16-hed-bsds500/atlas.json" in export
    on_disk = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert on_disk == set(export) | set(record["site"]) | {"notes.md", "vgg16-hed-bsds500/mine.webp", OWNED_RECORD, LOCK_FILE}


def test_a_first_build_into_a_users_folder_needs_force(tmp_path, tiny_config, quiet):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("the user's own page")
    with pytest.raises(AtlasgenError, match="not empty and holds no atlas made by atlasgen"):
        run_build(tiny_config(), quiet)
    assert not (tmp_path / "store").exists(), "refused before anything was made"
    assert [p.name for p in site.iterdir()] == ["index.html"]
    assert run_build(tiny_config(force=True), quiet).complete
    assert (site / "vgg16-hed-bsds500" / "atlas.json").is_file()


def test_probes_whose_names_once_met_in_one_file_get_files_of_their_own(tmp_path, tiny_config, quiet):
    """Probe x's overlay and probe x-overlay's heatmap were one file; 'a b' and 'a-b' were one name."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, colour in (("x", (200, 0, 0)), ("x-overlay", (0, 200, 0)), ("a b", (0, 0, 200)), ("a-b", (90, 90, 90))):
        Image.new("RGB", (40, 40), colour).save(photos / f"{name}.png")
    assert run_build(tiny_config(filters="0", probes=(photos,)), quiet).complete
    manifest = load_manifest(tmp_path / "site" / "vgg16-hed-bsds500")
    paths = [p for amap in manifest.layers[0].units[0].activation_maps for p in amap.images.values()]
    paths += [probe.image for probe in manifest.probes]
    assert len(paths) == len(set(paths)) == 4 * 3
    assert all((tmp_path / "site" / p).is_file() for p in paths)


# --- first-layer kernels and the transforms each layer's images used ----------------------------


def test_the_first_layers_kernels_are_their_weights_flipped_to_rgb(built_atlas, hed_model):
    import numpy as np

    site = built_atlas.out
    manifest = load_manifest(site / "vgg16-hed-bsds500")
    first, second = manifest.layers
    weights = np.asarray(hed_model.model.get_layer("block1_conv1").kernel, dtype=np.float64)
    for unit in first.units:
        assert unit.images["kernel"] == unit.page + "kernel.webp"
        assert unit.kernel.taps == [3, 3] and unit.kernel.flipped  # the HED trunk reads BGR
        with Image.open(site / unit.images["kernel"]) as image:
            assert image.format == "WEBP" and image.size == (96, 96)
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
        expected = weights[:, :, ::-1, unit.index]  # the model's BGR kernel, in the image's RGB order
        assert unit.kernel.scale == pytest.approx(np.abs(expected).max())
        drawn = (pixels[16::32, 16::32] - 127.5) / 127.5 * unit.kernel.scale  # one 32 px square per weight
        assert np.abs(drawn - expected).max() <= 0.5 / 127.5 * unit.kernel.scale + 1e-6
    # block2_conv1 reads block1's 64 channels, not the image: no kernel, and no null in atlas.json either.
    assert all("kernel" not in u.images and u.kernel is None for u in second.units)
    document = json.loads((site / "vgg16-hed-bsds500" / "atlas.json").read_text())
    assert all("kernel" not in u for u in document["layers"][1]["units"])
    unit_json = json.loads((site / first.units[0].page / "unit.json").read_text())
    assert unit_json["unit"]["kernel"] == {"scale": first.units[0].kernel.scale, "taps": [3, 3], "flipped": True}


def test_each_layer_records_the_transforms_its_images_were_made_with(built_atlas, hed_model):
    from atlasgen.params import SynthesisParams
    from atlasgen.synthesis import LayerEngine, images

    site = built_atlas.out
    document = json.loads((site / "vgg16-hed-bsds500" / "atlas.json").read_text())
    params = SynthesisParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in document["parameters"].items()})
    for layer in document["layers"]:
        engine = LayerEngine(hed_model, layer["name"])
        # What the synthesis itself runs with: channel_batch's fitted transforms, neuron_batch's setup.
        used = {"channel": images.fitted_to_field(params, min(engine.field((params.size, params.size)).r)),
                "neuron": images._neuron_setup(engine, params).params}
        assert {"channel", "neuron"} <= set(layer["synthesis"])
        for name, run in used.items():
            settled = {} if run.untransformed_from is None else {"untransformed_from": run.untransformed_from}
            assert layer["synthesis"][name] == {
                "pad": run.pad, "jitter": run.jitter, "scale": list(run.scale), "rotate_degrees": run.rotate_degrees,
                "jitter_last": run.jitter_last, "learning_rate": run.learning_rate, **settled}, (layer["name"], name)
        unit_json = json.loads((site / layer["units"][0]["page"] / "unit.json").read_text())
        assert unit_json["layer"]["synthesis"] == layer["synthesis"]
    # At 32 px: block1_conv1's 3 px field gets no pad, no zoom or turn, and the small-field rate; the centre
    # neuron keeps the requested zoom and turn, its pad in whole strides.
    first, second = (layer["synthesis"] for layer in document["layers"])
    # The whole-filter image is scored bare from settle_start of its steps on; a neuron with a pad (its
    # field short of the image's border, as here) never is.
    steps = document["parameters"]["steps"]
    assert first["channel"] == {"pad": 0, "jitter": 1, "scale": [1.0, 1.0], "rotate_degrees": 0.0, "jitter_last": 0,
                                "learning_rate": 0.1, "untransformed_from": math.ceil(params.settle_start * steps)}
    assert first["neuron"] == {"pad": 12, "jitter": 0, "scale": [0.9, 1.1], "rotate_degrees": 10.0, "jitter_last": 0,
                               "learning_rate": 0.05}
    assert second["channel"]["jitter_last"] == 1 and second["neuron"]["jitter"] == 1
    assert load_manifest(site / "vgg16-hed-bsds500").layers[0].synthesis["channel"].learning_rate == 0.1


def test_the_negative_side_of_every_filter_in_atlas_json_and_unit_json(built_atlas):
    """The negative whole-filter image with its numbers (its objective the filter's pre-ReLU mean on it:
    low), and the bottom dataset examples, lowest first; unit.json carries them as atlas.json does."""
    site = built_atlas.out
    manifest = json.loads((site / "vgg16-hed-bsds500" / "atlas.json").read_text())
    for layer in manifest["layers"]:
        for unit in layer["units"]:
            folder = unit["page"]
            assert unit["images"]["channel_negative"] == folder + "channel-negative.webp"
            negative, positive = unit["metrics"]["channel_negative"], unit["metrics"]["channel"]
            assert set(negative) >= {"objective", "mean_activation", "steps", "curve", "activation_vs_best_probe"}
            assert negative["objective"] < positive["objective"] and negative["steps"] == 4
            assert negative["curve"][-1][1] == negative["objective"]
            assert negative["contrast_response"] is None and negative["faint"] is None  # a verdict on maximising
            bottom, top = unit["dataset_examples_negative"], unit["dataset_examples"]
            assert len(bottom) == 9 and [e["activation"] for e in bottom] == sorted(e["activation"] for e in bottom)
            assert bottom[0]["activation"] < top[-1]["activation"]
            assert [e["image"] for e in bottom] == [f"{folder}examples-negative/{r}.webp" for r in range(9)]
            assert {e["photo"] for e in bottom + top} <= {f"vgg16-hed-bsds500/dataset/{p.name}"
                                                         for p in (site / "vgg16-hed-bsds500" / "dataset").iterdir()}
            record = json.loads((site / folder / "unit.json").read_text())["unit"]
            assert record["dataset_examples_negative"] == bottom and record["metrics"]["channel_negative"] == negative
            assert record["images"]["channel_negative"] == unit["images"]["channel_negative"]
    assert manifest["dataset"]["convention"]["negative_examples"].startswith("bottom units by pre-ReLU activation")


def test_an_atlas_json_from_before_the_negative_side_still_reads(built_atlas):
    from atlasgen.manifest import Manifest

    document = json.loads((built_atlas.out / "vgg16-hed-bsds500" / "atlas.json").read_text())
    for layer in document["layers"]:
        for unit in layer["units"]:
            del unit["dataset_examples_negative"], unit["images"]["channel_negative"], unit["metrics"]["channel_negative"]
    unit = Manifest.from_json(document).layers[0].units[0]
    assert unit.dataset_examples_negative == [] and "channel_negative" not in unit.metrics.images
    assert len(unit.dataset_examples) == 9
