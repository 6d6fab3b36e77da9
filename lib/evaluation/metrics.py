"""Overlap metrics on label maps, built on MONAI's metric functions."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot


def dice_per_class(pred, truth, num_classes: int) -> np.ndarray:
    """Dice of each foreground class (1..num_classes-1) over all given pixels.

    ``pred`` and ``truth`` are integer maps of the same shape (any number of slices). A class
    absent from both gets NaN (it says nothing), absent from one of them gets 0.
    """
    pred_t = torch.as_tensor(np.ascontiguousarray(pred), dtype=torch.long).reshape(1, 1, -1)
    truth_t = torch.as_tensor(np.ascontiguousarray(truth), dtype=torch.long).reshape(1, 1, -1)
    scores = compute_dice(
        one_hot(pred_t, num_classes, dim=1), one_hot(truth_t, num_classes, dim=1),
        include_background=False, ignore_empty=True,
    )[0].numpy()
    present = np.isin(np.arange(1, num_classes), np.unique(np.concatenate([pred_t.ravel(), truth_t.ravel()])))
    return np.where(present, np.nan_to_num(scores, nan=0.0), np.nan)


def mean_dice(pred, truth, num_classes: int) -> float:
    """Mean Dice over the foreground classes present in the prediction or the truth."""
    scores = dice_per_class(pred, truth, num_classes)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")
