"""Named network sizes and their measures: parameters, GFLOP per slice, receptive fields.

Presets (SPEC §4, Agosti et al., MAGMA 2022, 35:467–483):
- ``paper``: the published widths (segmenter w=32: 45.4 M parameters, 96.9 GFLOP per 432×432
  slice; classifier w=32: 7.06 M);
- ``small``: w=16 for both (segmenter 11.4 M / 24.3 GFLOP);
- ``compact`` (default): segmenter w=8 (2.8 M / 6.1 GFLOP, ~16× cheaper than the paper's, for
  2-core CPUs and fast retraining), classifier w=16 (1.8 M; thigh vs leg is an easy task).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from lib import labels
from lib.errors import UserError
from lib.networks.classifier import RegionClassifier
from lib.networks.segmenter import ResidualVNet2D


@dataclass(frozen=True)
class Preset:
    """A named pair of base widths.

    Args:
        name: preset name.
        segmenter_width: base width of both segmenters.
        classifier_width: base width of the region classifier.
        description: one line for ``main.py networks``.
    """

    name: str
    segmenter_width: int
    classifier_width: int
    description: str


PRESETS = {
    "paper": Preset("paper", 32, 32, "published widths (Agosti et al. 2022)"),
    "small": Preset("small", 16, 16, "half width"),
    "compact": Preset("compact", 8, 16, "default: quarter-width segmenters for CPU serving"),
}
DEFAULT_PRESET = "compact"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a ``UserError`` listing the choices."""
    if name not in PRESETS:
        raise UserError(f"unknown network preset {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


def build_segmenter(region: str, preset: str = DEFAULT_PRESET, **kwargs) -> ResidualVNet2D:
    """A freshly initialised segmenter for ``region`` ("thigh" → 13 classes, "leg" → 7).

    Args:
        region: "thigh" or "leg" (``lib.labels.REGIONS``).
        preset: a name of ``PRESETS``; gives the width.
        **kwargs: overrides of ``ResidualVNet2D`` arguments (width, input_dropout, in_channels).
    """
    kwargs.setdefault("width", get_preset(preset).segmenter_width)
    kwargs.setdefault("num_classes", labels.num_classes(region))
    return ResidualVNet2D(**kwargs)


def build_classifier(preset: str = DEFAULT_PRESET, **kwargs) -> RegionClassifier:
    """A freshly initialised thigh/leg classifier (2 classes, 128×128 input).

    Args:
        preset: a name of ``PRESETS``; gives the width.
        **kwargs: overrides of ``RegionClassifier`` arguments (width, input_size, input_dropout).
    """
    kwargs.setdefault("width", get_preset(preset).classifier_width)
    kwargs.setdefault("num_classes", len(labels.REGIONS))
    return RegionClassifier(**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (batch-norm running statistics are buffers, not counted).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def gflops_per_slice(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> float:
    """GFLOP of one forward pass per slice, counted as 2 × multiply-accumulates (1 MAC = 2 FLOP).

    Only conv, transposed-conv and dense layers are counted (batch norm, ReLU, additions and
    biases are not), which is how SPEC §4's 96.9 GFLOP per 432×432 slice was counted. The
    forward runs with hooks on shape-only "meta" tensors: nothing is computed or allocated.

    Args:
        model: a segmenter or classifier (or any module taking one NCHW tensor).
        input_shape: (H, W) or (C, H, W) of one slice; default the model's
            ``default_input_size`` square (432 for segmenters, 128 for the classifier).
    """
    if input_shape is None:
        side = getattr(model, "default_input_size", None)
        if side is None:
            raise ValueError("input_shape is required for a model without default_input_size")
        input_shape = (side, side)
    if len(input_shape) == 2:
        input_shape = (getattr(model, "in_channels", 1), *input_shape)
    macs = 0

    def hook(module, inputs, output):
        nonlocal macs
        if isinstance(module, nn.ConvTranspose2d):  # each input pixel spreads over k×k outputs
            kh, kw = module.kernel_size
            macs += inputs[0].numel() * module.out_channels // module.groups * kh * kw
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    meta_state = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict().items()}
    try:
        with torch.no_grad():
            functional_call(model, meta_state, (torch.empty(1, *input_shape, device="meta"),))
    finally:
        for handle in handles:
            handle.remove()
    return 2 * macs / 1e9


def receptive_fields(model: nn.Module, convention: str = "paper") -> list[tuple[int, ...]]:
    """Receptive field (px) after each conv of each encoder block, from kernels and strides.

    ``convention="exact"``: the standard arithmetic r += (k − 1)·j, j *= s (j = product of the
    strides so far), which a gradient test confirms on the real network.
    ``convention="paper"``: the arithmetic of the paper's Table 1 (SPEC §4): a strided conv
    widens the field by (k − 1)·j_out / 2 instead of (k − 1)·j_in. Both agree for the stride-2
    blocks; for the stride-3 bottleneck Table 1 gives 188, 284, 380 where exact gives 172, 268,
    364.

    Args:
        model: a network with an ``encoder`` of ``ResidualBlock``s.
        convention: "paper" (Table 1) or "exact".
    """
    if convention not in ("paper", "exact"):
        raise ValueError(f"convention must be 'paper' or 'exact', got {convention!r}")
    field, jump, out = 1, 1, []
    for block in model.encoder:
        fields = []
        for conv in block.encoder_convs():
            kernel, stride = conv.kernel_size[0], conv.stride[0]
            if convention == "paper" and stride > 1:
                field += (kernel - 1) * jump * stride // 2
            else:
                field += (kernel - 1) * jump
            jump *= stride
            fields.append(field)
        out.append(tuple(fields))
    return out
