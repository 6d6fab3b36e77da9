"""Config of ``muscle``: the routed pipeline (classifier -> thigh or leg segmenter per slice)."""

from lib.configs.base import MuscleTaskConfig
from lib.labels import all_labels
from lib.models.catalog import NETWORKS
from lib.tasks.infer_muscle import MuscleInfer
from lib.tasks.scoring_evaluation import EvaluationScoring
from lib.tasks.scoring_slices import SliceUncertaintyScoring
from lib.tasks.strategy_slices import ClassStratifiedSlices, PowerUncertainSlices, UncertainSlices


class MuscleConfig(MuscleTaskConfig):
    networks = NETWORKS
    trains = ()  # the classifier and each segmenter the corrected slices call for

    def infer(self):
        return MuscleInfer(paths=self.paths, labels=all_labels())

    def strategy(self):
        return {"uncertain_slices": UncertainSlices(self.paths), "power_uncertain": PowerUncertainSlices(self.paths),
                "class_stratified": ClassStratifiedSlices(self.paths)}

    def scoring_method(self):
        return {"slice_uncertainty": SliceUncertaintyScoring(self.paths), "evaluation": EvaluationScoring(self.model_dir)}
