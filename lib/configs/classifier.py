"""Config of the thigh/leg slice classifier (SPEC §1: the tree's inner node)."""

from lib.configs.base import MuscleTaskConfig
from lib.labels import REGIONS
from lib.models.catalog import CLASSIFIER
from lib.tasks.infer_classifier import ClassifierInfer


class ClassifierConfig(MuscleTaskConfig):
    networks = (CLASSIFIER,)

    def infer(self):
        return ClassifierInfer(paths=self.paths, labels={name: i for i, name in enumerate(REGIONS)})
