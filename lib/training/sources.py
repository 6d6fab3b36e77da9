"""What ``pretrain`` trains and selects each network on: label sources and validation sets.

Segmenters and the classifier learn from images rendered with random contrast from label maps
(``lib.data.phantoms.synthetic``, SynthSeg-style): the phantoms' maps, the real thigh shapes
(thigh) and the real leg slice's map (leg and classifier, unless it is left out), each with a
share of the draws. Phantom subjects also keep their own GRE-like images (``own_image_share``)
so the phantoms' own look is not forgotten.

Validation (model selection) is on phantom validation subjects (seeds 10000+) through the same
per-limb path inference takes: their GRE images, and the same anatomy rendered with random
contrast at a fixed seed. The held-out test seeds (20000+) are never used here.
"""

from __future__ import annotations

import numpy as np
import torch

from lib.data.phantoms.phantom import SEVERITIES, generate_phantom
from lib.data.phantoms.shapes import LabelSlices, phantom_label_slices, thigh_shape_slices
from lib.evaluation.metrics import mean_dice
from lib.inference.batching import classify_limbs, segment_limbs
from lib.inference.limbs import find_limbs
from lib.labels import global_to_channels, num_classes
from lib.networks.fast import prepare_for_inference
from lib.training.synthetic import SampleDrawer, segmentation_sample
from lib.transforms.geometry import MODEL_SPACING
from lib.transforms.preprocess import volume_to_model_grid

SEED_BASE = {"train": 0, "val": 10_000, "test": 20_000}
PHANTOM_SPACING = (MODEL_SPACING, MODEL_SPACING, 5.0)  # phantoms drawn on the model grid, 5 mm slices (SPEC §2)
LAYOUTS = {"thigh": ("thigh",), "leg": ("leg", "leg_anatomical")}  # phantom anatomies drawn per region


def real_leg_source() -> LabelSlices:
    """The real leg slice's tissue and muscle maps on the model grid."""
    from lib.data.phantoms.real_slice import load_real_slice, real_slice_tissue

    real = load_real_slice()
    image, label = volume_to_model_grid(real.image, real.label, real.affine)
    return LabelSlices(real_slice_tissue(image[:, :, 0], label[:, :, 0])[None], label[:, :, 0][None], "leg",
                       ["real_leg_t1"])


def phantom_images(source: LabelSlices, seeds, n_slices: int) -> LabelSlices:
    """``source`` with the phantoms' own normalised images attached (same seeds, same order)."""
    images = []
    for i, seed in enumerate(seeds):
        layout = source.sources[i * n_slices].split("_", 1)[1].rsplit("_", 1)[0]
        ph = generate_phantom(source.region, seed, n_slices=n_slices, severity=SEVERITIES[i % len(SEVERITIES)],
                              spacing=PHANTOM_SPACING, layout=layout)
        images.append(np.moveaxis(volume_to_model_grid(ph.image, None, ph.affine)[0], 2, 0))
    source.images = np.concatenate(images)
    return source


def segmenter_sources(region: str, subjects: int, n_slices: int, shapes_weight: float, real_weight: float,
                      layouts: tuple[str, ...] | None = None) -> tuple[list[LabelSlices], list[float]]:
    """Training sources of ``region``'s segmenter and their shares of the draws; ``layouts``: the
    phantom anatomies drawn (default ``LAYOUTS[region]``)."""
    seeds = [SEED_BASE["train"] + i for i in range(subjects)]
    layouts = layouts or LAYOUTS[region]
    phantoms = phantom_images(phantom_label_slices(region, seeds, n_slices, layouts), seeds, n_slices)
    sources, weights = [phantoms], [1.0]
    if region == "thigh" and shapes_weight > 0:
        sources, weights = sources + [thigh_shape_slices()], [1 - shapes_weight, shapes_weight]
    if region == "leg" and real_weight > 0:
        sources, weights = sources + [real_leg_source()], [1 - real_weight, real_weight]
    return sources, weights


def classifier_sources(subjects: int, n_slices: int, real_weight: float) -> tuple[list, list, list]:
    """(sources, classes, shares): phantom thighs and the real thigh shapes (class 0), phantom legs of
    both anatomies and the real slice (class 1); every slice along the limb, its ends included."""
    seeds = [SEED_BASE["train"] + i for i in range(subjects)]
    sources = [phantom_label_slices("thigh", seeds, n_slices), thigh_shape_slices(),
               phantom_label_slices("leg", seeds, n_slices, LAYOUTS["leg"])]
    classes, weights = [0, 0, 1], [0.25, 0.25, 0.5]
    if real_weight > 0:
        sources.append(real_leg_source())
        classes.append(1)
        weights = [w * (1 - real_weight) for w in weights] + [real_weight]
    return sources, classes, weights


class SegmenterValidation:
    """Mean Dice of a segmenter, through the per-limb path, on phantom validation subjects: their
    own images and ``crops`` rendered crops of their anatomy (fixed seed); the mean of both.
    ``layouts``: the phantom anatomies, one subject after another (default ``LAYOUTS[region]``)."""

    def __init__(self, region: str, subjects: int, n_slices: int, crops: int = 48, seed: int = 1234,
                 layouts: tuple[str, ...] | None = None):
        self.region = region
        self.volumes = []
        layouts = layouts or LAYOUTS[region]
        for i in range(subjects):
            layout = layouts[i % len(layouts)]
            ph = generate_phantom(region, SEED_BASE["val"] + i, n_slices=n_slices,
                                  severity=SEVERITIES[i % len(SEVERITIES)], spacing=PHANTOM_SPACING, layout=layout)
            image, label = volume_to_model_grid(ph.image, ph.label, ph.affine)
            slices = list(range(image.shape[2]))
            self.volumes.append((image, label, find_limbs(image, slices)))
        seeds = [SEED_BASE["val"] + i for i in range(subjects)]
        source = phantom_label_slices(region, seeds, n_slices, layouts)
        drawer = SampleDrawer([source], [1.0], seed)
        samples = [segmentation_sample(source, *drawer.draw()[1:], region, 240, drawer.rng) for _ in range(crops)]
        self.crops = torch.from_numpy(np.stack([s[0] for s in samples])[:, None])
        self.crop_labels = np.stack([s[1] for s in samples])

    def __call__(self, model) -> float:
        fast = prepare_for_inference(model, next(model.parameters()).device)
        classes = num_classes(self.region)
        own = [mean_dice(segment_limbs(fast, image, list(range(image.shape[2])), limbs),
                         global_to_channels(label, self.region), classes) for image, label, limbs in self.volumes]
        with torch.no_grad():
            from lib.networks.fast import predict_logits

            pred = np.concatenate([predict_logits(fast, self.crops[s:s + 8]).argmax(1).numpy()
                                   for s in range(0, len(self.crops), 8)])
        known = self.crop_labels != 255
        rendered = mean_dice(pred[known], self.crop_labels[known], classes)
        return float((np.nanmean(own) + rendered) / 2)


class ClassifierValidation:
    """Per-slice accuracy of the limb classifier on phantom subjects of both regions (the
    validation split, or ``split="test"`` for held-out checks), at every severity, on their own images."""

    def __init__(self, subjects: int, n_slices: int, split: str = "val"):
        self.volumes = []
        for region, layouts in (("thigh", LAYOUTS["thigh"]), ("leg", LAYOUTS["leg"])):
            for i in range(subjects):
                ph = generate_phantom(region, SEED_BASE[split] + i, n_slices=n_slices,
                                      severity=SEVERITIES[i % len(SEVERITIES)], spacing=PHANTOM_SPACING,
                                      layout=layouts[i % len(layouts)])
                image = volume_to_model_grid(ph.image, None, ph.affine)[0]
                slices = list(range(image.shape[2]))
                self.volumes.append((image, slices, find_limbs(image, slices), 0 if region == "thigh" else 1))

    @property
    def slices(self) -> int:
        return sum(len(slices) for _, slices, _, _ in self.volumes)

    def __call__(self, model) -> float:
        model.eval()
        right = total = 0
        for image, slices, limbs, region in self.volumes:
            p_thigh = classify_limbs(model, image, slices, limbs)
            found = ~np.isnan(p_thigh)
            right += int(np.sum((p_thigh[found] < 0.5) == bool(region)))
            total += int(found.sum())
        return right / max(total, 1)
