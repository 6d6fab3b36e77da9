"""Running the 2D networks over the slices of a volume: batching of whole slices or of each limb's
crop (``lib.inference.limbs``), and the device a request names.

Why hand-written batching rather than ``monai.inferers.SliceInferer``: both give the same labels
(identical argmax on a 432 x 432 x 52 thigh phantom with the shipped compact segmenter), but
``SliceInferer`` goes through ``SlidingWindowInferer``: it gathers the float logits of every
slice into one (1, 13, 432, 432, 52) volume (0.5 GB) and takes the argmax at the end, where
``segment_slices`` keeps only each batch's uint8 argmax. Measured on that volume, medians of 4
interleaved runs on this 2-core AMD EPYC (shared with a training job), batches of 8, two
sessions: ``segment_slices`` 4.26 s and 4.09 s, ``SliceInferer`` 7.18 s and 7.39 s (+69 %,
+81 %), far outside the 5 % the compact ``bench infer`` figure may move.

Batches of ``BATCH_SIZE`` = 8 for every network. Larger batches are slower on a CPU: a batch's
activations outgrow the caches. The classifier on the 104 limb crops of a 432 x 432 x 52 thigh
phantom took 0.63 s in batches of 8, 12 or 16, 0.78 s in 32 and 0.99 s in 64 (its earlier
default); medians of 7 in one process, same probabilities; 2-core AMD EPYC, AVX2, fp32,
2026-12-06. The compact segmenter's 240 px crops take the least time in batches of 8 too.
"""

from __future__ import annotations

import numpy as np
import torch

from lib.errors import UserError
from lib.inference.limbs import Limb, crop, paste
from lib.networks.fast import predict_logits
from lib.transforms.intensity import classifier_input

BATCH_SIZE = 8  # slices or limb crops per network call (see the module doc)


def resolve_device(name: str | None) -> str:
    """``device`` request parameter -> a usable torch device name (4xx when unavailable)."""
    if isinstance(name, (list, tuple)):  # /info's config lists the choices; a client may echo them
        name = name[0] if name else None
    name = str(name or "cpu").strip().lower()
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda") or name.startswith("gpu"):
        if not torch.cuda.is_available():
            return "cpu"  # MONAI Label clients send "cuda" by default: fall back, as MONAI Label does
        index = name.split(":", 1)[1] if ":" in name else "0"
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise UserError(f"device {name!r} does not exist (GPUs: {torch.cuda.device_count()})")
        return f"cuda:{index}"
    raise UserError(f"unknown device {name!r}: use 'cpu' or 'cuda[:N]'")


@torch.no_grad()
def segment_slices(model, slices: torch.Tensor, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Channel map (Z, H, W) uint8 of the segmenter's argmax over slices (Z, 1, H, W)."""
    device = next(model.parameters()).device
    out = np.zeros((slices.shape[0], *slices.shape[2:]), dtype=np.uint8)
    for start in range(0, slices.shape[0], batch_size):
        batch = slices[start:start + batch_size].to(device, dtype=torch.float32)
        out[start:start + batch_size] = predict_logits(model, batch).argmax(1).to(torch.uint8).cpu().numpy()
    return out


@torch.no_grad()
def classify_slices(model, slices: torch.Tensor, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Class probabilities (Z, 2) of the classifier over 128x128 slices (Z, 1, 128, 128)."""
    device = next(model.parameters()).device
    probs = [torch.softmax(predict_logits(model, slices[s:s + batch_size].to(device, dtype=torch.float32)), 1)
             for s in range(0, slices.shape[0], batch_size)]
    return torch.cat(probs).cpu().numpy() if probs else np.zeros((0, 2), np.float32)


def _limb_batches(volume: np.ndarray, slices: list[int], limbs: list[list[Limb]], window, batch_size: int):
    """Crops ``(j, limb, window, crop)`` of every limb of the chosen slices, batched by crop size
    (crops of one size stack; the segmenters are fully convolutional)."""
    by_size: dict[int, list] = {}
    for j, (k, found) in enumerate(zip(slices, limbs)):
        for limb in found:
            row0, col0, size = window(limb)
            by_size.setdefault(size, []).append((j, limb, (row0, col0, size), crop(volume[:, :, k], row0, col0, size)))
    for items in by_size.values():
        for start in range(0, len(items), batch_size):
            yield items[start:start + batch_size]


@torch.no_grad()
def segment_limbs(model, volume: np.ndarray, slices: list[int], limbs: list[list[Limb]],
                  batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Channel maps (H, W, len(slices)) uint8 of a segmenter run on each limb's crop of each chosen
    slice of a model-grid volume (H, W, Z), pasted back inside that limb, its skin margin left out
    (``Limb.inner``, ``lib.inference.limbs``)."""
    device = next(model.parameters()).device
    out = np.zeros((*volume.shape[:2], len(slices)), np.uint8)
    for batch in _limb_batches(volume, slices, limbs, lambda limb: limb.crop_window(), batch_size):
        x = torch.from_numpy(np.stack([c for *_, c in batch])[:, None]).to(device, dtype=torch.float32)
        channels = predict_logits(model, x).argmax(1).to(torch.uint8).cpu().numpy()
        for (j, limb, (row0, col0, _), _), patch in zip(batch, channels):
            paste(out[:, :, j], patch, row0, col0, limb.inner)
    return out


def limb_classifier_inputs(volume: np.ndarray, slices: list[int],
                           limbs: list[list[Limb]]) -> tuple[torch.Tensor, np.ndarray]:
    """The classifier's inputs (M, 1, 128, 128), one per limb of the chosen slices of a model-grid
    volume (H, W, Z), and the position in ``slices`` each came from."""
    crops, owners = [], []
    for j, (k, found) in enumerate(zip(slices, limbs)):
        for limb in found:
            crops.append(crop(volume[:, :, k], *limb.classifier_window()))
            owners.append(j)
    if not crops:
        return torch.zeros(0, 1, 128, 128), np.zeros(0, int)
    x = torch.from_numpy(np.stack(crops).astype(np.float32))  # (M, S, S)
    return classifier_input(x[None].permute(0, 2, 3, 1)).permute(3, 0, 1, 2).contiguous(), np.array(owners)


@torch.no_grad()
def classify_limbs(model, volume: np.ndarray, slices: list[int], limbs: list[list[Limb]],
                   batch_size: int = BATCH_SIZE) -> np.ndarray:
    """P(thigh) of each chosen slice (``nan`` where it has no limb): the classifier on each limb's
    crop (``CLASSIFIER_CROP`` px downsized to 128), the limbs' log-odds averaged per slice."""
    device = next(model.parameters()).device
    x, owners = limb_classifier_inputs(volume, slices, limbs)
    log_odds = np.zeros(len(x))
    for start in range(0, len(x), batch_size):
        p = torch.softmax(predict_logits(model, x[start:start + batch_size].to(device)), 1).cpu().numpy()
        p = np.clip(p, 1e-6, 1.0)
        log_odds[start:start + batch_size] = np.log(p[:, 0]) - np.log(p[:, 1])
    out = np.full(len(slices), np.nan)
    for j in np.unique(owners):
        out[j] = 1 / (1 + np.exp(-log_odds[owners == j].mean()))
    return out
