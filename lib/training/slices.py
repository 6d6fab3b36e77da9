"""2D training data: annotated model-grid slices in memory, and the batches drawn from them.

Volumes are brought to the model grid once (``lib.transforms``), then only their *annotated*
slices are kept (SPEC §2: unannotated slices are unknown, not background). Batches are drawn
at random with per-slice sampling weights (so a single real slice can be replayed often),
cropped around one limb, augmented (SPEC §5) and given their border-weight map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from monai.transforms import RandAffine
from monai.utils import convert_to_tensor

from lib.labels import global_to_channels, num_classes, region_of_values
from lib.transforms.augment import train_augmentations
from lib.transforms.weights import body_mask, limb_components

MODEL_MULTIPLE = 48  # the segmenter's total downsampling (2^4 * 3)
MAX_CLASS_WEIGHT = 20.0  # cap of the inverse-frequency weight of a rare muscle


@dataclass
class SliceSet:
    """Annotated slices on the model grid.

    images: (N, 1, H, W) float32 normalised to about [0, 1]; labels: (N, 1, H, W) uint8 with
    global label values; weights: sampling weight of each slice; sources: its origin (image id).
    """

    images: torch.Tensor
    labels: torch.Tensor
    weights: np.ndarray
    sources: list[str] = field(default_factory=list)

    @staticmethod
    def empty(size: int = 432) -> "SliceSet":
        return SliceSet(torch.zeros(0, 1, size, size), torch.zeros(0, 1, size, size, dtype=torch.uint8),
                        np.zeros(0), [])

    @staticmethod
    def from_volume(image: np.ndarray, label: np.ndarray, source: str, slices=None,
                    weight: float = 1.0) -> "SliceSet":
        """Slices of a model-grid volume (X, Y, Z); ``slices`` = annotated indices (default:
        every slice with any muscle label)."""
        if slices is None:
            slices = [k for k in range(label.shape[2]) if label[:, :, k].any()]
        slices = list(slices)
        images = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image[:, :, slices], 2, 0)[:, None], np.float32))
        labels = torch.from_numpy(np.ascontiguousarray(np.moveaxis(label[:, :, slices], 2, 0)[:, None], np.uint8))
        return SliceSet(images, labels, np.full(len(slices), float(weight)), [source] * len(slices))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __add__(self, other: "SliceSet") -> "SliceSet":
        return SliceSet(torch.cat([self.images, other.images]), torch.cat([self.labels, other.labels]),
                        np.concatenate([self.weights, other.weights]), self.sources + other.sources)

    def regions(self) -> list[str | None]:
        """The region of each slice, from its label values (SPEC §1 routing for training)."""
        return [region_of_values(np.unique(lab.numpy())) for lab in self.labels]

    def select(self, region: str) -> "SliceSet":
        keep = [i for i, r in enumerate(self.regions()) if r == region]
        return SliceSet(self.images[keep], self.labels[keep], self.weights[keep], [self.sources[i] for i in keep])


def class_frequencies(data: SliceSet, region: str) -> np.ndarray:
    """Pixel frequency of each channel of ``region`` over all annotated slices of ``data``."""
    counts = np.bincount(global_to_channels(data.labels.numpy(), region).ravel(), minlength=num_classes(region))
    return counts / max(counts.sum(), 1)


def crop_around_limb(image: np.ndarray, label: np.ndarray, size: int, rng: np.random.Generator):
    """A ``size`` x ``size`` crop (H, W) centred near a random limb; the image if it is smaller."""
    h, w = image.shape[-2:]
    if size >= h and size >= w:
        return image, label
    components, count = limb_components(body_mask(image[0], label[0]))
    if count:
        ys, xs = np.nonzero(components == rng.integers(1, count + 1))
        cy, cx = ys.mean(), xs.mean()
    else:
        cy, cx = h / 2, w / 2
    cy += rng.normal(0, size / 10)
    cx += rng.normal(0, size / 10)
    y0 = int(np.clip(round(cy - size / 2), 0, h - size))
    x0 = int(np.clip(round(cx - size / 2), 0, w - size))
    return image[..., y0:y0 + size, x0:x0 + size], label[..., y0:y0 + size, x0:x0 + size]


def segmentation_batches(data: SliceSet, region: str, batch_size: int = 4, crop: int | None = 288,
                         seed: int = 0, augment: bool = True,
                         class_weights: str = "inverse_frequency") -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless ``(images, channel labels, weight maps)`` batches for one region's segmenter.

    class_weights: the weight map's class term (``lib.transforms.weights.CLASS_WEIGHT_MODES``).
    """
    if len(data) == 0:
        raise ValueError(f"no annotated {region} slices to train on")
    if crop is not None and crop % MODEL_MULTIPLE:
        raise ValueError(f"crop must be a multiple of {MODEL_MULTIPLE}, got {crop}")
    rng = np.random.default_rng(seed)
    # Dataset-level class frequencies: per-crop ones would give a muscle cut by the crop edge
    # a weight in the hundreds and make the loss erratic.
    transforms = train_augmentations(region, prob=0.5 if augment else 0.0,
                                     intensity_prob=0.25 if augment else 0.0,
                                     fat_inversion_prob=0.15 if augment else 0.0,
                                     flip_prob=0.5 if augment else 0.0,
                                     class_frequencies=class_frequencies(data, region),
                                     max_class_weight=MAX_CLASS_WEIGHT, class_weights=class_weights)
    transforms.set_random_state(seed=seed)
    p = data.weights / data.weights.sum()
    while True:
        images, labels, weights = [], [], []
        for i in rng.choice(len(data), size=batch_size, p=p):
            image = data.images[i].numpy()
            label = global_to_channels(data.labels[i].numpy(), region)
            image, label = crop_around_limb(image, label, crop or image.shape[-1], rng)
            out = transforms({"image": image, "label": label})
            images.append(torch.as_tensor(np.asarray(out["image"]), dtype=torch.float32))
            labels.append(torch.as_tensor(np.asarray(out["label"]), dtype=torch.long))
            weights.append(torch.as_tensor(np.asarray(out["weight"]), dtype=torch.float32))
        yield torch.stack(images), torch.stack(labels), torch.stack(weights)


def classifier_batches(images: torch.Tensor, classes: torch.Tensor, weights: np.ndarray, batch_size: int = 32,
                       seed: int = 0, max_shift: int = 24, max_scale: float = 0.25,
                       max_rotation: float = 15.0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless ``(128x128 images, region classes)`` batches: random affine, flips and gamma.

    The classifier ends in a dense layer that sees where and how big things are. Without shifts
    it learns the training subjects' limb positions; without scaling it learns limb size, and a
    slim thigh passes for a leg (held-out accuracy 0.75-0.91 before scaling was added).

    Args:
        max_shift: translation range in pixels (each axis).
        max_scale: scale range, each axis ``1 ± max_scale``.
        max_rotation: rotation range in degrees.
    """
    rng = np.random.default_rng(seed)
    p = weights / weights.sum()
    affine = RandAffine(prob=1.0, rotate_range=np.deg2rad(max_rotation), scale_range=(max_scale, max_scale),
                        translate_range=(max_shift, max_shift), padding_mode="zeros", mode="bilinear")
    affine.set_random_state(seed=seed)
    while True:
        idx = rng.choice(len(images), size=batch_size, p=p)
        x = torch.stack([convert_to_tensor(affine(images[i]), dtype=torch.float32, track_meta=False) for i in idx])
        flip = torch.from_numpy(rng.random(batch_size) < 0.5)
        x[flip] = x[flip].flip(-2)  # left/right mirror: the region does not depend on the side
        gamma = torch.from_numpy(rng.uniform(0.7, 1.4, size=(batch_size, 1, 1, 1))).float()
        yield x.clamp(0, 1) ** gamma, classes[idx]
