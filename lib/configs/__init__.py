"""One config per served model, in the order viewers list them (``muscle`` first: the default)."""

from lib.configs.classifier import ClassifierConfig
from lib.configs.muscle import MuscleConfig
from lib.configs.segmentation import SegmentationLegConfig, SegmentationThighConfig
from lib.models.catalog import CLASSIFIER, segmenter_name

CONFIGS = {
    "muscle": MuscleConfig,
    CLASSIFIER: ClassifierConfig,
    segmenter_name("thigh"): SegmentationThighConfig,
    segmenter_name("leg"): SegmentationLegConfig,
}
