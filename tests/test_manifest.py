"""atlasgen.manifest: atlas.json as typed records, checked field by field on the way in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.manifest import (
    MANIFEST, SCHEMA_VERSION, Generator, LayerRecord, Manifest, ManifestError, MapRecord, Metrics, ProbeRecord,
    SynthesisMetrics, UnitRecord, Weights, activation_vs_best_probe, derive_metrics, from_json, image_metrics,
    load_manifest,
)
from atlasgen.params import SynthesisParams

CHANNEL_FACTS = {"objective": 3.5, "mean_activation": 2.0, "steps": 64}
NEURON_FACTS = {"objective": 1.25, "mean_activation": 0.5, "steps": 64, "changed_pixels_outside_box": 0}


def unit_metrics(channel: dict, neuron: dict, means: list[float]) -> Metrics:
    """The metrics the export derives for a unit with these images' facts and probe means (peaks = means)."""
    document = {"metrics": {"channel": image_metrics(channel), "neuron": image_metrics(neuron)},
                "activation_maps": [{"mean": m, "peak": m} for m in means]}
    return from_json(Metrics, derive_metrics(document)["metrics"])


def make_manifest() -> Manifest:
    maps = [
        MapRecord("astronaut", {"heatmap": "vgg16/block1_conv1/0/maps/astronaut.webp",
                                "overlay": "vgg16/block1_conv1/0/maps/astronaut-overlay.webp"}, 8.0, 4.0, 8.0),
        MapRecord("cat", {"heatmap": "vgg16/block1_conv1/0/maps/cat.webp",
                          "overlay": "vgg16/block1_conv1/0/maps/cat-overlay.webp"}, 2.0, 0.25, 8.0),
    ]
    unit = UnitRecord(
        index=0, page="vgg16/block1_conv1/0/",
        images={"channel": "vgg16/block1_conv1/0/channel.webp", "neuron": "vgg16/block1_conv1/0/neuron.webp",
                "rf_crop": "vgg16/block1_conv1/0/rf-crop.webp"},
        rf_box=[31, 31, 34, 34], activation_maps=maps,
        metrics=unit_metrics(CHANNEL_FACTS, NEURON_FACTS, [m.mean for m in maps]),
    )
    layers = [
        LayerRecord("block1_conv1", "vgg16/block1_conv1/", 64, 3, 1, 1, 224, [112, 112], [unit]),
        LayerRecord("block2_conv1", "vgg16/block2_conv1/", 128, [10, 10], [2, 2], [4, 4], [112, 112], [56, 56], []),
    ]
    return Manifest(
        schema=SCHEMA_VERSION,
        generator=Generator("atlasgen", "0.1.0", 2),
        model="vgg16",
        model_filters=4224,
        weights=Weights("imagenet", "imagenet", "ImageNet weights (Keras)", "f" * 64),
        input_convention="caffe BGR, mean-subtracted",
        preset="quick",
        parameters=SynthesisParams(size=64, steps=64),
        probes=[ProbeRecord("astronaut", "1" * 64, "probes/astronaut.webp", 64, 48),
                ProbeRecord("cat", "2" * 64, "probes/cat.webp", 40, 64)],
        activation_map_normalisation="per filter, over every probe",
        layers=layers,
    )


def document() -> dict:
    return json.loads(make_manifest().to_bytes())


def error_of(document) -> str:
    with pytest.raises(ManifestError) as caught:
        Manifest.from_json(document)
    message = str(caught.value)
    assert isinstance(caught.value, AtlasgenError)
    assert "\n" not in message and message.strip() == message and message
    return message


# --- round trip -----------------------------------------------------------------------------------


def test_importing_the_records_does_not_start_tensorflow():
    code = ("import sys, atlasgen.manifest, atlasgen.build.kinds, atlasgen.build.plan, atlasgen.fs, atlasgen.names; "
            "from atlasgen.params import SynthesisParams; SynthesisParams(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_round_trip():
    m = make_manifest()
    back = Manifest.from_json(json.loads(m.to_bytes()))
    assert back == m
    assert back.to_bytes() == m.to_bytes()
    assert back.parameters.scale == (0.9, 1.1) and isinstance(back.parameters.scale, tuple)
    assert back.layers[1].r == [10, 10] and back.layers[0].r == 3
    assert back.layers[0].units[0].metrics.images["channel"].activation_vs_best_probe == 0.5
    assert back.units == 1


def test_round_trip_sees_a_changed_field():
    doc = document()
    doc["layers"][0]["units"][0]["activation_maps"][1]["peak"] = 3.0
    assert Manifest.from_json(doc) != make_manifest()


def test_optional_fields_may_be_left_out():
    doc = document()
    del doc["layers"]
    m = Manifest.from_json(doc)
    assert m.layers == [] and m.units == 0
    doc = document()
    del doc["layers"][0]["units"][0]["metrics"]["channel"]["changed_pixels_outside_box"]
    assert Manifest.from_json(doc).layers[0].units[0].metrics.images["channel"].changed_pixels_outside_box is None


def test_the_precision_record_is_optional_and_checked():
    from atlasgen.manifest import PrecisionRecord

    assert "precision" not in document() or document()["precision"] is None
    assert Manifest.from_json({k: v for k, v in document().items() if k != "precision"}).precision is None  # older atlas.json
    record = {"synthesis": "mixed", "synthesis_tf32": True, "scan": "tf32"}
    back = Manifest.from_json({**document(), "precision": record}).precision
    assert back == PrecisionRecord("mixed", True, "tf32")
    assert Manifest.from_json({**document(), "precision": {"synthesis": "float32"}}).precision == PrecisionRecord("float32")
    for field, value, expected in (("scan", "fp16", "null or one of float32, tf32, unrecorded"),
                                   ("synthesis", "half", "float32 or mixed"), ("synthesis_tf32", "yes", "true or false")):
        message = error_of({**document(), "precision": {**record, field: value}})
        assert f"atlas.json.precision.{field}" in message and expected in message, message


def test_load_manifest_reads_it_back(tmp_path):
    m = make_manifest()
    (tmp_path / MANIFEST).write_bytes(m.to_bytes())
    assert load_manifest(tmp_path) == m


# --- refusals -------------------------------------------------------------------------------------


def test_an_empty_object_names_a_missing_field():
    message = error_of({})
    assert "atlas.json.schema is missing" in message


def test_a_list_is_not_a_manifest():
    message = error_of([1])
    assert message.startswith("atlas.json should be an object")


def mutate(path, value=None, delete=False):
    def apply(doc):
        node = doc
        for step in path[:-1]:
            node = node[step]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return doc
    return apply


@pytest.mark.parametrize("change,fragments", [
    (mutate(["layers", 0, "units", 0, "page"], 7), ["atlas.json.layers[0].units[0].page", "a string", "not 7"]),
    (mutate(["layers", 0, "filters"], True), ["atlas.json.layers[0].filters", "an integer", "not true"]),
    (mutate(["probes", 1, "width"], False), ["atlas.json.probes[1].width", "an integer"]),
    (mutate(["model_filters"], 4224.0), ["atlas.json.model_filters", "an integer"]),
    (mutate(["layers", 0, "r"], "3"), ["atlas.json.layers[0].r", "an integer or list", 'not "3"']),
    (mutate(["layers", 1, "S"], [2, "2"]), ["atlas.json.layers[1].S"]),
    (mutate(["layers", 0, "units", 0, "metrics", "neuron", "steps"], delete=True),
     ["atlas.json.layers[0].units[0].metrics.neuron.steps is missing"]),
    (mutate(["layers", 0, "units", 0, "images", "channel"], None), ["atlas.json.layers[0].units[0].images.channel"]),
    (mutate(["layers", 0, "units", 0, "activation_maps", 1, "mean"], "0.25"),
     ["atlas.json.layers[0].units[0].activation_maps[1].mean", "a number"]),
    (mutate(["layers", 0, "units", 0, "activation_maps", 0, "scale"], True),
     ["atlas.json.layers[0].units[0].activation_maps[0].scale", "a number"]),
    (mutate(["parameters", "scale"], [0.9]), ["atlas.json.parameters.scale", "a list of 2"]),
    (mutate(["parameters", "decorrelate"], 1), ["atlas.json.parameters.decorrelate", "true or false"]),
    (mutate(["layers"], {}), ["atlas.json.layers", "a list"]),
    (mutate(["weights"], "imagenet"), ["atlas.json.weights", "an object"]),
])
def test_a_bad_field_is_named(change, fragments):
    message = error_of(change(document()))
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("schema", [SCHEMA_VERSION - 1, SCHEMA_VERSION + 1])
def test_another_schema_is_refused(schema):
    message = error_of({**document(), "schema": schema})
    assert f"schema {schema}" in message and f"reads {SCHEMA_VERSION}" in message


def test_a_long_bad_value_is_cut_short():
    message = error_of(mutate(["model"], 10 ** 200)(document()))
    assert "atlas.json.model" in message and len(message) < 200


@pytest.mark.parametrize("setup,fragment", [
    (lambda folder: None, "does not exist"),
    (lambda folder: (folder / MANIFEST).write_text('{"schema": 2,'), "is not valid JSON"),
    (lambda folder: (folder / MANIFEST).write_bytes(b"\xff\xfe not text"), "is not valid JSON"),
    (lambda folder: (folder / MANIFEST).mkdir(), "is not a regular file"),
    (lambda folder: (folder / MANIFEST).symlink_to(folder / "elsewhere.json"), "is not a regular file"),
])
def test_load_manifest_problems_are_one_line(tmp_path, setup, fragment):
    setup(tmp_path)
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and fragment in message and str(tmp_path / MANIFEST) in message


def test_load_manifest_checks_the_schema(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({**document(), "probes": [{"name": "x"}]}))
    with pytest.raises(ManifestError, match=r"atlas\.json\.probes\[0\]\.sha256 is missing"):
        load_manifest(tmp_path)


# --- metrics --------------------------------------------------------------------------------------


def test_activation_vs_best_probe():
    assert activation_vs_best_probe(3.0, 2.0) == 1.5
    assert activation_vs_best_probe(0.0, 2.0) == 0.0
    assert activation_vs_best_probe(3.0, 0.0) is None


def test_unit_metrics_uses_the_best_probe():
    metrics = unit_metrics(CHANNEL_FACTS, NEURON_FACTS, [0.5, 4.0, 1.0])
    assert metrics == Metrics(
        best_probe_mean_activation=4.0,
        images={"channel": SynthesisMetrics(3.5, 2.0, 0.5, 64, None), "neuron": SynthesisMetrics(1.25, 0.5, 0.125, 64, 0)},
    )


def test_an_images_numbers_are_the_facts_stored_with_it():
    # Only centre-neuron images store a changed-pixel count; a whole-filter image reports none.
    metrics = unit_metrics(CHANNEL_FACTS, {**NEURON_FACTS, "changed_pixels_outside_box": 3}, [1.0])
    assert metrics.images["channel"].changed_pixels_outside_box is None
    assert metrics.images["neuron"].changed_pixels_outside_box == 3
    assert image_metrics({**CHANNEL_FACTS, "peak": 9.0, "recipe": {}}) == CHANNEL_FACTS


@pytest.mark.parametrize("means", [[0.0, 0.0], []])
def test_unit_metrics_when_every_probe_is_silent(means):
    metrics = unit_metrics(CHANNEL_FACTS, NEURON_FACTS, means)
    assert metrics.best_probe_mean_activation == 0.0
    assert metrics.images["channel"].activation_vs_best_probe is None
    assert metrics.images["neuron"].activation_vs_best_probe is None
    assert metrics.images["channel"].mean_activation == 2.0


def test_hostile_values_give_one_line_naming_the_field():
    doc = document()
    doc["layers"][0]["units"][0]["images"] = {"x\nError: forged line": 5}
    assert error_of(doc).startswith('atlas.json.layers[0].units[0].images["x\\nError: forged line"] should be a string')
    doc = document()
    doc["layers"][0]["units"][0]["activation_maps"][0]["peak"] = int("9" * 400)
    assert "activation_maps[0].peak should be a number or" not in error_of(doc)
    assert "activation_maps[0].peak should be a finite number, not a huge integer" in error_of(doc)
    doc = document()
    doc["layers"][0]["units"][0]["activation_maps"][0]["peak"] = float("nan")
    assert "peak should be a finite number" in error_of(doc)


def test_the_schema_version_is_checked_first():
    assert error_of({"schema": 1, "model": "vgg16"}).startswith("atlas.json has schema 1, this atlasgen reads 3")


# --- ranges and shapes: what render relies on (issue 19, item 7) -----------------------------------

U = ["layers", 0, "units", 0]


def with_example(doc: dict, **changes) -> dict:
    example = {"source": "a.jpg", "activation": 1.0, "unit": [3, 4], "box": [10, 20, 40, 60], "image": "vgg16/e/0.webp",
               "photo": "vgg16/d/0.webp", "photo_size": [224, 300], **changes}
    doc["layers"][0]["units"][0]["dataset_examples"] = [example]
    return doc


def append_unit(doc: dict, **changes) -> dict:
    unit = json.loads(json.dumps(doc["layers"][0]["units"][0]))
    unit.update({"page": "vgg16/block1_conv1/1/", **changes})
    doc["layers"][0]["units"].append(unit)
    return doc


@pytest.mark.parametrize("change,fragments", [
    (mutate(U + ["rf_box"], [0, 0, 0, 0]), ["units[0].rf_box should be [top, left, bottom, right] with top < bottom <= 64",
                                            "parameters.size", "not [0, 0, 0, 0]"]),
    (mutate(U + ["rf_box"], [0, 0, 3]), ["units[0].rf_box should be a list of 4 whole numbers, not [0, 0, 3]"]),
    (mutate(U + ["rf_box"], [0, 0, 3, 3, 3]), ["units[0].rf_box should be a list of 4"]),
    (mutate(U + ["rf_box"], [-1, 0, 3, 3]), ["units[0].rf_box[0] should be a whole number from 0 to"]),
    (mutate(U + ["rf_box"], [5, 5, 3, 9]), ["units[0].rf_box should be [top, left, bottom, right]"]),
    (mutate(U + ["rf_box"], [0, 0, 65, 9]), ["units[0].rf_box should be", "bottom <= 64"]),
    (mutate(U + ["index"], -1), ["units[0].index should be a whole number from 0", "not -1"]),
    (mutate(U + ["index"], 64), ["units[0].index should be below the layer's 64 filters, not 64"]),
    (lambda doc: append_unit(doc, index=0), ["layers[0].units[1].index should be a filter no other unit", "not 0"]),
    (mutate(U + ["images"], {}), ["units[0].images should be an object with at least one image", "not []"]),
    (lambda doc: doc["layers"][0]["units"][0]["activation_maps"].pop() and doc,
     ["units[0].activation_maps should be empty, or one map per probe photo", "(astronaut, cat)", 'not ["astronaut"]']),
    (lambda doc: doc["layers"][0]["units"][0]["activation_maps"].reverse() or doc,
     ["units[0].activation_maps", 'not ["cat", "astronaut"]']),
    (mutate(U + ["activation_maps", 1, "probe"], "dog"), ["units[0].activation_maps", 'not ["astronaut", "dog"]']),
    (mutate(["probes", 1, "name"], "astronaut"), ["atlas.json.probes[1].name should be a name no other probe photo has"]),
    (mutate(["probes", 0, "width"], 0), ["atlas.json.probes[0].width should be a whole number from 1", "not 0"]),
    (mutate(["probes", 0, "height"], 10 ** 400), ["atlas.json.probes[0].height", "not a huge integer"]),
    (mutate(["layers", 0, "filters"], 0), ["atlas.json.layers[0].filters should be a whole number from 1"]),
    (mutate(["layers", 1, "r"], [10]), ["atlas.json.layers[1].r should be a list of 2 whole numbers, not [10]"]),
    (mutate(["layers", 1, "S"], 0), ["atlas.json.layers[1].S should be a whole number from 1"]),
    (mutate(["layers", 1, "P"], [4, -4]), ["atlas.json.layers[1].P[1] should be a whole number from 0"]),
    (mutate(["layers", 1, "output_size"], [112, 0]), ["atlas.json.layers[1].output_size[1]"]),
    (mutate(["layers", 0, "centre_unit"], []), ["atlas.json.layers[0].centre_unit should be a list of 2"]),
    (mutate(["layers", 1, "centre_unit"], [56, 112]), ["atlas.json.layers[1].centre_unit should be [y, x] inside the "
                                                       "112 × 112 output_size, not [56, 112]"]),
    (mutate(["layers", 1, "name"], "block1_conv1"), ["atlas.json.layers[1].name should be a name no other layer has"]),
    (mutate(["layers", 1, "path"], "vgg16/block1_conv1/"), ["atlas.json.layers[1].path should be a folder no other page"]),
    (mutate(U + ["page"], "vgg16/block1_conv1/"), ["atlas.json.layers[0].units[0].page should be a folder no other page"]),
    (lambda doc: append_unit(doc, index=1, page="vgg16/block1_conv1/0/"), ["layers[0].units[1].page should be a folder"]),
    (mutate(["parameters", "size"], 0), ["atlas.json.parameters.size should be a whole number from 1"]),
    (lambda doc: mutate(U + ["metrics", "neuron"], delete=True)(mutate(U + ["metrics", "neuron_vs_best_example"], 2.0)(doc)),
     ["units[0].metrics.neuron_vs_best_example should be null: there are no centre-neuron numbers"]),
    (mutate(U + ["metrics", "neuron", "changed_pixels_outside_box"], -1), ["metrics.neuron.changed_pixels_outside_box"]),
    (lambda doc: with_example(doc, box=[10, 20, 40]), ["dataset_examples[0].box should be a list of 4 whole numbers"]),
    (lambda doc: with_example(doc, box=[10, 20, 225, 60]), ["dataset_examples[0].box should be [top, left, bottom, right]",
                                                            "bottom <= 224 and left < right <= 300", "photo_size"]),
    (lambda doc: with_example(doc, box=[10, 60, 40, 60]), ["dataset_examples[0].box should be"]),
    (lambda doc: with_example(doc, photo_size=[]), ["dataset_examples[0].photo_size should be a list of 2"]),
    (lambda doc: with_example(doc, photo_size=[224, 0]), ["dataset_examples[0].photo_size[1] should be a whole number"]),
    (lambda doc: with_example(doc, unit=[]), ["dataset_examples[0].unit should be a list of 2"]),
    (lambda doc: with_example(doc, unit=[-1, 0]), ["dataset_examples[0].unit[0] should be a whole number from 0"]),
    (mutate(["title"], "\ud800"), ['atlas.json.title should be text (not a lone UTF-16 surrogate), not "\\\\ud800"']),
])
def test_a_value_out_of_range_or_shape_is_named(change, fragments):
    message = error_of(change(document()))
    assert message.endswith("; rebuild with atlasgen build"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("change", [
    mutate(U + ["rf_box"], [0, 0, 64, 64]),  # the whole image
    mutate(U + ["images"], {"maco_channel": "vgg16/m.webp"}),  # MACO only
    mutate(U + ["activation_maps"], []),  # no maps built: the page has no maps view
    mutate(["layers", 0, "P"], 0),
    mutate(["layers", 1, "centre_unit"], [0, 111]),
    lambda doc: with_example(doc, box=[0, 0, 224, 300], unit=[0, 0], photo_size=[224, 300]),
    lambda doc: append_unit(doc, index=63),
    lambda doc: {**doc, "probes": [], "layers": [{**doc["layers"][0], "units": [
        {**doc["layers"][0]["units"][0], "activation_maps": []}]}]},  # no probe photos, no maps
])
def test_values_at_the_edges_of_their_ranges_pass(change):
    m = Manifest.from_json(change(document()))
    assert Manifest.from_json(json.loads(m.to_bytes())) == m


def test_every_whole_number_of_a_record_is_bounded_where_it_is_declared():
    import dataclasses
    import typing

    from atlasgen import manifest

    unbounded = []
    for name in dir(manifest):
        record = getattr(manifest, name)
        if not (isinstance(record, type) and dataclasses.is_dataclass(record) and record.__module__ == manifest.__name__):
            continue
        hints = typing.get_type_hints(record)
        for f in dataclasses.fields(record):
            if "int" in str(hints[f.name]) and "least" not in f.metadata:
                unbounded.append(f"{name}.{f.name}")
    assert unbounded == ["Generator.algorithm", "Manifest.schema"]  # checked against the version, not a range


def test_every_unit_with_an_image_has_a_thumbnail_the_whole_filter_image_first():
    from atlasgen.site.views import thumbnail

    for images, picture in [({"channel": "vgg16/c.webp", "neuron": "vgg16/n.webp"}, "vgg16/c.webp"),
                            ({"neuron": "vgg16/n.webp", "maco_channel": "vgg16/m.webp"}, "vgg16/m.webp"),
                            ({"neuron": "vgg16/n.webp"}, "vgg16/n.webp"),
                            ({"rf_crop": "vgg16/r.webp"}, "vgg16/r.webp")]:
        unit = Manifest.from_json(mutate(U + ["images"], images)(document())).layers[0].units[0]
        assert thumbnail(unit) == picture

def test_the_transforms_and_kernel_records_are_optional_checked_and_never_null():
    doc = document()
    # Older atlas.json have neither; one without them writes no null for them.
    assert "synthesis" not in doc["layers"][0] and "kernel" not in doc["layers"][0]["units"][0]
    used = {"pad": 0, "jitter": 1, "scale": [1.0, 1.0], "rotate_degrees": 0.0, "jitter_last": 0, "learning_rate": 0.1}
    # The neuron has no untransformed steps: the field is omitted, not null.
    doc["layers"][0]["synthesis"] = {"channel": {**used, "untransformed_from": 48},
                                     "neuron": {**used, "pad": 12, "scale": [0.9, 1.1]}}
    doc["layers"][0]["units"][0]["images"]["kernel"] = "vgg16/block1_conv1/0/kernel.webp"
    doc["layers"][0]["units"][0]["kernel"] = {"scale": 0.5, "taps": [3, 3], "flipped": True}
    back = Manifest.from_json(doc)
    assert back.layers[0].synthesis["neuron"].scale == [0.9, 1.1] and back.layers[0].units[0].kernel.taps == [3, 3]
    assert back.layers[0].synthesis["channel"].untransformed_from == 48
    assert back.layers[0].synthesis["neuron"].untransformed_from is None
    assert json.loads(back.to_bytes()) == doc
    for change, fragments in (
        (mutate(["layers", 0, "synthesis", "channel", "scale"], [1.1, 0.9]), ["synthesis.channel.scale", "low <= high"]),
        (mutate(["layers", 0, "synthesis", "neuron", "jitter"], -1), ["synthesis.neuron.jitter", "from 0"]),
        (mutate(["layers", 0, "synthesis", "channel", "untransformed_from"], -2), ["synthesis.channel.untransformed_from"]),
        (mutate(["layers", 0, "units", 0, "kernel", "taps"], [3]), ["units[0].kernel.taps", "a list of 2"]),
        (mutate(["layers", 0, "units", 0, "kernel", "scale"], -0.5), ["units[0].kernel.scale", "at least 0"]),
        (mutate(["layers", 0, "units", 0, "kernel"], delete=True), ["units[0].kernel", "images.kernel is there"]),
    ):
        message = error_of(change(json.loads(json.dumps(doc))))
        for fragment in fragments:
            assert fragment in message, (fragment, message)


@pytest.mark.parametrize("field, value, expected", [
    ("curve", [[1, 2.0], [2]], "a list of pairs of numbers"),
    ("curve", [[2, 1.0], [1, 2.0]], "in order of step"),
    ("contrast_response", [[0.5, 1.0, 2.0]], "a list of pairs of numbers"),
])
def test_a_curve_or_contrast_response_the_pages_cannot_draw_is_refused(field, value, expected):
    message = error_of(mutate(["layers", 0, "units", 0, "metrics", "channel", field], value)(document()))
    assert f"metrics.channel.{field}" in message and expected in message, message


def with_diversity(doc: dict, paths=("vgg16/d/0.webp", "vgg16/d/1.webp"), objectives=(2.0, 1.5), runs=None) -> dict:
    unit = doc["layers"][0]["units"][0]
    unit["images"]["diversity"] = list(paths)
    run = {"objective": 2.0, "mean_activation": 1.0, "activation_vs_best_probe": 0.5, "steps": 8,
           "curve": [[1, 0.5], [8, 2.0]]}
    unit["metrics"].update(diversity=list(objectives), diversity_runs=[run] * len(objectives) if runs is None else runs,
                           diversity_similarity=0.4)
    return doc


def test_a_diversity_set_is_a_list_of_paths_with_one_objective_and_run_each():
    m = Manifest.from_json(with_diversity(document()))
    unit = m.layers[0].units[0]
    assert unit.images["diversity"] == ["vgg16/d/0.webp", "vgg16/d/1.webp"]
    assert unit.metrics.diversity == [2.0, 1.5] and unit.metrics.diversity_similarity == 0.4
    assert [r.curve for r in unit.metrics.diversity_runs] == [[[1, 0.5], [8, 2.0]]] * 2
    assert "diversity" not in unit.metrics.images  # a list of numbers, not one image's numbers
    assert Manifest.from_json(json.loads(m.to_bytes())) == m
    # Without a set, atlas.json carries no field for it.
    assert "diversity" not in json.loads(make_manifest().to_bytes())["layers"][0]["units"][0]["metrics"]


@pytest.mark.parametrize("change,fragment", [
    (lambda doc: with_diversity(doc, objectives=(2.0,)), "units[0].images.diversity should be a list of paths, one per "
                                                         "objective in metrics.diversity"),
    (lambda doc: with_diversity(doc, runs=[]), "units[0].metrics.diversity_runs should be one record per diversity image"),
    (lambda doc: with_diversity(doc, paths=("../x.webp", "vgg16/d/1.webp")), "units[0].images.diversity[0]"),
    (lambda doc: with_diversity(doc, paths=()), "units[0].images.diversity should be a list of paths"),
    (lambda doc: with_diversity(doc, paths=(), objectives=()), "units[0].images.diversity should be a list of paths"),
    (lambda doc: mutate(U + ["metrics", "channel", "faint"], True)(doc), "metrics.channel.faint should be false or null"),
])
def test_a_bad_diversity_set_is_named(change, fragment):
    assert fragment in error_of(change(document()))
