"""Infer task of the thigh/leg classifier: a region per slice and the volume's majority.

A slice's region is the majority of the classifier's decisions over ``region_window``
consecutive slices (a median filter along z). Regions change at most once along a limb, and a
median filter keeps such a step where it is while removing any run of wrong decisions shorter
than half the window: the classifier's misses come in short runs at the ends of slim, fatty
thighs. Selected slices that are not consecutive are not smoothed across their gaps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.labels import REGIONS
from lib.tasks.infer_base import MuscleInferTask


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


class ClassifierInfer(MuscleInferTask):
    """``classifier``: thigh (class 0) or leg (class 1) for each slice; JSON only."""

    def __init__(self, paths, labels: dict[str, int]):
        super().__init__(paths, InferType.CLASSIFICATION, labels,
                         "Thigh/leg classifier: region and probability of every slice")

    def run_inferer(self, data, convert_to_batch=True, device="cpu"):
        slices = self.selected_slices(data, data["image"].shape[-1])
        data["result"] = region_summary(self.classify(data, slices, device), slices, data["region_window"])
        return data

    def writer(self, data, extension=None, dtype=None):
        return None, dict(data["result"])
