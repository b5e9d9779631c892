"""Objectives score each batch element's own map and compose like Lucid's."""

import numpy as np
import pytest

from atlasgen.synthesis import objectives
from atlasgen.tf import tf


MAPS = tf.constant(np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) - 5)


def test_channel_mean_is_the_spatial_mean_and_can_be_negative():
    scores = objectives.channel_mean()(MAPS).numpy()
    assert scores == pytest.approx([0.5, 12.5])


def test_neuron_reads_one_unit():
    assert objectives.neuron(1, 2)(MAPS).numpy() == pytest.approx([1.0, 13.0])


def test_objectives_compose():
    combined = objectives.channel_mean() - 0.5 * objectives.neuron(0, 0)
    assert combined(MAPS).numpy() == pytest.approx([0.5 + 2.5, 12.5 - 3.5])
    assert combined.description == "channel mean + -(0.5 * (neuron (0, 0)))"
