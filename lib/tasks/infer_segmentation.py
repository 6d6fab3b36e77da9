"""Infer task of one leaf segmenter: every (or every chosen) slice through the thigh or leg model."""

from __future__ import annotations

from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.inference.pipeline import label_post_transforms, segment_region
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
        return segment_region(data, self.paths, self.region, device)

    def post_transforms(self, data=None):
        return label_post_transforms(data, self.labels)
