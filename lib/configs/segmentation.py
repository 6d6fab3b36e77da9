"""Configs of the two leaf segmenters: thigh (12 muscles) and leg (6 muscles), SPEC §1."""

from lib.configs.base import MuscleTaskConfig
from lib.labels import region_labels
from lib.tasks.infer_segmentation import SegmentationInfer


class SegmentationThighConfig(MuscleTaskConfig):
    networks = ("segmentation_thigh",)

    def infer(self):
        return SegmentationInfer(paths=self.paths, region="thigh", labels=region_labels("thigh"))


class SegmentationLegConfig(MuscleTaskConfig):
    networks = ("segmentation_leg",)

    def infer(self):
        return SegmentationInfer(paths=self.paths, region="leg", labels=region_labels("leg"))
