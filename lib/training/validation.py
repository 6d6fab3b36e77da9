"""Validation scores used for model selection and for the publish guard."""

from __future__ import annotations

import numpy as np
import torch

from lib.evaluation.metrics import mean_dice
from lib.labels import global_to_channels, num_classes
from lib.networks.fast import predict_logits, prepare_for_inference
from lib.training.slices import SliceSet


@torch.no_grad()
def predict_channels(model, images: torch.Tensor, batch_size: int = 8) -> np.ndarray:
    """Argmax channel maps (N, H, W) of a segmenter over (N, 1, H, W) slices, through the
    inference path (``lib.networks.fast``: batch norm folded, bf16 where the device runs it)."""
    device = next(model.parameters()).device
    fast = prepare_for_inference(model, device)  # scored as it will be served (and 5x faster)
    out = [predict_logits(fast, images[s:s + batch_size]).argmax(1).cpu().numpy().astype(np.uint8)
           for s in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, *images.shape[2:]), np.uint8)


def segmenter_mean_dice(model, data: SliceSet, region: str) -> float:
    """Mean Dice over the region's muscles, pooled over all validation slices."""
    if len(data) == 0:
        return float("nan")
    pred = predict_channels(model, data.images)
    truth = global_to_channels(data.labels[:, 0].numpy(), region)
    return mean_dice(pred, truth, num_classes(region))


@torch.no_grad()
def classifier_accuracy(model, images: torch.Tensor, classes: torch.Tensor, batch_size: int = 64) -> float:
    """Fraction of slices whose region the classifier gets right."""
    model.eval()
    device = next(model.parameters()).device
    pred = torch.cat([model(images[s:s + batch_size].to(device)).argmax(1).cpu()
                      for s in range(0, len(images), batch_size)])
    return float((pred == classes).float().mean())
