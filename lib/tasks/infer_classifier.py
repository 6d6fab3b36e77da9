"""Infer task of the thigh/leg classifier: a region per slice and the volume's.

The volume's slices are split once into leg below and thigh above, the most likely split under
the classifier's per-slice probabilities (``lib.inference.regions``); the answer is JSON only.
"""

from __future__ import annotations

from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.inference.pipeline import classify_regions
from lib.tasks.infer_base import MuscleInferTask


class ClassifierInfer(MuscleInferTask):
    """``classifier``: thigh (class 0) or leg (class 1) for each slice; JSON only."""

    def __init__(self, paths, labels: dict[str, int]):
        super().__init__(paths, InferType.CLASSIFICATION, labels,
                         "Thigh/leg classifier: region and probability of every slice")

    def run_inferer(self, data, convert_to_batch=True, device="cpu"):
        return classify_regions(data, self.paths, device)

    def writer(self, data, extension=None, dtype=None):
        return None, dict(data["result"])
