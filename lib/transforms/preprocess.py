"""The pre-processing chains of SPEC §3, composed once for inference and for training.

Inference: load (any orientation, 2D/3D/4D) → keep the original for measurements and the
writer → robust normalisation → model grid (LPS, 1.037 mm, 432 x 432). The classifier's
inputs are cut from that grid per limb (``lib.inference.batching``). Training uses the same
normalisation and grid on in-memory volumes.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, CopyItemsd

from lib.labels import REGIONS
from lib.transforms.geometry import ToModelGridd
from lib.transforms.intensity import RobustNormalized, classifier_input
from lib.transforms.loading import LoadVolumed


def inference_transforms(echo: int = 0, image_key: str = "image") -> list:
    """Dictionary transforms from an image path to model-grid inputs.

    Adds ``image_original`` (the loaded volume, for measurements and the writer's affine) next
    to the 432 x 432 ``image``.
    """
    return [
        LoadVolumed(image_key, echo=echo),
        CopyItemsd(image_key, names=f"{image_key}_original"),
        RobustNormalized(image_key),
        ToModelGridd(image_key, mode="bilinear"),
    ]


def volume_to_model_grid(image: np.ndarray, label: np.ndarray | None, affine: np.ndarray):
    """Numpy (X, Y, Z) image (and label) with their affine -> normalised model-grid arrays."""
    data = {"image": MetaTensor(torch.as_tensor(np.asarray(image, np.float32))[None], affine=torch.as_tensor(affine))}
    keys, modes = ["image"], ["bilinear"]
    if label is not None:
        data["label"] = MetaTensor(torch.as_tensor(np.asarray(label, np.uint8))[None], affine=torch.as_tensor(affine))
        keys.append("label")
        modes.append("nearest")
    out = Compose([RobustNormalized("image"), ToModelGridd(keys, mode=modes)])(data)
    grid_image = out["image"][0].numpy().astype(np.float32)
    grid_label = out["label"][0].numpy().astype(np.uint8) if label is not None else None
    return grid_image, grid_label


def classifier_slices(volumes) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 128, 128) classifier inputs and region classes from model-grid volumes.

    volumes: ``(image (X, Y, Z) on the model grid, region)`` pairs; every slice of a volume
    is an example of its region (the region is known for all slices, annotated or not).
    """
    images, classes = [], []
    for image, region in volumes:
        small = classifier_input(torch.as_tensor(image)[None])[0]  # (128, 128, Z)
        images.append(small.permute(2, 0, 1)[:, None])
        classes.append(torch.full((small.shape[-1],), REGIONS.index(region), dtype=torch.long))
    return torch.cat(images), torch.cat(classes)
