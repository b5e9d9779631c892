"""The command line: each command's output, and one-line errors with exit code 2 for bad input.

In process (the `cli` fixture) unless a new process is the point: start-up chatter on stderr, the
console script, and a Keras cache chosen by environment variable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atlasgen.model.geometry import receptive_fields, square
from atlasgen.model.graph import spatial_ops
from atlasgen.model.weights import VGG16_LAYERS, hed_weights_path
from atlasgen.store import Store
from support import CUSTOM_CONVS, PUBLISHED_VGG16, TINY_ARGS, cli_env, write_manifest

LAYER_FIELDS = {"name", "filters", "r", "S", "P", "output_size", "centre_unit", "centre_box"}


def test_layers_json_for_the_hed_trunk(cli, hed_model):
    result = cli("layers", "--weights", "hed-bsds500", "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    document = json.loads(result.stdout)
    layers = document["layers"]
    assert [layer["name"] for layer in layers] == list(VGG16_LAYERS)
    assert sum(layer["filters"] for layer in layers) == document["total_filters"] == 4224
    assert all(LAYER_FIELDS <= set(layer) for layer in layers)
    by_name = {layer["name"]: layer for layer in layers}
    for name, (r, S, P) in PUBLISHED_VGG16.items():
        if name in by_name:
            assert (by_name[name]["r"], by_name[name]["S"], by_name[name]["P"]) == (r, S, P), name
    assert by_name["block5_conv3"]["output_size"] == 14 and by_name["block5_conv3"]["centre_unit"] == [6, 6]
    assert document["model"] == "vgg16" and document["input_size"] == 224
    weights = document["weights"]
    assert (weights["source"], weights["spec"]) == ("hed-bsds500", "hed-bsds500")
    assert "HED BSDS500" in weights["label"]
    assert weights["fingerprint"] == hed_model.fingerprint
    assert document["input_convention"].startswith("BGR x255 minus mean")


@pytest.mark.slow
def test_the_console_script_in_a_new_process_prints_only_its_table(hed_model):
    """TensorFlow's start-up chatter stays off stderr, and another process gets the same fingerprint."""
    script = Path(sys.executable).parent / "atlasgen"
    command = [str(script)] if script.exists() else [shutil.which("atlasgen") or "atlasgen"]
    result = subprocess.run(
        [*command, "layers", "--weights", "hed-bsds500", "--size", "96"],
        capture_output=True, text=True, env=cli_env(), timeout=300,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["layer", "filters", "r", "S", "P", "output"]
    assert lines[2].split() == ["block1_conv1", "64", "3", "1", "1", "96"]
    assert lines[14].split() == ["block5_conv3", "512", "196", "16", "90", "6"]
    assert "13 conv layers, 4224 filters, input 96 px" in result.stdout
    assert "weights: HED BSDS500" in result.stdout
    assert f"fingerprint sha256:{hed_model.fingerprint}" in result.stdout


def test_layers_json_for_a_custom_keras_model(cli, custom_cnn, custom_cnn_path):
    result = cli("layers", "--weights", custom_cnn_path, "--size", "37", "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    document = json.loads(result.stdout)
    assert [(layer["name"], layer["filters"]) for layer in document["layers"]] == CUSTOM_CONVS
    assert document["total_filters"] == sum(filters for _, filters in CUSTOM_CONVS)
    assert document["model"] == "tiny_cnn" and document["weights"]["source"] == "file"
    assert document["input_convention"].startswith("RGB x1")
    fields = receptive_fields(spatial_ops(custom_cnn), (37, 37))
    for layer in document["layers"]:
        field = fields[layer["name"]]
        expected = [square(field.r), square(field.S), square(field.P), square(field.size)]
        assert [layer["r"], layer["S"], layer["P"], layer["output_size"]] == expected, layer["name"]
    # The head's (3, 2) kernel and (2, 1) stride show as per-axis [y, x] pairs.
    head = document["layers"][-1]
    assert isinstance(head["r"], list) and head["S"] == [8, 4]


# --- errors: one line on stderr, "Error: ...", exit code 2, never a traceback ----------------


@pytest.mark.slow
def test_imagenet_without_network(run_cli, one_line_error, tmp_path):
    # An empty Keras cache forces a download; a dead proxy makes it fail fast even with network.
    dead = "http://127.0.0.1:9"
    env = {"KERAS_HOME": str(tmp_path), "https_proxy": dead, "HTTPS_PROXY": dead, "http_proxy": dead,
           "HTTP_PROXY": dead, "no_proxy": "", "NO_PROXY": ""}
    result = run_cli("layers", env=env)  # imagenet is the default
    one_line_error(result, "ImageNet", "--weights hed-bsds500", "--weights FILE")
    assert result.stdout == ""


def _random_bytes(path: Path) -> Path:
    path.write_bytes(b"\x89HDF junk" + bytes(range(256)) * 40)
    return path


def _truncated_weights(path: Path) -> Path:
    with open(hed_weights_path(), "rb") as source:
        path.write_bytes(source.read(1 << 20))
    return path


def _vgg19_weights(path: Path) -> Path:
    from atlasgen import tf as tf_runtime

    keras = tf_runtime.load()[1]
    keras.applications.VGG19(weights=None, include_top=False).save_weights(path)
    return path


def _model_without_conv(path: Path) -> Path:
    from atlasgen import tf as tf_runtime

    keras = tf_runtime.load()[1]
    image = keras.Input((None, None, 3))
    keras.Model(image, keras.layers.Dense(4)(image)).save(path)
    return path


BAD_WEIGHTS = {
    "missing": ("nowhere.weights.h5", None, ["does not exist", "imagenet, hed-bsds500"]),
    "random_h5": ("random.h5", _random_bytes, ["not an HDF5 file", "expected Keras .h5 weights"]),
    "random_keras": ("random.keras", _random_bytes, ["not a .keras archive", "expected a model"]),
    "truncated": ("truncated.weights.h5", _truncated_weights, ["does not fit VGG16", "truncated"]),
    "vgg19_as_vgg16": ("vgg19.weights.h5", _vgg19_weights, ["does not fit VGG16", "13 conv layers"]),
    "no_conv_layer": ("dense.keras", _model_without_conv, ["no Conv2D layer", "expected a convolutional network"]),
}


@pytest.mark.parametrize("case", BAD_WEIGHTS)
def test_bad_weights_file(cli, one_line_error, tmp_path, case):
    name, make, fragments = BAD_WEIGHTS[case]
    path = tmp_path / name
    if make:
        make(path)
    result = cli("layers", "--weights", path)
    one_line_error(result, str(path), *fragments)
    assert result.stdout == ""


def test_size_too_small(cli, one_line_error):
    result = cli("layers", "--weights", "hed-bsds500", "--size", "8")
    one_line_error(result, "--size 8 is too small", "block5_conv1", "use --size 16 or more")


def test_unknown_option(cli, one_line_error):
    one_line_error(cli("layers", "--colour"), "No such option", "--colour")


# --- build, status, verify, gc, render ---------------------------------------------------------


@pytest.mark.parametrize(
    "extra,fragments",
    [
        (["--layers", "block9_conv9"], ["block9_conv9", "does not exist"]),
        (["--layers", "block1_pool"], ["block1_pool", "not a convolution"]),
        (["--filters", "0-64"], ["out of range", "0-63"]),
        (["--shard", "3/2"], ["--shard"]),
    ],
)
def test_bad_build_input_is_one_line(tmp_path, cli, one_line_error, extra, fragments):
    result = cli("build", *TINY_ARGS, "--store", tmp_path / "store", "--out", tmp_path / "site", *extra)
    one_line_error(result, *fragments)
    assert not (tmp_path / "store" / "index").exists()


def test_bad_probe_and_unwritable_folders_are_one_line(tmp_path, cli, one_line_error):
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a photo")
    result = cli("build", *TINY_ARGS, "--store", tmp_path / "store", "--out", tmp_path / "site", "--probe", fake)
    one_line_error(result, "fake.jpg", "not an image")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = cli("build", *TINY_ARGS, "--store", blocker / "store", "--out", tmp_path / "site")
    one_line_error(result, "--store", "not writable")
    result = cli("build", *TINY_ARGS, "--store", tmp_path / "store", "--out", blocker / "site")
    one_line_error(result, "--out", "not a folder")
    one_line_error(cli("verify", "--store", tmp_path / "nowhere"), "not an atlasgen store")
    # A user's folder is never taken for a store: not by gc, verify or build.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for command in (["gc", "--grace-minutes", "0"], ["verify"]):
        one_line_error(cli(*command, "--store", mine), "not an atlasgen store")
    one_line_error(cli("build", *TINY_ARGS, "--store", mine, "--out", tmp_path / "site"), "holds no atlasgen store")
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    one_line_error(cli("render", "--out", tmp_path), "atlas.json", "atlasgen build")
    one_line_error(cli("serve", "--out", tmp_path), "index.html")


def test_build_status_verify_gc_render(tmp_path, cli):
    store, site = tmp_path / "store", tmp_path / "site"
    built = cli("build", *TINY_ARGS, "--seed", "3", "--store", store, "--out", site)
    assert built.returncode == 0, built.stderr
    # 2 filters x 11 (channel, channel-negative, diversity, neuron, channel-map, kernel, examples,
    # examples-negative, wiring, and map + map-view of the one probe), the probe photo, and the 2
    # chunks of the 18 built-in photos
    planned = 25
    assert f"atlas complete: {planned} artifacts, {planned} computed now" in built.stdout
    assert "all 4,224 filters of vgg16" in built.stdout
    assert json.loads((site / "vgg16-hed-bsds500" / "atlas.json").read_text())["parameters"]["seed"] == 3
    status = cli("status", *TINY_ARGS, "--seed", "3", "--store", store, "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["done"] == planned and report["missing"] == 0
    more = cli("status", *TINY_ARGS, "--filters", "0-2", "--seed", "3", "--store", store)
    assert "missing 11" in more.stdout and "channel 2/3" in more.stdout  # filter 2's 11 artifacts
    other_seed = cli("status", *TINY_ARGS, "--store", store)
    assert "channel 0/2, channel-negative 0/2, diversity 0/2, channel-map 0/2, neuron 0/2" in other_seed.stdout and "map 2/2" in other_seed.stdout  # the seed is not in the maps' recipes
    assert "examples-negative 2/2" in other_seed.stdout  # nor in the dataset examples', either side
    assert "wiring 2/2" in other_seed.stdout  # nor in the wiring's: it reads the weights alone
    assert "kernel 2/2" in other_seed.stdout  # nor in the kernels'
    verified = cli("verify", "--store", store)
    assert verified.returncode == 0 and "checked" in verified.stdout
    orphan = Store(store).put_blob(b"nobody refers to this")
    young = cli("gc", "--store", store)
    assert "removed 0 unreferenced blobs; kept 1 younger than 60 min" in young.stdout  # a build may be about to use it
    dry = cli("gc", "--store", store, "--dry-run", "--grace-minutes", "0")
    assert "would remove 1" in dry.stdout and Store(store).blob_path(orphan).exists()
    real = cli("gc", "--store", store, "--grace-minutes", "0")
    assert "removed 1" in real.stdout and not Store(store).blob_path(orphan).exists()
    (site / "index.html").unlink()
    rendered = cli("render", "--out", site)
    assert rendered.returncode == 0 and (site / "index.html").is_file() and "pages" in rendered.stdout
    assert cli("render", "--out", site, "--store", store).returncode == 2  # the dead option is gone


# --- values checked as given, and folders kept apart (issue 10) ---------------------------------


@pytest.mark.parametrize("extra,fragments", [
    (["--size", "0"], ["--size 0", "at least 8"]),
    (["--steps", "0"], ["--steps 0", "from 1"]),
    (["--steps", "-3"], ["--steps -3"]),
    (["--layers", ""], ["--layers", "empty"]),
    (["--layers", "block1_conv1,,block2_conv1"], ["--layers", "empty"]),
    (["--filters", ""], ["--filters is empty"]),
    (["--filters", "  "], ["--filters is empty"]),
    (["--weights", ""], ["--weights", "empty"]),
    (["--out", ""], ["--out", "empty"]),
    (["--store", ""], ["--store", "empty"]),
    (["--probe", ""], ["--probe", "empty"]),
    (["--base-url", ""], ["--base-url", "http"]),
    (["--base-url", "javascript:alert(1)"], ["--base-url", "http"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--shard", ""], ["--shard"]),
    (["--dataset", ""], ["--dataset", "empty"]),
    (["--dataset-size", "0"], ["--dataset-size 0", "from 16"]),
    (["--examples", "0"], ["--examples 0", "from 1"]),
    (["--dataset-chunk", "0"], ["--dataset-chunk 0", "from 1"]),
    (["--examples", "-2"], ["--examples -2"]),
    (["--wiring-k", "0"], ["--wiring-k 0", "from 1 to 64"]),
    (["--wiring-k", "-1"], ["--wiring-k -1", "from 1"]),
    (["--wiring-k", "65"], ["--wiring-k 65", "to 64"]),
    (["--wiring-k", ""], ["--wiring-k", "not a valid integer"]),
    (["--diversity", "1"], ["--diversity 1 is one image", "give 2 or more, or 0 to turn it off"]),
    (["--diversity", "-1"], ["--diversity -1", "from 0 to 16"]),
    (["--diversity", "17"], ["--diversity 17", "to 16"]),
    (["--diversity", ""], ["--diversity", "not a valid integer"]),
    (["--diversity", "3", "--method", "maco"], ["--diversity 3 uses Lucid's method", "add lucid to --method"]),
    (["--dataset", "/dev/zero"], ["--dataset", "not a folder"]),
    (["--dataset", "no/such/folder"], ["--dataset", "does not exist"]),
])
def test_empty_and_zero_values_are_errors_never_the_presets(tmp_path, cli, one_line_error, extra, fragments):
    result = cli("build", *TINY_ARGS, "--store", tmp_path / "store", "--out", tmp_path / "site", *extra)
    one_line_error(result, *fragments)
    assert not (tmp_path / "store").exists() and not (tmp_path / "site").exists()


def test_a_size_that_cannot_fit_in_memory_is_refused_before_any_tensor(tmp_path, cli, one_line_error):
    result = cli("build", *TINY_ARGS, "--size", "30000", "--store", tmp_path / "store", "--out", tmp_path / "site")
    one_line_error(result, "--size 30000 needs about", "GiB", "use a smaller --size")
    assert not (tmp_path / "store").exists() and not (tmp_path / "site").exists()


def test_a_probe_smaller_than_the_field_is_one_line(tmp_path, cli, one_line_error):
    from PIL import Image

    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "tiny.png")
    result = cli("build", *TINY_ARGS, "--layers", "block5_conv1", "--probe", tmp_path / "tiny.png",
                 "--store", tmp_path / "store", "--out", tmp_path / "site")
    one_line_error(result, "probe 'tiny' is 8x8 px, too small for layer block5_conv1", "at least 16 px")


@pytest.mark.parametrize("store,out", [("a", "a"), ("a", "a/site"), ("a/store", "a")])
def test_the_store_and_the_site_must_not_hold_each_other(tmp_path, cli, one_line_error, store, out):
    result = cli("build", *TINY_ARGS, "--store", tmp_path / store, "--out", tmp_path / out)
    one_line_error(result, "overlap")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("damage,fragments", [
    (lambda m: {}, ["atlas.json.schema is missing"]),
    (lambda m: [1], ["atlas.json should be an object"]),
    (lambda m: {**m, "layers": [{**m["layers"][0], "path": "../escaped/"}]}, ["layers[0].path", "not a relative path"]),
    (lambda m: {**m, "layers": [{**m["layers"][0], "units": [{**m["layers"][0]["units"][0], "page": "/abs/path/"}]}]},
     ["layers[0].units[0].page", "not a relative path"]),
])
def test_render_of_a_hostile_manifest_writes_nothing_outside(tmp_path, cli, one_line_error, damage, fragments):
    from support import synthetic_manifest

    site = tmp_path / "site"
    site.mkdir()
    write_manifest(site, damage(synthetic_manifest(layers=[("block1_conv1", 1)])))
    one_line_error(cli("render", "--out", site), *fragments)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["atlas.json", "site", "vgg16"]


def test_render_refuses_to_write_through_a_symlink_out_of_the_site(built_atlas, tmp_path, cli, one_line_error):
    import shutil

    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    shutil.copytree(built_atlas.out, site)
    shutil.rmtree(site / "static")
    elsewhere.mkdir()
    (elsewhere / "atlas.css").write_text("a user's stylesheet")
    (site / "static").symlink_to(elsewhere)
    one_line_error(cli("render", "--out", site), "symlink", "leads outside")
    assert (elsewhere / "atlas.css").read_text() == "a user's stylesheet"


@pytest.mark.parametrize("method,fragment", [("", "--method is empty"), ("nope", "lucid, maco"), ("lucid,", "--method is empty")])
def test_a_bad_method_is_one_line(cli, one_line_error, tmp_path, method, fragment):
    result = cli("build", *TINY_ARGS, "--method", method, "--store", tmp_path / "store", "--out", tmp_path / "site")
    one_line_error(result, fragment)
    assert not (tmp_path / "store").exists() and not (tmp_path / "site").exists()


@pytest.mark.parametrize("precision", ["", "bogus", "bfloat16", "Mixed"])
def test_a_bad_precision_is_one_line(cli, one_line_error, tmp_path, precision):
    result = cli("build", *TINY_ARGS, "--precision", precision, "--store", tmp_path / "store", "--out", tmp_path / "site")
    one_line_error(result, "--precision", "float32", "mixed")
    assert not (tmp_path / "store").exists() and not (tmp_path / "site").exists()


def test_the_precision_option_says_what_it_does_when_unset(cli):
    help_text = " ".join(cli("build", "--help").stdout.split())
    assert "--precision [float32|mixed]" in help_text and "[mixed on a GPU, float32 on the CPU]" in help_text


@pytest.mark.parametrize("sharded, said", [(True, "shard done: 3 computed of 5 in this shard"),
                                           (False, "atlas incomplete: 3 computed, 2 of 9 artifacts still missing")])
def test_an_unfinished_build_says_whether_other_shards_or_a_rerun_will_finish_it(cli, monkeypatch, sharded, said):
    from atlasgen.build import run

    result = run.BuildResult(planned=9, in_shard=5, computed=3, complete=False, manifest=None, seconds=1.0,
                             missing=2, sharded=sharded)
    monkeypatch.setattr(run, "run_build", lambda config: result)
    shown = cli("build", *TINY_ARGS)
    assert shown.returncode == 0 and said in shown.stdout
    assert ("run atlasgen build again" in shown.stdout) != sharded


# --- models by name (issue 23) -----------------------------------------------------------------------


def test_layers_of_a_model_by_name_with_random_weights(cli):
    result = cli("layers", "--model", "efficientnet_b0", "--weights", "random", "--size", "64", "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    document = json.loads(result.stdout)
    assert document["model"] == "efficientnet_b0" and document["weights"]["source"] == "random"
    assert document["weights"]["label"].startswith("random weights")
    assert document["preprocessing"].startswith("in the model")
    by_name = {layer["name"]: layer for layer in document["layers"]}
    assert by_name["stem_conv"]["read_after"] == "stem_bn" and by_name["stem_conv"]["r"] == 3
    gated = by_name["block1a_project_conv"]
    assert gated["r"] is None and gated["P"] is None and gated["global"].startswith("every unit depends on the whole image")
    table = cli("layers", "--model", "efficientnet_b0", "--weights", "random", "--size", "64")
    assert table.returncode == 0 and "see the whole image (r whole)" in table.stdout


@pytest.mark.parametrize("args, fragments", [
    (["--model", "resnet51"], ["--model 'resnet51' is not a model atlasgen knows", "resnet50, resnet50v2"]),
    (["--model", ""], ["--model is empty; give one of vgg16"]),
    (["--model", " "], ["--model is empty"]),
    (["--model", "resnet50", "--weights", "hed-bsds500"], ["VGG16's offline trunk", "imagenet, random"]),
    (["--model", "resnet50", "--weights", "weights.bin"], ["give imagenet, random, or a .h5"]),
])
def test_a_bad_model_is_one_line(cli, args, fragments):
    from support import assert_one_line_error

    assert_one_line_error(cli("layers", *args), *fragments)


def test_a_model_by_name_with_a_keras_file_is_one_line(cli, custom_cnn_path):
    from support import assert_one_line_error

    assert_one_line_error(cli("layers", "--model", "resnet50", "--weights", custom_cnn_path), "leave out --model")
    assert_one_line_error(cli("build", "--model", "nope", "--weights", "random"), "is not a model atlasgen knows")
