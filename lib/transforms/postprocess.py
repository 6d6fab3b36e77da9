"""Post-processing of predicted label volumes on the input's own grid.

``SplitSidesd``: per-side labels (``<muscle>_right`` = value, ``<muscle>_left`` = value + 18).
The side comes from world coordinates, not array order: in RAS world space +x points to the
patient's right, whatever the file's orientation. In each axial slice the muscle voxels are
split at the widest gap along x (the space between the two limbs). A slice without such a gap
(or whose gap leaves one side a sliver: a gap between one limb's own muscles) holds one limb: in
a scan of two limbs, each piece between gaps goes to the limb whose x it is nearer. In a scan of
one limb, its side is read from the anatomy: its lateral muscles (``lib.labels.LATERAL_MUSCLES``) lie toward the patient's right of its medial
ones in a right limb. The sign of its x is the last resort (no lateral or medial muscle found);
it held for the phantoms but not for real scans of one limb, which the scanner centres near
x = 0 (a real left calf so placed came out right on 24 of its 31 slices and left on 7), nor
for files whose origin is elsewhere (``qmritools_leg``'s x runs 240-718 mm).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import MapTransform

from lib.labels import LATERAL_MUSCLES, MEDIAL_MUSCLES, SIDE_OFFSET, all_labels
from lib.transforms.geometry import axial_axis, world_x

_VALUES = all_labels()
LATERAL_VALUES = np.array([_VALUES[m] for m in LATERAL_MUSCLES])
MEDIAL_VALUES = np.array([_VALUES[m] for m in MEDIAL_MUSCLES])


def lone_limb_is_left(values: np.ndarray, xs: np.ndarray) -> bool | None:
    """Whether one limb's muscle voxels (``values`` at RAS ``xs``) are a left limb, from where its
    lateral muscles lie against its medial ones; None without both."""
    lateral, medial = np.isin(values, LATERAL_VALUES), np.isin(values, MEDIAL_VALUES)
    if not lateral.any() or not medial.any():
        return None
    return bool(xs[lateral].mean() < xs[medial].mean())  # lateral toward the patient's left


def _nearer_is_left(xs: np.ndarray, min_gap_mm: float, left_x: float, right_x: float) -> np.ndarray:
    """Per voxel at RAS ``xs``: whether its piece (voxels between gaps of ``min_gap_mm`` along x)
    lies nearer the left limb's centre ``left_x`` than the right's. A limb alone on a slice with
    a gap between its own muscles keeps one side; a sliver of the other limb gets that limb's."""
    order = np.argsort(xs, kind="stable")
    piece = np.empty(xs.size, np.intp)
    piece[order] = np.concatenate([[0], np.cumsum(np.diff(xs[order]) >= min_gap_mm)])
    centres = np.bincount(piece, weights=xs) / np.bincount(piece)
    return (np.abs(centres - left_x) < np.abs(centres - right_x))[piece]


def split_sides(label: np.ndarray, affine: np.ndarray, min_gap_mm: float = 8.0,
                min_share: float = 0.1) -> np.ndarray:
    """Label volume (X, Y, Z) with left-limb voxels moved to ``value + SIDE_OFFSET``.

    A slice holds two limbs when its widest gap along x is at least ``min_gap_mm`` and each
    side of it holds at least ``min_share`` of the slice's muscle voxels; a volume is a scan of
    two limbs when a third of its slices with muscle do. Otherwise a gap is one between muscles
    of one limb (at a real calf's ankle end: 2 % of a slice's muscle beyond a 10 mm gap). In a
    scan of two limbs such a slice is not cut at its gap: each piece goes to the limb whose
    centre (the median over the slices of two) is nearer.
    """
    label = np.asarray(label)
    out = label.astype(np.uint8).copy()
    x = world_x(affine, label.shape)
    axis = axial_axis(affine)
    slices = []  # (slice index tuple, muscle mask, xs, values, cut or None, two limbs)
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
        cut, two = None, False
        if gaps.size and gaps.max() >= min_gap_mm:
            i = int(gaps.argmax())
            cut = ordered[i] + gaps[i] / 2
            two = min(i + 1, xs.size - i - 1) >= min_share * xs.size
        slices.append((sl, muscle, xs, out[sl][muscle], cut, two))
    if not slices:
        return out
    pairs = [(xs[xs >= cut].mean(), xs[xs < cut].mean()) for _, _, xs, _, cut, two in slices if two]
    if 3 * len(pairs) >= len(slices):  # a scan of two limbs
        right_x, left_x = np.median(np.array(pairs), axis=0)
        for sl, muscle, xs, values, cut, two in slices:
            if two:
                left = xs < cut  # smaller RAS x = patient's left
            else:  # no second limb here: each piece goes to the nearer limb, none is cut
                left = _nearer_is_left(xs, min_gap_mm, left_x, right_x)
            out[sl][muscle] = np.where(left, values + SIDE_OFFSET, values)  # out[sl] is a view
        return out
    side = lone_limb_is_left(np.concatenate([s[3] for s in slices]), np.concatenate([s[2] for s in slices]))
    for sl, muscle, xs, values, _, _ in slices:  # a scan of one limb: one side for the volume
        is_left = xs.mean() < 0 if side is None else side
        out[sl][muscle] = values + SIDE_OFFSET if is_left else values
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
