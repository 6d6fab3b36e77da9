"""Region per slice: the classifier's decisions smoothed along z, and the routing to segmenters."""

import numpy as np

from lib.inference.regions import region_summary, route, smooth_regions


def test_region_smoothing_overrules_short_runs_and_keeps_a_real_change():
    thigh, leg = 0, 1
    # a thigh-to-leg volume (through the knee) with two isolated misses
    own = np.array([thigh, thigh, leg, thigh, thigh, thigh, leg, leg, leg, thigh, leg, leg])
    slices = list(range(len(own)))
    smooth = smooth_regions(own, slices, 5)
    assert smooth.tolist() == [thigh] * 6 + [leg] * 6  # the change stays at slice 6
    assert smooth_regions(own, slices, 1).tolist() == own.tolist()
    # selected slices with a gap: 0-2 and 7-9 are smoothed separately, never across the gap
    gapped = np.array([leg, thigh, leg, thigh, leg, thigh])
    assert smooth_regions(gapped, [0, 1, 2, 7, 8, 9], 3).tolist() == [leg, leg, leg, thigh, thigh, thigh]
    probabilities = np.eye(2)[own] * 0.9 + 0.05
    summary = region_summary(probabilities, slices, window=5)
    assert summary["smoothed_slices"] == [2, 9]
    assert summary["slices"][2] == {"slice": 2, "region": "thigh", "probability": 0.05}
    assert summary["slice_counts"] == {"thigh": 6, "leg": 6}


def test_routing_follows_the_smoothed_regions_or_a_forced_region():
    thigh, leg = 0, 1
    own = np.array([thigh, thigh, leg, thigh, leg, leg, leg])
    slices = [3, 4, 5, 6, 7, 8, 9]
    probabilities = np.eye(2)[own] * 0.9 + 0.05
    summary, routed = route(slices, "auto", probabilities, window=3)
    assert summary == region_summary(probabilities, slices, 3)
    assert routed == {"thigh": [3, 4, 5], "leg": [6, 7, 8, 9]}
    summary, routed = route(slices, "leg")
    assert summary == {"region": "leg", "forced": True}
    assert routed == {"thigh": [], "leg": slices}
