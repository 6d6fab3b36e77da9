"""Fast inference path for the networks of Agosti et al., MAGMA 2022 (SPEC §4, §8).

``prepare_for_inference`` turns a trained network into an inference copy: eval mode, every
batch norm folded into the conv / transposed conv before it (exact in fp32), channels-last
memory, weights frozen, and a precision. ``predict_logits`` runs a batch under that precision
and returns fp32 logits. Monte-Carlo dropout still works on the copy (``enable_mc_dropout``).

Precision "auto": bf16 autocast on CUDA (fp16 where bf16 is unsupported); on CPU bf16 only when
oneDNN reports native bf16 kernels (AVX512-BF16 / AMX). SPEC §8 reports bf16 + channels-last at
0.48 s vs 1.1 s fp32 per paper slice, but with torch 2.14.1 on this AVX2-only AMD EPYC (oneDNN
says no bf16 support) bf16 autocast measured ~10× *slower* than fp32 (10.9 s vs 0.9 s), so
"auto" keeps fp32 there and the CPU speed-up comes from BN folding + channels-last.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lib.networks.compiled import compiled_forward

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold each block's batch norms into the conv before them, in place; returns ``model``.

    Every block lists its ``(conv, batch norm)`` attribute pairs in ``fuse_pairs``; the conv is
    replaced by one with scaled weights and shifted bias and the batch norm by ``Identity``.
    The model is put in eval mode first (folding uses the running statistics).

    Args:
        model: a network of ``lib.networks`` (or any module whose blocks have ``fuse_pairs``).
    """
    model.eval()
    for module in model.modules():
        for conv_name, bn_name in getattr(module, "fuse_pairs", ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if not isinstance(bn, nn.BatchNorm2d):
                continue  # already folded
            transpose = isinstance(conv, nn.ConvTranspose2d)
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn, transpose=transpose))
            setattr(module, bn_name, nn.Identity())
    model.bn_folded = True
    return model


def fold_logit_adjustment(model: nn.Module) -> nn.Module:
    """Add ``logit_adjustment`` (``lib.networks.logit_adjustment``) to the bias of the last 1x1
    conv of the segmenter, or of each member of an ensemble, in place, and clear it; returns
    ``model``. Adding it to the logits instead cost about 4 ms per batch of eight 240 px crops
    (2-core AMD EPYC, 2026-12-05)."""
    for module in model.modules():
        offsets = getattr(module, "logit_adjustment", None)
        head = getattr(module, "head", None)
        if offsets is not None and isinstance(head, nn.Conv2d) and head.bias is not None:
            with torch.no_grad():
                head.bias += offsets.to(head.bias.device, head.bias.dtype)
            module.logit_adjustment = None
    return model


def resolve_precision(device: str | torch.device = "cpu", precision: str = "auto") -> str:
    """The concrete precision ("fp32", "bf16" or "fp16") that ``precision`` means on ``device``.

    "auto": on CUDA bf16 if supported else fp16; on CPU bf16 when oneDNN reports native bf16
    support (``cpu_has_fast_bf16``), else fp32 (emulated bf16 is far slower than fp32).

    Args:
        device: the device the model runs on.
        precision: one of ``PRECISIONS``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def cpu_has_fast_bf16() -> bool:
    """True when oneDNN runs bf16 convolutions natively on this CPU (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private op missing in some builds: be safe
        return False


def prepare_for_inference(model: nn.Module, device: str | torch.device = "cpu",
                          precision: str = "auto", inplace: bool = False) -> nn.Module:
    """An inference-ready copy of ``model``: eval, BN and logit adjustment folded, channels-last,
    frozen, on ``device``.

    The chosen precision is stored as ``model.inference_precision`` for ``predict_logits``.
    Save checkpoints from the original model, not from this copy.

    Args:
        model: a trained (or fresh) network of ``lib.networks``.
        device: where it will run ("cpu", "cuda", "cuda:1"...).
        precision: "auto", "fp32", "bf16" or "fp16" (see ``resolve_precision``).
        inplace: modify ``model`` itself instead of a deep copy (saves memory).
    """
    device = torch.device(device)
    precision = resolve_precision(device, precision)
    model = model if inplace else copy.deepcopy(model)
    fold_batch_norm(model)
    fold_logit_adjustment(model)
    model.requires_grad_(False)
    model.to(device=device, memory_format=torch.channels_last)
    model.inference_precision = precision
    return model


@contextlib.contextmanager
def inference_context(device: str | torch.device = "cpu", precision: str = "fp32"):
    """``torch.inference_mode`` plus autocast to bf16/fp16 when ``precision`` asks for it.

    Args:
        device: the device the model runs on (selects the autocast backend).
        precision: "fp32", "bf16", "fp16" or "auto".
    """
    device = torch.device(device)
    precision = resolve_precision(device, precision)
    with torch.inference_mode():
        if precision == "fp32":
            yield
        else:
            with torch.autocast(device.type, dtype=_DTYPES[precision]):
                yield


def predict_logits(model: nn.Module, batch: Tensor, precision: str | None = None) -> Tensor:
    """Forward ``batch`` (N, C, H, W) through ``model``; returns fp32 logits on the model's device,
    plus ``model.logit_adjustment`` where the checkpoint set one (``lib.networks.logit_adjustment``).

    Args:
        model: a network, ideally from ``prepare_for_inference``.
        batch: input slices, any device and float dtype.
        precision: overrides ``model.inference_precision`` (default "fp32" for plain models).
    """
    device = next(model.parameters()).device
    precision = precision or getattr(model, "inference_precision", "fp32")
    batch = batch.to(device=device, dtype=torch.float32)
    batch = batch.contiguous(memory_format=torch.channels_last)
    forward = compiled_forward(model, batch) if precision == "fp32" else None  # None: eager (lib.networks.compiled)
    if forward is None:
        forward = model
    elif batch.is_inference():
        batch = batch.clone()  # the compiled graphs were made for ordinary tensors
    with inference_context(device, precision):
        logits = forward(batch)
    logits = logits.float()  # channels-last kept: argmax over classes is ~4x faster on it than NCHW
    offsets = getattr(model, "logit_adjustment", None)  # lib.networks.logit_adjustment
    if offsets is not None:
        logits = logits + offsets.to(logits.device).view(1, -1, *([1] * (logits.dim() - 2)))
    return logits
