"""The segmenters' training augmentation pipeline (SPEC §5) and the left/right flip.

``train_augmentations(region)`` chains, on a dict with ``image`` (1, H, W) float in ~[0, 1],
``label`` (1, H, W) channel values, optional ``side`` (1, H, W) side map and ``region``:

1. ``RandFlipSidesd``: left/right mirror;
2. spatial, SPEC §5: ``RandLimbAffined`` (per-limb rotation +-7 deg and translation up to the
   border), ``RandPiecewiseAffined`` (4x4 grid, 0.1-1 % of the size), ``RandElasticd``
   (alpha 0-20, sigma 5-10); bicubic for the image, nearest for labels and the side map;
3. ``BorderWeightMapd`` -> ``weight`` (optional): computed *after* the spatial steps, from the
   warped label, so it always matches it (cheaper and exact, unlike warping a weight map);
4. intensity (image only): fat/muscle contrast inversion, histogram shift (random monotone
   contrast curve), gamma, smooth bias field, Rician noise;
5. re-normalisation of the image to [0, 1] as at inference (``lib.transforms.intensity``:
   foreground 0.5th / 99.5th percentiles -> 0 / 1, clipped), since the steps above shift it.

Everything draws from its own ``R``: ``train_augmentations(...).set_random_state(seed)`` makes a
run reproducible. Outputs are torch tensors with the input dtypes and shapes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import (Compose, EnsureTyped, MapTransform, RandAdjustContrastd, RandBiasFieldd,
                              RandHistogramShiftd, RandomizableTransform, RandRicianNoised,
                              ScaleIntensityRanged)
from monai.utils import convert_to_dst_type, convert_to_numpy

from lib.transforms.augment_intensity import RandFatMuscleInversiond
from lib.transforms.augment_spatial import RandElasticd, RandLimbAffined, RandPiecewiseAffined
from lib.transforms.intensity import RobustNormalized
from lib.transforms.weights import BorderWeightMapd

__all__ = ["RandFlipSidesd", "RandLimbAffined", "RandPiecewiseAffined", "RandElasticd",
           "RandFatMuscleInversiond", "intensity_augmentations", "train_augmentations"]


class RandFlipSidesd(RandomizableTransform, MapTransform):
    """Mirror left and right (along ``spatial_axis``; 0 = the volume's X, patient's left-right axis).

    Label-safe: segmenter labels do not name a side (both limbs share each value, SPEC §1), and a
    mirrored limb is a plausible limb of the other side. A side map under ``side_key`` (1/2 per
    limb) is flipped too and its 1 and 2 swapped, so it still names the patient's sides.
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), prob: float = 0.5, spatial_axis: int = 0,
                 side_key: str | None = "side", allow_missing_keys: bool = True) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.spatial_axis, self.side_key = spatial_axis, side_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        axis = 1 + self.spatial_axis  # arrays are channel-first
        for key in self.key_iterator(d):
            d[key] = convert_to_dst_type(np.flip(convert_to_numpy(d[key]), axis).copy(), d[key])[0]
        if self.side_key is not None and self.side_key in d:
            side = np.flip(convert_to_numpy(d[self.side_key]), axis)
            swapped = np.where(side == 1, 2, np.where(side == 2, 1, side)).astype(side.dtype)
            d[self.side_key] = convert_to_dst_type(swapped, d[self.side_key])[0]
        return d


def train_augmentations(region: str | None = None, prob: float = 0.5, intensity_prob: float = 0.25,
                        fat_inversion_prob: float = 0.2, flip_prob: float = 0.5, weight_map: bool = True,
                        image_key: str = "image", label_key: str = "label", side_key: str = "side",
                        weight_key: str = "weight", spatial_axis: int = 0, **weight_kwargs) -> Compose:
    """The training augmentation Compose for one region's segmenter (see the module docstring).

    Args:
        region: "thigh"/"leg" for the weight map's sigma and classes; None reads ``data["region"]``.
        prob: probability of each spatial transform; intensity_prob: of each stock intensity one;
        fat_inversion_prob: of the contrast inversion; flip_prob: of the left/right mirror.
        weight_map: add ``weight_key`` (SPEC §5 weight map); weight_kwargs go to ``BorderWeightMapd``.
        image_key, label_key, side_key: the dict's keys (the side map is optional);
        spatial_axis: the left/right axis of the (H, W) slice.
    """
    spatial_keys, modes = (image_key, label_key, side_key), ("bicubic", "nearest", "nearest")
    common = dict(keys=spatial_keys, mode=modes, prob=prob, allow_missing_keys=True)
    steps = [
        RandFlipSidesd((image_key, label_key), prob=flip_prob, spatial_axis=spatial_axis, side_key=side_key),
        RandLimbAffined(image_key=image_key, label_key=label_key, **common),
        RandPiecewiseAffined(**common),
        RandElasticd(**common),
    ]
    if weight_map:
        steps.append(BorderWeightMapd((label_key,), region=region, weight_key=weight_key, image_key=image_key,
                                      **weight_kwargs))
    steps += intensity_augmentations(intensity_prob, fat_inversion_prob, image_key, label_key)
    steps.append(EnsureTyped((image_key, label_key, side_key, weight_key), allow_missing_keys=True))
    return Compose(steps)


def intensity_augmentations(intensity_prob: float = 0.25, fat_inversion_prob: float = 0.2,
                            image_key: str = "image", label_key: str = "label", normalize: bool = True) -> list:
    """The intensity half of ``train_augmentations``: fat/muscle inversion, histogram shift, gamma,
    bias field, Rician noise, then robust normalisation of the slice or crop (``normalize=False``:
    clipped to [0, 1] instead, keeping the scale of a volume normalised as a whole); ``label_key``
    is read, not changed."""
    return [
        RandFatMuscleInversiond((image_key,), label_key=label_key, prob=fat_inversion_prob),
        RandHistogramShiftd(image_key, num_control_points=(5, 10), prob=intensity_prob),
        RandAdjustContrastd(image_key, gamma=(0.7, 1.5), prob=intensity_prob),
        RandBiasFieldd(image_key, degree=3, coeff_range=(0.0, 0.2), prob=intensity_prob),
        RandRicianNoised(image_key, std=0.03, sample_std=True, prob=intensity_prob),
        RobustNormalized(image_key) if normalize
        else ScaleIntensityRanged(image_key, a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
    ]
