"""Activation maps and probe photos."""

import numpy as np
import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.synthesis import LayerEngine, activation_maps, default_probe, load_probes
from atlasgen.synthesis.maps import VIRIDIS_STOPS, colour_map, probe_means
from atlasgen.synthesis.probes import Probe


@pytest.fixture(scope="module")
def engine(hed_model):
    return LayerEngine(hed_model, "block2_conv1")


def small_probe(name, seed):
    rng = np.random.default_rng(seed)
    return Probe(name, f"digest-{seed}", rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8))


def test_default_probe_is_the_astronaut():
    probe = default_probe()
    assert probe.name == "astronaut" and probe.image.shape == (512, 512, 3) and len(probe.digest) == 64


def test_maps_have_the_photo_size_and_are_normalised_over_all_probes(engine):
    probes = [small_probe("a", 1), small_probe("b", 2)]
    maps = activation_maps(engine, [0, 3], probes)
    for f, per_probe in maps.items():
        assert [m.probe for m in per_probe] == ["a", "b"]
        assert all(m.heatmap.shape == (48, 64, 3) and m.overlay.shape == (48, 64, 3) for m in per_probe)
        scale = max(m.peak for m in per_probe)
        assert all(m.scale == pytest.approx(scale) for m in per_probe)
        if scale > 0:
            # The brightest pixel of the brightest probe reaches (nearly) the top colour.
            top = max(int(m.heatmap[..., 1].max()) for m in per_probe)
            assert top >= 200
        assert "maximum over all probe photos" in per_probe[0].normalisation
    means = probe_means(engine, [0, 3], probes)
    assert means.shape == (2, 2)
    assert means[0, 0] == pytest.approx(maps[0][0].mean, rel=1e-5)


def test_colour_map_ends():
    assert np.array_equal(colour_map(np.array([0.0, 1.0, 2.0, -1.0])), VIRIDIS_STOPS[[0, -1, -1, 0]].astype(np.uint8))


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
