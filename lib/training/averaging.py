"""Weight averaging over the last epochs (SWA: Izmailov et al., UAI 2018), with batch-norm
statistics recomputed for the averaged weights.

The classifier's validation accuracy swings from epoch to epoch (0.5 to 1.0 on phantoms: the
decision boundary moves with every few hundred steps); the average of the weights of several
epochs sits in the middle of the region they visit and generalises better than any one of them.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class WeightAverage:
    """Running equal-weight average of a model's parameters, updated once per call."""

    def __init__(self) -> None:
        self.average: AveragedModel | None = None
        self.count = 0

    def update(self, model: nn.Module) -> None:
        if self.average is None:
            self.average = AveragedModel(model)
        self.average.update_parameters(model)
        self.count += 1

    def copy_to(self, model: nn.Module) -> None:
        """Put the averaged parameters into ``model`` (its buffers are left as they are)."""
        if self.average is None:
            raise RuntimeError("no weights were averaged")
        with torch.no_grad():
            for mine, averaged in zip(model.parameters(), self.average.module.parameters()):
                mine.copy_(averaged)


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Recompute every batch norm's running statistics as the plain mean over ``inputs``.

    Dropout stays off while doing so, so that the statistics are those the model meets at
    inference (with dropout on, the features' variance is larger: Li et al., CVPR 2019).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = {}
    for norm in norms:
        norm.reset_running_stats()
        momenta[norm] = norm.momentum
        norm.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()
    device = next(model.parameters()).device
    for x in inputs:
        model(x.to(device))
    for norm in norms:
        norm.momentum = momenta[norm]
    model.train(was_training)
