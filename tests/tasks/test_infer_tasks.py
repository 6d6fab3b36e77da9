"""The infer tasks on phantoms of other grids and on the real slice, with the shipped weights."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from lib.data.phantoms.real_slice import ROIS_FILE, load_real_slice
from lib.errors import NotFoundError, UserError
from lib.evaluation.metrics import mean_dice
from lib.labels import SIDE_OFFSET, region_labels
from lib.paths import SHARED_DATA
from tests.conftest import ROOT

TEST_SEED = 20_500  # held-out test seeds (lib/training/pretrain.py): never trained on


def reorient(image, label, affine, kind):
    """The same phantom stored another way: RAS (flipped in-plane) or axial slices along axis 1."""
    if kind == "LPS":
        return image, label, affine
    if kind == "RAS":
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[:2, 3] = [image.shape[0] - 1, image.shape[1] - 1]
        return image[::-1, ::-1], label[::-1, ::-1], affine @ flip
    if kind == "axial_on_axis1":  # array (X, Z, Y): slices along the array's second axis
        swap = np.eye(4)[[0, 2, 1, 3]]
        return np.swapaxes(image, 1, 2), np.swapaxes(label, 1, 2), affine @ swap
    raise ValueError(kind)


@pytest.mark.parametrize("region,spacing,shape,kind", [
    ("thigh", 0.8, 512, "LPS"),
    ("leg", 1.2, 320, "RAS"),
    ("thigh", 1.037037, 432, "axial_on_axis1"),
])
def test_muscle_returns_labels_on_the_input_grid(tasks, tmp_path, region, spacing, shape, kind):
    phantom = generate_phantom(region, TEST_SEED, n_slices=6, severity="mild", spacing=(spacing, spacing, 5.0),
                               shape=(shape, shape))
    image, truth, affine = reorient(phantom.image, phantom.label, phantom.affine, kind)
    path = tmp_path / "image.nii.gz"
    save_nifti(path, np.ascontiguousarray(image), affine)
    label_path, result = tasks["muscle"]({"image": str(path)})
    out = nib.load(label_path)
    assert out.shape == image.shape
    assert np.allclose(out.affine, nib.load(path).affine, atol=1e-4)
    pred = np.asarray(out.dataobj)
    routed = result["routed_slices"][region]
    assert len(routed) == 6, result["routed_slices"]  # every slice routed to the right model
    first = min(region_labels(region).values())
    assert mean_dice(pred, truth, first + len(region_labels(region))) >= 0.90
    assert set(result["measurements"]) <= set(region_labels(region))
    assert len(result["measurements"]) == len(region_labels(region))


def test_embedded_real_slice_is_a_leg_with_its_six_muscles_on_both_sides(tasks):
    """The real slice as served from studies/ (always in the repository)."""
    image = str(ROOT / "studies" / "real_leg_t1.nii.gz")
    truth = np.asarray(nib.load(ROOT / "studies" / "labels" / "final" / "real_leg_t1.nii.gz").dataobj)
    _, classification = tasks["classifier"]({"image": image})
    assert classification["region"] == "leg"
    label_path, _ = tasks["muscle"]({"image": image, "split_sides": True})
    pred = np.asarray(nib.load(label_path).dataobj)
    for name, value in region_labels("leg").items():
        for side in (value, value + SIDE_OFFSET):
            assert (pred == side).any(), name
        mine = (pred == value) | (pred == value + SIDE_OFFSET)
        assert (mine & (truth == value)).sum() > 0.5 * mine.sum(), name  # overlaps the annotators' ROI


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"real sample data (with sides) not at {SHARED_DATA}")
def test_real_slice_is_a_leg_with_six_muscles_per_side(tasks, tmp_path):
    real = load_real_slice()
    path = tmp_path / "real.nii.gz"
    save_nifti(path, real.image, real.affine)
    _, classification = tasks["classifier"]({"image": str(path)})
    assert classification["region"] == "leg"
    label_path, result = tasks["muscle"]({"image": str(path), "split_sides": True})
    pred = np.asarray(nib.load(label_path).dataobj)
    legs = region_labels("leg")
    for name, value in legs.items():
        right, left = pred == value, pred == value + SIDE_OFFSET
        assert right.any() and left.any(), name
        # each side's prediction overlaps that side's manual ROI (sides from the annotators)
        assert (right & (real.label == value) & (real.side == 1)).sum() > 0.5 * right.sum(), name
        assert (left & (real.label == value) & (real.side == 2)).sum() > 0.5 * left.sum(), name
    assert "soleus_right" in result["measurements"] and "soleus_left" in result["measurements"]


@pytest.mark.parametrize("params,error", [
    ({"region": "arm"}, UserError),
    ({"slices": [999]}, UserError),
    ({"slices": "a,b"}, UserError),
    ({"split_sides": "maybe"}, UserError),
    ({"echo": "first"}, UserError),
    ({"device": "tpu"}, UserError),
])
def test_invalid_options_are_user_errors(tasks, tmp_path, params, error):
    phantom = generate_phantom("leg", 1, n_slices=2, shape=(96, 96))
    path = tmp_path / "small.nii.gz"
    save_nifti(path, phantom.image, phantom.affine)
    with pytest.raises(error):
        tasks["muscle"]({"image": str(path), **params})


def test_unknown_image_is_not_found(tasks):
    with pytest.raises(NotFoundError):
        tasks["segmentation_leg"]({"image": ""})


def test_chosen_slices_only_and_2d_input(tasks, tmp_path):
    phantom = generate_phantom("leg", TEST_SEED + 1, n_slices=4, spacing=(1.037037, 1.037037, 5.0))
    path = tmp_path / "leg.nii.gz"
    save_nifti(path, phantom.image, phantom.affine)
    label_path, result = tasks["segmentation_leg"]({"image": str(path), "slices": "1,2"})
    pred = np.asarray(nib.load(label_path).dataobj)
    assert result["slices"] == [1, 2]
    assert pred[:, :, [0, 3]].max() == 0 and pred[:, :, 1].max() > 0
    flat = tmp_path / "one_slice.nii.gz"  # a 2D image is one axial slice
    save_nifti(flat, phantom.image[:, :, 2], phantom.affine)
    label_path, _ = tasks["segmentation_leg"]({"image": str(flat)})
    assert np.asarray(nib.load(label_path).dataobj).squeeze().shape == phantom.image.shape[:2]
