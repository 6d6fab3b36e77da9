"""The fast inference path: BN folding is exact, the fast model agrees with fp32 eager."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lib.networks.blocks import enable_mc_dropout
from lib.networks.fast import (fold_batch_norm, predict_logits, prepare_for_inference,
                               resolve_precision)
from lib.networks.presets import build_classifier, build_segmenter


def randomise_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            n = bn.num_features
            bn.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
            bn.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            bn.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=generator))
            bn.bias.copy_(0.1 * torch.randn(n, generator=generator))
    return model.eval()


def structured_slice(side: int) -> torch.Tensor:
    """Two bright 'limbs' with dark 'bones', a smooth bias field and mild noise."""
    coords = torch.linspace(-1, 1, side)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    image = torch.zeros(side, side)
    for cx in (-0.45, 0.45):
        radius = torch.sqrt((xx - cx) ** 2 + yy**2)
        image += (radius < 0.4).float() * (0.7 + 0.3 * torch.cos(6 * math.pi * radius))
        image -= 0.6 * (radius < 0.08).float()
    image *= 1 + 0.2 * xx
    image += 0.02 * torch.randn(side, side, generator=torch.Generator().manual_seed(3))
    return image[None, None]


def test_batch_norm_folding_is_exact_in_fp32():
    torch.manual_seed(0)
    model = randomise_batch_norm(build_segmenter("thigh", "compact"))
    x = structured_slice(96)
    with torch.no_grad():
        reference = model(x)
        folded = fold_batch_norm(model)  # in place
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        assert isinstance(folded.decoder[0].bn_up, nn.Identity)  # transposed conv folded too
        torch.testing.assert_close(folded(x), reference, rtol=1e-4, atol=1e-5)


def test_prepared_fp32_model_equals_eager_and_leaves_the_original():
    torch.manual_seed(1)
    model = randomise_batch_norm(build_classifier("compact", width=4))
    x = structured_slice(128)
    fast = prepare_for_inference(model, precision="fp32")
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    assert fast.inference_precision == "fp32"
    assert fast.encoder[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(predict_logits(fast, x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_fast_argmax_agrees_with_fp32_eager(precision):
    torch.manual_seed(2)
    model = randomise_batch_norm(build_segmenter("thigh", "compact"))
    x = structured_slice(96)
    with torch.no_grad():
        reference = model(x).argmax(1)
    fast = prepare_for_inference(model, precision=precision)
    logits = predict_logits(fast, x)
    assert logits.dtype == torch.float32 and logits.shape == (1, 13, 96, 96)
    agreement = (logits.argmax(1) == reference).float().mean().item()
    assert agreement >= 0.99, agreement


def test_precision_resolution():
    assert resolve_precision("cpu", "fp32") == "fp32"
    assert resolve_precision("cpu", "auto") in ("fp32", "bf16")
    assert resolve_precision("meta", "auto") == "fp32"
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("cpu", "int8")


def test_mc_dropout_still_works_on_the_fast_model():
    model = build_segmenter("leg", "compact", width=2, input_dropout=0.5)
    fast = prepare_for_inference(model, precision="fp32")
    x = structured_slice(48)
    assert enable_mc_dropout(fast) == 1
    assert not torch.equal(predict_logits(fast, x), predict_logits(fast, x))
