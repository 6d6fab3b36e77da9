"""One region per volume: the most likely monotone split of the classifier's probabilities."""

import numpy as np
import pytest

from lib.inference.regions import CHANGE_PENALTY, monotone_split, region_summary, route, split_regions

THIGH, LEG, NONE = 0, 1, -1


def test_a_thigh_above_a_leg_splits_once_where_the_evidence_changes():
    # foot to head: 5 leg slices, then 4 thigh slices, with two confident misses inside
    p_thigh = np.array([0.1, 0.1, 0.9, 0.1, 0.1, 0.9, 0.95, 0.1, 0.9])
    assert monotone_split(p_thigh) == 5
    assert split_regions(p_thigh, list(range(9))).tolist() == [LEG] * 5 + [THIGH] * 4


@pytest.mark.parametrize("p_thigh,k", [
    ([0.9] * 6, 0),  # all thigh
    ([0.1] * 6, 6),  # all leg
    ([0.1, 0.1, 0.1, 0.1, 0.1, 0.95], 6),  # one confident slice at the top is not worth a change
    ([0.2] * 30 + [0.99] * 6, 30),  # six confident slices are
])
def test_a_change_needs_more_evidence_than_its_penalty(p_thigh, k):
    assert monotone_split(np.array(p_thigh)) == k


def test_the_split_is_the_exhaustive_optimum():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.uniform(0.01, 0.99, rng.integers(1, 15))
        q = np.clip(p, 0.02, 0.98)
        scores = [np.log1p(-q[:k]).sum() + np.log(q[k:]).sum() - CHANGE_PENALTY * (0 < k < len(p))
                  for k in range(len(p) + 1)]
        assert np.isclose(scores[monotone_split(p)], max(scores))


def test_a_leg_volume_is_never_split_by_a_run_of_weak_misses():
    # a real calf's failure today: a run of slices called thigh with P about 0.6, then leg again
    p_thigh = np.array([0.05] * 60 + [0.6] * 24 + [0.1] * 11)
    assert set(split_regions(p_thigh, list(range(95))).tolist()) == {LEG}


def test_slices_without_a_limb_get_no_segmenter_and_selected_slices_keep_their_order():
    p_thigh = np.array([np.nan, 0.99, 0.1, np.nan, 0.2])
    slices = [9, 7, 2, 5, 3]  # any order: the split runs along z
    regions = split_regions(p_thigh, slices)
    assert regions.tolist() == [NONE, THIGH, LEG, NONE, LEG]
    summary = region_summary(p_thigh, slices)
    assert summary["empty_slices"] == [9, 5]
    assert summary["change_at_slice"] == 7
    assert summary["slice_counts"] == {"thigh": 1, "leg": 2}
    # in the answer a limbless slice still has a region to count: its part of the volume (slice 9 is
    # above the change at 7), with probability 0.5; no segmenter gets it
    assert summary["slices"][0] == {"slice": 9, "region": "thigh", "probability": 0.5}
    _, routed = route(slices, "auto", p_thigh)
    assert routed == {"thigh": [7], "leg": [2, 3]}


def test_slices_where_the_classifier_disagrees_with_the_split_are_named():
    p_thigh = np.array([0.1, 0.7, 0.1, 0.1, 0.9, 0.9, 0.9])
    summary = region_summary(p_thigh, list(range(7)))
    assert summary["disagreeing_slices"] == [1]
    assert summary["slices"][1] == {"slice": 1, "region": "leg", "probability": 0.3}
    assert summary["region"] == "leg"


def test_routing_follows_the_split_or_a_forced_region():
    slices = [3, 4, 5, 6, 7, 8, 9]
    p_thigh = np.array([0.05, 0.05, 0.6, 0.05, 0.9, 0.95, 0.95])
    summary, routed = route(slices, "auto", p_thigh)
    assert summary == region_summary(p_thigh, slices)
    assert routed == {"thigh": [7, 8, 9], "leg": [3, 4, 5, 6]}
    summary, routed = route(slices, "leg")
    assert summary == {"region": "leg", "forced": True}
    assert routed == {"thigh": [], "leg": slices}


def test_a_volume_without_any_limb_has_no_region():
    summary = region_summary(np.array([np.nan, np.nan]), [0, 1])
    assert summary["region"] is None and [s["region"] for s in summary["slices"]] == [None, None]
    assert summary["empty_slices"] == [0, 1]
