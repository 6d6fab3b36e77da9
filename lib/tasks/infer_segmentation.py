"""Infer task of one leaf segmenter: every (or every chosen) slice through the thigh or leg model."""

from __future__ import annotations

import numpy as np
import torch
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.tasks.infer_base import MuscleInferTask


class SegmentationInfer(MuscleInferTask):
    """``segmentation_thigh`` / ``segmentation_leg``: the region's segmenter on every slice.

    Args:
        paths: ``{"segmentation_<region>": [shipped, live]}``.
        region: "thigh" or "leg".
        labels: muscle name -> global label value of the region.
    """

    def __init__(self, paths, region: str, labels: dict[str, int]):
        super().__init__(paths, InferType.SEGMENTATION, labels,
                         f"{region.capitalize()} segmenter: {len(labels)} muscles on every slice")
        self.region = region

    def run_inferer(self, data, convert_to_batch=True, device="cpu"):
        n_slices = data["image"].shape[-1]
        slices = self.selected_slices(data, n_slices)
        grid = np.zeros((*data["image"].shape[1:3], n_slices), np.uint8)
        self.segment(data, slices, self.region, device, grid)
        data["pred"] = torch.from_numpy(grid)[None]
        data["result"] = {"region": self.region, "slices": slices}
        return data

    def post_transforms(self, data=None):
        return self.label_post_transforms(data, self.labels)
