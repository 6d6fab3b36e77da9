"""Which region each slice is, and which segmenter it goes to (SPEC §1: the tree's inner node).

A slice's region is the majority of the classifier's decisions over ``region_window``
consecutive slices (a median filter along z). Regions change at most once along a limb, and a
median filter keeps such a step where it is while removing any run of wrong decisions shorter
than half the window: the classifier's misses come in short runs at the ends of slim, fatty
thighs. Selected slices that are not consecutive are not smoothed across their gaps.

A request may force the region (``region`` = "thigh" / "leg"): every slice then goes to that
region's segmenter and the classifier does not run.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from lib.labels import REGIONS


def smooth_regions(classes: np.ndarray, slices: list[int], window: int) -> np.ndarray:
    """Median of the 0/1 ``classes`` over ``window`` slices, within each run of consecutive ``slices``."""
    out = np.asarray(classes).copy()
    if window <= 1 or len(out) == 0:
        return out
    runs = np.split(np.arange(len(out)), np.flatnonzero(np.diff(slices) != 1) + 1)
    for run in runs:
        out[run] = ndi.median_filter(out[run], size=window, mode="nearest")
    return out


def region_summary(probabilities: np.ndarray, slices: list[int], window: int = 1) -> dict:
    """Per-slice region (smoothed over ``window`` slices) and the probability the classifier
    gave it, the majority region, and MONAI Label's ``prediction``; ``smoothed`` marks a slice
    whose own decision the neighbours overruled."""
    own = probabilities.argmax(1)
    classes = smooth_regions(own, slices, window)
    counts = np.bincount(classes, minlength=len(REGIONS))
    majority = int(counts.argmax())
    return {
        "region": REGIONS[majority],
        "slice_counts": {r: int(c) for r, c in zip(REGIONS, counts)},
        "region_window": int(window),
        "smoothed_slices": [int(k) for k, c, o in zip(slices, classes, own) if c != o],
        "slices": [{"slice": int(k), "region": REGIONS[c], "probability": round(float(p[c]), 4)}
                   for k, c, p in zip(slices, classes, probabilities)],
        "prediction": [{"idx": i, "label": r, "score": round(float(probabilities[:, i].mean()), 4)}
                       for i, r in enumerate(REGIONS)],
    }


def route(slices: list[int], region: str = "auto", probabilities: np.ndarray | None = None,
          window: int = 1) -> tuple[dict, dict[str, list[int]]]:
    """The region summary and the slices each region's segmenter gets.

    Args:
        slices: the slice indices to route, in order.
        region: "auto" (the classifier decides) or a region every slice goes to.
        probabilities: the classifier's (len(slices), 2) probabilities; only for "auto".
        window: ``region_window``, the smoothing of the classifier's decisions.
    """
    if region == "auto":
        summary = region_summary(probabilities, slices, window)
        return summary, {r: [s["slice"] for s in summary["slices"] if s["region"] == r] for r in REGIONS}
    return {"region": region, "forced": True}, {r: slices if r == region else [] for r in REGIONS}
