"""The one real labelled slice (both lower legs, T1-weighted) shipped in /work/shared/data.

Source: dafne-imaging/dafne-evaluation ``image_data/`` (commit 5f5d824b, Apache License 2.0;
attribution in studies/REAL_DATA_NOTICE.md). The npz image is (rows, cols) in the radiological
display (patient's right on the image's left, anterior at the top), so the LPS array of
docs/CONVENTIONS.md is its transpose: X = cols, Y = rows.

Overlapping ROIs (a few pixels along shared borders): the *smallest* ROI wins, so a large
muscle drawn generously never swallows the edge of a small neighbour. This does not depend on
the order of the masks in the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

from lib import labels as L
from lib.data.phantoms.phantom import phantom_affine
from lib.errors import UserError
from lib.label_aliases import accepted_names, read_muscle_name
from lib.paths import SHARED_DATA

IMAGE_FILE = "leg_t1_example_image.npz"
ROIS_FILE = "leg_t1_example_rois.npz"
SLICE_THICKNESS = 5.0  # mm, as the study protocol (SPEC §2)
STUDY_ID = "real_leg_t1"

SIDES = {"right": 1, "left": 2}  # side-map values, as Phantom.side


@dataclass
class RealSlice:
    """image: float32 (X, Y, 1) LPS; label: uint8 global leg values; side: uint8 map of the
    limbs (1 right, 2 left, 0 outside the body); affine: diag(-sx, -sy, 5 mm) + origin."""

    image: np.ndarray
    label: np.ndarray
    side: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]


def roi_target(name: str) -> tuple[int, int]:
    """(global label value, side) of an ROI name such as ``Soleus_R`` or ``Extensor Longus
    Digitorum_L``: Dafne's names, read through the one alias table (``lib.label_aliases``)."""
    read = read_muscle_name(name)
    if read.muscle is None or read.side is None:
        raise UserError(f"unknown ROI {name!r}: expected <muscle>_R or <muscle>_L "
                        f"({accepted_names()})")
    return L.all_labels()[read.muscle], SIDES[read.side]


def load_real_slice(folder=SHARED_DATA) -> RealSlice:
    """Load the real slice and its 12 ROIs from ``folder`` (numpy.load, no pickle)."""
    folder = Path(folder)
    with np.load(folder / IMAGE_FILE, allow_pickle=False) as f:
        image_rc = np.asarray(f["image"], np.float32)
        row_mm, col_mm = (float(v) for v in f["resolution"])
    with np.load(folder / ROIS_FILE, allow_pickle=False) as f:
        rois = {name: np.asarray(f[name]).reshape(image_rc.shape) > 0 for name in f.files}
    label_rc = np.zeros(image_rc.shape, np.uint8)
    side_rc = np.zeros(image_rc.shape, np.uint8)
    for name in sorted(rois, key=lambda n: (-int(rois[n].sum()), n)):  # smallest painted last
        value, side = roi_target(name)
        label_rc[rois[name]] = value
        side_rc[rois[name]] = side
    side_rc = _limb_sides(image_rc, side_rc)
    spacing = (col_mm, row_mm, SLICE_THICKNESS)
    image, label, side = (a.T[:, :, None].copy() for a in (image_rc, label_rc, side_rc))
    return RealSlice(image=image, label=label, side=side,
                     affine=phantom_affine(image.shape, spacing), spacing=spacing)


def _limb_sides(image_rc: np.ndarray, roi_side_rc: np.ndarray) -> np.ndarray:
    """Side map of the whole limbs: each connected body region (signal above a tenth of the
    Otsu threshold, holes filled) takes the side of the ROIs it contains."""
    body = ndi.binary_fill_holes(image_rc > 0.1 * filters.threshold_otsu(image_rc))
    regions, n = ndi.label(body)
    side = np.zeros(image_rc.shape, np.uint8)
    for region in range(1, n + 1):
        votes = np.bincount(roi_side_rc[regions == region], minlength=3)[1:]
        if votes.any():
            side[regions == region] = 1 + int(np.argmax(votes))
    side[roi_side_rc > 0] = roi_side_rc[roi_side_rc > 0]
    return side


def real_slice_tissue(image: np.ndarray, label: np.ndarray, mm: float = 1.037037) -> np.ndarray:
    """Tissue codes (``lib.data.phantoms.layout``) of the real fat-bright (T1) slice on the model
    grid, so it can be rendered in other contrasts: fat and marrow bright, muscle mid, cortex dark.

    image: (H, W) normalised to [0, 1]; label: its global muscle values. Inside the deep fascia,
    unlabelled muscle (the deep posterior group) is OTHER_MUSCLE; bright regions ringed by dark
    cortex are marrow. Thresholds come from the slice itself: its labelled muscle and its fat.
    """
    from lib.data.phantoms.layout import (CORTEX, FAT_PAD, MARROW, MUSCLE, OTHER_MUSCLE, SKIN, SUBCUT_FAT,
                                          VESSEL)

    body = ndi.binary_fill_holes(ndi.binary_opening(image > 0.08, iterations=1))
    muscle_level = float(np.median(image[label > 0]))
    dark, bright = 0.55 * muscle_level, 0.5 * (muscle_level + float(np.percentile(image[body], 90)))
    components, n = ndi.label(body)
    tissue = np.zeros(image.shape, np.uint8)
    for c in range(1, n + 1):
        limb = components == c
        if limb.sum() * mm * mm < 1000:
            continue
        outer = limb & ~ndi.binary_erosion(limb, iterations=1)
        rim = ~ndi.binary_erosion(limb, iterations=3)
        subcutaneous = ndi.binary_propagation(outer & ((image > bright) | (image < dark)),
                                              mask=limb & ((image > bright) | rim))
        compartment = ndi.binary_fill_holes(ndi.binary_opening(limb & ~subcutaneous, iterations=2))
        t = np.full(image.shape, SUBCUT_FAT, np.uint8)
        t[outer | (limb & ~ndi.binary_erosion(limb, iterations=2) & (image < bright))] = SKIN
        t[compartment & (image > bright)] = FAT_PAD
        t[compartment & (image <= bright)] = OTHER_MUSCLE
        darkish = compartment & (image < dark)
        t[darkish] = VESSEL
        enclosed = ndi.binary_fill_holes(ndi.binary_closing(darkish, iterations=1)) & ~darkish
        parts, m = ndi.label(enclosed)
        for k in range(1, m + 1):
            if (parts == k).sum() * mm * mm > 20:
                t[ndi.binary_dilation(parts == k, iterations=round(6 / mm)) & darkish] = CORTEX
                t[parts == k] = MARROW
        t[limb & (label > 0)] = MUSCLE
        tissue = np.where(limb, t, tissue)
    return tissue
