"""Training augmentations (SPEC §5): labels exact and kept in their limb, seeded, types kept."""

import numpy as np
import pytest
import torch

from lib.transforms.augment import (RandElasticd, RandFatMuscleInversiond, RandFlipSidesd, RandLimbAffined,
                                    RandPiecewiseAffined, train_augmentations)
from lib.transforms.weights import body_mask, limb_components

SIZE = 112


def limb(yy, xx, centre, radius, values, image, label):
    """A disk: fat rim (0.9), muscle sectors (0.4) carrying ``values``, dark bone in the middle."""
    dist = np.hypot(yy - centre[0], xx - centre[1])
    angle = np.arctan2(yy - centre[0], xx - centre[1])
    muscle = (dist < 0.8 * radius) & (dist > 0.2 * radius)
    image[dist < radius] = 0.9
    image[muscle] = 0.4
    image[dist <= 0.2 * radius] = 0.02
    sector = ((angle + np.pi) / (2 * np.pi) * len(values)).astype(int) % len(values)
    label[muscle] = np.asarray(values)[sector[muscle]]


def phantom(two=True, centres=((56, 30), (56, 82)), radii=(22, 17)):
    """Two limbs of different sizes (their labels 1-3 and 4-6 tell them apart), or the first one only."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(float)
    image = np.random.default_rng(0).uniform(0, 0.03, (SIZE, SIZE)).astype(np.float32)
    label = np.zeros((SIZE, SIZE), np.uint8)
    limb(yy, xx, centres[0], radii[0], (1, 2, 3), image, label)
    if two:
        limb(yy, xx, centres[1], radii[1], (4, 5, 6), image, label)
    return {"image": image[None], "label": label[None]}


def per_limb(data):
    """(labelled pixel count, set of label values) per limb of the output, largest limb first."""
    image, label = np.asarray(data["image"])[0], np.asarray(data["label"])[0]
    ids, count = limb_components(body_mask(image, label))
    assert not np.any((label > 0) & (ids == 0)), "labelled pixels outside every limb"
    return [(int(np.count_nonzero(label[ids == i])), set(np.unique(label[ids == i])) - {0})
            for i in range(1, count + 1)]


SPATIAL = [RandLimbAffined, RandPiecewiseAffined, RandElasticd, RandFlipSidesd]


@pytest.mark.parametrize("cls", SPATIAL)
def test_spatial_transforms_keep_label_values_shapes_and_dtypes(cls):
    data = phantom()
    for seed in range(3):
        out = cls(prob=1.0).set_random_state(seed)(data)
        assert set(np.unique(out["label"])) <= set(np.unique(data["label"]))
        assert out["image"].shape == data["image"].shape and out["image"].dtype == np.float32
        assert out["label"].shape == data["label"].shape and out["label"].dtype == np.uint8
    tensors = {k: torch.as_tensor(v) for k, v in data.items()}
    out = cls(prob=1.0).set_random_state(0)(tensors)
    assert isinstance(out["label"], torch.Tensor) and out["label"].dtype == torch.uint8


@pytest.mark.parametrize("seed", range(4))
def test_limb_affine_keeps_each_limbs_labels_in_that_limb(seed):
    data = phantom()
    before = per_limb(data)
    out = RandLimbAffined(prob=1.0).set_random_state(seed)(data)
    after = per_limb(out)
    assert len(after) == 2
    for (n0, values0), (n1, values1) in zip(before, after):
        assert values1 == values0  # limb 1 holds labels 1-3 only, limb 2 labels 4-6 only
        assert abs(n1 - n0) <= 0.03 * n0  # nearest resampling of a rotation: a few pixels either way
    assert not np.array_equal(out["image"], data["image"])


def test_limb_affine_moves_limbs_independently_and_keeps_them_inside():
    data = phantom(centres=((30, 26), (80, 86)), radii=(24, 20))  # near the corners
    moves = []
    for seed in range(6):
        out = RandLimbAffined(prob=1.0, max_rotation=0.0).set_random_state(seed)(data)
        counts = [n for n, _ in per_limb(out)]
        assert counts == [n for n, _ in per_limb(data)]  # pure shifts: every pixel kept, none off the image
        label = np.asarray(out["label"])[0]
        moves.append([np.argwhere(np.isin(label, v)).mean(0) for v in ((1, 2, 3), (4, 5, 6))])
    shifts = np.array(moves) - np.array(moves)[0]
    assert np.abs(shifts[:, 0] - shifts[:, 1]).max() > 2  # the two limbs did not move together


def test_limb_affine_handles_a_single_limb_at_the_border():
    data = phantom(two=False, centres=((22, 60), None))  # the fat rim touches row 0
    (n0, v0), = per_limb(data)
    for seed in range(3):
        out = RandLimbAffined(prob=1.0).set_random_state(seed)(data)
        (n1, v1), = per_limb(out)
        assert v1 == v0 and abs(n1 - n0) <= 0.03 * n0


def test_deformations_are_small_and_keep_labels_in_place():
    data = phantom()
    for cls in (RandPiecewiseAffined, RandElasticd):
        out = cls(prob=1.0).set_random_state(1)(data)
        same = np.mean(out["label"] == data["label"])
        assert 0.9 < same and not np.array_equal(out["image"], data["image"])


def test_flip_swaps_sides_of_a_side_map():
    data = phantom()
    side = np.where(np.arange(SIZE)[None, :] < SIZE // 2, 1, 2) * (data["label"] > 0)
    out = RandFlipSidesd(prob=1.0, spatial_axis=1).set_random_state(0)({**data, "side": side.astype(np.uint8)})
    np.testing.assert_array_equal(out["label"], data["label"][:, :, ::-1])
    flipped_side = out["side"][0]
    assert np.all(flipped_side[:, : SIZE // 2][flipped_side[:, : SIZE // 2] > 0] == 1)
    assert np.all(flipped_side[:, SIZE // 2:][flipped_side[:, SIZE // 2:] > 0] == 2)


def test_fat_inversion_makes_fat_darker_than_muscle_and_leaves_labels():
    data = phantom()
    out = RandFatMuscleInversiond(prob=1.0, fat_ratio=(0.1, 0.5)).set_random_state(0)(data)
    image, label = out["image"][0], data["label"][0]
    fat = (data["image"][0] > 0.8)
    assert np.median(image[fat]) < 0.6 * np.median(image[label > 0])
    assert out["label"] is data["label"]


def test_pipeline_is_seeded_typed_and_label_safe():
    data = {**phantom(), "region": "leg"}
    first = train_augmentations(prob=1.0, intensity_prob=1.0, fat_inversion_prob=1.0).set_random_state(3)(data)
    again = train_augmentations(prob=1.0, intensity_prob=1.0, fat_inversion_prob=1.0).set_random_state(3)(data)
    other = train_augmentations(prob=1.0, intensity_prob=1.0, fat_inversion_prob=1.0).set_random_state(4)(data)
    for key in ("image", "label", "weight"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["image"], other["image"])
    assert first["image"].shape == first["label"].shape == first["weight"].shape == (1, SIZE, SIZE)
    assert first["image"].dtype == first["weight"].dtype == torch.float32 and first["label"].dtype == torch.uint8
    assert set(first["label"].unique().tolist()) <= set(np.unique(data["label"]).tolist())
    assert 0.0 <= first["image"].min() and first["image"].max() <= 1.0
    assert torch.all(first["weight"][first["label"] > 0] > 0)


def test_intensity_steps_leave_labels_untouched():
    data = {**phantom(), "region": "thigh"}
    out = train_augmentations(prob=0.0, flip_prob=0.0, intensity_prob=1.0, fat_inversion_prob=1.0,
                              weight_map=False).set_random_state(0)(data)
    np.testing.assert_array_equal(out["label"].numpy(), data["label"])
    assert not np.allclose(out["image"].numpy(), data["image"])
