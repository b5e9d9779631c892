"""atlasgen.names: the URL path segments every published link depends on."""

from __future__ import annotations

import re

import pytest

from atlasgen.names import layer_folder, probe_image, safe_name, unit_folder

HOSTILE = ['<b onmouseover="x">evil</b>', "../../etc", "a/b\\c", "..", ".", "...", "", ".hidden", "-", " ", "猫",
           "a\nb", "%2e%2e", "C:\\Windows", "/abs/path", "x/.."]


@pytest.mark.parametrize("text", HOSTILE)
def test_safe_name_is_one_harmless_path_segment(text):
    name = safe_name(text)
    # Only these characters: no '/', '\\', '<', '>', '"', space or newline can get through.
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", name), name
    assert not name.startswith("."), name  # so never '.', '..' or a hidden file


@pytest.mark.parametrize("text,expected", [
    ('<b onmouseover="x">evil</b>', "b-onmouseover-x-evil-b"),
    ("../../etc", "etc"),
    ("a/b\\c", "a-b-c"),
    ("..", "name"),
    ("", "name"),
    (".hidden", "hidden"),
])
def test_safe_name_of_hostile_names(text, expected):
    # The cleaned name, then a short hash of the real one.
    assert re.fullmatch(re.escape(expected) + r"-[0-9a-f]{6}", safe_name(text)), safe_name(text)


def test_names_that_clean_alike_stay_apart():
    names = ["a b", "a-b", "a_b", "a/b", "c>1", "c-1", "猫", "犬", "a b ", "A B"]
    assert len({safe_name(n) for n in names}) == len(names)
    assert safe_name("a-b") == "a-b" and safe_name("c-1") == "c-1"
    # "a b", "a/b" and "a b " all clean to "a-b" (and "c>1" to "c-1"): the first 6 hex digits of
    # the real name's SHA-256 tell them apart. Written out, because the segment is a published link:
    # it must be the same in every process and release (not Python's per-process hash()).
    assert [safe_name(n) for n in ("a b", "a/b", "a b ", "c>1")] == [
        "a-b-c8687a", "a-b-c14cdd", "a-b-602709", "c-1-b250b7"]


@pytest.mark.parametrize("text", ["block1_conv1", "vgg16", "hed-bsds500", "v1.2", "Layer_7-b"])
def test_safe_name_keeps_names_that_are_already_safe(text):
    assert safe_name(text) == text  # published links must not move


def test_layer_and_unit_folders():
    assert layer_folder("vgg16", "block1_conv1") == "vgg16/block1_conv1/"
    assert unit_folder("vgg16", "block1_conv1", 12) == "vgg16/block1_conv1/12/"
    assert re.fullmatch(r"vgg16/x-[0-9a-f]{6}/3/", unit_folder("vgg16", "../../x", 3))
    assert re.fullmatch(r"m-[0-9a-f]{6}/a-b-[0-9a-f]{6}/", layer_folder("../m", "a/b"))


@pytest.mark.parametrize("model,layer", [(m, l) for m in HOSTILE[:6] for l in HOSTILE[:6]])
def test_folders_never_climb_or_nest(model, layer):
    folder = unit_folder(model, layer, 0)
    assert folder.endswith("/") and not folder.startswith("/")
    segments = folder[:-1].split("/")
    assert len(segments) == 3 and segments[2] == "0"
    assert all(s and not s.startswith(".") for s in segments), segments  # no '', '.', '..' or hidden folder


def test_probe_image():
    assert probe_image("astronaut") == "probes/astronaut.webp"
    assert re.fullmatch(r"probes/etc-passwd-[0-9a-f]{6}\.webp", probe_image("../../etc/passwd"))
    assert re.fullmatch(r"probes/name-[0-9a-f]{6}\.webp", probe_image(".."))


def test_the_atlas_folder_names_the_weights_unless_they_are_imagenets():
    from atlasgen.names import atlas_name

    fingerprint = "1a2b3c4d" + "0" * 56
    assert atlas_name("vgg16", "imagenet", fingerprint) == "vgg16"
    assert atlas_name("vgg16", "hed-bsds500", fingerprint) == "vgg16-hed-bsds500"
    assert atlas_name("vgg16", "file", fingerprint) == "vgg16-1a2b3c4d"
    assert atlas_name("vgg16", "hed-bsds500", fingerprint, name="my-vgg") == "my-vgg"


@pytest.mark.parametrize("name", ["", " ", "Upper", "a_b", "-lead", "trail-", "a/b", "..", "static", "x" * 65, "é"])
def test_a_bad_atlas_name_is_one_line(name):
    from atlasgen.errors import AtlasgenError
    from atlasgen.names import check_atlas_name

    with pytest.raises(AtlasgenError) as error:
        check_atlas_name(name)
    assert "--name" in str(error.value) and "\n" not in str(error.value)
