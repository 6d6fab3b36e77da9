"""Label maps to render training slices from: real thigh shapes, the phantoms, the real leg slice.

``LabelSlices`` holds 2D tissue and muscle maps on the model grid (1.037 mm, LPS, 432 x 432)
that ``lib.data.phantoms.synthetic.render`` turns into images of any contrast.

Real thigh shapes (``shared/data/thigh_shapes``, 35 label maps of real thighs from several sites
and contrasts, predictions of a published 3D model): they have muscles only, so the rest is
built around them with random draws: the deep fascia (the muscles closed and filled), the femur
(the widest gap beside vastus intermedius, or VI's deepest point), intermuscular fat, and
subcutaneous fat and skin of a thickness that varies smoothly with direction. Their smooth
boundaries leave gaps between neighbours; a gap narrower than 1.5-3.5 mm joins the nearest
muscle (real neighbours meet at a fascia line). Adductor longus is not labelled in these maps
(where it lies they say background or adductor magnus), so wider gaps inside the compartment are
unknown (255), not background: the loss ignores them. Only slices where a limb holds at least
``MIN_MUSCLES`` of the 11 muscles are used: at the maps' ends the model found few muscles.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi
from skimage import morphology

from lib import labels as L
from lib.data.phantoms.layout import AIR, CORTEX, FAT_PAD, MARROW, MUSCLE, SKIN, SUBCUT_FAT
from lib.data.phantoms.phantom import SEVERITIES, generate_phantom
from lib.paths import SHARED_DATA
from lib.transforms.geometry import MODEL_SPACING, slice_to_model_grid
from lib.transforms.weights import IGNORE_VALUE

THIGH_SHAPES = SHARED_DATA / "thigh_shapes"
MIN_MUSCLES = 8
SHAPE_MUSCLES = {1: "sartorius", 2: "rectus_femoris", 3: "vastus_lateralis", 4: "vastus_intermedius",
                 5: "vastus_medialis", 6: "adductor_magnus", 7: "gracilis", 8: "biceps_femoris_long_head",
                 9: "semitendinosus", 10: "semimembranosus", 11: "biceps_femoris_short_head"}


@dataclass
class LabelSlices:
    """tissue, label: (N, H, W) uint8 maps; region: what their muscles are; sources: where each came
    from; images: (N, H, W) normalised images of the same anatomy when the source has its own;
    own_image_only: always drawn in those images, never rendered (its tissue map is too coarse)."""

    tissue: np.ndarray
    label: np.ndarray
    region: str
    sources: list[str] = field(default_factory=list)
    images: np.ndarray | None = None
    own_image_only: bool = False

    def __len__(self) -> int:
        return len(self.tissue)


def _disk(radius_px: float) -> np.ndarray:
    return morphology.disk(max(1, int(round(radius_px))))


def to_model_grid(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(X, Y, Z) label volume of any orientation -> LPS model grid (432, 432, Z), nearest."""
    ornt = nib.orientations.ornt_transform(nib.io_orientation(affine), nib.orientations.axcodes2ornt("LPS"))
    oriented = nib.orientations.apply_orientation(volume, ornt)
    spacing = np.linalg.norm((affine @ nib.orientations.inv_ornt_aff(ornt, volume.shape))[:3, :2], axis=0)
    return np.stack([slice_to_model_grid(oriented[:, :, k], spacing, mode="nearest")
                     for k in range(oriented.shape[2])], -1)


def _limb_tissue(muscles: np.ndarray, rng: np.random.Generator, mm: float):
    """(tissue, label) of one limb in a window around it, or None when no femur fits."""
    body = muscles > 0
    vastus_intermedius = L.all_labels()["vastus_intermedius"]
    compartment = ndi.binary_fill_holes(ndi.binary_closing(body, _disk(rng.uniform(4, 9) / mm)) | body)
    gap, (ix, iy) = ndi.distance_transform_edt(~body, return_indices=True)
    joins = compartment & ~body & (gap * mm < rng.uniform(1.5, 3.5))
    muscles = np.where(joins, muscles[ix, iy], muscles)
    body = muscles > 0
    holes = compartment & ~body
    beside_vi = ndi.binary_dilation(muscles == vastus_intermedius, _disk(8 / mm)) & compartment
    score = np.where(beside_vi, ndi.distance_transform_edt(holes) * mm, 0)
    if score.max() >= 7.0:
        radius = min(score.max() - rng.uniform(0, 2), rng.uniform(12, 16))
    else:  # no gap wide enough: the femur goes where vastus intermedius is deepest
        score = np.where(muscles == vastus_intermedius, ndi.distance_transform_edt(compartment) * mm, 0)
        if score.max() < 10:
            return None
        radius = rng.uniform(11, 15)
    cx, cy = np.unravel_index(np.argmax(score), score.shape)
    xx, yy = np.mgrid[: muscles.shape[0], : muscles.shape[1]]
    r = np.hypot(xx - cx, yy - cy) * mm
    bone = r < radius
    tissue = np.where(compartment, FAT_PAD, AIR).astype(np.uint8)
    tissue[body] = MUSCLE
    tissue[bone] = CORTEX
    tissue[r < radius - rng.uniform(3.5, 6.5)] = MARROW
    label = np.where(body & ~bone, muscles, 0).astype(np.uint8)
    label[holes & ~bone] = IGNORE_VALUE  # maybe adductor longus (module doc)
    ccx, ccy = np.argwhere(compartment).mean(0)
    theta = np.arctan2(yy - ccy, xx - ccx)
    thickness = rng.uniform(2, 32) * np.ones_like(theta)
    for m in (1, 2, 3):
        thickness = thickness * (1 + rng.uniform(0, 0.4 / m) * np.cos(m * theta + rng.uniform(0, 2 * np.pi)))
    outside = ndi.distance_transform_edt(~compartment) * mm
    tissue[(outside > 0) & (outside < thickness)] = SUBCUT_FAT
    tissue[(outside >= thickness) & (outside < thickness + rng.uniform(1.2, 2.5))] = SKIN
    return tissue, label


def thigh_tissue(muscles: np.ndarray, rng: np.random.Generator, mm: float = MODEL_SPACING):
    """(tissue, label) built around one slice of real thigh muscles (global values, (H, W)), or
    None when no limb holds ``MIN_MUSCLES`` muscles and a femur."""
    components, _ = ndi.label(ndi.binary_closing(muscles > 0, _disk(6 / mm)))
    tissue = np.zeros(muscles.shape, np.uint8)
    label = np.zeros(muscles.shape, np.uint8)
    margin, built = int(45 / mm), 0
    for c, box in enumerate(ndi.find_objects(components), start=1):
        if len(np.unique(np.where(components[box] == c, muscles[box], 0))) - 1 < MIN_MUSCLES:
            continue
        window = tuple(slice(max(b.start - margin, 0), b.stop + margin) for b in box)
        limb = _limb_tissue(np.where(components[window] == c, muscles[window], 0), rng, mm)
        if limb is None:
            continue
        tissue[window] = np.maximum(tissue[window], limb[0])  # touching limbs: the deeper tissue wins
        label[window] = np.where(limb[1] > 0, limb[1], label[window])
        built += 1
    return (tissue, label) if built else None


@functools.lru_cache(maxsize=2)  # about a minute to build; the segmenter and the classifier both use it
def thigh_shape_slices(folder: Path = THIGH_SHAPES, seed: int = 0) -> LabelSlices:
    """Every usable slice of the real thigh label maps, with tissue built around it."""
    rng = np.random.default_rng(seed)
    lut = np.zeros(256, np.uint8)
    for value, name in SHAPE_MUSCLES.items():
        lut[value] = L.all_labels()[name]
    tissues, labels, sources = [], [], []
    for path in sorted(Path(folder).glob("*.nii.gz")):
        img = nib.load(path)
        grid = to_model_grid(lut[np.asarray(img.dataobj).astype(np.uint8)], img.affine)
        for k in range(grid.shape[2]):
            built = thigh_tissue(grid[:, :, k], rng) if (grid[:, :, k] > 0).sum() > 500 else None
            if built is not None:
                tissues.append(built[0])
                labels.append(built[1])
                sources.append(f"{path.name.split('.')[0]}:{k}")
    if not tissues:
        raise FileNotFoundError(f"no usable thigh label maps in {folder}")
    return LabelSlices(np.stack(tissues), np.stack(labels), "thigh", sources)


def phantom_label_slices(region: str, seeds, n_slices: int = 12, layouts=None) -> LabelSlices:
    """Tissue and label maps of phantoms on the model grid; ``layouts`` cycles over the subjects."""
    layouts = layouts or (region,)
    tissues, labels, sources = [], [], []
    for i, seed in enumerate(seeds):
        layout = layouts[i % len(layouts)]
        ph = generate_phantom(region, seed, n_slices=n_slices, severity=SEVERITIES[i % len(SEVERITIES)],
                              shape=(432, 432), spacing=(MODEL_SPACING, MODEL_SPACING, 5.0), layout=layout)
        tissues.append(np.moveaxis(ph.tissue, 2, 0))
        labels.append(np.moveaxis(ph.label, 2, 0))
        sources += [f"phantom_{layout}_{seed}:{k}" for k in range(n_slices)]
    return LabelSlices(np.concatenate(tissues), np.concatenate(labels), region, sources)
