"""Config of ``muscle``: the routed pipeline (classifier -> thigh or leg segmenter per slice)."""

from lib.configs.base import MuscleTaskConfig
from lib.labels import all_labels
from lib.tasks.infer_muscle import MuscleInfer


class MuscleConfig(MuscleTaskConfig):
    networks = ("classifier", "segmentation_thigh", "segmentation_leg")
    trains = ()  # the classifier and each segmenter the corrected slices call for

    def infer(self):
        return MuscleInfer(paths=self.paths, labels=all_labels())
