"""Self-training's pseudo-labels (lib/training/self_training.py): the segmenter's own labels of a
volume file, on the model grid and its slice numbers, leg values only, drawn in the volume's own image.

The teacher is the shipped leg segmenter, the volume a leg phantom written as a NIfTI file (a few
seconds); a file whose z points to the feet is left out, since its slice numbers are not the grid's.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from lib.labels import region_labels
from lib.models.catalog import weight_file
from lib.networks.checkpoint import build_from_checkpoint
from lib.paths import SHIPPED_WEIGHTS
from lib.training.self_training import pseudo_labelled_slices
from lib.transforms.preprocess import volume_to_model_grid
from lib.transforms.weights import IGNORE_VALUE

SLICES = [1, 3]


@pytest.fixture(scope="module")
def teacher():
    """One leg network with its logit adjustment: the first member of the shipped ensemble."""
    shipped = build_from_checkpoint(weight_file(SHIPPED_WEIGHTS, "segmentation_leg"))
    return shipped.members[0] if hasattr(shipped, "members") else shipped


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom("leg", 20001, n_slices=5)


def test_pseudo_labels_are_the_segmenters_labels_of_the_chosen_slices(tmp_path, teacher, phantom):
    path = save_nifti(tmp_path / "leg.nii.gz", phantom.image, phantom.affine)
    source = pseudo_labelled_slices([teacher], "leg", {path: SLICES})
    assert source.own_image_only and source.sources == [f"leg:{k}" for k in SLICES]
    assert source.images.shape == source.label.shape == source.tissue.shape
    assert set(np.unique(source.label)) <= {0, *region_labels("leg").values()}
    image, truth = volume_to_model_grid(phantom.image, phantom.label, phantom.affine)
    for j, k in enumerate(SLICES):
        assert np.allclose(source.images[j], image[:, :, k], atol=1e-3)  # the file stores int16 + scale
        muscle = truth[:, :, k] > 0
        agree = (source.label[j] == truth[:, :, k])[muscle].mean()
        assert agree > 0.8, f"slice {k}: {agree:.2f} of the phantom's muscle pixels labelled as the truth"
    assert (source.tissue > 0).sum() == (source.label > 0).sum()  # muscle marks the limbs' centres


def test_a_file_with_z_to_the_feet_is_left_out(tmp_path, teacher, phantom):
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    path = save_nifti(tmp_path / "feet_first.nii.gz", phantom.image, phantom.affine @ flip)
    assert pseudo_labelled_slices([teacher], "leg", {path: SLICES}) is None


def test_teachers_softmax_averaged_label_as_one_of_them_when_alike(tmp_path, teacher, phantom):
    path = save_nifti(tmp_path / "leg.nii.gz", phantom.image, phantom.affine)
    one = pseudo_labelled_slices([teacher], "leg", {path: SLICES})
    two = pseudo_labelled_slices([teacher, copy.deepcopy(teacher)], "leg", {path: SLICES})
    assert (one.label == two.label).mean() > 0.999  # the same network twice: its own labels
    silent = copy.deepcopy(teacher)  # a member whose softmax is flat: all weights and its adjustment zero
    for tensor in [*silent.parameters(), silent.logit_adjustment]:
        torch.nn.init.zeros_(tensor)
    mixed = pseudo_labelled_slices([teacher, silent], "leg", {path: SLICES}, min_agreement=0.5)
    assert (mixed.label == one.label).mean() > 0.99  # a flat member does not move the average's argmax


def test_pixels_the_teachers_dispute_are_unknown(tmp_path, teacher, phantom):
    path = save_nifti(tmp_path / "leg.nii.gz", phantom.image, phantom.affine)
    other = copy.deepcopy(teacher)  # a second teacher that calls every limb pixel one muscle
    for tensor in [*other.parameters(), other.logit_adjustment]:
        torch.nn.init.zeros_(tensor)
    with torch.no_grad():
        other.logit_adjustment[1] = 5.0
    alone = pseudo_labelled_slices([teacher], "leg", {path: SLICES})
    both = pseudo_labelled_slices([teacher, other], "leg", {path: SLICES}, min_agreement=1.0)
    assert IGNORE_VALUE not in alone.label
    unknown = both.label == IGNORE_VALUE
    assert 0.05 < (unknown & (alone.label > 0)).sum() / (alone.label > 0).sum() < 1  # the other muscles
    assert np.isin(both.label[~unknown], [0, region_labels("leg")["soleus"]]).all()  # what both call it
