"""The page budget (atlasgen.build.budget): said before the build, computed from a byte model, never enforced."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from atlasgen.build.budget import (
    PAGES_LIMIT, Settings, atlas_bytes, example_bytes, filter_bytes, first_filters, page_budget, shared_bytes,
)
from atlasgen.errors import AtlasgenError
from atlasgen.model.geometry import receptive_fields
from atlasgen.model.weights import VGG16_CONVS, vgg16_ops
from support import quiet_progress

FIELDS = receptive_fields(vgg16_ops(), (224, 224))
#: VGG16's conv layers as the budget takes them: name, filters, receptive field.
VGG16 = [(f"block{b}_conv{i}", filters, FIELDS[f"block{b}_conv{i}"].r[0]) for b, i, filters in VGG16_CONVS]
QUICK = Settings(size=64, steps=64, diversity=2, examples=9, methods=("lucid",), probe_pixels=(512 * 512,),
                 dataset_images=18, dataset_side=224)
#: The estimate of a real build's bytes per filter is within this share of what it weighs.
TOLERANCE = 0.10


def test_the_estimate_grows_with_every_setting_that_adds_bytes():
    base = filter_bytes(QUICK, 24)
    for more in (dict(size=128), dict(diversity=4), dict(examples=20), dict(probe_pixels=(512 * 512, 400 * 300)),
                 dict(methods=("lucid", "maco"))):
        assert filter_bytes(replace(QUICK, **more), 24) > base, more
    # A run records at most 32 points of its curve: fewer steps, fewer points; more, no more.
    assert filter_bytes(replace(QUICK, steps=4), 24) < base == filter_bytes(replace(QUICK, steps=512), 24)
    # A larger field, a larger example crop, up to the whole photo of a global field.
    crops = [example_bytes(QUICK, r) for r in (3, 60, 96, 200, 224, 500)] + [example_bytes(QUICK, None)]
    assert crops == sorted(crops) and crops[-3] == crops[-2] < crops[-1]
    one, two = [("a", 100, 24)], [("a", 50, 24), ("b", 50, 24)]
    assert atlas_bytes(QUICK, one) - atlas_bytes(QUICK, [("a", 50, 24)]) == pytest.approx(50 * base)
    # The dataset photos shown: at most each example's own, up to the dataset's 18.
    few = replace(QUICK, examples=3)
    assert shared_bytes(few, 1) < shared_bytes(few, 3) == shared_bytes(few, 100)
    assert atlas_bytes(QUICK, two) > atlas_bytes(QUICK, one)  # a layer page each


def test_within_the_limit_it_says_so_and_suggests_nothing():
    budget = page_budget("vgg16", replace(QUICK, examples=3), VGG16, first_filters(VGG16[:1], 4))
    assert budget.planned == 4 and budget.fits and budget.suggestions == () and budget.model_filters == 4224
    assert budget.line().endswith("within GitHub Pages' 1 GB") and "all 4,224 filters of vgg16" in budget.line()


@pytest.mark.parametrize("settings", [QUICK, replace(QUICK, size=448, examples=3, diversity=4)])
def test_over_the_limit_every_suggestion_is_computed_to_fit_and_to_be_the_most_that_does(settings):
    budget = page_budget("vgg16", settings, VGG16, first_filters(VGG16, 4))
    line = budget.line()
    assert not budget.fits and "over GitHub Pages' 1 GB (the build goes on); would fit:" in line

    def fits(**change) -> bool:
        return atlas_bytes(replace(settings, **change), VGG16) <= PAGES_LIMIT

    size = re.search(r"(?<!with )--size (\d+)", line)
    if size:
        assert fits(size=int(size.group(1))) and not fits(size=int(size.group(1)) + 8)
    plain = re.search(r"--diversity 0 with --size (\d+)", line)
    if plain:
        assert fits(diversity=0, size=int(plain.group(1))) and not fits(diversity=0, size=int(plain.group(1)) + 8)
        assert not fits(diversity=0)
    examples = re.search(r"--examples (\d+)", line)
    if examples:
        assert fits(examples=int(examples.group(1))) and not fits(examples=int(examples.group(1)) + 1)
    assert size or plain or examples  # at least one setting alone fits, in these two cases
    k = int(re.search(r"--filters 0-(\d+)", line).group(1)) + 1
    assert atlas_bytes(settings, first_filters(VGG16, k)) <= PAGES_LIMIT
    assert atlas_bytes(settings, first_filters(VGG16, k + 1)) > PAGES_LIMIT
    first = int(re.search(r"its first (\d+) of 13 conv layers", line).group(1))
    assert atlas_bytes(settings, VGG16[:first]) <= PAGES_LIMIT < atlas_bytes(settings, VGG16[:first + 1])


def test_a_model_far_over_the_limit_still_gets_the_filters_that_fit():
    """ResNet50's 26,560 filters at the quick settings: only fewer filters bring it under."""
    resnet = [(f"conv{i}", 256, 7 * i) for i in range(103)] + [("last", 26560 - 103 * 256, None)]
    budget = page_budget("resnet50", QUICK, resnet, first_filters(resnet, 1))
    assert budget.model_filters == 26560 and budget.planned == 104 and not budget.fits
    assert budget.model_bytes > 5 * PAGES_LIMIT
    assert [text.split()[0] for text in budget.suggestions] == ["--filters", "--layers"]


@pytest.mark.parametrize("bad", [dict(size=-1), dict(examples=1.5), dict(probe_pixels=(-4,)), dict(steps=True)])
def test_bad_values_are_one_line_errors(bad):
    with pytest.raises(AtlasgenError, match="page budget needs whole, non-negative numbers"):
        page_budget("vgg16", replace(QUICK, **bad), VGG16, VGG16[:1])
    with pytest.raises(AtlasgenError):
        page_budget("vgg16", QUICK, [], VGG16[:1])
    with pytest.raises(AtlasgenError):
        page_budget("vgg16", QUICK, [("a", 3, -1)], [])


def test_a_tiny_build_says_its_budget_first_and_weighs_what_it_estimated(tiny_config):
    """The estimate against the after-build numbers (RenderResult: the site's bytes over its filters)."""
    from atlasgen.build.run import budget_of, prepare, run_build

    # The steps the constants were measured at, and two layers as the model's many are (block1_conv1's
    # 3 px field makes crops and examples a tenth of a deeper layer's).
    config = tiny_config(layers=("block3_conv1", "block5_conv1"), filters="0-1", steps=64)
    progress = quiet_progress()
    result = run_build(config, progress)
    assert result.complete
    log = progress.stream.getvalue().splitlines()
    # Said once the work is counted ("N artifacts to compute"), before any of it is done.
    assert log[1].startswith("page budget: this atlas's 4 filters ~") and "all 4,224 filters of vgg16" in log[1]
    assert log[0].endswith("artifacts to compute") and log[2].startswith("synthesis precision")
    budget = budget_of(prepare(config))
    estimated = budget.planned_bytes / budget.planned
    measured = result.rendered.bytes_per_filter
    assert abs(estimated - measured) <= TOLERANCE * measured, (estimated, measured)
    assert budget.model_filters == result.rendered.model_filters
