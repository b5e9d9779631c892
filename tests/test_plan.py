"""The build plan: presets, filter and shard specs, and every kind's artifacts with their keys."""

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.build.artifacts import ALGORITHM_VERSION, Artifact, ProbeRef
from atlasgen.build.config import BuildConfig, parse_shard
from atlasgen.build.plan import in_shard, make_plan, parse_filters
from atlasgen.model.weights import VGG16_LAYERS

PARAMS = {"size": 64, "steps": 10}
PROBES = [ProbeRef("astronaut", "d1"), ProbeRef("cat", "d2")]


def test_parse_filters_ranges_and_lists():
    assert parse_filters("0-3,12, 7-8,2", 64, "l") == [0, 1, 2, 3, 7, 8, 12]
    assert parse_filters(None, 4, "l") == [0, 1, 2, 3]


@pytest.mark.parametrize("spec,message", [("5-2", "backwards"), ("0-64", "out of range"), ("a", "not an index"), ("1,,2", "not an index")])
def test_parse_filters_errors(spec, message):
    with pytest.raises(AtlasgenError, match=message):
        parse_filters(spec, 64, "block1_conv1")


def test_parse_shard():
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "x", "1-2"):
        with pytest.raises(AtlasgenError, match="K/N"):
            parse_shard(bad)


def test_shards_partition_the_filters():
    filters = [Artifact("channel", layer, f, {}) for layer in ("block1_conv1", "block2_conv1") for f in range(64)]
    counts = [sum(in_shard(a, (k, 3)) for a in filters) for k in (1, 2, 3)]
    assert sum(counts) == len(filters) and min(counts) > 20
    for a in filters:
        assert sum(in_shard(a, (k, 3)) for k in (1, 2, 3)) == 1


def keys_by_kind(plan):
    return {(a.kind, a.layer, a.filter, a.probe): a.key for a in plan.artifacts}


def test_plan_lists_every_artifact_with_distinct_keys():
    plan = make_plan("vgg16", "fp", [("a", [0, 1]), ("b", [3])], PARAMS, PROBES)
    # 3 filters x 9 (channel, channel-negative, neuron, channel-map, wiring, and map + map-view of each of the 2
    # probes; no dataset, so no examples), and the 2 probe photos
    assert len(plan.artifacts) == 29
    assert len({a.key for a in plan.artifacts}) == len(plan.artifacts)
    assert {a.kind for a in plan.artifacts} == {"probe-photo", "channel", "channel-negative", "channel-map", "neuron",
                                                "map", "map-view", "wiring"}
    assert all(a.recipe["algorithm"] == ALGORITHM_VERSION for a in plan.artifacts)


def test_more_steps_change_only_synthesis_keys_and_a_new_probe_only_adds_maps():
    base = keys_by_kind(make_plan("vgg16", "fp", [("a", [0])], PARAMS, PROBES[:1]))
    longer = keys_by_kind(make_plan("vgg16", "fp", [("a", [0])], {**PARAMS, "steps": 20}, PROBES[:1]))
    for what, key in base.items():
        if what[0] in ("channel", "neuron", "map", "map-view", "probe-photo"):
            assert (longer[what] == key) == (what[0] not in ("channel", "neuron"))
    more = keys_by_kind(make_plan("vgg16", "fp", [("a", [0])], PARAMS, PROBES))
    # A new probe: new photo, maps and views; the old probe's views re-colour (a common scale).
    assert {w for w, k in base.items() if more[w] != k} == {("map-view", "a", 0, "astronaut")}
    other_weights = keys_by_kind(make_plan("vgg16", "fp2", [("a", [0])], PARAMS, PROBES[:1]))
    assert not set(base.values()) & set(other_weights.values())


def test_presets_fill_only_what_is_not_given():
    quick = BuildConfig(preset="quick", steps=5).resolved()
    assert quick.weights == "hed-bsds500" and quick.steps == 5 and quick.size == 64
    assert quick.layers == tuple(name for name in VGG16_LAYERS if name.endswith("_conv1")) and len(quick.layers) == 5
    full = BuildConfig().resolved()
    assert full.weights == "imagenet" and full.layers is None and full.filters is None and full.size == 224
    assert (quick.diversity, full.diversity) == (2, 2)  # 4 would more than double the full atlas (projection.py)
    assert BuildConfig(preset="quick", diversity=0).resolved().diversity == 0  # 0 turns it off, as given
    assert BuildConfig(diversity=5).resolved().diversity == 5


@pytest.mark.parametrize("settings,fragment", [
    (dict(diversity=1), "--diversity 1 is one image with no other to differ from; give 2 or more, or 0"),
    (dict(diversity=-1), "--diversity -1 is out of range; give a whole number from 0 to 16"),
    (dict(diversity=17), "--diversity 17 is out of range"),
    (dict(diversity=True), "--diversity True is out of range"),
    (dict(diversity=3, methods=("maco",)), "--diversity 3 uses Lucid's method; add lucid to --method"),
])
def test_a_bad_diversity_is_refused_in_one_line(settings, fragment):
    with pytest.raises(AtlasgenError) as error:
        BuildConfig(preset="quick", **settings).resolved()
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_the_presets_diversity_quietly_gives_way_to_maco_alone():
    assert BuildConfig(preset="quick", methods=("maco",)).resolved().diversity == 0  # the set is Lucid's
    assert BuildConfig(preset="quick", methods=("maco",)).resolved().resolved().diversity == 0


# --- precision ---------------------------------------------------------------------------------


@pytest.mark.parametrize("device,precision", [("GPU:0", "mixed"), ("CPU", "float32")])
def test_an_unset_precision_is_mixed_on_a_gpu_and_float32_on_the_cpu(monkeypatch, device, precision):
    from atlasgen.synthesis import engine

    monkeypatch.setattr(engine, "synthesis_device", lambda: device)
    assert BuildConfig(preset="quick").resolved().precision == precision
    # A given precision is kept wherever it runs, and resolving twice changes nothing.
    for given in ("float32", "mixed"):
        resolved = BuildConfig(preset="quick", precision=given).resolved()
        assert resolved.precision == given and resolved.resolved().precision == given


@pytest.mark.parametrize("precision,fragment", [("", "--precision is empty"), (" ", "--precision is empty"),
                                                ("half", "--precision 'half' is not a precision"),
                                                ("MIXED", "--precision 'MIXED' is not a precision")])
def test_a_bad_precision_is_refused_in_one_line(monkeypatch, precision, fragment):
    from atlasgen.synthesis import engine

    monkeypatch.setattr(engine, "synthesis_device", lambda: "GPU:0")  # never the auto value instead
    with pytest.raises(AtlasgenError) as raised:
        BuildConfig(preset="quick", precision=precision).resolved()
    message = str(raised.value)
    assert fragment in message and "float32, mixed" in message and "\n" not in message


def test_the_precision_changes_only_the_synthesis_keys():
    from atlasgen.build.kinds import kinds_for
    from atlasgen.synthesis import SynthesisParams
    from atlasgen.synthesis.maco import MacoParams

    def keys(precision):
        params = SynthesisParams(size=64, steps=10, precision=precision)
        maco = {"maco": MacoParams.from_synthesis(params).recipe()}
        return keys_by_kind(make_plan("vgg16", "fp", [("a", [0])], params.recipe(), PROBES, ("lucid", "maco"), maco,
                                      diversity=2))

    exact, mixed = keys("float32"), keys("mixed")
    assert exact.keys() == mixed.keys() and {w[0] for w in exact} == \
        set(kinds_for(("lucid", "maco"))) - {"examples", "examples-negative", "dataset-top", "kernel"}
    changed = {what[0] for what in exact if exact[what] != mixed[what]}
    # The images, and the map drawn on the whole-filter image (it names that image); not the photos' maps.
    assert changed == {"channel", "channel-negative", "diversity", "neuron", "maco-channel", "maco-negative",
                       "channel-map"}


def test_a_dataset_adds_its_chunks_per_layer_and_every_filters_examples():
    from atlasgen.build.artifacts import DatasetRef
    from atlasgen.build.plan import in_shard

    chunks = [["1" * 64, "2" * 64], ["3" * 64]]
    plan = make_plan("vgg16", "fp", [("a", [0, 1]), ("b", [3])], PARAMS, PROBES, dataset=DatasetRef(chunks, 224, 9))
    assert [(a.layer, a.recipe["images"]) for a in plan.chunks] == [
        ("a", chunks[0]), ("b", chunks[0]), ("a", chunks[1]), ("b", chunks[1])]
    assert all(a.filter is None and a.recipe["short_side"] == 224 and a.recipe["examples"] == 9 for a in plan.chunks)
    assert sum(a.kind == "examples" for a in plan.artifacts) == sum(a.kind == "examples-negative" for a in plan.artifacts) == 3
    # One forward pass makes every layer's artifact of a chunk: they go to one shard.
    for n in (2, 3, 5):
        for chunk in {a.chunk for a in plan.chunks}:
            homes = {k for k in range(1, n + 1) for a in plan.chunks if a.chunk == chunk and in_shard(a, (k, n))}
            assert len(homes) == 1
    bigger = make_plan("vgg16", "fp", [("a", [0, 1]), ("b", [3])], PARAMS, PROBES,
                       dataset=DatasetRef(chunks + [["4" * 64]], 224, 9))
    before, after = keys_by_kind(plan), keys_by_kind(bigger)
    changed = {what[0] for what in before if before[what] != after[what] and what[0] != "dataset-top"}
    assert changed == {"examples", "examples-negative"}  # a new chunk: new examples, nothing else recomputed
    assert {a.key for a in plan.chunks} < {a.key for a in bigger.chunks}
    resized = make_plan("vgg16", "fp", [("a", [0, 1])], PARAMS, PROBES, dataset=DatasetRef(chunks, 160, 9))
    assert not {a.key for a in resized.chunks} & {a.key for a in plan.chunks}


def test_recipe_keys_are_those_of_earlier_releases():
    """Every kind's key for a fixed plan, pinned: a reshaped plan or registry must find the store's
    existing artifacts (issue 18: a rebuild on an older store computes nothing). Pinned again at
    algorithm 4 (issue 20: learned contrast and the contrast search changed every image on purpose)
    at algorithm 5 (issue 21: a layer affine in the pixels gets its exact extreme), at algorithm 6
    (issue 20: the second half of a whole-filter run scores the bare image; contrast learning 0.4) and
    at algorithm 7 (issue 20: a centre neuron whose field reaches the image's border has no pad and settles)."""
    import hashlib
    import json

    from atlasgen.build.artifacts import DatasetRef, ProbeRef
    from atlasgen.params import SynthesisParams

    maco = {"size": 64, "steps": 64, "seed": 0, "spectrum": "0" * 64}
    plan = make_plan("vgg16", "f" * 64, [("block1_conv1", [0]), ("block2_conv1", [3])],
                     SynthesisParams(size=64, steps=64).recipe(), [ProbeRef("a", "1" * 64), ProbeRef("b", "2" * 64)],
                     ("lucid", "maco"), {"maco": maco}, DatasetRef([["3" * 64, "4" * 64], ["5" * 64]], 224, 9))
    pinned = {"probe-photo", "dataset-top", "channel", "maco-channel", "channel-map", "neuron", "examples", "map",
              "map-view"}  # the kinds of that release: a new kind adds artifacts, it must not move these
    rows = sorted((a.kind, a.layer or "", -1 if a.filter is None else a.filter, a.probe or "",
                   a.chunk[:8] if a.chunk else "", a.key) for a in plan.artifacts if a.kind in pinned)
    assert len(rows) == 24
    assert [r[5] for r in rows if r[0] == "channel"] == [
        "b532c21deb077a9040a28893e296c172e9a1df5461d489782319868a180a0fe8",
        "bcc7b7e86ff097685419cf424c80d7b8a34c00ab0cf6118d0fb0d2da88e83509"]
    assert hashlib.sha256(json.dumps(rows).encode()).hexdigest() == \
        "549e85afa06709406738fdff958526f85d71aff2eb294573c21532fa7ef6f711"
