"""Per-slice uncertainty pieces: slice order, typicality, slice embeddings, per-muscle shares."""

import numpy as np
import pytest
import torch

from lib.inference.uncertainty import (SAMPLES, mc_softmax, slice_embeddings, stored_slice_order, typicality,
                                      uncertainty_scores)
from lib.networks.checkpoint import build_from_checkpoint
from lib.paths import SHIPPED_WEIGHTS


def test_stored_slice_order_follows_the_head_foot_direction():
    superior_first = np.diag([-1.0, -1.0, -5.0, 1.0])  # stored head to foot
    assert list(stored_slice_order(superior_first, 4)) == [3, 2, 1, 0]
    assert list(stored_slice_order(np.diag([-1.0, -1.0, 5.0, 1.0]), 4)) == [0, 1, 2, 3]


def test_typicality_ranks_an_outlier_last_and_scales_to_one():
    rng = np.random.default_rng(0)
    cluster = rng.normal(0, 0.05, (6, 4))
    outlier = np.full((1, 4), 3.0)
    values = typicality(np.concatenate([cluster, outlier]), k=3)
    assert values.shape == (7,) and values.max() == pytest.approx(1.0)
    assert values.argmin() == 6 and values[6] < 0.1 * values[:6].min()
    assert typicality(np.zeros((1, 4))).tolist() == [1.0]


def test_slice_embeddings_are_unit_vectors_of_the_deepest_encoder_level():
    model = build_from_checkpoint(SHIPPED_WEIGHTS / "segmentation_thigh.pt").eval()
    slices = torch.rand(3, 1, 96, 96)
    slices[2] = slices[0]
    embeddings = slice_embeddings(model, slices)
    assert embeddings.shape == (3, model.encoder[-1].conv2.out_channels)  # 256 for the compact preset
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-4)
    assert torch.allclose(embeddings[0], embeddings[2], atol=1e-5) and not torch.allclose(embeddings[0], embeddings[1])


def test_the_shipped_leg_ensemble_samples_its_members_and_embeds_with_the_first():
    """Each dropout pass samples every member, so an ensemble needs fewer passes for as many networks."""
    model = build_from_checkpoint(SHIPPED_WEIGHTS / "segmentation_leg.pt").eval()
    members = len(model.members)
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.members]
    try:
        [(batch, mean)] = list(mc_softmax(model, torch.rand(2, 1, 96, 96)))
    finally:
        for hook in hooks:
            hook.remove()
    passes = -(-SAMPLES // members)
    assert len(calls) == passes * members >= SAMPLES and passes < SAMPLES
    assert torch.allclose(mean.sum(1), torch.ones(2, 96, 96), atol=1e-4)
    embeddings = slice_embeddings(model, torch.rand(2, 1, 96, 96))
    assert embeddings.shape == (2, model.members[0].encoder[-1].conv2.out_channels)
    assert not model.members[0].input_dropout.training  # dropout off again


def test_muscle_shares_split_the_slice_score_and_follow_where_the_muscle_is():
    from lib.data.phantoms.phantom import generate_phantom
    from lib.training.pretrain import PHANTOM_SPACING
    from lib.transforms.preprocess import volume_to_model_grid

    phantom = generate_phantom("thigh", 20_031, n_slices=3, severity="mild", spacing=PHANTOM_SPACING)
    grid, label = volume_to_model_grid(phantom.image, phantom.label, phantom.affine)
    slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(grid, 2, 0)[:, None]))
    model = build_from_checkpoint(SHIPPED_WEIGHTS / "segmentation_thigh.pt").eval()
    torch.manual_seed(0)
    scores, shares = uncertainty_scores(model, slices)
    assert scores.shape == (3,) and shares.shape == (3, 12)
    assert (shares >= 0).all() and (shares.sum(1) <= scores + 1e-5).all()  # background holds the rest
    assert (shares.sum(1) > 0.3 * scores).all()  # most of a thigh's uncertainty is at its muscles
    absent = [c for c in range(12) if not (label == c + 1).any()]  # e.g. adductor longus in a mild phantom
    present = [c for c in range(12) if (label == c + 1).sum() > 500]
    assert present and min(shares[:, c].mean() for c in present) > max([shares[:, c].mean() for c in absent] + [0])
