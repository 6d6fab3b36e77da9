"""Post-processing of predicted label volumes on the input's own grid.

``SplitSidesd``: per-side labels (``<muscle>_right`` = value, ``<muscle>_left`` = value + 18).
The side comes from world coordinates, not array order: in RAS world space +x points to the
patient's right, whatever the file's orientation. In each axial slice the muscle voxels are
split at the widest gap along x (the space between the two limbs); a slice whose widest gap is
under ``min_gap_mm`` holds one limb, whose side is the sign of its x (scanners centre the
patient at x = 0).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import MapTransform

from lib.labels import SIDE_OFFSET
from lib.transforms.geometry import axial_axis, world_x


def split_sides(label: np.ndarray, affine: np.ndarray, min_gap_mm: float = 8.0) -> np.ndarray:
    """Label volume (X, Y, Z) with left-limb voxels moved to ``value + SIDE_OFFSET``."""
    label = np.asarray(label)
    out = label.astype(np.uint8).copy()
    x = world_x(affine, label.shape)
    axis = axial_axis(affine)
    for k in range(label.shape[axis]):
        sl = [slice(None)] * 3
        sl[axis] = k
        sl = tuple(sl)
        muscle = label[sl] > 0
        if not muscle.any():
            continue
        xs = x[sl][muscle]
        ordered = np.sort(xs)
        gaps = np.diff(ordered)
        if gaps.size and gaps.max() >= min_gap_mm:
            cut = ordered[gaps.argmax()] + gaps.max() / 2
            left = xs < cut  # smaller RAS x = patient's left
        else:
            left = np.full(xs.shape, xs.mean() < 0)
        values = out[sl][muscle]
        values[left] = values[left] + SIDE_OFFSET
        plane = out[sl]
        plane[muscle] = values
        out[sl] = plane
    return out


class SplitSidesd(MapTransform):
    """Split labels by limb (see module doc). ``affine_key``: where the world affine is read."""

    def __init__(self, keys, affine_key: str = "image_original", min_gap_mm: float = 8.0):
        super().__init__(keys)
        self.affine_key, self.min_gap_mm = affine_key, min_gap_mm

    def __call__(self, data):
        d = dict(data)
        affine = np.asarray(d[self.affine_key].affine)
        for key in self.key_iterator(d):
            label = np.asarray(d[key])[0]
            d[key] = torch.as_tensor(split_sides(label, affine, self.min_gap_mm))[None]
        return d
