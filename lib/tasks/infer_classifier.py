"""Infer task of the thigh/leg classifier: a region per slice and the volume's majority."""

from __future__ import annotations

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.labels import REGIONS
from lib.tasks.infer_base import MuscleInferTask


def region_summary(probabilities: np.ndarray, slices: list[int]) -> dict:
    """Per-slice region and probability, the majority region, and MONAI Label's ``prediction``."""
    classes = probabilities.argmax(1)
    counts = np.bincount(classes, minlength=len(REGIONS))
    majority = int(counts.argmax())
    return {
        "region": REGIONS[majority],
        "slice_counts": {r: int(c) for r, c in zip(REGIONS, counts)},
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
        data["result"] = region_summary(self.classify(data, slices, device), slices)
        return data

    def writer(self, data, extension=None, dtype=None):
        return None, dict(data["result"])
