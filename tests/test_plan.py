"""The build plan: filter and shard specs, recipes and their keys."""

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.plan import CHANNEL, MAP, NEURON, BuildConfig, in_shard, make_plan, parse_filters, parse_shard

PARAMS = {"size": 64, "steps": 10}


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
    filters = [("block1_conv1", f) for f in range(64)] + [("block2_conv1", f) for f in range(64)]
    counts = [sum(in_shard(layer, f, (k, 3)) for layer, f in filters) for k in (1, 2, 3)]
    assert sum(counts) == len(filters) and min(counts) > 20
    for layer, f in filters:
        assert sum(in_shard(layer, f, (k, 3)) for k in (1, 2, 3)) == 1


def keys_by_kind(plan):
    return {(a.kind, a.layer, a.filter, a.probe): a.key for a in plan.artifacts}


def test_plan_lists_every_artifact_with_distinct_keys():
    plan = make_plan("vgg16", "fp", [("a", [0, 1]), ("b", [3])], PARAMS, [("astronaut", "d1"), ("cat", "d2")])
    assert len(plan.artifacts) == 3 * (2 + 2)
    assert len({a.key for a in plan.artifacts}) == len(plan.artifacts)
    assert {a.kind for a in plan.artifacts} == {CHANNEL, NEURON, MAP}


def test_more_steps_change_only_synthesis_keys_and_a_new_probe_only_adds_maps():
    base = keys_by_kind(make_plan("vgg16", "fp", [("a", [0])], PARAMS, [("astronaut", "d1")]))
    longer = keys_by_kind(make_plan("vgg16", "fp", [("a", [0])], {**PARAMS, "steps": 20}, [("astronaut", "d1")]))
    for what, key in base.items():
        assert (longer[what] == key) == (what[0] == MAP)
    more = keys_by_kind(make_plan("vgg16", "fp", [("a", [0])], PARAMS, [("astronaut", "d1"), ("cat", "d2")]))
    assert set(base.items()) < set(more.items())
    other_weights = keys_by_kind(make_plan("vgg16", "fp2", [("a", [0])], PARAMS, [("astronaut", "d1")]))
    assert not set(base.values()) & set(other_weights.values())


def test_presets_fill_only_what_is_not_given():
    quick = BuildConfig(preset="quick", steps=5).resolved()
    assert quick.weights == "hed-bsds500" and quick.steps == 5 and quick.size == 64 and len(quick.layers) == 5
    full = BuildConfig().resolved()
    assert full.weights == "imagenet" and full.layers is None and full.filters is None and full.size == 224
