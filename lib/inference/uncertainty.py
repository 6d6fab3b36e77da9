"""Per-slice uncertainty of the live model: what slice-level active learning ranks.

For every axial slice of a volume: the classifier's confidence (thigh vs leg), then, for
the routed segmenter, Monte-Carlo dropout: ``SAMPLES`` forward passes with the networks'
input dropout on (SPEC §5: 0.2, the only stochastic layer), and the mean over the limb of the
pixel-wise entropy of the averaged softmax. Why MC dropout rather than test-time
augmentation: the networks were trained with that very dropout, so its samples stay on the
training distribution, and one batched pass per sample costs no resampling.

A slice with almost no tissue (outside the limb or the field of view), or one of a slab's faded
ends (``lib.inference.limbs.faded_end_slices``), is marked empty and is never worth annotating.
Slice indices are those of the stored array's head-foot axis, the index a viewer shows, whatever
the file's orientation.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lib.inference.batching import classify_limbs, classify_slices
from lib.inference.limbs import faded_end_slices, find_limbs
from lib.labels import MUSCLES, REGIONS
from lib.models.cache import load_network
from lib.models.catalog import CLASSIFIER, segmenter_name
from lib.networks.blocks import enable_mc_dropout
from lib.networks.fast import predict_logits
from lib.transforms.geometry import axial_axis
from lib.transforms.loading import load_volume
from lib.transforms.preprocess import classifier_input, volume_to_model_grid
from lib.transforms.weights import BODY_THRESHOLD

SAMPLES = 4
MIN_BODY_FRACTION = 0.01  # below this share of tissue pixels a slice is empty
CLASSIFIER_WEIGHT = 0.5  # how much (1 - classifier confidence) adds to the segmenter entropy
TYPICAL_NEIGHBOURS = 8  # k of the k-nearest-neighbour density (typicality)


def stored_slice_order(affine: np.ndarray, n: int) -> np.ndarray:
    """Stored slice index of each model-grid slice (the grid runs foot to head)."""
    return np.arange(n) if np.asarray(affine)[2, axial_axis(affine)] > 0 else np.arange(n)[::-1]


@torch.no_grad()
def mc_softmax(model, slices: torch.Tensor, samples: int = SAMPLES, batch_size: int = 8):
    """Per batch of ``slices``: (the batch, its softmax (B, C, H, W) averaged over ``samples``
    dropout passes), so that callers reduce each batch before the next (a whole volume's maps
    would take hundreds of MB)."""
    switched = enable_mc_dropout(model, True)
    # An ensemble (lib.networks.ensemble) samples its members itself: each pass gives every member
    # its own dropout mask, so ceil(samples / members) passes draw at least ``samples`` networks.
    passes = math.ceil(samples / len(getattr(model, "members", [model]))) if switched else 1
    try:
        for s in range(0, len(slices), batch_size):
            batch = slices[s:s + batch_size]
            yield batch, sum(torch.softmax(predict_logits(model, batch), 1) for _ in range(passes)) / passes
    finally:
        enable_mc_dropout(model, False)


def pixel_entropy(mean: torch.Tensor) -> torch.Tensor:
    """Entropy (B, H, W) of averaged softmax maps (B, C, H, W)."""
    return -(mean * torch.log(mean.clamp_min(1e-8))).sum(1)


def entropy_scores(model, slices: torch.Tensor, samples: int = SAMPLES) -> torch.Tensor:
    """Per-slice score (N,): MC-dropout entropy averaged over the tissue pixels of each slice."""
    return uncertainty_scores(model, slices, samples)[0]


def uncertainty_scores(model, slices: torch.Tensor, samples: int = SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice score (N,) as ``entropy_scores``, and its share per muscle (N, C - 1): the
    entropy of each tissue pixel weighted by the averaged probability of muscle channel c, so
    that the muscles' shares plus background's make up the score. A class-stratified strategy
    (ClaSP PE) ranks slices per muscle by these: a small muscle's uncertainty counts within its
    own class instead of being drowned by the large ones'."""
    scores, classes = [], []
    for batch, mean in mc_softmax(model, slices, samples):
        body = (batch[:, 0] > BODY_THRESHOLD).float()
        weighted = pixel_entropy(mean) * body
        area = body.flatten(1).sum(1).clamp_min(1)
        scores.append(weighted.flatten(1).sum(1) / area)
        classes.append((mean[:, 1:] * weighted[:, None]).flatten(2).sum(2) / area[:, None])
    return torch.cat(scores), torch.cat(classes)


@torch.no_grad()
def slice_embeddings(model, slices: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Per-slice feature vectors (N, C): the segmenter's deepest encoder level, averaged over
    the slice and L2-normalised, dropout off. Slices the network sees alike lie close."""
    pooled = []
    hook = model.encoder[-1].register_forward_hook(lambda _m, _i, out: pooled.append(out.float().mean((2, 3))))
    try:
        for s in range(0, len(slices), batch_size):
            predict_logits(model, slices[s:s + batch_size])
    finally:
        hook.remove()
    return torch.nn.functional.normalize(torch.cat(pooled), dim=1)


def typicality(embeddings: np.ndarray, k: int = TYPICAL_NEIGHBOURS) -> np.ndarray:
    """How typical each slice is among ``embeddings`` (N, C): the inverse mean distance to its
    ``k`` nearest neighbours (TypiClust, Hacohen et al., ICML 2022), scaled to a maximum of 1.
    With few annotations, typical samples teach a model more than uncertain outliers."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if len(embeddings) < 2:
        return np.ones(len(embeddings))
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)
    k = min(k, len(embeddings) - 1)
    nearest = np.sort(distances, axis=1)[:, 1:k + 1].mean(1)
    density = 1.0 / np.maximum(nearest, 1e-6)
    return density / density.max()


def grid_slices(image_path: str) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, np.ndarray]:
    """An image on the model grid: the volume (X, Y, Z), its slices (Z, 1, H, W), each slice's
    share of tissue pixels (Z,) and the stored slice index of each grid slice."""
    volume = load_volume(image_path)
    grid, _ = volume_to_model_grid(volume[0].numpy(), None, volume.affine.numpy())
    slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(grid, 2, 0)[:, None]))
    tissue = (slices[:, 0] > BODY_THRESHOLD).float().flatten(1).mean(1)
    return grid, slices, tissue, stored_slice_order(volume.affine.numpy(), len(slices))


def body_fractions(image_path: str) -> list[float]:
    """Share of tissue pixels of every stored slice (cheap: no network), for empty-slice checks."""
    _, _, tissue, order = grid_slices(image_path)
    out = [0.0] * len(order)
    for j, k in enumerate(order):
        out[int(k)] = float(tissue[j])
    return out


def score_volume(image_path: str, paths: dict[str, str], seed: int = 0) -> list[dict]:
    """Scores of every slice of one image with the networks in ``paths``.

    Returns one ``{"slice", "score", "region", "confidence", "empty", "classes"}`` per stored
    slice; ``classes`` maps each muscle of the slice's region to its share of the segmenter's
    uncertainty (``uncertainty_scores``).
    """
    torch.manual_seed(seed)
    grid, slices, body_fraction, order = grid_slices(image_path)
    classifier, meta = load_network(paths[CLASSIFIER])
    if meta.get("input") == "limb":  # a classifier made for limb crops (lib.inference.limbs)
        every = list(range(grid.shape[2]))
        p_thigh = np.nan_to_num(classify_limbs(classifier, grid, every, find_limbs(grid, every)), nan=0.5)
        probs = torch.from_numpy(np.stack([p_thigh, 1 - p_thigh], 1)).float()
    else:
        small = classifier_input(torch.from_numpy(grid)[None])[0].permute(2, 0, 1)[:, None]
        probs = torch.from_numpy(classify_slices(classifier, small))
    regions = probs.argmax(1)
    scores = torch.zeros(len(slices))
    classes: list[dict] = [{} for _ in range(len(slices))]
    for index, region in enumerate(REGIONS):
        chosen = (regions == index).nonzero().flatten()
        if len(chosen):
            model, _ = load_network(paths[segmenter_name(region)])
            scores[chosen], shares = uncertainty_scores(model, slices[chosen])
            for j, share in zip(chosen.tolist(), shares.tolist()):
                classes[j] = {muscle: round(v, 5) for muscle, v in zip(MUSCLES[region], share)}
    confidence = probs.max(1).values
    scores = scores + CLASSIFIER_WEIGHT * (1 - confidence)
    faded = set(faded_end_slices(grid))  # a slab's faded ends are not worth a clinician's time
    out = [None] * len(slices)
    for j, k in enumerate(order):
        empty = bool(body_fraction[j] < MIN_BODY_FRACTION) or j in faded
        score = float(scores[j])
        out[int(k)] = {"slice": int(k), "score": round(score if math.isfinite(score) and not empty else 0.0, 5),
                       "region": REGIONS[int(regions[j])], "confidence": round(float(confidence[j]), 4),
                       "empty": empty, "classes": {} if empty else classes[j]}
    return out
