"""The suspect score's terms on hand-made values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.kinds.attribution.audit.suspects import (
    SUSPECT_AT,
    WRONG_WEIGHT,
    border_excess,
    cluster_atypicality,
    off_object,
    reasons,
    suspect_scores,
)

NAN = float("nan")


def test_off_object_counts_only_when_the_peak_misses():
    energy = np.array([0.3, 0.3, NAN, 0.9])
    hit = np.array([1.0, 0.0, NAN, 0.0])
    np.testing.assert_allclose(off_object(energy, hit), [0.0, 0.7, 0.0, 0.1])


def test_border_excess_is_relative_to_the_typical_share():
    np.testing.assert_allclose(border_excess(np.array([0.1, 0.2, 0.6, NAN]), 0.2),
                               [0.0, 0.0, 0.5, 0.0])


def test_cluster_atypicality_compares_with_the_rest_of_the_class():
    values = np.array([1.0, 0.8, 0.2, 0.0, 0.1])
    labels = np.array([0, 0, 1, 1, 1])
    # Cluster 0: 0.9 against the rest's 0.1 → 0.8; cluster 1 does better than the rest → 0.
    np.testing.assert_allclose(cluster_atypicality(values, labels), [0.8, 0.0])
    assert cluster_atypicality(values, np.zeros(5, int)).tolist() == [0.0]


def test_a_wrong_prediction_counts_half_and_an_unlabelled_one_fully():
    terms = {"off_object": np.array([0.5, 0.5, 0.5]), "border": np.array([0.25, 0.25, 0.25]),
             "atypical": np.array([0.25, 0.25, 0.25])}
    np.testing.assert_allclose(suspect_scores(terms, np.array([1, 0, -1])),
                               [1.0, WRONG_WEIGHT, 1.0])


def test_reasons_name_the_large_terms():
    text = reasons({"off_object": 0.6, "border": 0.3, "atypical": 0.5}, energy_in_box=0.4,
                   border_energy=0.45, typical_border=0.2, cluster_size=12, cluster_share=0.25,
                   class_name="disc", correct=0)
    assert text == [
        "the relevance peaks off the object, and 60% of it lies outside the object",
        "45% of the relevance lies in the outer band (this method's median is 20%)",
        "its strategy cluster (12 maps, 25% of class disc) looks off the object more than "
        "the rest of the class",
        "the prediction is wrong (its score counts half)",
    ]
    assert reasons({"off_object": 0.0, "border": 0.0, "atypical": 0.0}, energy_in_box=0.9,
                   border_energy=0.1, typical_border=0.2, cluster_size=0, cluster_share=0.0,
                   class_name="x", correct=1) == []


@pytest.mark.parametrize("typical", [0.0, 0.999999])
def test_border_excess_stays_within_zero_and_one(typical):
    out = border_excess(np.linspace(0, 1, 11), typical)
    assert (out >= 0).all() and (out <= 1).all()


TERM = st.floats(0.0, 1.0)


@given(TERM, TERM, TERM, st.sampled_from([1, 0, -1]))
def test_every_score_at_the_suspect_threshold_has_a_reason_in_words(off, border, atypical,
                                                                       correct):
    terms = {"off_object": off, "border": border, "atypical": atypical}
    score = suspect_scores({k: np.array([v]) for k, v in terms.items()}, np.array([correct]))
    # The reasons of the terms alone (a wrong prediction adds its own line whatever they are).
    said = reasons(terms, energy_in_box=0.5, border_energy=0.5, typical_border=0.2,
                   cluster_size=5, cluster_share=0.2, class_name="x", correct=1)
    if score[0] >= SUSPECT_AT:
        assert said, terms


def test_the_suspect_threshold_is_the_sum_of_the_reason_levels():
    assert SUSPECT_AT == 0.5
    just_below = {"off_object": 0.2999, "border": 0.0999, "atypical": 0.0999}
    assert reasons(just_below, energy_in_box=0.5, border_energy=0.5, typical_border=0.2,
                   cluster_size=5, cluster_share=0.2, class_name="x", correct=1) == []
