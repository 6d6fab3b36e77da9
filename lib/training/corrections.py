"""The datastore's corrected (``final``) labels, read as model-grid training slices.

Each labelled image is loaded with its label, the label is remapped to global values by
name (``lib.annotations``), sides are folded (training is side-agnostic), and both are
brought to the model grid. Only the annotated slices are kept, found on the model grid by
carrying an "annotated" mark through the same resampling as the label, so the slice
bookkeeping is right for any orientation (slices stored along another axis, inverted S-I).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from lib.annotations import check_label, fold_sides
from lib.errors import UserError
from lib.training.slices import SliceSet
from lib.transforms.loading import load_volume
from lib.transforms.preprocess import volume_to_model_grid

logger = logging.getLogger(__name__)

FINAL_TAG = "final"


@dataclass
class CorrectedImage:
    """One image's annotated slices on the model grid."""

    image_id: str
    slices: SliceSet  # global label values 0-18
    voxels: dict[int, int]  # global value (sides kept) -> voxels on the annotated slices
    annotated: list[int]  # annotated slice indices in the stored label's own axial order

    def summary(self) -> dict:
        """What the trainer took from this label (reported in the train stats)."""
        regions = self.slices.regions()
        return {"image": self.image_id, "annotated_slices": self.annotated, "voxels": self.voxels,
                "regions": {r: regions.count(r) for r in ("thigh", "leg") if r in regions}}


def load_corrected_image(image_id: str, image_path: str, label_path: str, info: dict | None) -> CorrectedImage:
    """Load, check and grid one corrected label; ``UserError`` if it cannot be used."""
    image = load_volume(image_path)
    label = load_volume(label_path, dtype=np.uint8)
    check = check_label(label[0].numpy(), label.affine.numpy(), image.shape[1:], image.affine.numpy(), info)
    mark = np.zeros(check.label.shape, np.uint8)  # 0 = not annotated, v + 1 = annotated with value v
    annotated = check.annotated_mask()
    mark[annotated] = fold_sides(check.label[annotated]) + 1
    grid_image, grid_mark = volume_to_model_grid(image[0].numpy(), mark, image.affine.numpy())
    grid_slices = [k for k in range(grid_mark.shape[2]) if grid_mark[:, :, k].any()]
    grid_label = np.where(grid_mark > 0, grid_mark - 1, 0).astype(np.uint8)
    slices = SliceSet.from_volume(grid_image, grid_label, image_id, slices=grid_slices)
    values, counts = np.unique(check.label[annotated], return_counts=True)
    voxels = {int(v): int(n) for v, n in zip(values, counts) if v}
    return CorrectedImage(image_id, slices, voxels, check.slices)


def corrected_images(datastore, tag: str = FINAL_TAG) -> tuple[list[CorrectedImage], list[dict]]:
    """Every usable corrected image of a MONAI Label datastore, and the ones skipped (why)."""
    images, skipped = [], []
    for image_id in sorted(datastore.get_labeled_images(label_tag=tag)):
        try:
            info = datastore.get_label_info(image_id, tag) or {}
            images.append(load_corrected_image(image_id, datastore.get_image_uri(image_id),
                                               datastore.get_label_uri(image_id, tag), info))
        except (UserError, OSError, ValueError) as e:
            logger.warning(f"skipping the {tag} label of {image_id}: {e}")
            skipped.append({"image": image_id, "reason": str(e)})
    return images, skipped
