"""Per-slice uncertainty pieces: slice order, typicality, slice embeddings."""

import numpy as np
import pytest
import torch

from lib.inference.uncertainty import slice_embeddings, stored_slice_order, typicality
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
