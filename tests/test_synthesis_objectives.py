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


def _features(*patterns):
    """A batch of (2, 2, 2) feature maps, one per pattern of four [a, b] pixels."""
    return tf.constant(np.array(patterns, dtype=np.float32).reshape(len(patterns), 2, 2, 2))


def test_gram_similarity_is_the_cosine_between_gram_matrices_within_each_group():
    same = [[1, 0], [0, 1], [1, 1], [2, 0]]
    only_a, only_b = [[1, 0]] * 4, [[0, 1]] * 4
    alike = objectives.gram_similarity(_features(same, same, only_a, only_b), group=2).numpy()
    assert alike == pytest.approx([1.0, 1.0, 0.0, 0.0], abs=1e-6)  # the second group shares no texture
    three = objectives.gram_similarity(_features(same, same, only_a), group=3).numpy()
    own = np.array(same, np.float32)
    gram = own.T @ own / 4
    cosine = gram[0, 0] / np.linalg.norm(gram)  # same against only_a, whose Gram matrix is [[1, 0], [0, 0]]
    assert three == pytest.approx([(1 + cosine) / 2, (1 + cosine) / 2, cosine], abs=1e-6)


def test_the_diversity_term_steers_but_is_not_recorded():
    features = _features([[1, 0], [0, 1], [1, 1], [2, 0]], [[1, 0], [0, 1], [1, 1], [2, 0]])
    term = objectives.diversity(2, 1.0, objectives.channel_mean())
    assert term.needs_features
    # Minus the similarity (1 here), times the objective's size plus 1: |0.5| + 1 and |12.5| + 1.
    assert term(MAPS, features).numpy() == pytest.approx([-1.5, -13.5], abs=1e-5)
    assert term.tracked(MAPS, features).numpy() == pytest.approx([0.0, 0.0])
    combined = objectives.channel_mean() + term
    assert combined.needs_features
    assert combined(MAPS, features).numpy() == pytest.approx([0.5 - 1.5, 12.5 - 13.5], abs=1e-5)
    assert combined.tracked(MAPS, features).numpy() == pytest.approx([0.5, 12.5])  # the filter's own objective
    assert (-combined).tracked(MAPS, features).numpy() == pytest.approx([-0.5, -12.5])
    assert (2 * combined).tracked(MAPS, features).numpy() == pytest.approx([1.0, 25.0])


def test_an_objective_without_a_regulariser_records_its_score():
    combined = objectives.channel_mean() - 0.5 * objectives.neuron(0, 0)
    assert combined.track is None
    assert combined.tracked(MAPS).numpy() == pytest.approx(combined(MAPS).numpy())
