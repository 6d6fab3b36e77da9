"""One config per served model, in the order viewers list them (``muscle`` first: the default)."""

from lib.configs.classifier import ClassifierConfig
from lib.configs.muscle import MuscleConfig
from lib.configs.segmentation import SegmentationLegConfig, SegmentationThighConfig

CONFIGS = {
    "muscle": MuscleConfig,
    "classifier": ClassifierConfig,
    "segmentation_thigh": SegmentationThighConfig,
    "segmentation_leg": SegmentationLegConfig,
}
