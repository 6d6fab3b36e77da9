"""Limbs of a slice: found with a gel pad beside them, one limb alone, two limbs touching; their
masks less the skin margin hold all the muscle, and labels leave that margin. A slab's faded ends
hold none."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from lib.data.phantoms.phantom import generate_phantom
from lib.inference.limbs import (SKIN_MARGIN, body_masks, body_masks_threaded, crop, faded_end_slices, find_limbs,
                                 paste)
from lib.transforms.geometry import MODEL_SPACING
from lib.transforms.preprocess import volume_to_model_grid


@pytest.fixture(scope="module")
def legs():
    """A normalised model-grid slice of two legs (mid-limb) and its side map (1 right, 2 left)."""
    ph = generate_phantom("leg", 20_007, n_slices=3, spacing=(MODEL_SPACING, MODEL_SPACING, 5.0))
    image, side = volume_to_model_grid(ph.image, ph.side, ph.affine)
    return image[:, :, 1:2].copy(), side[:, :, 1]


def overlap(mask, truth):
    return (mask & truth).sum() / truth.sum()


def test_both_legs_are_found_one_each(legs):
    image, side = legs
    limbs = find_limbs(image)[0]
    assert len(limbs) == 2
    sides = sorted(int(np.bincount(side[limb.mask]).argmax()) for limb in limbs)
    assert sides == [1, 2]
    for limb in limbs:
        own = side == np.bincount(side[limb.mask]).argmax()
        assert overlap(limb.mask, own) > 0.97
        row0, col0, size = limb.crop_window()
        assert size % 48 == 0 and size >= 240
        assert crop(own.astype(np.uint8), row0, col0, size).sum() == own.sum()  # the crop holds the limb


def test_a_gel_pad_between_the_legs_is_not_a_limb_and_gets_no_label(legs):
    image, side = legs
    padded = image.copy()
    rows = np.flatnonzero((side > 0).any(1))
    gap = (rows[0] + rows[-1]) // 2
    cols = np.flatnonzero((side > 0).any(0))
    pad = np.zeros(side.shape, bool)
    pad[gap - 15:gap + 15, cols[0] + 10:cols[-1] - 10] = True  # a gel pad of uniform signal, touching nothing
    pad &= ~ndi.binary_dilation(side > 0, iterations=8)  # 8 mm from the skin (touching pads: the networks)
    padded[:, :, 0][pad] = 0.6
    limbs = find_limbs(padded)[0]
    assert len(limbs) == 2
    assert not any((limb.mask & pad).any() for limb in limbs)
    labels = np.zeros(side.shape, np.uint8)
    for limb in limbs:  # a network that paints its whole crop still paints only the limb
        row0, col0, size = limb.crop_window()
        paste(labels, np.ones((size, size), np.uint8), row0, col0, limb.mask)
    assert not labels[pad].any()


def test_one_limb_alone(legs):
    image, side = legs
    one = np.where((side == 1)[:, :, None], image, 0)
    limbs = find_limbs(one)[0]
    assert len(limbs) == 1 and overlap(limbs[0].mask, side == 1) > 0.97


def test_touching_limbs_are_cut_apart(legs):
    image, side = legs
    right, left = side == 1, side == 2
    shift = np.flatnonzero(left.any(1))[0] - np.flatnonzero(right.any(1))[-1] + 4  # overlap by 4 px
    touching = np.where(right, image[:, :, 0], 0)
    moved = np.roll(np.where(left, image[:, :, 0], 0), -shift, axis=0)
    touching = np.maximum(touching, moved)[:, :, None]
    limbs = find_limbs(touching)[0]
    assert len(limbs) == 2
    moved_left = np.roll(left, -shift, axis=0)
    best = sorted(max(overlap(limb.mask, truth) for limb in limbs) for truth in (right, moved_left))
    assert best[0] > 0.85


def test_an_empty_slice_has_no_limb():
    noise = np.random.default_rng(0).uniform(0, 0.04, (432, 432, 2)).astype(np.float32)
    assert find_limbs(noise) == [[], []]


def test_every_muscle_pixel_lies_inside_a_limb_mask_and_its_skin_margin():
    """Labels are pasted inside the limb masks less their outer 2 px (skin and subcutaneous fat)
    and nowhere else: so that inner part must hold all muscle, of slim and fat-replaced legs and
    thighs, from the ankle to the knee."""
    for region, seed, severity in (("leg", 20_007, "healthy"), ("leg", 20_001, "severe"), ("thigh", 20_003, "mild")):
        ph = generate_phantom(region, seed, n_slices=6, severity=severity, spacing=(MODEL_SPACING, MODEL_SPACING, 5.0))
        image, label = volume_to_model_grid(ph.image, ph.label, ph.affine)
        for k, limbs in enumerate(find_limbs(image)):
            inside = np.zeros(label.shape[:2], bool)
            for limb in limbs:
                assert not (limb.inner & ~limb.mask).any()
                inside |= limb.inner
            assert label[:, :, k].any() and not (label[:, :, k] > 0)[~inside].any()


def test_a_network_painting_its_whole_crop_leaves_the_skin_margin_unlabelled(legs):
    image, _ = legs
    for limb in find_limbs(image)[0]:
        labels = np.zeros(limb.mask.shape, np.uint8)
        row0, col0, size = limb.crop_window()
        paste(labels, np.ones((size, size), np.uint8), row0, col0, limb.inner)
        depth = ndi.distance_transform_edt(limb.mask)  # px to the nearest pixel outside the limb
        assert labels[limb.mask & (depth <= SKIN_MARGIN)].sum() == 0
        assert labels[limb.mask & (depth > SKIN_MARGIN + 1)].all()


def slab(image: np.ndarray, gains: list[float]) -> np.ndarray:
    """One slice repeated with a gain per slice, as a 3D slab's profile scales its signal."""
    return np.stack([image[:, :, 0] * g for g in gains], axis=2)


def test_only_a_slab_s_faded_ends_are_faded(legs):
    image, _ = legs
    gains = [0.2, 0.35, 0.9, 1.0, 1.0, 0.3, 1.0, 1.0, 1.0, 0.3]  # slice 5 is as dim, but inside the slab
    assert faded_end_slices(slab(image, gains)) == [0, 1, 9]
    assert faded_end_slices(slab(image, [1.0] * 4)) == []
    assert faded_end_slices(slab(image, [1.0])) == []
    empty_first = slab(image, [0.0, 1.0, 1.0])  # no foreground at all counts as faded
    assert faded_end_slices(empty_first) == [0]
    assert faded_end_slices(np.zeros((432, 432, 3), np.float32)) == []


def test_no_phantom_slice_is_faded():
    for region, seed in (("thigh", 20_003), ("leg", 20_004)):
        ph = generate_phantom(region, seed, n_slices=8, spacing=(MODEL_SPACING, MODEL_SPACING, 5.0))
        image, _ = volume_to_model_grid(ph.image, None, ph.affine)
        assert faded_end_slices(image) == []


def test_body_halves_match_the_whole():
    rng = np.random.default_rng(3)
    volume = rng.random((60, 50, 7)).astype(np.float32) * 0.3
    body = body_masks(volume)
    assert body.any() and not body.all()
    assert np.array_equal(body_masks_threaded(volume), body)
