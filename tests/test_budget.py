"""The page budget (atlasgen.build.budget): said before the build, computed from a byte model, never enforced."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from atlasgen.build.budget import PAGES_LIMIT, Settings, atlas_bytes, filter_bytes, page_budget
from atlasgen.errors import AtlasgenError
from atlasgen.model.weights import VGG16_CONVS
from support import quiet_progress

VGG16 = [(f"block{b}_conv{i}", filters) for b, i, filters in VGG16_CONVS]
QUICK = Settings(size=64, steps=64, diversity=2, examples=9, methods=("lucid",), probe_pixels=(512 * 512,),
                 dataset_images=18, dataset_side=224)
#: The estimate of a real build's bytes per filter is within this share of what it weighs.
TOLERANCE = 0.15


def test_the_estimate_grows_with_every_setting_that_adds_bytes():
    base = filter_bytes(QUICK)
    for more in (dict(size=128), dict(diversity=4), dict(examples=20), dict(probe_pixels=(512 * 512, 400 * 300)),
                 dict(methods=("lucid", "maco"))):
        assert filter_bytes(replace(QUICK, **more)) > base, more
    # A run records at most 32 points of its curve: fewer steps, fewer points; more, no more.
    assert filter_bytes(replace(QUICK, steps=4)) < base == filter_bytes(replace(QUICK, steps=512))
    assert atlas_bytes(QUICK, 100, 2) == pytest.approx(atlas_bytes(QUICK, 0, 2) + 100 * base)
    assert atlas_bytes(QUICK, 100, 2) > atlas_bytes(QUICK, 100, 1)  # a layer page each


def test_within_the_limit_it_says_so_and_suggests_nothing():
    budget = page_budget("vgg16", QUICK, VGG16, 20)
    assert budget.fits and budget.suggestions == () and budget.model_filters == 4224
    assert budget.line().endswith("within GitHub Pages' 1 GB") and "all 4,224 filters of vgg16" in budget.line()


def test_over_the_limit_every_suggestion_is_computed_to_fit_and_to_be_the_most_that_does():
    settings = replace(QUICK, size=224, diversity=4)
    budget = page_budget("vgg16", settings, VGG16, 20)
    line = budget.line()
    assert not budget.fits and "over GitHub Pages' 1 GB (the build goes on); would fit:" in line
    total = 4224

    def fits(**change) -> bool:
        return atlas_bytes(replace(settings, **change), total, 13) <= PAGES_LIMIT

    size = int(re.search(r"(?<!with )--size (\d+)", line).group(1))
    assert fits(size=size) and not fits(size=size + 8)
    with_diversity_0 = re.search(r"--diversity 0 with --size (\d+)", line)
    assert with_diversity_0 and fits(diversity=0, size=int(with_diversity_0.group(1))) and not fits(diversity=0)
    assert not fits(diversity=0, size=int(with_diversity_0.group(1)) + 8)
    room = int(re.search(r"would fit:.*?([\d,]+) filters at these settings", line).group(1).replace(",", ""))
    assert atlas_bytes(settings, room, 13) <= PAGES_LIMIT < atlas_bytes(settings, room + 1, 13)
    k = int(re.search(r"--filters 0-(\d+)", line).group(1)) + 1
    assert sum(min(k, n) for _, n in VGG16) <= room < sum(min(k + 1, n) for _, n in VGG16)
    first = int(re.search(r"its first (\d+) of 13 conv layers", line).group(1))
    assert sum(n for _, n in VGG16[:first]) <= room < sum(n for _, n in VGG16[:first + 1])


def test_a_model_far_over_the_limit_still_gets_the_filters_that_fit():
    """ResNet50's 26,560 filters at the quick settings: only fewer filters bring it under."""
    resnet = [(f"conv{i}", 256) for i in range(103)] + [("last", 26560 - 103 * 256)]
    budget = page_budget("resnet50", QUICK, resnet, 88)
    assert budget.model_filters == 26560 and not budget.fits
    assert budget.model_bytes > 5 * PAGES_LIMIT
    assert any("filters at these settings" in text for text in budget.suggestions)


@pytest.mark.parametrize("bad", [dict(size=-1), dict(examples=1.5), dict(probe_pixels=(-4,)), dict(steps=True)])
def test_bad_values_are_one_line_errors(bad):
    with pytest.raises(AtlasgenError, match="page budget needs whole, non-negative numbers"):
        page_budget("vgg16", replace(QUICK, **bad), VGG16, 1)
    with pytest.raises(AtlasgenError):
        page_budget("vgg16", QUICK, [], 1)


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
