"""Bone under muscle labels: found in fat-bright slices, bright marrow or dark, cleared; muscle,
fat-dark slices, marrow-like fat between muscles and a muscle compartment ringed by a dark band
left alone."""

import numpy as np
import pytest

from lib.data.phantoms.layout import CORTEX, MARROW
from lib.data.phantoms.phantom import generate_phantom
from lib.inference.bone import bone_mask, clear_bone
from lib.inference.limbs import find_limbs
from lib.transforms.geometry import MODEL_SPACING
from lib.transforms.preprocess import volume_to_model_grid


@pytest.fixture(scope="module")
def thighs():
    """A normalised model-grid slice of two thighs, its muscle labels and its bone (cortex, marrow)."""
    ph = generate_phantom("thigh", 20_011, n_slices=3, spacing=(MODEL_SPACING, MODEL_SPACING, 5.0))
    image, label = volume_to_model_grid(ph.image, ph.label, ph.affine)
    _, tissue = volume_to_model_grid(ph.image, ph.tissue, ph.affine)
    bone = np.isin(tissue[:, :, 1], (CORTEX, MARROW))
    return image[:, :, 1:2].copy(), label[:, :, 1], bone


def painted_over_bone(label, bone):
    """A segmenter's error seen on real scans: the femur labelled as the muscle beside it."""
    painted = label.copy()
    painted[bone] = 1
    return painted


def test_bone_is_found_in_each_thigh_and_muscle_is_kept(thighs):
    image, label, bone = thighs
    limbs = find_limbs(image)[0]
    assert len(limbs) == 2
    painted = painted_over_bone(label, bone)
    for limb in limbs:
        found = bone_mask(image[:, :, 0], painted > 0, limb.mask)
        own = bone & limb.mask
        assert (found & own).sum() > 0.9 * own.sum()  # the femur, cortex and marrow
        assert (found & (label > 0)).sum() < 0.01 * (label[limb.mask] > 0).sum()  # not the muscle


def test_clear_bone_sets_bone_labels_to_background_only(thighs):
    image, label, bone = thighs
    limbs = find_limbs(image)
    channels = painted_over_bone(label, bone)[:, :, None]
    cleared = clear_bone(channels, image, [0], limbs)
    assert cleared > 0.9 * bone.sum()
    assert channels[bone, 0].sum() < 0.1 * bone.sum()
    kept = (label > 0) & ~bone
    assert (channels[kept, 0] == label[kept]).mean() > 0.99


def test_a_bone_whose_marrow_is_as_dark_as_its_cortex_is_found(thighs):
    """Marrow without a fat signal (red marrow, some PD and GRE contrasts: ``qmritools_thigh``):
    the whole femur is a signal void, no bright hole in a dark ring; it is found as a convex void."""
    image, label, bone = thighs
    dark_marrow = image[:, :, 0].copy()
    cortex_level = np.median(dark_marrow[bone & (dark_marrow < np.median(dark_marrow[bone]))])
    dark_marrow[bone] = cortex_level
    painted = painted_over_bone(label, bone)
    for limb in find_limbs(image)[0]:
        found = bone_mask(dark_marrow, painted > 0, limb.mask)
        own = bone & limb.mask
        assert (found & own).sum() > 0.9 * own.sum()
        assert (found & (label > 0)).sum() < 0.01 * (label[limb.mask] > 0).sum()


def distance_from(shape, centre):
    """Each pixel's distance from ``centre``."""
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return np.hypot(yy - centre[0], xx - centre[1])


def inside_muscle(label, bone, limb):
    """A point well inside the muscle of a limb."""
    muscle = (label > 0) & limb.mask & ~bone
    rows, cols = np.nonzero(muscle)
    return rows[len(rows) // 2], cols[len(cols) // 2]


def test_a_fat_dark_slice_gets_no_bone(thighs):
    """Water or fat-suppressed images: marrow is as dark as cortex, and the dark fat around a
    muscle island left in fat-replaced muscle would read as a cortex; nothing is searched."""
    image, label, bone = thighs
    limb = find_limbs(image)[0][0]
    dark_fat = image[:, :, 0].copy()
    dark_fat[limb.mask & (label == 0)] = 0.12  # fat, marrow and cortex dark; muscle as it was
    muscle_level = np.median(dark_fat[(label > 0) & limb.mask])
    r = distance_from(label.shape, inside_muscle(label, bone, limb))
    dark_fat[r < 14] = 0.03  # fat replacing the muscle around ...
    dark_fat[r < 8] = muscle_level  # ... an island of muscle left in it
    labelled = ((label > 0) | bone | (r < 14)) & limb.mask
    found = bone_mask(dark_fat, labelled, limb.mask)
    assert not found.any()


def test_a_fat_island_behind_thin_fascia_keeps_its_label(thighs):
    """A disc of fat-bright signal (a fatty muscle) ringed by a 1-px, half-dark fascia line is not
    marrow: the ring is neither thick nor dark enough."""
    image, label, bone = thighs
    limb = find_limbs(image)[0][0]
    r = distance_from(label.shape, inside_muscle(label, bone, limb))
    slice_ = image[:, :, 0].copy()
    fat_level = np.median(slice_[limb.mask & (label == 0) & ~bone])
    muscle_level = np.median(slice_[(label > 0) & limb.mask & ~bone])
    slice_[r < 8] = fat_level
    slice_[(r >= 8) & (r < 9)] = 0.5 * muscle_level
    labelled = ((label > 0) | bone | (r < 9)) & limb.mask
    found = bone_mask(slice_, labelled, limb.mask)
    assert not found[r < 9].any()


def test_a_muscle_compartment_ringed_by_a_dark_band_is_not_marrow():
    """A slim calf whose muscle, as bright as half the fat, lies inside a 3 px signal-void band
    under the subcutaneous fat (a T2 calf of the shared volumes has one): a round, fat-like hole in
    a dark ring, as marrow is, but filling half the limb."""
    r = distance_from((160, 160), (80, 80))
    limb = r < 40
    image = np.where(limb, 1.0, 0.0)  # subcutaneous fat, 8 px
    image[r < 32] = 0.05  # the dark band
    image[r < 29] = 0.6  # the muscle compartment, all labelled
    found = bone_mask(image.astype(np.float32), r < 29, limb)
    assert not found.any()
