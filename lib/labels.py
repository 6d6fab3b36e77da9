"""The label map shared by every network, task and file of the product.

Values in label files (datastore, infer results) are *global*: thigh muscles 1-12 and leg
muscles 13-18, so one volume can hold both regions (a long field of view through the knee).
Each segmenter predicts *channels*: 0 = background, then its muscles in SPEC §1 order.
The classifier predicts the region: thigh = class 0, leg = class 1.

Side-split labels (``split_sides``) add ``SIDE_OFFSET`` to the value for the left limb:
``vastus_lateralis_right`` = 1, ``vastus_lateralis_left`` = 1 + 18 = 19.
"""

from __future__ import annotations

import numpy as np

REGIONS = ("thigh", "leg")  # classifier output order

THIGH_MUSCLES = (
    "vastus_lateralis",
    "vastus_medialis",
    "vastus_intermedius",
    "rectus_femoris",
    "sartorius",
    "gracilis",
    "adductor_magnus",
    "semimembranosus",
    "semitendinosus",
    "biceps_femoris_long_head",
    "biceps_femoris_short_head",
    "adductor_longus",
)
LEG_MUSCLES = (
    "soleus",
    "gastrocnemius_medialis",
    "gastrocnemius_lateralis",
    "tibialis_anterior",
    "extensor_digitorum_longus",
    "peroneus",
)
MUSCLES = {"thigh": THIGH_MUSCLES, "leg": LEG_MUSCLES}
# Muscles on the lateral and the medial side of their limb (anatomy texts; the muscles that lie
# anterior or posterior, mid-limb, are in neither): which of a lone limb's sides faces the
# patient's right tells which limb it is (``lib.transforms.postprocess.split_sides``).
LATERAL_MUSCLES = ("vastus_lateralis", "biceps_femoris_long_head", "biceps_femoris_short_head",
                   "gastrocnemius_lateralis", "extensor_digitorum_longus", "peroneus")
MEDIAL_MUSCLES = ("vastus_medialis", "sartorius", "gracilis", "adductor_magnus", "semimembranosus",
                  "adductor_longus", "gastrocnemius_medialis")
FIRST_VALUE = {"thigh": 1, "leg": len(THIGH_MUSCLES) + 1}
SIDE_OFFSET = len(THIGH_MUSCLES) + len(LEG_MUSCLES)  # 18
BORDER_SIGMA_PX = {"thigh": 7.0, "leg": 8.0}  # SPEC §5 border-weight sigma


def region_labels(region: str) -> dict[str, int]:
    """Muscle name -> global label value for one region."""
    check_region(region)
    first = FIRST_VALUE[region]
    return {name: first + i for i, name in enumerate(MUSCLES[region])}


def all_labels() -> dict[str, int]:
    """Muscle name -> global label value for both regions (1-18)."""
    return {**region_labels("thigh"), **region_labels("leg")}


def side_labels() -> dict[str, int]:
    """``<muscle>_right`` / ``<muscle>_left`` -> value, right = global value, left = + 18."""
    out = {}
    for name, value in all_labels().items():
        out[f"{name}_right"] = value
        out[f"{name}_left"] = value + SIDE_OFFSET
    return out


def num_classes(region: str) -> int:
    """Segmenter output channels for a region (background included)."""
    check_region(region)
    return len(MUSCLES[region]) + 1


def check_region(region: str) -> str:
    if region not in MUSCLES:
        raise ValueError(f"unknown region {region!r}: expected one of {', '.join(REGIONS)}")
    return region


def global_to_channels(label: np.ndarray, region: str) -> np.ndarray:
    """Global label values -> segmenter channels (0..K); muscles of the other region -> 0."""
    first, count = FIRST_VALUE[check_region(region)], len(MUSCLES[region])
    label = np.asarray(label)
    inside = (label >= first) & (label < first + count)
    return np.where(inside, label - first + 1, 0).astype(np.uint8)


def channels_to_global(channels: np.ndarray, region: str) -> np.ndarray:
    """Segmenter channels (0..K) -> global label values (background stays 0)."""
    first = FIRST_VALUE[check_region(region)]
    channels = np.asarray(channels)
    return np.where(channels > 0, channels.astype(np.int16) + first - 1, 0).astype(np.uint8)


def region_of_values(values) -> str | None:
    """The region whose muscles a set of global label values belongs to (majority), or None."""
    values = np.asarray(list(values)).ravel()
    thigh = int(np.count_nonzero((values >= 1) & (values <= len(THIGH_MUSCLES))))
    leg = int(np.count_nonzero((values > len(THIGH_MUSCLES)) & (values <= SIDE_OFFSET)))
    if thigh == leg == 0:
        return None
    return "thigh" if thigh >= leg else "leg"
