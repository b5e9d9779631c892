"""The artifact kinds registry and the plan it drives: which artifacts a filter has, their recipes and keys, shards."""

from __future__ import annotations

import typing

import pytest

from atlasgen.build.kinds import ALL_KINDS, KINDS, METHODS, VIEWS, Scope, kinds_for
from atlasgen.build.artifacts import ALGORITHM_VERSION, ProbeRef
from atlasgen.build.config import parse_shard
from atlasgen.build.plan import in_shard, make_plan
from atlasgen.store import recipe_key
from atlasgen.params import SynthesisParams

MODEL, FINGERPRINT = "vgg16", "f" * 64
PARAMS = SynthesisParams(size=64, steps=64).recipe()
A, B, C = ProbeRef("a", "1" * 64), ProbeRef("b", "2" * 64), ProbeRef("c", "3" * 64)
LAYERS = [("block1_conv1", [0, 1])]

# Plans here have no dataset, and name no layer that reads the image (the kernel's: test_the_kernel_*).
# Nor a diversity set (test_the_diversity_set_*), which a plan has only when asked for.
UNIT_KINDS = [k.name for k in KINDS.values() if k.scope == "unit" and not k.needs_dataset and not k.reads_image
              and k.planned is None]
PROBE_KINDS = [k.name for k in KINDS.values() if k.scope == "unit-probe"]
SHARED_KINDS = [k.name for k in KINDS.values() if k.scope == "probe"]


def plan(params=PARAMS, probes=(A, B), layers=LAYERS, fingerprint=FINGERPRINT):
    return make_plan(MODEL, fingerprint, layers, params, list(probes))


def keys(p) -> dict[tuple, str]:
    return {(a.kind, a.layer, a.filter, a.probe): a.key for a in p.artifacts}


# --- the registry ---------------------------------------------------------------------------------


def test_the_kinds_the_atlas_is_made_of():
    assert set(UNIT_KINDS) == {"channel", "channel-negative", "neuron", "channel-map", "wiring"}
    assert [k.name for k in ALL_KINDS.values() if k.planned is not None] == ["diversity"]
    assert [k.name for k in KINDS.values() if k.needs_dataset] == ["dataset-top", "examples", "examples-negative"]
    assert [k.name for k in KINDS.values() if k.scope == "chunk"] == ["dataset-top"]
    assert set(PROBE_KINDS) == {"map", "map-view"}
    assert SHARED_KINDS == ["probe-photo"]


@pytest.mark.parametrize("kind", ALL_KINDS.values(), ids=list(ALL_KINDS))
def test_a_kind_is_consistent(kind):
    assert ALL_KINDS[kind.name] is kind
    assert kind.method is None or kind.method in METHODS
    assert kind.scope in typing.get_args(Scope)
    assert (kind.blobs or kind.facts) and len(set(kind.blobs)) == len(kind.blobs)  # wiring is facts alone
    assert len(set(kind.facts)) == len(kind.facts)
    for output in kind.outputs:
        assert output.blob in kind.blobs, (kind.name, output)
        assert not output.file.startswith("/") and ".." not in output.file.split("/")
        # Per-probe files must differ between probes, or one probe's file would overwrite another's.
        assert ("{probe}" in output.file) == (kind.scope != "unit"), (kind.name, output.file)
    assert len({o.file for o in kind.outputs}) == len(kind.outputs)
    assert set(kind.record.values()) <= set(kind.facts), kind.name
    if kind.metrics:
        assert {"objective", "mean_activation", "steps"} <= set(kind.facts), kind.name
    # A chunk's artifacts feed the examples and publish nothing themselves.
    assert kind.scope != "chunk" or not (kind.outputs or kind.views or kind.publish)


def test_record_fields_and_unit_files_are_unique_across_kinds():
    for scope in ("unit", "unit-probe", "probe"):
        fields = [o.field for k in ALL_KINDS.values() if k.scope == scope for o in k.outputs]
        fields += [f for k in ALL_KINDS.values() if k.scope == scope for f in k.record]
        fields += [f"metrics.{k.metrics}" for k in ALL_KINDS.values() if k.scope == scope and k.metrics]
        assert len(fields) == len(set(fields)), (scope, fields)
    unit_files = [o.file for k in ALL_KINDS.values() if k.scope != "probe" for o in k.outputs]
    assert len(unit_files) == len(set(unit_files)), unit_files


def test_the_views_table():
    from atlasgen.site.render import templates_dir

    views = [v for k in ALL_KINDS.values() for v in k.views]
    assert list(VIEWS) == [v.id for v in views]  # one view per id
    assert list(VIEWS) == ["channel", "negative", "diversity", "maco", "maco-transparency", "maco-negative", "channel-map", "neuron",
                           "rf-crop", "kernel", "examples", "examples-negative", "maps", "wiring"]
    published = {o.field for k in ALL_KINDS.values() for o in k.outputs}
    metrics = {k.metrics for k in ALL_KINDS.values()}
    for view in views:
        assert (templates_dir() / "views" / view.template).is_file(), view.template
        published_too = {"images.diversity"}  # published by its kind's own function (a list of paths)
        assert view.shows in ("examples", "maps", "wiring") or f"images.{view.image}" in published | published_too, view.id
        assert view.layer_template is None or (templates_dir() / "views" / view.layer_template).is_file(), view.id
        assert view.shows != "examples" or view.examples in ("dataset_examples", "dataset_examples_negative"), view.id
        assert view.metrics is None or view.metrics in metrics, view.id
        assert not view.column or view.hint, view.id  # a figure that asks for it can say how to get it
    assert [v.id for v in views if v.default_column] == ["channel", "neuron", "rf-crop"]
    # The filter's card, side by side: what excites it, what inhibits it.
    assert [v.id for v in views if v.side == "excites"] == ["channel", "diversity", "maco", "maco-transparency",
                                                            "channel-map", "examples"]
    assert [v.id for v in views if v.side == "inhibits"] == ["negative", "maco-negative", "examples-negative"]
    assert {v.id for v in views if v.column} >= {"negative", "maco-negative", "examples-negative", "diversity", "kernel"}


def test_kinds_are_listed_after_the_kinds_their_recipes_read():
    order = list(KINDS)
    assert order.index("map") < order.index("map-view")
    # Each negative kind right after its positive twin.
    order = list(ALL_KINDS)
    for positive, negative in (("channel", "channel-negative"), ("maco-channel", "maco-negative"),
                               ("examples", "examples-negative")):
        assert order.index(negative) == order.index(positive) + 1


def test_negative_kinds_name_the_minimised_objective_and_differ_from_their_twins():
    both = make_plan(MODEL, FINGERPRINT, LAYERS, PARAMS, [A], ("lucid", "maco"), {"maco": MACO})
    for f in (0, 1):
        unit = both.layers[0].unit(f)
        for positive, negative in (("channel", "channel-negative"), ("maco-channel", "maco-negative")):
            mine, twin = unit[(negative, None)].recipe, unit[(positive, None)].recipe
            assert mine["objective"] == "channel mean (pre-ReLU), minimised"
            assert twin["objective"] == "channel mean (pre-ReLU)"
            # Everything else the same: the same synthesis on the negated objective.
            assert {k: v for k, v in mine.items() if k not in ("kind", "objective")} == \
                   {k: v for k, v in twin.items() if k not in ("kind", "objective")}
            assert unit[(negative, None)].key != unit[(positive, None)].key
    assert ALL_KINDS["channel-negative"].metrics == "channel_negative"
    assert ALL_KINDS["maco-negative"].metrics == "maco_negative"
    assert [o.field for o in ALL_KINDS["channel-negative"].outputs] == ["images.channel_negative"]
    assert [o.field for o in ALL_KINDS["maco-negative"].outputs] == ["images.maco_negative"]


def test_the_chunk_kind_declares_its_bottom_blob_and_the_build_requires_it():
    from atlasgen.build.kinds import required_blobs

    assert ALL_KINDS["dataset-top"].blobs == ("top", "bottom")
    assert required_blobs(ALL_KINDS["dataset-top"]) == ("top", "bottom")
    assert required_blobs(ALL_KINDS["examples"]) == ()  # as many crops and photos as the entry says
    assert required_blobs(ALL_KINDS["maco-channel"]) == ("image", "transparency")


# --- the plan -------------------------------------------------------------------------------------


def test_every_filter_gets_one_artifact_per_kind_and_probe():
    p = plan()
    assert [layer.name for layer in p.layers] == ["block1_conv1"] and p.layers[0].filters == [0, 1]
    expected_unit = {(k, None) for k in UNIT_KINDS} | {(k, probe) for k in PROBE_KINDS for probe in ("a", "b")}
    assert len(expected_unit) == len(UNIT_KINDS) + 2 * len(PROBE_KINDS)
    for f in (0, 1):
        mine = [a for a in p.layers[0].artifacts if a.filter == f]
        assert sorted((a.kind, a.probe or "") for a in mine) == sorted((k, pr or "") for k, pr in expected_unit)
        assert all(a.layer == "block1_conv1" for a in mine)
        assert set(p.layers[0].unit(f)) == expected_unit
    assert len(p.layers[0].artifacts) == 2 * len(expected_unit)
    assert [(a.kind, a.probe, a.layer, a.filter) for a in p.shared] == [
        ("probe-photo", "a", None, None), ("probe-photo", "b", None, None)]
    assert len(p.artifacts) == 2 * len(expected_unit) + 2


def test_keys_are_unique_and_hash_the_recipe():
    p = plan(layers=[("block1_conv1", [0, 1]), ("block2_conv1", [0])])
    assert len({a.key for a in p.artifacts}) == len(p.artifacts) == 2 + 3 * (len(UNIT_KINDS) + 2 * len(PROBE_KINDS))
    for a in p.artifacts:
        assert a.key == recipe_key(a.recipe)
        assert a.recipe["kind"] == a.kind
        assert a.recipe["algorithm"] == ALGORITHM_VERSION
        assert a.recipe["model"] == MODEL and a.recipe["weights"] == FINGERPRINT
        if a.layer is not None:
            assert (a.recipe["layer"], a.recipe["filter"]) == (a.layer, a.filter)


def test_only_synthesis_recipes_hold_the_parameters():
    p = plan()
    for a in p.artifacts:
        if a.kind in ("channel", "channel-negative", "neuron"):
            assert a.recipe["params"] == PARAMS
        else:
            assert "params" not in a.recipe and not set(PARAMS) & set(a.recipe)
    base = {"algorithm", "model", "weights", "kind"}
    fields = {a.kind: set(a.recipe) for a in p.artifacts}
    assert fields["probe-photo"] == base | {"probe"}
    assert fields["map"] == base | {"layer", "filter", "probe"}
    assert fields["map-view"] == base | {"layer", "filter", "probe", "map", "scale_from"}


def test_more_steps_change_the_synthesis_keys_only():
    base = keys(plan())
    longer = keys(plan(params=SynthesisParams(size=64, steps=512).recipe()))
    assert base.keys() == longer.keys()
    for what, key in base.items():
        # channel-map names its whole-filter image, so it follows that image's recipe.
        assert (longer[what] != key) == (what[0] in ("channel", "channel-negative", "neuron", "channel-map")), what


def test_other_weights_change_every_key():
    base = keys(plan())
    other = keys(plan(fingerprint="e" * 64))
    assert not set(base.values()) & set(other.values())


def test_a_map_view_names_its_map_and_every_probes_map():
    p = plan()
    for f in (0, 1):
        unit = p.layers[0].unit(f)
        for probe in ("a", "b"):
            view = unit[("map-view", probe)].recipe
            assert view["map"] == unit[("map", probe)].key
            assert view["scale_from"] == [unit[("map", "a")].key, unit[("map", "b")].key]
            assert view["probe"] == {"a": A, "b": B}[probe].digest
    # The views of different filters name different maps.
    assert p.layers[0].unit(0)[("map-view", "a")].recipe["map"] != p.layers[0].unit(1)[("map-view", "a")].recipe["map"]


def test_a_new_probe_recolours_the_views_and_nothing_else():
    base = keys(plan())
    more = keys(plan(probes=(A, B, C)))
    for what, key in base.items():
        assert (more[what] != key) == (what[0] == "map-view"), what
    added = set(more) - set(base)
    assert added == {("probe-photo", None, None, "c")} | {
        (k, "block1_conv1", f, "c") for k in PROBE_KINDS for f in (0, 1)}


def test_a_probe_is_known_by_its_bytes_not_only_its_name():
    base = keys(plan())
    edited = keys(plan(probes=(A, ProbeRef("b", "4" * 64))))
    for what, key in base.items():
        changes = what[0] == "map-view" or what[3] == "b"
        assert (edited[what] != key) == changes, what


# --- shards ---------------------------------------------------------------------------------------


def test_shards_partition_the_filters_and_share_the_probe_photos():
    p = plan(layers=[("block1_conv1", list(range(24))), ("block2_conv1", list(range(24)))])
    for n in (1, 2, 3, 5):
        shards = [(k, n) for k in range(1, n + 1)]
        for a in p.shared:
            assert all(in_shard(a, s) for s in shards)
        by_filter: dict[tuple, set[int]] = {}
        for layer in p.layers:
            for a in layer.artifacts:
                homes = [k for k, _ in shards if in_shard(a, (k, n))]
                assert len(homes) == 1, (a.kind, a.layer, a.filter, a.probe, n)
                by_filter.setdefault((a.layer, a.filter), set()).update(homes)
        assert all(len(homes) == 1 for homes in by_filter.values())
        # The filters spread over the shards, not all into one.
        used = [sum(1 for homes in by_filter.values() if k in homes) for k, _ in shards]
        assert min(used) > 0 and sum(used) == 48, (n, used)


def test_the_shard_of_a_filter_does_not_depend_on_the_probes_or_parameters():
    one = {(a.layer, a.filter): in_shard(a, parse_shard("2/3")) for a in plan().layers[0].artifacts}
    other = {(a.layer, a.filter): in_shard(a, parse_shard("2/3"))
             for a in plan(params={"steps": 1}, probes=(C,)).layers[0].artifacts}
    assert one == other


def test_a_map_on_the_whole_filter_image_names_that_image():
    p = plan()
    for f in (0, 1):
        unit = p.layers[0].unit(f)
        assert unit[("channel-map", None)].recipe["image"] == unit[("channel", None)].key


# --- methods --------------------------------------------------------------------------------------

MACO = {"size": 64, "steps": 64, "seed": 0, "learning_rate": 0.3, "crops": 6, "spectrum": "9" * 64}


def method_plan(methods, maco=MACO):
    return make_plan(MODEL, FINGERPRINT, LAYERS, PARAMS, [A, B], methods, {"maco": maco} if "maco" in methods else None)


def test_kinds_follow_the_methods():
    assert KINDS == kinds_for(("lucid",))
    assert set(kinds_for(("maco",))) == {"probe-photo", "dataset-top", "neuron", "map", "map-view", "maco-channel",
                                         "maco-negative", "examples", "examples-negative", "kernel", "wiring"}
    assert list(kinds_for(("lucid", "maco"))) == list(ALL_KINDS)
    with pytest.raises(ValueError):
        kinds_for(("nope",))


def test_maco_kinds_are_planned_only_with_the_maco_method():
    assert {a.kind for a in method_plan(("lucid",)).artifacts} == \
        set(KINDS) - {"examples", "examples-negative", "dataset-top", "kernel", "diversity"}  # no dataset, no layer
    # reading the image, no diversity set asked for
    assert not {"maco-channel", "maco-negative"} & {a.kind for a in method_plan(("lucid",)).artifacts}
    only = method_plan(("maco",))
    assert {a.kind for a in only.artifacts} == {"probe-photo", "neuron", "map", "map-view", "maco-channel", "maco-negative",
                                                "wiring"}
    assert only.methods == ("maco",)
    both = method_plan(("lucid", "maco"))
    for f in (0, 1):
        recipe = both.layers[0].unit(f)[("maco-channel", None)].recipe
        assert recipe["method"] == "maco" and recipe["params"] == MACO
        assert (recipe["layer"], recipe["filter"]) == ("block1_conv1", f)


def test_adding_maco_leaves_every_other_key_alone():
    lucid = keys(method_plan(("lucid",)))
    both = keys(method_plan(("lucid", "maco")))
    maco_kinds = ("maco-channel", "maco-negative")
    assert {w: k for w, k in both.items() if w[0] not in maco_kinds} == lucid
    assert lucid == keys(plan())  # the default plan is the lucid plan
    # The maps do not depend on the method either.
    maco_only = keys(method_plan(("maco",)))
    assert {w: k for w, k in maco_only.items() if w[0] not in maco_kinds} == {
        w: k for w, k in lucid.items() if w[0] in ("probe-photo", "neuron", "map", "map-view", "wiring")}
    for a in method_plan(("lucid", "maco")).artifacts:
        if a.kind not in maco_kinds:
            assert "method" not in a.recipe


def test_maco_parameters_change_only_the_maco_keys():
    base = keys(method_plan(("lucid", "maco")))
    other = keys(method_plan(("lucid", "maco"), {**MACO, "crops": 4}))
    assert {w for w in base if base[w] != other[w]} == {(kind, "block1_conv1", f, None) for f in (0, 1)
                                                       for kind in ("maco-channel", "maco-negative")}


# --- first-layer kernels --------------------------------------------------------------------------


def kernel_plan(params=PARAMS, fingerprint=FINGERPRINT, readers=("block1_conv1",), methods=("lucid",)):
    return make_plan(MODEL, fingerprint, [("block1_conv1", [0, 1]), ("block2_conv1", [0])], params, [A],
                     methods, {"maco": MACO} if "maco" in methods else None, image_readers=readers)


def test_the_kernel_is_planned_only_for_the_layers_that_read_the_image():
    assert ALL_KINDS["kernel"].reads_image and [k.name for k in ALL_KINDS.values() if k.reads_image] == ["kernel"]
    assert ALL_KINDS["kernel"].method is None  # with every method
    for methods in (("lucid",), ("maco",), ("lucid", "maco")):
        kernels = [(a.layer, a.filter) for a in kernel_plan(methods=methods).artifacts if a.kind == "kernel"]
        assert kernels == [("block1_conv1", 0), ("block1_conv1", 1)]
    assert not [a for a in kernel_plan(readers=()).artifacts if a.kind == "kernel"]
    # Every other artifact is the same with or without the kernels: a new kind adds, it moves nothing.
    assert {w: k for w, k in keys(kernel_plan()).items() if w[0] != "kernel"} == keys(kernel_plan(readers=()))


def test_the_kernels_recipe_names_the_layer_filter_and_weights_only():
    p = kernel_plan()
    recipes = [a.recipe for a in p.artifacts if a.kind == "kernel"]
    assert [set(r) for r in recipes] == [{"algorithm", "model", "weights", "kind", "layer", "filter", "display"}] * 2
    assert recipes[0]["display"] == 96 and recipes[0]["weights"] == FINGERPRINT
    # No synthesis setting, method or probe recomputes it; other weights do.
    kernel = {w: k for w, k in keys(p).items() if w[0] == "kernel"}
    for other in (kernel_plan(params=SynthesisParams(size=128, steps=512, seed=3, precision="mixed").recipe()),
                  kernel_plan(methods=("lucid", "maco"))):
        assert {w: k for w, k in keys(other).items() if w[0] == "kernel"} == kernel
    assert not set(kernel.values()) & set(keys(kernel_plan(fingerprint="e" * 64)).values())


# --- wiring ---------------------------------------------------------------------------------------


def test_the_wiring_recipe_is_the_weights_the_layer_the_filter_and_k_alone():
    """Wiring reads weights only: no synthesis parameter, probe or method moves its key; k does."""
    def wiring_keys(p):
        return {w: k for w, k in keys(p).items() if w[0] == "wiring"}

    base = plan()
    assert len(wiring_keys(base)) == 2  # one per filter
    for a in base.artifacts:
        if a.kind == "wiring":
            assert set(a.recipe) == {"algorithm", "model", "weights", "kind", "layer", "filter", "k", "weight"}
            assert a.recipe["k"] == 6 and a.recipe["weight"].startswith("sum of the kernel slice")
    assert wiring_keys(plan(SynthesisParams(size=32, steps=7, seed=3).recipe())) == wiring_keys(base)
    assert wiring_keys(plan(probes=(C,))) == wiring_keys(base)
    assert wiring_keys(method_plan(("maco",))) == wiring_keys(method_plan(("lucid", "maco"))) == wiring_keys(base)
    other_k = make_plan(MODEL, FINGERPRINT, LAYERS, PARAMS, [A, B], wiring_k=3)
    assert not set(wiring_keys(other_k).values()) & set(wiring_keys(base).values())
    assert {w: k for w, k in keys(other_k).items() if w[0] != "wiring"} == \
        {w: k for w, k in keys(base).items() if w[0] != "wiring"}  # k moves nothing else
    assert not set(wiring_keys(plan(fingerprint="e" * 64)).values()) & set(wiring_keys(base).values())


def test_wiring_is_a_section_of_the_filter_page_and_a_tab_of_its_own_cells():
    kind = ALL_KINDS["wiring"]
    assert kind.scope == "unit" and kind.blobs == () and kind.facts == ("wiring",) and kind.record == {"wiring": "wiring"}
    assert kind.method is None and not kind.needs_dataset and not kind.reads_image  # every layer, every method
    (view,) = kind.views
    assert (view.shows, view.place, view.side, view.column, view.tab) == ("wiring", "section", None, False, True)
    assert view.layer_template == "wiring-layer.html"


# --- diversity sets -------------------------------------------------------------------------------


def diversity_plan(faces, params=PARAMS, methods=("lucid",)):
    return make_plan(MODEL, FINGERPRINT, LAYERS, params, [A], methods, {"maco": MACO} if "maco" in methods else None,
                     diversity=faces)


def test_the_diversity_set_is_planned_only_when_asked_for():
    assert not [a for a in diversity_plan(0).artifacts if a.kind == "diversity"]
    sets = [a for a in diversity_plan(3).artifacts if a.kind == "diversity"]
    assert [(a.layer, a.filter) for a in sets] == [("block1_conv1", 0), ("block1_conv1", 1)]
    assert all(a.recipe["faces"] == 3 and a.recipe["weight"] == 1.0 and a.recipe["params"] == PARAMS for a in sets)
    assert not [a for a in diversity_plan(3, methods=("maco",)).artifacts if a.kind == "diversity"]  # Lucid's method
    # The set adds; it moves no other key.
    assert {w: k for w, k in keys(diversity_plan(3)).items() if w[0] != "diversity"} == keys(diversity_plan(0))


def test_the_diversity_sets_key_follows_its_size_and_the_synthesis():
    def set_keys(p):
        return {w: k for w, k in keys(p).items() if w[0] == "diversity"}

    base = set_keys(diversity_plan(2))
    assert not set(set_keys(diversity_plan(4)).values()) & set(base.values())
    assert not set(set_keys(diversity_plan(2, SynthesisParams(size=64, steps=65).recipe())).values()) & set(base.values())
    assert set_keys(diversity_plan(2)) == base


def test_the_diversity_view_shows_a_list_of_images():
    kind = ALL_KINDS["diversity"]
    assert kind.blobs == ("image{rank}",) and kind.publish is not None and kind.method == "lucid"
    (view,) = kind.views
    assert (view.shows, view.image, view.side, view.tab, view.column) == ("faces", "diversity", "excites", False, True)
