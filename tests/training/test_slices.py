"""Training batches of corrected slices: the weight map's class term follows the live network's loss."""

import numpy as np
import pytest

from lib.data.phantoms.phantom import generate_phantom
from lib.training.incremental import class_term_of
from lib.training.slices import SliceSet, segmentation_batches
from lib.transforms.preprocess import volume_to_model_grid


@pytest.fixture(scope="module")
def leg_slices():
    phantom = generate_phantom("leg", 11, n_slices=2, spacing=(1.037037, 1.037037, 5.0))
    return SliceSet.from_volume(*volume_to_model_grid(phantom.image, phantom.label, phantom.affine), "phantom_11")


@pytest.mark.parametrize("meta, term", [
    ({}, "inverse_frequency"),  # an older checkpoint: SPEC §5's loss
    ({"class_weights": [0.15, 11.1, 15.4, 20, 20, 20, 20]}, "inverse_frequency"),
    ({"class_weights": [1.0] * 7}, "uniform"),  # pretrain --class-weights uniform
    # an ensemble averages its members' adjusted posteriors, whatever each member's loss was
    ({"network": "ensemble", "member_class_weights": [[0.15, 11.1, 15.4, 20, 20, 20, 20], [1.0] * 7]}, "uniform"),
])
def test_a_round_keeps_the_class_term_of_the_live_networks_loss(meta, term):
    assert class_term_of(meta) == term


def test_uniform_batches_weigh_background_like_muscle(leg_slices):
    _, labels, weighted = next(segmentation_batches(leg_slices, "leg", 2, 192, seed=0, augment=False))
    _, same_labels, uniform = next(segmentation_batches(leg_slices, "leg", 2, 192, seed=0, augment=False,
                                                        class_weights="uniform"))
    assert np.array_equal(labels.numpy(), same_labels.numpy())
    background, muscle = labels.numpy() == 0, labels.numpy() > 0
    # the border term only adds: without a class term no pixel weighs less than 1
    assert uniform.numpy()[background].min() >= 1.0 and uniform.numpy()[muscle].min() >= 1.0
    assert weighted.numpy()[background].min() < 0.5  # SPEC §5: background weighted down...
    assert np.median(weighted.numpy()[muscle]) > 2 * np.median(uniform.numpy()[muscle])  # ...muscles up
