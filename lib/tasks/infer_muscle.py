"""``muscle``: the tree of SPEC §1 — classify each slice, segment it with the matching model."""

from __future__ import annotations

from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.inference.pipeline import label_post_transforms, segment_muscles
from lib.tasks.infer_base import MuscleInferTask


class MuscleInfer(MuscleInferTask):
    """Routed pipeline: one label map with thigh (1-12) and leg (13-18) muscles.

    A volume that holds both regions (a long field of view through the knee) is handled slice
    by slice. ``region`` = "thigh" / "leg" bypasses the classifier.
    """

    def __init__(self, paths, labels: dict[str, int]):
        super().__init__(paths, InferType.SEGMENTATION, labels,
                         "Thigh and leg muscles: classifier routes each slice to the thigh or leg segmenter")

    def run_inferer(self, data, convert_to_batch=True, device="cpu"):
        return segment_muscles(data, self.paths, device)

    def post_transforms(self, data=None):
        return label_post_transforms(data, self.labels)
