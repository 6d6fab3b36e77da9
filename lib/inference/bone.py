"""Bone in a limb's slice, so that no muscle label covers it.

On real scans the segmenters, trained on phantoms, sometimes label the tibia or the femur as the
muscle beside it: the shipped leg model labels the tibia tibialis anterior on ``qmritools_leg``,
soleus covers the distal tibia on ``musclemap_dixon_calf3d``. Bone looks alike in every contrast
where fat is not dark: fatty marrow, as bright as the subcutaneous fat, inside a thick ring of
cortex with no signal. Nothing else in a limb looks so: the fascia between muscles is thin and
only partly dark, vessels are small.

A limb's bones (``bone_mask``), on the model grid (1.037 mm pixels):

- *levels*: muscle is the median of the labelled pixels; fat the median of the unlabelled band
  3-8 mm under the skin. Where fat is darker than ``FAT_DARK`` x muscle (water, fat-suppressed,
  STIR images) marrow is as dark as the cortex and nothing is found: there, fat-replaced muscle
  islands inside dark fat would look like marrow, and must keep their labels;
- *void*: pixels darker than ``VOID`` x the darker of the two levels, grown by one pixel so that
  a thin cortex with 1-2 px gaps still closes;
- *marrow*: a hole of the grown void, ``MIN_AREA``-``MAX_AREA`` mm^2 (the fibula's to the tibial
  plateau's and the femoral condyles') and at most ``MAX_LIMB_SHARE`` of the limb (the bones
  accepted on the real volumes fill at most 0.19 of theirs; the whole muscle compartment inside a
  dark band under the fat, a hole of 0.65-0.73 of the limb on a real T2 calf and on severe leg
  phantoms, was kept out by its solidity alone, 0.72-0.80), not darker than half the fat, convex (solidity
  ``MIN_SOLIDITY``), whose second pixel ring is at least ``MIN_RING_VOID`` void and whose 2 or
  3 px ring has a median below ``MAX_RING`` x the darker level. Cortex is a signal void: on the
  real volumes its rings measure 0.06-0.38 of that level (the 2 px ring reads a thin cortex, the
  3 px ring a thick one whose inner pixel is blurred with marrow). The fascia and fat planes
  ringing a muscle or a fat island measure 0.46-0.67 in both;
- *cortex*: the pixels below ``MAX_RING`` x the darker level joined to a marrow within
  ``CORTEX_MM`` (a muscle beside the bone may be below ``VOID``: the tibialis anterior of the
  severe phantoms is);
- *dark bones* (``_dark_bones``): where the marrow is as dark as the cortex (``qmritools_thigh``'s
  femurs, some Dixon femurs) there is no bright hole to find. A component of the signal void
  (below ``MAX_RING`` x the darker level, grown by one pixel, more than 3 px inside the limb), its
  holes filled, is a bone when it is ``MIN_AREA``-``largest`` mm^2, convex (``MIN_SOLIDITY``) and a
  void as a whole (median below ``MAX_RING`` x the darker level). Muscle is never that dark in a
  fat-bright image; what else passes is not muscle either: the thick cortex of a bone whose
  marrow holds no label, vessels' flow voids, the dark tendons and bones at the ankle.

Only holes that carry a label are judged (the others need no clearing): a bone the segmenter
left alone is not in the mask.

Measured with the shipped weights (2026-12-04, looked at on overlays):
- on the real volumes of ``shared/data``, the femur or tibia is cleared on most mid-limb slices.
  It keeps its label where its cortex is thin and does not close: the tibial head, a slab's end;
- on the shared real leg slice, 14 of its 13,000 labelled muscle pixels lie in the bone mask
  (cortex partial volume), and the mean Dice goes from 0.883 to 0.891 (tibialis anterior 0.813 to
  0.854);
- on the held-out phantom test set, thigh goes from 0.880 to 0.882 and leg from 0.906 to 0.909.

Dark bones, measured on 2026-12-06 with the shipped weights (model-grid pixels taken off the labels
beyond the bright-marrow rule): ``qmritools_thigh`` 4,714 (the femur, slices 16-25 most),
``musclemap_dixon_thigh`` 1,518, the 3D calf slab 4,060 (tibial cortex, ankle), ``qmritools_leg``
507 and ``musclemap_t2_calf`` 267 (tibial and fibular cortex). Looked at on zoomed overlays: the
femurs of ``qmritools_thigh`` slices 18 and 24 and of the Dixon thigh's slices 3 and 7 lose their
labels; so do three dark vessel-like blobs between the Dixon thigh's muscles. The real leg slice
keeps the same labels (mean Dice 0.863); on six phantom volumes (thigh and leg, healthy, mild,
severe) 93 more pixels go, 25 of them true muscle, and no Dice moves by more than 0.0001.

Speed: each limb is handled on its box, each candidate hole on its own box, the limbs in threads
(scipy's morphology releases the GIL). On a 432 x 432 x 52 thigh phantom (104 limb slices, this
2-core AMD EPYC) this takes 0.19-0.25 s over 5 timing runs on a noisy day. Before the two skips
(holes without a label are not judged; the cortex distance is computed only around the marrow) it
took 0.45 s. The dark bones add 0.08 s there (0.24 -> 0.32 s, medians of 3, interleaved) and
0.30 s on the 96-slice 3D calf slab (0.35 -> 0.65 s).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops

from lib.inference.limbs import Limb
from lib.transforms.geometry import MODEL_SPACING
from lib.transforms.weights import cross_filter, fill_slice_holes

FAT_DARK = 0.65  # fat below this x muscle: a fat-dark contrast, bones not searched
VOID = 0.65  # void: below this x min(muscle, fat)
MIN_AREA, MAX_AREA = 20.0, 4000.0  # mm^2 of marrow
MAX_LIMB_SHARE = 0.5  # of the limb's area: a larger hole is a muscle compartment ringed by a dark band
MIN_SOLIDITY = 0.8
MIN_RING_VOID = 0.8  # fraction of the second pixel ring around the marrow that is void
MAX_RING = 0.4  # median of the 2 or 3 px ring over min(muscle, fat)
CORTEX_MM = 8.0
MIN_MUSCLE_PX = 200  # fewer labelled pixels: no reliable muscle level, nothing searched


def _levels(image: np.ndarray, labelled: np.ndarray, limb: np.ndarray, mm: float):
    """(muscle, fat) signal levels of one limb and each pixel's depth in it (mm), or None when either
    level cannot be measured."""
    muscle_px = labelled & limb
    if muscle_px.sum() < MIN_MUSCLE_PX:
        return None
    depth = ndi.distance_transform_edt(np.pad(limb, 1))[1:-1, 1:-1] * mm
    band = limb & (depth > 3.0) & (depth < 8.0) & ~labelled
    if band.sum() < 50:
        return None
    return float(np.median(image[muscle_px])), float(np.median(image[band])), depth


def _is_marrow(image: np.ndarray, hole: np.ndarray, void: np.ndarray, fat: float, dark: float) -> bool:
    """Whether one hole of the void (all arrays cut to the hole's box grown by 4 px) is marrow."""
    if np.median(image[hole]) < 0.5 * fat:
        return False
    one = cross_filter(hole)
    two = cross_filter(one)
    if void[two & ~one].mean() < MIN_RING_VOID:
        return False
    three = cross_filter(two)
    ring = min(np.median(image[two & ~hole]), np.median(image[three & ~hole]))  # thin or thick cortex
    if ring >= MAX_RING * dark:
        return False
    return regionprops(hole.astype(np.uint8))[0].solidity >= MIN_SOLIDITY


def _dark_bones(img: np.ndarray, lab: np.ndarray, lmb: np.ndarray, depth: np.ndarray, dark: float,
                largest: float, mm: float) -> np.ndarray:
    """Bones whose marrow is as dark as their cortex, on the limb's box: a component of the signal
    void (below ``MAX_RING`` x the darker level, grown by one pixel, more than 3 px inside the limb
    so that the skin's partial volume cannot ring the whole limb), its holes filled, that carries a
    label, measures ``MIN_AREA`` to ``largest`` mm^2, is a void as a whole (median below
    ``MAX_RING`` x the darker level) and is convex (``MIN_SOLIDITY``)."""
    void = cross_filter(lmb & (img < MAX_RING * dark)) & (depth > 3 * mm)
    blobs, n = ndi.label(fill_slice_holes(void[:, :, None])[:, :, 0])
    out = np.zeros(lmb.shape, bool)
    if n == 0:
        return out
    area = np.bincount(blobs.ravel(), minlength=n + 1) * mm * mm
    labelled = np.bincount(blobs[lab], minlength=n + 1) > 0
    chosen = np.flatnonzero(labelled & (area >= MIN_AREA) & (area <= largest))
    chosen = chosen[chosen > 0]
    if not chosen.size:
        return out
    boxes = ndi.find_objects(blobs)
    for index in chosen:
        where = boxes[index - 1]
        blob = blobs[where] == index
        # per blob, not ndi.median: that sorts the whole box once per call (2.5 ms a limb here)
        if np.median(img[where][blob]) < MAX_RING * dark and regionprops(blob.astype(np.uint8))[0].solidity >= MIN_SOLIDITY:
            out[where] |= blob
    return out


def bone_mask(image: np.ndarray, labelled: np.ndarray, limb: np.ndarray, mm: float = MODEL_SPACING) -> np.ndarray:
    """The bones (marrow and cortex) of one limb of a 2D slice, as a bool mask (H, W).

    image: the normalised slice; labelled: where the segmenter put any muscle; limb: the limb's
    mask. Empty where the contrast is fat-dark or the levels cannot be measured (module doc).
    """
    out = np.zeros(limb.shape, bool)
    found = ndi.find_objects(limb.astype(np.uint8))
    if found:
        out[found[0]] = _bone_in_box(image[found[0]], labelled[found[0]], limb[found[0]], mm)
    return out


def _bone_in_box(img: np.ndarray, lab: np.ndarray, lmb: np.ndarray, mm: float) -> np.ndarray:
    """``bone_mask`` on the limb's box."""
    out = np.zeros(lmb.shape, bool)
    levels = _levels(img, lab, lmb, mm)
    if levels is None:
        return out
    muscle, fat, depth = levels
    if fat < FAT_DARK * muscle:
        return out
    dark = min(muscle, fat)
    void = lmb & (img < VOID * dark)
    grown = cross_filter(void)
    holes = cross_filter(ndi.binary_fill_holes(grown) & ~grown) & ~void & lmb
    found, _ = ndi.label(holes)
    marrow = np.zeros(lmb.shape, bool)
    largest = min(MAX_AREA, MAX_LIMB_SHARE * np.count_nonzero(lmb) * mm * mm)
    for index, where in enumerate(ndi.find_objects(found), start=1):
        if where is None:
            continue
        area = np.count_nonzero(found[where] == index) * mm * mm
        if not MIN_AREA <= area <= largest:
            continue
        grow = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in where)
        hole = found[grow] == index
        if not lab[grow][hole].any():
            continue  # nothing to clear there
        if _is_marrow(img[grow], hole, void[grow], fat, dark):
            marrow[grow] |= hole
    marrow |= _dark_bones(img, lab, lmb, depth, dark, largest, mm)
    if not marrow.any():
        return out
    reach = int(np.ceil(CORTEX_MM / mm)) + 1
    around = tuple(slice(max(s.start - reach, 0), s.stop + reach) for s in ndi.find_objects(marrow.astype(np.uint8))[0])
    near = np.zeros(lmb.shape, bool)
    near[around] = ndi.distance_transform_edt(~marrow[around]) * mm <= CORTEX_MM
    cortex, _ = ndi.label(void & near & (img < MAX_RING * dark))  # signal void: not a dark muscle beside it
    touching = np.unique(cortex[cross_filter(marrow) & (cortex > 0)])
    return marrow | (np.isin(cortex, touching) & near)


def clear_bone(channels: np.ndarray, volume: np.ndarray, slices: list[int], limbs: list[list[Limb]]) -> int:
    """Set to background, in place, the labels of ``channels`` (H, W, len(slices)) that lie in a
    bone of a limb of the model-grid ``volume`` (H, W, Z); the number of pixels cleared.

    Limbs run in threads: scipy's morphology releases the GIL."""
    jobs = [(j, k, limb) for j, (k, found) in enumerate(zip(slices, limbs)) for limb in found]

    def one(job) -> int:
        j, k, limb = job
        labels = channels[limb.box + (j,)]
        bone = _bone_in_box(volume[limb.box + (k,)], labels > 0, limb.mask[limb.box], MODEL_SPACING) & (labels > 0)
        labels[bone] = 0
        return int(bone.sum())

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return sum(pool.map(one, jobs))
