"""The networks of the tree (SPEC §1), the region each segments, and their weight file names.

A classifier routes each slice to the segmenter of its region; each network's weights are
``<network>.pt`` beside a ``<network>.json`` record of how they were made, in whichever folder
holds them (``weights/``, the live model folder, ``pretrain --out``).
"""

from __future__ import annotations

from pathlib import Path

from lib.labels import REGIONS, check_region

CLASSIFIER = "classifier"
SEGMENTER_PREFIX = "segmentation_"


def segmenter_name(region: str) -> str:
    """The network that segments ``region``'s muscles: ``segmentation_thigh`` / ``segmentation_leg``."""
    return f"{SEGMENTER_PREFIX}{check_region(region)}"


SEGMENTERS = tuple(segmenter_name(region) for region in REGIONS)
NETWORKS = (CLASSIFIER, *SEGMENTERS)  # every network the app serves, trains and ships


def region_of(network: str) -> str | None:
    """The region a segmenter segments; None for the classifier."""
    return network.removeprefix(SEGMENTER_PREFIX) if network in SEGMENTERS else None


def weight_file(folder, network: str) -> Path:
    """The weights of ``network`` in ``folder``."""
    return Path(folder) / f"{network}.pt"


def record_file(folder, network: str) -> Path:
    """How the weights of ``network`` in ``folder`` were made (JSON beside them)."""
    return Path(folder) / f"{network}.json"
