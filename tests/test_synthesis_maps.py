"""Activation maps: post-ReLU maps on photos, normalised over all probes, as heatmaps and overlays."""

import numpy as np
import pytest

from atlasgen.synthesis import LayerEngine, activation_maps
from atlasgen.codec import VIRIDIS_STOPS, colour_map
from atlasgen.synthesis.maps import probe_means
from atlasgen.synthesis.probes import Probe


@pytest.fixture(scope="module")
def engine(hed_model):
    return LayerEngine(hed_model, "block2_conv1")


def small_probe(name, seed):
    rng = np.random.default_rng(seed)
    return Probe(name, f"digest-{seed}", rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8))


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
