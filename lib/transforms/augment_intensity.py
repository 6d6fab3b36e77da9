"""Intensity training augmentations of 2D slices beyond MONAI's stock ones.

The published networks saw only the first-echo GRE magnitude (fat bright, muscle darker).
``RandFatMuscleInversiond`` lets a segmenter survive other contrasts: it remaps intensities with a
non-monotone piecewise-linear curve so that fat ends up *darker* than muscle (Dixon water, STIR,
fat-suppressed PD) or about as bright (PD), with fat-infiltrated muscle in between - what those
sequences show. The stock gamma, bias-field, histogram-shift and noise transforms are assembled
in ``lib.transforms.augment.train_augmentations``. Labels are read here, never modified.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, convert_to_numpy

from lib.transforms.weights import BODY_THRESHOLD, IGNORE_VALUE


class RandFatMuscleInversiond(RandomizableTransform, MapTransform):
    """Invert (or flatten) the fat/muscle contrast of a [0, 1]-normalised image.

    The muscle level ``m`` is the median intensity under the muscle labels (or of the body, when
    no label is there), the fat level ``f`` the ``fat_percentile`` of the body (fat is the
    brightest tissue in GRE/T1). The curve maps 0 -> 0 (background stays dark), m -> a and
    f and above -> b, linearly in between, with a ~ U(muscle_level) and b = a * U(fat_ratio)
    (b/a < 1: fat darker than muscle). Slices without fat brighter than muscle are left as is.

    keys: image keys; label_key: channel label (read only); body_threshold: body = image above it.
    """

    def __init__(self, keys: KeysCollection = ("image",), label_key: str | None = "label", prob: float = 0.2,
                 muscle_level: tuple[float, float] = (0.5, 0.9), fat_ratio: tuple[float, float] = (0.1, 1.0),
                 fat_percentile: float = 95.0, body_threshold: float = BODY_THRESHOLD,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key, self.muscle_level, self.fat_ratio = label_key, tuple(muscle_level), tuple(fat_ratio)
        self.fat_percentile, self.body_threshold = fat_percentile, body_threshold

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self.level = self.R.uniform(*self.muscle_level)
        self.ratio = self.R.uniform(*self.fat_ratio)

    def curve(self, image: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Control points (x, y) of the remapping for this image, or None when there is no fat to invert."""
        body = image > self.body_threshold
        if not body.any():
            return None
        muscle = None if label is None else (label > 0) & (label != IGNORE_VALUE)
        m = float(np.median(image[muscle] if muscle is not None and muscle.any() else image[body]))
        f = float(np.percentile(image[body], self.fat_percentile))
        if not 0 < m < f / 1.05:
            return None
        return np.array([0.0, m, f]), np.array([0.0, self.level, self.level * self.ratio])

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        label = None
        if self.label_key is not None and self.label_key in d:
            label = convert_to_numpy(d[self.label_key])[0]
        for key in self.key_iterator(d):
            image = convert_to_numpy(d[key])
            points = self.curve(image[0], label)
            if points is None:
                continue
            # np.interp holds the end values outside [0, f]: fat brighter than f also maps to b
            out = np.interp(image, *points).astype(image.dtype, copy=False)
            d[key] = convert_to_dst_type(out, d[key])[0]
        return d
