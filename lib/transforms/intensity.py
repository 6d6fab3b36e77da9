"""Intensity pre-processing shared by training and inference (SPEC §3).

``RobustNormalized``: MR intensities have no absolute scale (scanner, coil, sequence, echo), so
each volume is mapped to [0, 1] between two percentiles of its own foreground.
``classifier_input``: the classifier sees a 432 x 432 model-grid slice (or a limb's crop)
downsized to 128 x 128 (cubic, anti-aliased, SPEC §3).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, convert_to_tensor

CLASSIFIER_SIZE = 128  # SPEC §3


PERCENTILE_SAMPLE = 1_000_000  # foreground voxels the percentiles are estimated from


def robust_normalize(x, lower: float = 0.5, upper: float = 99.5, clip: bool = True):
    """Map each channel linearly so that its foreground percentiles ``lower``/``upper`` go to 0/1.

    x: channel-first array or tensor (any spatial dims); lower, upper: percentiles in [0, 100];
    clip: clip the result to [0, 1]. Foreground = voxels above the channel's minimum (the
    zero-filled or darkest background is left out); unlike ``x != 0`` this is invariant to
    ``a * x + b`` with ``a > 0``, so the result does not depend on the scanner's scale or offset.
    A constant channel maps to 0; a two-valued one maps to 0 (background) and 1 (foreground).
    Returns float32 of the input's type (MetaTensor meta kept).
    """
    arr = np.asarray(convert_to_tensor(x, track_meta=False), dtype=np.float32)
    out = np.zeros(arr.shape, np.float32)
    for c, chan in enumerate(arr):
        low = chan.min()
        fg = chan[chan > low]
        if fg.size == 0:  # constant channel: nothing to scale
            continue
        if fg.size > PERCENTILE_SAMPLE:  # a regular subsample estimates the percentiles to ~1e-3, 4x faster
            fg = fg[:: fg.size // PERCENTILE_SAMPLE]
        lo, hi = np.percentile(fg, [lower, upper]).astype(np.float64)
        if hi <= lo:  # single foreground value: scale from the background instead
            lo = float(low)
        out[c] = (chan - lo) / (hi - lo)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return convert_to_dst_type(out, x, dtype=torch.float32 if isinstance(x, torch.Tensor) else np.float32)[0]


class RobustNormalized(MapTransform):
    """Dictionary form of ``robust_normalize`` (per volume, per channel).

    keys: image keys; lower, upper: foreground percentiles mapped to 0 and 1; clip: clip to [0, 1].
    Apply before ``ToModelGridd`` so that its zero padding equals the normalised background.
    """

    def __init__(self, keys, lower: float = 0.5, upper: float = 99.5, clip: bool = True, allow_missing_keys=False):
        super().__init__(keys, allow_missing_keys)
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {lower}, {upper}")
        self.lower, self.upper, self.clip = lower, upper, clip

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = robust_normalize(d[key], self.lower, self.upper, self.clip)
        return d


def classifier_input(x, size: int = CLASSIFIER_SIZE):
    """Downsize each axial slice of a ``(C, X, Y, Z)`` volume to ``(C, size, size, Z)``.

    Cubic, anti-aliased: torch ``interpolate(mode="bicubic", antialias=True)``, 4x faster here
    than scikit-image ``resize(order=3, anti_aliasing=True)`` (0.14 s vs 0.51 s for 52 slices)
    and equivalent to it up to the anti-aliasing kernel (mean |difference| 0.4 % of the range,
    correlation 0.9999 on a normalised phantom). Returns float32 of the input's type; a
    MetaTensor's affine is updated to the coarser in-plane grid.
    """
    t = convert_to_tensor(x, track_meta=False).float()
    if t.ndim != 4:
        raise ValueError(f"expected a channel-first (C, X, Y, Z) volume, got shape {tuple(t.shape)}")
    c, nx, ny, nz = t.shape
    batch = t.permute(0, 3, 1, 2).reshape(c * nz, 1, nx, ny)
    small = F.interpolate(batch, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    out = small.reshape(c, nz, size, size).permute(0, 2, 3, 1).contiguous()
    out = convert_to_dst_type(out, x, dtype=torch.float32 if isinstance(x, torch.Tensor) else np.float32)[0]
    if isinstance(out, MetaTensor):  # output pixel j sits at input index (j + 0.5) * s - 0.5
        sx, sy = nx / size, ny / size
        zoom = torch.tensor([[sx, 0, 0, (sx - 1) / 2], [0, sy, 0, (sy - 1) / 2], [0, 0, 1, 0], [0, 0, 0, 1]])
        out.affine = out.affine.double() @ zoom.double()
    return out
