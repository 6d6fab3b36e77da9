"""Training losses (SPEC §5).

* Segmenters: weighted cross-entropy ``L = mean_x w(x) * (-log p_true(x))`` with the border/class
  weight map of ``lib.transforms.weights.BorderWeightMapd``; ``"dice_ce"`` (soft Dice + CE, the
  MONAI ``DiceCELoss(to_onehot_y=True, softmax=True)`` recipe) is the alternative.
* Classifier: categorical cross-entropy.

Every segmentation loss here is called the same way, ``loss(logits, target, weight=None)``, so a
trainer can swap them by name (``make_segmentation_loss``). ``target`` holds channel values
0..C-1 and ``ignore_index`` (255) for unannotated pixels, which contribute nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

IGNORE_INDEX = 255
_REDUCTIONS = ("mean", "sum", "none")


def _as_index_map(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(N, 1, *S) or (N, *S) labels (any dtype) -> (N, *S) long."""
    if target.dim() == logits.dim():
        if target.shape[1] != 1:
            raise ValueError(f"target must have one channel, got shape {tuple(target.shape)}")
        target = target[:, 0]
    return target.long()


class WeightedCrossEntropyLoss(nn.Module):
    """Pixel-weighted cross-entropy on logits (SPEC §5).

    Args:
        ignore_index: target value of unannotated pixels; they add nothing to the sum nor to the
            pixel count of the mean (``None``: every pixel counts).
        reduction: "mean" (sum of w * CE over annotated pixels / their number, so all-ones
            weights give exactly ``F.cross_entropy``), "sum", or "none" ((N, *S), 0 where ignored).

    ``forward(logits (N, C, *S), target (N, 1, *S) or (N, *S), weight (N, 1, *S) or (N, *S) or None)``;
    ``weight=None`` means all ones.
    """

    def __init__(self, ignore_index: int | None = IGNORE_INDEX, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        target = _as_index_map(target, logits)
        valid = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        # cross_entropy's own ignore_index would also work, but an explicit mask serves "none" and weights alike
        pixel = F.cross_entropy(logits, torch.where(valid, target, 0), reduction="none")
        if weight is not None:
            if weight.dim() == logits.dim():
                weight = weight[:, 0]
            pixel = pixel * weight.to(pixel.dtype)
        pixel = pixel * valid.to(pixel.dtype)
        if self.reduction == "none":
            return pixel
        if self.reduction == "sum":
            return pixel.sum()
        return pixel.sum() / valid.sum().clamp(min=1).to(pixel.dtype)


class DiceCEWeighted(nn.Module):
    """Soft Dice + (weighted) cross-entropy, ignoring unannotated pixels.

    With no weight and no ignored pixel it equals MONAI ``DiceCELoss(to_onehot_y=True,
    softmax=True)``; a weight map, when given, weights only the CE term. Ignored pixels are
    removed from both terms (their softmax and one-hot are zeroed before the Dice sums).

    Args:
        include_background: Dice over channel 0 too (MONAI's default).
        lambda_dice, lambda_ce: the terms' factors; ignore_index: as ``WeightedCrossEntropyLoss``.
    """

    def __init__(self, include_background: bool = True, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 ignore_index: int | None = IGNORE_INDEX) -> None:
        super().__init__()
        self.dice = DiceLoss(include_background=include_background)
        self.ce = WeightedCrossEntropyLoss(ignore_index=ignore_index)
        self.lambda_dice, self.lambda_ce, self.ignore_index = lambda_dice, lambda_ce, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        index = _as_index_map(target, logits)
        valid = torch.ones_like(index, dtype=torch.bool) if self.ignore_index is None else index != self.ignore_index
        onehot = F.one_hot(torch.where(valid, index, 0), logits.shape[1]).movedim(-1, 1).to(logits.dtype)
        mask = valid.unsqueeze(1).to(logits.dtype)
        dice = self.dice(torch.softmax(logits, dim=1) * mask, onehot * mask)
        return self.lambda_dice * dice + self.lambda_ce * self.ce(logits, target, weight)


def make_segmentation_loss(name: str = "weighted_ce", **kwargs) -> nn.Module:
    """Segmentation loss by name: "weighted_ce" (SPEC §5, default) or "dice_ce".

    kwargs go to ``WeightedCrossEntropyLoss`` / ``DiceCEWeighted``. Both are called as
    ``loss(logits, target, weight=None)``.
    """
    losses = {"weighted_ce": WeightedCrossEntropyLoss, "dice_ce": DiceCEWeighted}
    if name not in losses:
        raise ValueError(f"unknown segmentation loss {name!r}: expected one of {', '.join(losses)}")
    return losses[name](**kwargs)


def make_classifier_loss() -> nn.Module:
    """Categorical cross-entropy for the thigh/leg classifier (SPEC §5): ``loss(logits (N, 2), target)``.

    target: class indices (N,) long (thigh = 0, leg = 1) or one-hot / probabilities (N, 2) float.
    """
    return nn.CrossEntropyLoss()
