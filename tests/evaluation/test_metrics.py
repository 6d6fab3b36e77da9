"""Dice, surface distances and pooled Dice on hand-built masks with known answers."""

import math

import numpy as np

from lib.evaluation.metrics import dice_per_class, mean_dice, surface_distances
from lib.evaluation.summary import confusion, pooled_dice, region_dice


def masks(*pairs, shape=(40, 40)):
    """Stacks (C, H, W) from lists of boxes (r0, r1, c0, c1); None is an empty mask."""
    out = np.zeros((len(pairs), *shape), bool)
    for i, box in enumerate(pairs):
        if box is not None:
            out[i, box[0]:box[1], box[2]:box[3]] = True
    return out


def test_shifted_square_distance_scales_with_spacing():
    pred, truth = masks((5, 10, 5, 10)), masks((6, 11, 5, 10))  # one row apart
    hd95, msd = surface_distances(pred, truth, [1.0, 1.0])
    assert hd95[0] == 1.0 and 0 < msd[0] < 1.0
    hd95, _ = surface_distances(pred, truth, [2.5, 1.0])  # rows 2.5 mm apart
    assert hd95[0] == 2.5


def test_one_pixel_muscles_three_pixels_apart():
    pred, truth = masks((20, 21, 20, 21)), masks((20, 21, 23, 24))
    hd95, msd = surface_distances(pred, truth, [1.0, 0.5])
    assert hd95[0] == 1.5 and msd[0] == 1.5  # 3 columns of 0.5 mm


def test_identical_masks_have_zero_distance():
    pred = masks((3, 30, 4, 12))
    hd95, msd = surface_distances(pred, pred.copy(), [1.0, 1.0])
    assert hd95[0] == 0.0 and msd[0] == 0.0


def test_empty_prediction_or_truth_is_infinite_and_both_empty_is_nan():
    box = (5, 10, 5, 10)
    hd95, msd = surface_distances(masks(None, box, None), masks(box, None, None), [1.0, 1.0])
    assert math.isinf(hd95[0]) and math.isinf(hd95[1])  # missed, invented
    assert math.isinf(msd[0]) and math.isinf(msd[1])
    assert math.isnan(hd95[2]) and math.isnan(msd[2])


def row(muscle, region, inter, n_pred, n_truth, **extra):
    return {"muscle": muscle, "region": region, "n_inter": inter, "n_pred": n_pred, "n_truth": n_truth,
            "study": "s", "slice": extra.pop("slice", 0), **extra}


def test_pooled_dice_sums_counts_over_slices():
    rows = [row("soleus", "leg", 10, 10, 10), row("soleus", "leg", 0, 0, 10, slice=1)]
    assert pooled_dice(rows) == 2 * 10 / 30
    assert math.isnan(pooled_dice([]))


def test_region_dice_is_the_mean_over_muscles_in_the_truth():
    rows = [row("soleus", "leg", 10, 10, 10), row("peroneus", "leg", 0, 10, 10),
            row("gracilis", "thigh", 0, 5, 0)]  # thigh muscle only invented: no thigh truth
    dice, slices = region_dice(rows, "leg")
    assert dice == 0.5 and slices == 1
    assert math.isnan(region_dice(rows, "thigh")[0])


def test_confusion_matrix_counts_only_slices_with_a_region():
    slices = [{"truth_region": "thigh", "predicted_region": "thigh"},
              {"truth_region": "leg", "predicted_region": "thigh"},
              {"truth_region": "", "predicted_region": "leg"}]
    c = confusion(slices)
    assert c["matrix"]["leg"]["thigh"] == 1 and c["matrix"]["thigh"]["thigh"] == 1
    assert c["slices"] == 2 and c["accuracy"] == 0.5


def test_dice_known_answers_empty_and_one_pixel():
    truth = np.zeros((10, 10), int)
    pred = truth.copy()
    truth[:5] = 1
    pred[:4] = 1
    truth[9, 9] = 2  # one-pixel muscle, missed by the prediction
    scores = dice_per_class(pred, truth, num_classes=4)
    assert np.isclose(scores[0], 2 * 40 / (50 + 40))
    assert scores[1] == 0.0  # present in truth only
    assert np.isnan(scores[2])  # absent from both: says nothing
    assert np.isclose(mean_dice(pred, truth, 4), (2 * 40 / 90 + 0.0) / 2)
    assert np.isnan(mean_dice(np.zeros((3, 3)), np.zeros((3, 3)), 4))  # empty prediction and truth
