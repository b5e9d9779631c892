"""Probe photos: files and folders, the default photo, one-line errors, names that stay apart."""

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.synthesis import default_probe, load_probes


def test_default_probe_is_the_astronaut():
    probe = default_probe()
    assert probe.name == "astronaut" and probe.image.shape == (512, 512, 3) and len(probe.digest) == 64


def test_probe_folder_and_bad_probes(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (30, 20), (10, 20, 30)).save(folder / "b.png")
    Image.new("RGB", (900, 600), (1, 2, 3)).save(folder / "a.jpg")
    (folder / "notes.txt").write_text("not a photo")
    probes = load_probes([folder])
    assert [p.name for p in probes] == ["a", "b"]
    assert probes[0].image.shape == (341, 512, 3)  # longest side capped at 512
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image")
    with pytest.raises(AtlasgenError, match="not an image"):
        load_probes([fake])
    with pytest.raises(AtlasgenError, match="does not exist"):
        load_probes([tmp_path / "missing.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AtlasgenError, match="no image files"):
        load_probes([empty])
    assert [p.name for p in load_probes([])] == ["astronaut"]


def test_probes_whose_names_clean_to_one_file_are_refused(tmp_path):
    from PIL import Image

    for name in ("a b.png", "a-b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with pytest.raises(AtlasgenError, match="would share the file name 'a-b'"):
        load_probes([tmp_path])
