"""``muscle``: the tree of SPEC §1 — classify each slice, segment it with the matching model."""

from __future__ import annotations

import numpy as np
import torch
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.labels import REGIONS
from lib.tasks.infer_base import MuscleInferTask
from lib.tasks.infer_classifier import region_summary


class MuscleInfer(MuscleInferTask):
    """Routed pipeline: one label map with thigh (1-12) and leg (13-18) muscles.

    A volume that holds both regions (a long field of view through the knee) is handled slice
    by slice. ``region`` = "thigh" / "leg" bypasses the classifier.
    """

    def __init__(self, paths, labels: dict[str, int]):
        super().__init__(paths, InferType.SEGMENTATION, labels,
                         "Thigh and leg muscles: classifier routes each slice to the thigh or leg segmenter")

    def run_inferer(self, data, convert_to_batch=True, device="cpu"):
        n_slices = data["image"].shape[-1]
        slices = self.selected_slices(data, n_slices)
        if data.get("region", "auto") == "auto":
            summary = region_summary(self.classify(data, slices, device), slices, data["region_window"])
            routed = {r: [s["slice"] for s in summary["slices"] if s["region"] == r] for r in REGIONS}
        else:
            summary = {"region": data["region"], "forced": True}
            routed = {r: slices if r == data["region"] else [] for r in REGIONS}
        grid = np.zeros((*data["image"].shape[1:3], n_slices), np.uint8)
        for region, chosen in routed.items():
            self.segment(data, chosen, region, device, grid)
        data["pred"] = torch.from_numpy(grid)[None]
        data["result"] = {"classification": summary, "routed_slices": routed}
        return data

    def post_transforms(self, data=None):
        return self.label_post_transforms(data, self.labels)
