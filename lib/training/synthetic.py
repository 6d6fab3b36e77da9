"""Training batches rendered from label maps: a crop around one limb, deformed, objects added,
contrast randomised (``lib.data.phantoms.synthetic``).

Each sample picks a source slice (``LabelSlices``, by source weight), one of its limbs, and a crop
around it as inference makes one (``lib.inference.limbs``), then deforms the maps (rotation
±20°, scale 0.85-1.2 with a little anisotropy, a large smooth warp and a fine one; the
classifier's crops take a wider scale range, see ``classifier_batches``), sometimes
adds objects that are not limbs (gel pads, bottles, coil bars: tissue OBJECT, label 0) and
sometimes lets the field of view's edge cut the limb or leaves the chosen limb alone in it
(``one_limb_share``), and only then draws the appearance. The
maps are deformed with nearest lookups before rendering, so labels are copied, never invented,
and the image stays sharp where the renderer wants it sharp.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from monai.transforms import Compose
from scipy import ndimage as ndi

from lib.data.phantoms.layout import AIR, MUSCLE, OBJECT
from lib.data.phantoms.shapes import LabelSlices
from lib.data.phantoms.synthetic import render, smooth_field
from lib.inference.limbs import CLASSIFIER_CROP, MIN_CROP, crop
from lib.labels import BORDER_SIGMA_PX, FIRST_VALUE, MUSCLES, num_classes
from lib.transforms.augment import intensity_augmentations
from lib.transforms.geometry import MODEL_SPACING
from lib.transforms.intensity import classifier_input
from lib.transforms.weights import IGNORE_VALUE, border_weight_map, inverse_frequency_weights

MAX_CLASS_WEIGHT = 20.0  # cap of the inverse-frequency weight of a rare muscle
OBJECTS_P = 0.3  # share of samples with objects beside the limb
CUT_P = 0.1  # share of samples whose field of view cuts the limb
CUT_DEPTH = (0.1, 0.4)  # the field of view's edge lies this share of the crop from its centre
CENTRE_RADIUS = 20  # px: the chosen limb is the component of the body most present this close to the crop's centre
SCALE_RANGE = (0.85, 1.2)  # magnification of the maps, segmenter crops (and the classifier's by default)


def to_channels(label: np.ndarray, region: str) -> np.ndarray:
    """Global values -> ``region``'s channels; unknown (255) stays 255, other muscles become 0."""
    first, count = FIRST_VALUE[region], len(MUSCLES[region])
    inside = (label >= first) & (label < first + count)
    out = np.where(inside, label.astype(np.int16) - first + 1, 0).astype(np.uint8)
    out[label == IGNORE_VALUE] = IGNORE_VALUE
    return out


def class_frequencies(sources: list[LabelSlices], region: str) -> np.ndarray:
    """Pixel frequency of each channel of ``region`` over the known pixels of all sources."""
    classes = num_classes(region)
    counts = np.zeros(classes)
    for source in sources:
        channels = to_channels(source.label, region)
        counts += np.bincount(channels[channels != IGNORE_VALUE].ravel(), minlength=classes)[:classes]
    return counts / max(counts.sum(), 1)


def loss_class_weights(sources: list[LabelSlices], region: str, mode: str = "inverse_frequency") -> list[float]:
    """The class term of the segmenter's loss for each channel (``segmentation_batches``): the
    capped inverse frequency over the sources, rounded as checkpoints record it; ones for "uniform"."""
    if mode == "uniform":
        return [1.0] * num_classes(region)
    return [round(float(w), 4) for w in inverse_frequency_weights(class_frequencies(sources, region), MAX_CLASS_WEIGHT)]


def limb_centres(tissue: np.ndarray) -> list[list[tuple[float, float]]]:
    """Per slice, the centroids of its (up to two) largest muscle compartments."""
    out = []
    for t in tissue:
        components, n = ndi.label(ndi.binary_closing((t >= MUSCLE) & (t != OBJECT), iterations=3))
        if n == 0:
            out.append([(t.shape[0] / 2, t.shape[1] / 2)])
            continue
        sizes = np.bincount(components.ravel())[1:]
        keep = [i + 1 for i in np.argsort(-sizes)[:2] if sizes[i] > 0.1 * sizes.max()]
        out.append([tuple(c) for c in ndi.center_of_mass(components > 0, components, keep)])
    return out


def deform_coords(rng: np.random.Generator, size: int, pad: int,
                  scale_range: tuple[float, float] = SCALE_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """Source (row, col) of every pixel of a ``size`` crop taken from a window padded by ``pad``;
    the maps are magnified by a factor drawn from ``scale_range`` (above 1: the limb looks larger)."""
    c = size / 2 - 0.5
    rows, cols = np.mgrid[:size, :size].astype(np.float32) - c
    angle = np.deg2rad(rng.uniform(-20, 20))
    scale = rng.uniform(*scale_range) * np.exp(rng.normal(0, 0.06, 2))
    r = (np.cos(angle) * rows - np.sin(angle) * cols) / scale[0]
    q = (np.sin(angle) * rows + np.cos(angle) * cols) / scale[1]
    for amplitude, sigma in ((rng.uniform(0, 10), rng.uniform(20, 40)), (rng.uniform(0, 2.5), rng.uniform(5, 10))):
        field = smooth_field(rng, (size, size), sigma, n=2)
        r, q = r + amplitude * field[0], q + amplitude * field[1]
    return r + c + pad, q + c + pad


def add_objects(tissue: np.ndarray, label: np.ndarray, rng: np.random.Generator, mm: float = MODEL_SPACING) -> None:
    """Draw 1-3 gel pads (rounded rectangles), bottles (discs) or coil bars into the air, in place."""
    h, w = tissue.shape
    rows, cols = np.mgrid[:h, :w]
    for _ in range(rng.integers(1, 4)):
        kind = rng.choice(["pad", "bottle", "bar"], p=[0.5, 0.3, 0.2])
        r0, c0 = rng.uniform(0, h), rng.uniform(0, w)
        if kind == "pad":
            a, b, turn = rng.uniform(15, 60) / mm, rng.uniform(8, 40) / mm, rng.uniform(0, np.pi)
            u = np.cos(turn) * (rows - r0) + np.sin(turn) * (cols - c0)
            v = -np.sin(turn) * (rows - r0) + np.cos(turn) * (cols - c0)
            shape = (np.abs(u / a) ** 4 + np.abs(v / b) ** 4) < 1
        elif kind == "bottle":
            shape = np.hypot(rows - r0, cols - c0) < rng.uniform(3, 15) / mm
        else:
            shape = (np.abs(cols - c0) if rng.uniform() < 0.5 else np.abs(rows - r0)) < rng.uniform(2, 8) / mm
        shape &= tissue == AIR
        tissue[shape], label[shape] = OBJECT, 0


def keep_centre_limb(tissue: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Make everything but the body component at the crop's centre air, in place: the field of view
    of a scan of one limb. Two touching limbs are one component and stay together. Returns what
    was taken out (H, W) bool."""
    components, n = ndi.label(tissue != AIR)
    h, w = tissue.shape
    rows, cols = np.ogrid[:h, :w]
    near = (rows - h / 2) ** 2 + (cols - w / 2) ** 2 < CENTRE_RADIUS ** 2
    counts = np.bincount(components[near].ravel(), minlength=n + 1)
    counts[0] = 0
    if n < 2 or counts.max() == 0:
        return np.zeros(tissue.shape, bool)
    other = (components != 0) & (components != counts.argmax())
    tissue[other], label[other] = AIR, 0
    return other


def draw_maps(source: LabelSlices, index: int, centre: tuple[float, float], size: int, rng: np.random.Generator,
              jitter: float = 8.0, own_image: bool = False, scale_range: tuple[float, float] = SCALE_RANGE,
              one_limb_share: float = 0.0):
    """Deformed (tissue, label) crop of ``size`` around ``centre`` (+ jitter), objects and cuts drawn;
    with ``own_image``, the source's own image deformed alike (bilinear) comes third, and no
    objects or cuts are drawn (they would have no signal in it). In ``one_limb_share`` of the
    crops the other limb is taken out first (``keep_centre_limb``; in an own image its pixels
    take the level of the air), so that a network does not learn to tell medial from lateral by
    where the other limb is: on a scan of one limb there is none."""
    pad = size // 4
    row0 = int(round(centre[0] + rng.normal(0, jitter) - size / 2)) - pad
    col0 = int(round(centre[1] + rng.normal(0, jitter) - size / 2)) - pad
    rows, cols = deform_coords(rng, size, pad, scale_range)
    ri = np.clip(np.rint(rows), 0, size + 2 * pad - 1).astype(np.intp)
    ci = np.clip(np.rint(cols), 0, size + 2 * pad - 1).astype(np.intp)
    tissue = crop(source.tissue[index], row0, col0, size + 2 * pad)[ri, ci]
    label = crop(source.label[index], row0, col0, size + 2 * pad)[ri, ci]
    removed = None
    if one_limb_share and rng.uniform() < one_limb_share:  # no draw when off: earlier recipes keep their streams
        removed = keep_centre_limb(tissue, label)
    if own_image:
        window = crop(source.images[index], row0, col0, size + 2 * pad)
        image = ndi.map_coordinates(window, [rows, cols], order=1, mode="nearest").astype(np.float32)
        if removed is not None and removed.any():  # the other limb and its 2 px interpolated rim: the air's level
            rim = ndi.binary_dilation(removed, iterations=2) & (tissue == AIR)
            air = (tissue == AIR) & ~rim
            image[rim] = np.median(image[air]) if air.any() else 0.0
        return tissue, label, image
    if rng.uniform() < OBJECTS_P:
        add_objects(tissue, label, rng)
    if rng.uniform() < CUT_P:  # the field of view's edge crosses the limb
        turn = rng.uniform(0, 2 * np.pi)
        rr, qq = np.mgrid[:size, :size] - size / 2
        beyond = np.cos(turn) * rr + np.sin(turn) * qq > rng.uniform(*CUT_DEPTH) * size
        tissue[beyond], label[beyond] = AIR, 0
    return tissue, label


def own_image_augmentations(seed: int, intensity_prob: float, fat_inversion_prob: float) -> Compose:
    """Intensity augmentations of the phantoms' own GRE-like images (``intensity_augmentations``),
    clipped to [0, 1] rather than normalised per crop: own images keep the per-volume scaling that
    inference uses (with the per-crop normalisation a thigh warm-up lost its own contrast, 0.927 ->
    0.837; without it 0.885, and fat-dark 0.367 -> 0.645; docs/REAL_MRI.md, 2026-12-07). The
    2026-11-25 code trained its phantom-only thigh with them (0.25 each, inversion 0.15). Not a
    default yet: the stages after such a warm-up are not measured."""
    augment = Compose(intensity_augmentations(intensity_prob, fat_inversion_prob, normalize=False))
    augment.set_random_state(seed=seed)
    return augment


class SampleDrawer:
    """Draws (source, slice, limb centre) by source weight; the shared part of both batch kinds."""

    def __init__(self, sources: list[LabelSlices], weights, seed: int):
        if not sources or any(len(s) == 0 for s in sources):
            raise ValueError("every label source needs at least one slice")
        self.sources, self.rng = sources, np.random.default_rng(seed)
        self.centres = [limb_centres(s.tissue) for s in sources]
        self.p = np.asarray(weights, float) / np.sum(weights)

    def draw(self) -> tuple[int, int, tuple[float, float]]:
        k = int(self.rng.choice(len(self.sources), p=self.p))
        i = int(self.rng.integers(len(self.sources[k])))
        centres = self.centres[k][i]
        return k, i, centres[int(self.rng.integers(len(centres)))]


def segmentation_sample(source: LabelSlices, index: int, centre, region: str, size: int,
                        rng: np.random.Generator, own_image_share: float = 0.0,
                        one_limb_share: float = 0.0, own_image_augment=None) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image, channel label)`` crop (size, size) for ``region``'s segmenter: rendered, or
    with probability ``own_image_share`` the source's own image (gamma-jittered) where it has one,
    always for a source drawn only in its own images; ``one_limb_share``: see ``draw_maps``;
    ``own_image_augment``: a dictionary transform applied to an own image after that
    (``own_image_augmentations``)."""
    own = source.images is not None and (source.own_image_only or rng.uniform() < own_image_share)
    if own:
        tissue, label, image = draw_maps(source, index, centre, size, rng, own_image=True,
                                         one_limb_share=one_limb_share)
        image = np.clip(image, 0, 1) ** np.exp(rng.normal(0, 0.2))
    else:
        tissue, label = draw_maps(source, index, centre, size, rng, one_limb_share=one_limb_share)
        image = render(tissue, label, rng)
    channels = to_channels(label, region)
    if own and own_image_augment is not None:
        image = np.asarray(own_image_augment({"image": image[None], "label": channels[None]})["image"][0],
                           np.float32)
    if rng.uniform() < 0.5:  # left/right mirror: a mirrored limb is a limb of the other side
        image, channels = image[::-1].copy(), channels[::-1].copy()
    return image, channels


def segmentation_batches(sources: list[LabelSlices], weights, region: str, batch_size: int = 4,
                         size: int = MIN_CROP, seed: int = 0,
                         own_image_share: float = 0.0,
                         class_weights: str = "inverse_frequency",
                         one_limb_share: float = 0.0,
                         own_image_augment: tuple[float, float] = (0.0, 0.0)) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless ``(images, channel labels, weight maps)`` batches (SPEC §5 weights) of rendered crops;
    ``class_weights="uniform"`` keeps only the weight maps' border term; ``one_limb_share``: the
    share of crops with the chosen limb alone (``draw_maps``); ``own_image_augment``: (intensity,
    fat inversion) probabilities of ``own_image_augmentations`` on own images (seeded with
    ``seed``; (0, 0): none)."""
    drawer = SampleDrawer(sources, weights, seed)
    frequencies = class_frequencies(sources, region) if class_weights == "inverse_frequency" else None
    augment = own_image_augmentations(seed, *own_image_augment) if any(own_image_augment) else None
    while True:
        images, labels, weights_ = [], [], []
        for _ in range(batch_size):
            k, i, centre = drawer.draw()
            image, channels = segmentation_sample(sources[k], i, centre, region, size, drawer.rng, own_image_share,
                                                  one_limb_share, augment)
            weights_.append(border_weight_map(image, channels, num_classes(region), BORDER_SIGMA_PX[region],
                                              class_weights=class_weights, class_frequencies=frequencies,
                                              max_class_weight=MAX_CLASS_WEIGHT))
            images.append(image)
            labels.append(channels)
        yield (torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(np.stack(labels)[:, None].astype(np.int64)),
               torch.from_numpy(np.stack(weights_)[:, None]))


def classifier_batches(sources: list[LabelSlices], classes, weights, batch_size: int = 32, seed: int = 0,
                       scale_range: tuple[float, float] = SCALE_RANGE) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless ``(inputs (B, 1, 128, 128), classes (B,))``: rendered crops of ``CLASSIFIER_CROP`` px
    around one limb, downsized as inference does (``lib.inference.batching.classify_limbs``).

    scale_range: the maps' magnification range. The crop has a fixed size in millimetres, so a
    limb's absolute size shows, and thighs are larger than calves: the wider the range, the less
    the classifier can lean on size rather than anatomy (``PretrainPlan.classifier_scale``).
    """
    drawer = SampleDrawer(sources, weights, seed)
    while True:
        crops, targets = [], []
        for _ in range(batch_size):
            k, i, centre = drawer.draw()
            tissue, label = draw_maps(sources[k], i, centre, CLASSIFIER_CROP, drawer.rng, jitter=10.0,
                                      scale_range=scale_range)
            image = render(tissue, label, drawer.rng)
            crops.append(image[::-1] if drawer.rng.uniform() < 0.5 else image)
            targets.append(classes[k])
        x = torch.from_numpy(np.ascontiguousarray(np.stack(crops)))  # (B, S, S)
        small = classifier_input(x[None].permute(0, 2, 3, 1)).permute(3, 0, 1, 2)
        yield small.contiguous(), torch.tensor(targets, dtype=torch.long)
