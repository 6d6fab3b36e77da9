"""Limbs in the axial slices of a volume: find them, crop each on the model grid, paste labels back.

Real fields of view hold one or two limbs, limbs that touch, and things that are not limbs: gel
pads between the legs, oil capsules, coil parts. The networks run on one limb at a time, on a
square crop of the model grid (1.037 mm pixels) around it, as Dafne's split models do, so that
neither the field of view nor the other limb changes what a network sees; labels are pasted back
only inside the limb they belong to, so no muscle lands in a pad or outside the body.

Finding: the normalised slice is thresholded with hysteresis (pixels above ``LOW`` joined to
pixels above ``HIGH``), opened, closed and filled. A component is a limb when it is large
(``MIN_LIMB_AREA``), thick (``MIN_LIMB_RADIUS``: fold-over and noise at the ends of a slab are
thin streaks) and not of uniform signal (``MIN_CONTRAST``: fat, muscle and bone differ in every
contrast, a gel pad or a bottle does not). Two touching limbs, one component wider than it is
deep, are cut at the narrowest column between them.

Labels are pasted inside the limb's mask less its outer ``SKIN_MARGIN`` px (2.1 mm, ``Limb.inner``):
skin and subcutaneous fat always lie between a muscle and the limb's outline. The truth's muscle
lies at least 4.2 mm inside the mask on the real leg slice and at least 5.6 mm inside on leg and
thigh phantoms of every severity; what the networks put in the outer 2 px is skin-edge spill, at
the knee end of a thigh and on a slab's dim ankle slices (2026-12-06: 28, 30 and 454 model-grid
pixels on ``qmritools_thigh``, ``musclemap_dixon_thigh`` and the 3D calf slab, none on the other
two real volumes). The 3 px margin outside the mask that an earlier version had only let labels
spill past the skin (1,214 labelled pixels of the 3D calf slab, 58-110 on the real thighs, before
clean-up).

Faded slab ends: a 3D acquisition's signal falls off at both ends of its slab (the slab profile),
where anatomy shows dimly through noise and quantitative values are biased. Slices at either end of
a volume whose signal (the 90th percentile of its foreground) is under ``FADED_FRACTION`` of the
volume's median slice are ``faded_end_slices``: the inference does not segment them (the classifier
still sees them, since their anatomy is dim, not absent). Only runs that reach the volume's first
or last slice count, so no slice inside a volume is ever dropped. The fraction lies between the
MuscleMap 3D Dixon calf slab's ends (foot slices 0-4 at 0.30-0.40, 13,008 labelled px before; its
dim knee slices 88-91 at 0.24-0.39 go too) and the lowest end slice of the other 3D scans, which
show clear anatomy (`qmritools_leg` slice 0: 0.53); the 2D scans and every phantom stay at 0.74 or
above.

Speed: the masks are found on a 2 x 2-averaged copy (2.07 mm pixels), every slice at once with
in-plane structuring elements: 0.27 s instead of 0.62 s for 31 slices of 432 x 432 here, the
masks differing from full resolution by 2 % of their area. The holes are filled by labelling the
background once (0.03 s for 52 slices, against 0.07 s for ``binary_fill_holes``'s repeated
dilation, same masks), and the two halves of the slab run in two threads, since scipy's labelling
and morphology release the GIL: ``find_limbs`` on a 432 x 432 x 52 thigh phantom takes 0.44 s
instead of 0.56 s, with the same limbs (2-core AMD EPYC, AVX2, 2026-12-06, medians of 8
interleaved runs).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi

from lib.transforms.geometry import MODEL_SPACING
from lib.transforms.weights import PLANE4, fill_slice_holes

MODEL_MULTIPLE = 48  # the segmenter's total downsampling (2^4 * 3): crop sizes are multiples of it
MIN_CROP = 240  # px: the segmenters train on 240 px crops around one limb
CROP_MARGIN = 12  # px around a limb's box
CLASSIFIER_CROP = 256  # px around a limb's centre (265 mm) that the classifier sees, downsized to 128
MIN_LIMB_AREA = 1000.0  # mm^2: an ankle is about 2500
MIN_LIMB_RADIUS = 12.0  # mm: the largest disc inside a limb; an ankle's is about 25
MIN_CONTRAST = 0.25  # robust spread of a limb's signal over its median; gel pads and bottles are flat
LOW, HIGH = 0.05, 0.15  # hysteresis thresholds on the [0, 1]-normalised image
FADED_FRACTION = 0.45  # an end slice whose signal is under this share of the volume's median has faded
MIN_FOREGROUND = 100  # foreground pixels (2 x 2-averaged) a slice needs for its signal to count
SKIN_MARGIN = 2  # px of the model grid (2.1 mm) inside a limb's outline where no muscle label goes

_PLANE8 = np.zeros((3, 3, 3), bool)
_PLANE8[:, :, 1] = True


@dataclass
class Limb:
    """One limb of one slice: its mask (H, W), bounding box and centroid (row, col), in pixels."""

    mask: np.ndarray
    box: tuple[slice, slice]
    centre: tuple[float, float]

    @cached_property
    def inner(self) -> np.ndarray:
        """Where the limb's muscle labels may lie (H, W): the mask less its outer ``SKIN_MARGIN`` px."""
        if SKIN_MARGIN < 1:  # scipy erodes until nothing changes for iterations < 1
            return self.mask
        out = np.zeros(self.mask.shape, bool)
        out[self.box] = ndi.binary_erosion(self.mask[self.box], iterations=SKIN_MARGIN)
        return out

    def crop_window(self, min_size: int = MIN_CROP, margin: int = CROP_MARGIN) -> tuple[int, int, int]:
        """``(row0, col0, size)``: a square of ``size`` px, a multiple of 48 and at least ``min_size``,
        centred on the box grown by ``margin``."""
        extent = max(b.stop - b.start for b in self.box) + 2 * margin
        size = max(min_size, -(-extent // MODEL_MULTIPLE) * MODEL_MULTIPLE)
        centre = [(b.start + b.stop) / 2 for b in self.box]
        return int(round(centre[0] - size / 2)), int(round(centre[1] - size / 2)), size

    def classifier_window(self, size: int = CLASSIFIER_CROP) -> tuple[int, int, int]:
        """``(row0, col0, size)`` of the classifier's crop, centred on the centroid."""
        return int(round(self.centre[0] - size / 2)), int(round(self.centre[1] - size / 2)), size


def body_masks(volume: np.ndarray) -> np.ndarray:
    """Foreground of every slice of a normalised (H, W, Z) volume, slices kept apart."""
    labels, n = ndi.label(volume > LOW, structure=_PLANE8)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[volume > HIGH])] = True
    keep[0] = False
    mask = ndi.binary_opening(keep[labels], structure=PLANE4)
    mask = ndi.binary_closing(mask, structure=PLANE4)
    return fill_slice_holes(mask)


def body_masks_threaded(volume: np.ndarray) -> np.ndarray:
    """``body_masks`` of the two halves of the slices in two threads (slices are independent)."""
    half = volume.shape[2] // 2
    if half == 0:
        return body_masks(volume)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return np.concatenate(list(pool.map(body_masks, (volume[:, :, :half], volume[:, :, half:]))), axis=2)


def split_touching(mask: np.ndarray, mm: float) -> list[np.ndarray]:
    """Two touching limbs as one component (much wider than deep): cut at the narrowest column
    of its middle 40 %, if that is clearly narrower than both halves."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    width, depth = (rows[-1] - rows[0] + 1) * mm, (cols[-1] - cols[0] + 1) * mm
    if width < 1.4 * depth or width < 160:
        return [mask]
    thickness = mask.sum(1).astype(float)[rows[0]:rows[-1] + 1]
    n = len(thickness)
    middle = np.arange(int(0.3 * n), int(0.7 * n))
    cut = int(middle[np.argmin(thickness[middle])])
    if thickness[cut] > 0.8 * min(thickness[:cut].max(), thickness[cut:].max()):
        return [mask]
    first, second = mask.copy(), mask.copy()
    first[rows[0] + cut:] = False
    second[:rows[0] + cut] = False
    return [first, second]


def is_limb(image: np.ndarray, mask: np.ndarray, mm: float) -> bool:
    """Large, thick, and not of uniform signal (see the module doc)."""
    if mask.sum() * mm * mm < MIN_LIMB_AREA:
        return False
    box = ndi.find_objects(mask.astype(np.uint8))[0]
    inside = np.pad(mask[box], 1)
    if ndi.distance_transform_edt(inside).max() * mm < MIN_LIMB_RADIUS:
        return False
    core = ndi.binary_erosion(mask[box], iterations=2)
    values = image[box][core] if core.sum() > 50 else image[box][mask[box]]
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return (p90 - p10) / max(p50, 1e-3) >= MIN_CONTRAST


def _limbs_of_slice(image: np.ndarray, body: np.ndarray, mm: float, max_limbs: int) -> list[np.ndarray]:
    components, _ = ndi.label(body)
    masks = []
    for c, box in enumerate(ndi.find_objects(components), start=1):
        if box is None:
            continue
        whole = np.zeros(body.shape, bool)
        whole[box] = components[box] == c
        masks += [part for part in split_touching(whole, mm) if is_limb(image, part, mm)]
    masks.sort(key=lambda m: -int(m.sum()))
    return masks[:max_limbs]


def find_limbs(volume: np.ndarray, slices=None, max_limbs: int = 2, mm: float = MODEL_SPACING) -> list[list[Limb]]:
    """The limbs of each chosen slice of a normalised model-grid volume (H, W, Z), largest first.

    slices: indices along Z (default all); the answer has one list per chosen slice.
    """
    volume = np.asarray(volume, np.float32)
    slices = list(range(volume.shape[2])) if slices is None else list(slices)
    h, w = volume.shape[:2]
    small = volume[: h // 2 * 2, : w // 2 * 2][:, :, slices]
    small = small.reshape(h // 2, 2, w // 2, 2, len(slices)).mean((1, 3))
    bodies = body_masks_threaded(small) if len(slices) else small.astype(bool)
    out = []
    for j in range(len(slices)):
        limbs = []
        for m in _limbs_of_slice(small[:, :, j], bodies[:, :, j], 2 * mm, max_limbs):
            full = np.zeros((h, w), bool)
            full[: h // 2 * 2, : w // 2 * 2] = np.repeat(np.repeat(m, 2, 0), 2, 1)
            box = tuple(slice(2 * b.start, 2 * b.stop) for b in ndi.find_objects(m.astype(np.uint8))[0])
            centre = tuple(2 * float(c) + 0.5 for c in ndi.center_of_mass(m))
            limbs.append(Limb(mask=full, box=box, centre=centre))
        out.append(limbs)
    return out


def slice_signal(volume: np.ndarray) -> np.ndarray:
    """The signal of each slice of a normalised (H, W, Z) volume: the 90th percentile of its
    pixels above ``LOW``, on every other row and column (``nan`` where under ``MIN_FOREGROUND``)."""
    small = np.asarray(volume, np.float32)[::2, ::2]
    out = np.full(small.shape[2], np.nan)
    for k in range(small.shape[2]):
        values = small[:, :, k][small[:, :, k] > LOW]
        if values.size >= MIN_FOREGROUND:
            out[k] = np.percentile(values, 90)
    return out


def faded_end_slices(volume: np.ndarray, fraction: float = FADED_FRACTION) -> list[int]:
    """Indices of the slices at either end of a normalised (H, W, Z) volume whose signal is under
    ``fraction`` of the median slice's (or that hold no foreground): a slab's faded ends."""
    signal = slice_signal(volume)
    if np.isnan(signal).all():
        return []
    faint = ~(signal >= fraction * np.nanmedian(signal))
    n = len(faint)
    first = int(np.argmin(faint)) if not faint.all() else n
    last = n - int(np.argmin(faint[::-1]))
    return list(range(first)) + list(range(max(last, first), n))


def crop(array: np.ndarray, row0: int, col0: int, size: int) -> np.ndarray:
    """``array[..., row0:row0 + size, col0:col0 + size]``, zero where that lies outside ``array``."""
    out = np.zeros(array.shape[:-2] + (size, size), array.dtype)
    h, w = array.shape[-2:]
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + size, h), min(col0 + size, w)
    if r1 > r0 and c1 > c0:
        out[..., r0 - row0:r1 - row0, c0 - col0:c1 - col0] = array[..., r0:r1, c0:c1]
    return out


def paste(target: np.ndarray, patch: np.ndarray, row0: int, col0: int, where: np.ndarray) -> None:
    """Write the non-zero pixels of ``patch`` (placed at ``row0, col0``) into ``target`` (H, W)
    where ``where`` (H, W) is True."""
    size = patch.shape[-1]
    h, w = target.shape
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + size, h), min(col0 + size, w)
    if r1 <= r0 or c1 <= c0:
        return
    src = patch[r0 - row0:r1 - row0, c0 - col0:c1 - col0]
    chosen = where[r0:r1, c0:c1] & (src > 0)
    target[r0:r1, c0:c1][chosen] = src[chosen]
