"""Configs of the two leaf segmenters: thigh (12 muscles) and leg (6 muscles), SPEC §1."""

from lib.configs.base import MuscleTaskConfig
from lib.labels import region_labels
from lib.models.catalog import segmenter_name
from lib.tasks.infer_segmentation import SegmentationInfer


class SegmentationThighConfig(MuscleTaskConfig):
    networks = (segmenter_name("thigh"),)

    def infer(self):
        return SegmentationInfer(paths=self.paths, region="thigh", labels=region_labels("thigh"))


class SegmentationLegConfig(MuscleTaskConfig):
    networks = (segmenter_name("leg"),)

    def infer(self):
        return SegmentationInfer(paths=self.paths, region="leg", labels=region_labels("leg"))
