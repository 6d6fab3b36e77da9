"""Undoing the class weights of the training loss at prediction time (logit adjustment).

The segmenters train with SPEC §5's weighted cross-entropy, whose class term is the inverse
frequency of each class, capped (``lib.transforms.weights``). On the leg phantoms that weights
background 0.15 and the muscles 11-20, so a network trained this way predicts as if muscles were
about a hundred times more frequent than they are, and small muscles twice as frequent as the
soleus. Where it is sure this changes nothing; where it hesitates (real scans: the fascia
between two muscles, the deep posterior group, the subcutaneous fat) the labels grow into
background and small muscles grow into large ones. Menon et al., "Long-tail learning via logit
adjustment" (ICLR 2021), show that subtracting ``tau * log(weight)`` from the logits of such a
model restores the plain posterior's argmax (``tau = 1`` for a purely class-weighted loss). Here
the border term of the weight map (the same for every class) dilutes the class term, so a
smaller ``tau`` fits: ``TAU`` was chosen on the phantom *validation* subjects that pretraining
selects models on (``SegmenterValidation``), over 0 / 0.15 / 0.25 / 0.35 / 0.5, for the shipped
leg and thigh segmenters and three leg segmenters trained without the real slice
(2026-12-05). Measured at 0.35:

- phantom validation: shipped leg 0.684 -> 0.693, shipped thigh 0.646 -> 0.661, the three
  leave-one-out leg models 0.784 / 0.785 / 0.790 -> 0.814 / 0.810 / 0.822;
- held-out phantom test set (``main.py evaluate``): shipped thigh 0.883 -> 0.895, leg 0.909 -> 0.919;
- the real leg slice, scored by the three models that never saw it: 0.648 / 0.672 / 0.647 ->
  0.676 / 0.704 / 0.670 (the gastrocnemius lateralis and EDL were labelled 2-2.5x their size).

A checkpoint carries the class weights its loss used as ``meta["class_weights"]`` (pretraining
writes them; a fine-tuned version keeps its parent's meta). ``attach`` turns them into
``model.logit_adjustment``, which ``lib.networks.fast.predict_logits`` adds to the logits and
``prepare_for_inference`` folds into the last convolution's bias (no cost per prediction). A
checkpoint without them (the classifier, an older file) is served as it is.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

TAU = 0.35


def logit_offsets(class_weights: Sequence[float], tau: float = TAU) -> torch.Tensor:
    """The per-class offsets (C,) to add to the logits: ``-tau * log(weight)``; 0 for a class
    of weight 0 (absent from the training data: no weight to undo).

    Args:
        class_weights: the class term of the training loss, one weight >= 0 per channel.
        tau: strength; 0 leaves the logits as they are, 1 removes a purely class-weighted loss's bias.
    """
    weights = np.asarray(class_weights, np.float64)
    if weights.ndim != 1 or not len(weights) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"class weights must be finite and >= 0, one per class: {class_weights!r}")
    return torch.from_numpy(-tau * np.log(np.where(weights > 0, weights, 1.0))).float()


def attach(model: nn.Module, meta: dict, tau: float = TAU) -> nn.Module:
    """Set ``model.logit_adjustment`` from ``meta["class_weights"]`` (None when it has none);
    returns the model. A model whose output channels do not match the weights is an error.

    An ensemble (``lib.networks.ensemble``) gets one adjustment per member, from
    ``meta["member_class_weights"]`` (each member's loss), and none of its own."""
    members = getattr(model, "members", None)
    if members is not None:
        member_weights = meta.get("member_class_weights") or [None] * len(members)
        if len(member_weights) != len(members):
            raise ValueError(f"{len(member_weights)} members' class weights for an ensemble of {len(members)}")
        for member, weights in zip(members, member_weights):
            attach(member, {"class_weights": weights}, tau)
        model.logit_adjustment = None
        return model
    weights = meta.get("class_weights")
    if weights is None:
        model.logit_adjustment = None
        return model
    offsets = logit_offsets(weights, tau)
    channels = getattr(model, "config", {}).get("num_classes")
    if channels is not None and channels != len(offsets):
        raise ValueError(f"{len(offsets)} class weights for a network of {channels} classes")
    model.logit_adjustment = offsets
    return model
