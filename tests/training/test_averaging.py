"""Weight averaging and batch-norm recalibration (the classifier's recipe, lib/training/averaging.py)."""

import pytest
import torch
from torch import nn

from lib.training.averaging import WeightAverage, recalibrate_batch_norm


def test_average_is_the_mean_of_the_updates():
    model = nn.Linear(3, 2)
    average, snapshots = WeightAverage(), []
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            model.weight.fill_(value)
        snapshots.append(model.weight.clone())
        average.update(model)
    average.copy_to(model)
    assert average.count == 3
    assert torch.allclose(model.weight, torch.stack(snapshots).mean(0))


def test_copy_without_any_update_is_an_error():
    with pytest.raises(RuntimeError, match="no weights"):
        WeightAverage().copy_to(nn.Linear(2, 2))


def test_recalibrated_statistics_are_those_of_the_inputs_without_dropout():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm2d(1))
    batches = [torch.randn(8, 1, 16, 16) * 3 + 5 for _ in range(6)]
    model.eval()
    recalibrate_batch_norm(model, batches)
    data = torch.cat(batches)
    norm = model[1]
    assert norm.running_mean.item() == pytest.approx(data.mean().item(), abs=1e-4)
    # per-batch unbiased variances averaged; with dropout on it would be about twice as large
    assert norm.running_var.item() == pytest.approx(data.var().item(), rel=0.05)
    assert norm.momentum == 0.1 and not model.training  # settings and mode restored
