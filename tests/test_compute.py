"""How kinds are computed, without a model where none is needed: probe photos and map views."""

import numpy as np
import pytest

from atlasgen import codec
from atlasgen.compute import Job, map_views, probe_photos
from atlasgen.errors import AtlasgenError
from atlasgen.plan import Artifact
from atlasgen.store import Store
from atlasgen.synthesis.maps import colour_map
from atlasgen.synthesis.probes import Probe


def no_engine():
    raise AssertionError("this kind needs no model")


def job(store, kind, artifacts, probes):
    return Job(kind, artifacts, None, probes, store, None, no_engine)


def test_probe_photos_are_their_webp_and_size(tmp_path):
    photo = np.full((30, 40, 3), 90, np.uint8)
    art = Artifact("probe-photo", None, None, {}, "k", "cat")
    ((artifact, blobs, facts),) = list(probe_photos(job(Store(tmp_path), "probe-photo", [art], {"cat": Probe("cat", "d", photo)})))
    assert artifact is art and facts == {"width": 40, "height": 30}
    assert codec.decode(blobs["image"]).shape == (30, 40, 3)


def test_map_views_colour_each_map_at_the_filters_peak_over_every_probe(tmp_path):
    store = Store(tmp_path)
    photos = {n: Probe(n, "d" + n, np.zeros((32, 32, 3), np.uint8)) for n in "ab"}
    # Stored relative to its own peak: a's peak is 2, b's is 8, so the common scale is 8.
    raw = np.zeros((32, 32), np.float32)
    raw[8:24, 8:24] = 1.0
    keys = {}
    for name, peak in (("a", 2.0), ("b", 8.0)):
        keys[name] = f"{ord(name):064x}"
        store.put(keys[name], {"raw": codec.grey_png(raw)}, {"peak": peak, "mean": peak / 16})
    views = [Artifact("map-view", "l", 0, {"map": keys[n], "scale_from": [keys["a"], keys["b"]]}, f"v{n}", n) for n in "ab"]
    made = {a.probe: (blobs, facts) for a, blobs, facts in map_views(job(store, "map-view", views, photos))}
    assert made["a"][1] == made["b"][1] == {"scale": 8.0}
    heat_a, heat_b = (codec.decode(made[n][0]["heatmap"]).astype(int) for n in "ab")
    # b's hot square is drawn at 1 (the top colour), a's at 2/8 of it; both are 0 elsewhere.
    assert np.abs(heat_b[16, 16] - colour_map(np.array(1.0))).max() <= 12
    assert np.abs(heat_a[16, 16] - colour_map(np.array(0.25))).max() <= 12
    assert np.abs(heat_a[2, 2] - colour_map(np.array(0.0))).max() <= 12


def test_a_map_that_vanished_is_a_one_line_error(tmp_path):
    view = Artifact("map-view", "l", 0, {"map": "f" * 64, "scale_from": ["f" * 64]}, "v", "a")
    with pytest.raises(AtlasgenError, match="vanished from the store"):
        list(map_views(job(Store(tmp_path), "map-view", [view], {})))
