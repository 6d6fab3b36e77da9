"""Several segmenters of one region served as one network: the average of their softmax.

Lakshminarayanan et al., "Simple and scalable predictive uncertainty estimation using deep
ensembles" (NeurIPS 2017): networks trained alike from different seeds make different mistakes
where the data leave them unsure, and the mean of their class probabilities is better than each.
Here that is the real calf (docs/REAL_MRI.md): three leg segmenters averaged score higher on the
real slice than any of them alone, and each of their odd patches is outvoted.

The output is the log of the mean softmax, so everything that takes logits (argmax, softmax,
cross-entropy, Monte-Carlo dropout, ``lib.networks.fast``) takes an ensemble as it is. Each
member keeps its own logit adjustment (``lib.networks.logit_adjustment``): it undoes that
member's training loss before the members are averaged, in training as at inference, so the
output is a plain posterior and a fine-tuning round uses the uniform class term
(``lib.training.incremental.class_term_of``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from lib.networks.segmenter import ResidualVNet2D


class SoftmaxEnsemble(nn.Module):
    """``ResidualVNet2D`` members of one region; NCHW in, NCHW log mean softmax out.

    Args:
        members: each member's constructor arguments (``ResidualVNet2D.config``), or networks
            already built (segmenters or ensembles, e.g. the teachers of
            ``lib.training.self_training``); at least two, all with the same input channels and
            classes. Built members are used as they are, not copied.
    """

    def __init__(self, members: Sequence[dict | nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = nn.ModuleList(m if isinstance(m, nn.Module) else ResidualVNet2D(**dict(m)) for m in members)
        first = self.members[0]
        if any((m.in_channels, m.num_classes) != (first.in_channels, first.num_classes) for m in self.members):
            raise ValueError("ensemble members must have the same input channels and classes: "
                             f"{[(m.in_channels, m.num_classes) for m in self.members]}")
        self.config = {"members": [dict(m.config) for m in self.members]}
        self.in_channels, self.num_classes = first.in_channels, first.num_classes
        self.size_multiple = first.size_multiple
        self.default_input_size = first.default_input_size

    @property
    def encoder(self) -> nn.ModuleList:
        """The first member's encoder: the features slice embeddings read
        (``lib.inference.uncertainty.slice_embeddings``)."""
        return self.members[0].encoder

    def forward(self, x: Tensor) -> Tensor:
        logits = []
        for member in self.members:
            z = member(x).float()
            offsets = getattr(member, "logit_adjustment", None)  # None once folded into the head
            if offsets is not None:
                z = z + offsets.to(z.device).view(1, -1, 1, 1)
            logits.append(z)
        if torch.is_grad_enabled():  # training: log(mean softmax) as logsumexp, exact gradients everywhere
            log_probs = torch.stack([torch.log_softmax(z, dim=1) for z in logits])
            return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))
        # Inference: summing softmaxes in place took 0.023 s per batch of eight 240 px crops
        # against 0.061 s for the logsumexp (2-core EPYC, bf16 members). The floor keeps a
        # probability that underflowed finite for entropies and argmax (log 1e-30 = -69).
        probs = torch.softmax(logits[0], dim=1)
        for z in logits[1:]:
            probs.add_(torch.softmax(z, dim=1))
        return probs.div_(len(logits)).clamp_min_(1e-30).log_()
