"""Overlap metrics on label maps: Dice from a joint histogram, surface distances from MONAI."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance


def dice_per_class(pred, truth, num_classes: int) -> np.ndarray:
    """Dice of each foreground class (1..num_classes-1) over all given pixels.

    ``pred`` and ``truth`` are integer maps of the same shape (any number of slices). A class
    absent from both gets NaN (it says nothing), absent from one of them gets 0.
    """
    # One joint histogram instead of one-hot stacks: 9 M pixels x 13 classes as one-hot took
    # 7.7 s and 1 GB per validation of 48 slices; this takes well under a second.
    pred = np.asarray(pred, dtype=np.int64).ravel()
    truth = np.asarray(truth, dtype=np.int64).ravel()
    joint = np.bincount(pred * num_classes + truth, minlength=num_classes ** 2).reshape(num_classes, num_classes)
    overlap, sizes = np.diag(joint)[1:], (joint.sum(0) + joint.sum(1))[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sizes > 0, 2.0 * overlap / sizes, np.nan)


def mean_dice(pred, truth, num_classes: int) -> float:
    """Mean Dice over the foreground classes present in the prediction or the truth."""
    scores = dice_per_class(pred, truth, num_classes)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")


def _crop_to_masks(pred: torch.Tensor, truth: torch.Tensor, margin: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Both (1, C, ...) stacks cut to the box holding every mask plus a margin: the same
    distances for a fraction of the memory (MONAI's distance transforms run on the whole grid;
    one call per structure costs more than the grid saved, measured 8x slower)."""
    found = torch.nonzero((pred | truth).flatten(0, 1).any(0))
    lo = (found.min(0).values - margin).clamp(min=0)
    hi = found.max(0).values + margin + 1
    box = (slice(None), slice(None), *(slice(int(a), int(b)) for a, b in zip(lo, hi)))
    return pred[box].float(), truth[box].float()


def surface_distances(pred_masks, truth_masks, spacing) -> tuple[np.ndarray, np.ndarray]:
    """95th-percentile Hausdorff and mean (symmetric) surface distance, in mm, per mask pair.

    ``pred_masks`` and ``truth_masks`` are boolean stacks (C, H, W) or (C, X, Y, Z) of C
    structures on one grid with voxel size ``spacing`` (mm per axis). Per structure: NaN
    when both masks are empty (nothing to compare), +inf when exactly one is empty (a
    missed or an invented muscle has no finite distance), else MONAI's distances.
    """
    pred = torch.as_tensor(np.ascontiguousarray(pred_masks), dtype=torch.bool)[None]
    truth = torch.as_tensor(np.ascontiguousarray(truth_masks), dtype=torch.bool)[None]
    n = pred.shape[1]
    hd95, msd = np.full(n, np.nan), np.full(n, np.nan)
    has_pred, has_truth = pred.flatten(2).any(2)[0].numpy(), truth.flatten(2).any(2)[0].numpy()
    both = np.flatnonzero(has_pred & has_truth)
    hd95[has_pred ^ has_truth] = msd[has_pred ^ has_truth] = np.inf
    if both.size:
        spacing = [float(s) for s in spacing]
        p, t = _crop_to_masks(pred[:, both], truth[:, both])
        hd95[both] = compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=spacing)[0].numpy()
        msd[both] = compute_average_surface_distance(p, t, include_background=True, symmetric=True, spacing=spacing)[0].numpy()
    return hd95, msd
