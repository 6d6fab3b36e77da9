"""The networks against SPEC §4 (Agosti et al., MAGMA 2022): sizes, shapes, receptive fields."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lib.errors import UserError
from lib.networks.blocks import ResidualBlock, UpBlock, enable_mc_dropout
from lib.networks.classifier import RegionClassifier
from lib.networks.presets import (build_classifier, build_segmenter, count_parameters,
                                  gflops_per_slice, receptive_fields)
from lib.networks.segmenter import ResidualVNet2D

TABLE_1 = [(1, 3, 5), (6, 10, 14), (16, 24, 32), (36, 52, 68), (76, 108, 140), (188, 284, 380)]


def meta_build(builder, *args, **kwargs):
    """Build on the meta device: exact shapes and counts without allocating 45 M weights."""
    with torch.device("meta"):
        return builder(*args, **kwargs)


def test_paper_sizes_match_spec():
    thigh = meta_build(build_segmenter, "thigh", "paper")
    assert thigh.num_classes == 13
    assert abs(count_parameters(thigh) / 1e6 - 45.4) < 0.1
    assert abs(gflops_per_slice(thigh) - 96.9) < 0.05
    assert abs(count_parameters(meta_build(build_classifier, "paper")) / 1e6 - 7.06) < 0.01
    assert meta_build(build_segmenter, "leg", "paper").num_classes == 7


@pytest.mark.parametrize("preset, params_m, gflop", [("small", 11.4, 24.3), ("compact", 2.8, 6.1)])
def test_smaller_presets_match_spec(preset, params_m, gflop):
    model = meta_build(build_segmenter, "thigh", preset)
    assert abs(count_parameters(model) / 1e6 - params_m) < 0.06
    assert abs(gflops_per_slice(model) - gflop) < 0.05


def test_gflops_scale_with_area_and_count_transposed_convs():
    model = meta_build(build_segmenter, "thigh", "compact")
    # FLOP are linear in the pixel count: 96x96 is (96/432)^2 of a model-grid slice.
    full = gflops_per_slice(model)
    assert gflops_per_slice(model, (96, 96)) == pytest.approx(full * (96 / 432) ** 2)
    up = UpBlock(4, 2, scale=3)
    # transposed conv 4->2, k3 s3, 3x3 → 9x9: each of 9 x 4 inputs feeds 2 x 9 outputs;
    # then conv 3x3 (2 + 2 skip)->2 and 2->2 on 81 px.
    macs = 9 * 4 * 2 * 9 + 81 * (4 * 2 * 9 + 2 * 2 * 9)
    wrapper = nn.Module()
    wrapper.forward = lambda x: up(x, torch.zeros(1, 2, 9, 9, device=x.device))
    wrapper.up = up
    assert gflops_per_slice(wrapper, (4, 3, 3)) == pytest.approx(2 * macs / 1e9)


def test_receptive_fields_reproduce_table_1():
    model = meta_build(build_segmenter, "thigh", "paper")
    assert receptive_fields(model) == TABLE_1
    exact = receptive_fields(model, "exact")
    assert exact[:5] == TABLE_1[:5] and exact[5] == (172, 268, 364)
    assert receptive_fields(meta_build(build_classifier, "paper")) == TABLE_1[:5]


def test_exact_receptive_fields_match_autograd():
    """The gradient of one deep output pixel reaches exactly the 'exact' field of the input."""
    model = build_segmenter("thigh", "compact", width=1).double()
    convs = [conv for block in model.encoder for conv in block.encoder_convs()]
    expected = [f for block in receptive_fields(model, "exact") for f in block]
    x = torch.ones(1, 1, 432, 432, dtype=torch.float64, requires_grad=True)
    y = x
    with torch.no_grad():
        for conv in convs:  # positive weights, no bias: no cancellation, gradient > 0 in the field
            conv.weight.fill_(1.0 / conv.weight[0].numel())
            conv.bias.zero_()
    for index in (2, 5, 8, 11, 14, 15, 17):  # the last conv of blocks 1-5, then inside block 6
        y = x
        for conv in convs[: index + 1]:
            y = conv(y)
        centre = y.shape[-1] // 2
        (grad,) = torch.autograd.grad(y[0, :, centre, centre].sum(), x)
        rows = torch.nonzero(grad[0, 0].abs().sum(dim=1)).flatten()
        assert int(rows.max() - rows.min() + 1) == expected[index], index


def test_output_shapes_small_inputs():
    seg = build_segmenter("leg", "compact").eval()
    with torch.no_grad():
        assert seg(torch.randn(2, 1, 96, 144)).shape == (2, 7, 96, 144)
    cls = build_classifier("compact", width=4).eval()
    with torch.no_grad():
        assert cls(torch.randn(3, 1, 128, 128)).shape == (3, 2)
    block = ResidualBlock(3, 5, kernel_size=3, stride=3)
    assert block(torch.randn(1, 3, 27, 27)).shape == (1, 5, 9, 9)


def test_compact_forward_on_the_model_grid():
    seg = build_segmenter("thigh").eval()
    with torch.no_grad():
        logits = seg(torch.randn(1, 1, 432, 432))
    assert logits.shape == (1, 13, 432, 432) and torch.isfinite(logits).all()


def test_paper_shapes_on_meta_device():
    with torch.device("meta"):
        seg = build_segmenter("thigh", "paper")
        assert seg(torch.empty(1, 1, 432, 432)).shape == (1, 13, 432, 432)


@pytest.mark.parametrize("shape", [(1, 1, 100, 96), (1, 1, 96, 40), (1, 2, 96, 96), (1, 96, 96)])
def test_unsupported_segmenter_input_raises(shape):
    model = ResidualVNet2D(width=2)
    with pytest.raises(ValueError, match="multiples of 48|expected input"):
        model(torch.zeros(shape))


def test_classifier_checks_its_input_and_arguments():
    with pytest.raises(ValueError, match="expected input"):
        RegionClassifier(width=2)(torch.zeros(1, 1, 96, 96))
    with pytest.raises(ValueError, match="multiple of 16"):
        RegionClassifier(input_size=100)
    with pytest.raises(UserError, match="unknown network preset"):
        build_segmenter("thigh", "huge")
    with pytest.raises(ValueError, match="unknown region"):
        build_segmenter("arm")


def test_glorot_init_and_zero_biases():
    model = ResidualVNet2D(width=4, num_classes=7)
    conv = model.encoder[5].conv1  # 128 -> 128, 3x3: Glorot std = sqrt(2 / (2 * 9 * 128))
    assert conv.weight.std().item() == pytest.approx((2 / (2 * 9 * 128)) ** 0.5, rel=0.05)
    biases = [m.bias for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(torch.count_nonzero(b) == 0 for b in biases)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_mc_dropout_samples_only_the_dropout():
    torch.manual_seed(0)
    model = ResidualVNet2D(width=4, num_classes=3, input_dropout=0.5).eval()
    x = torch.rand(1, 1, 48, 48)
    with torch.no_grad():
        deterministic = model(x)
        assert torch.equal(deterministic, model(x))
        assert enable_mc_dropout(model) == 1
        assert not model.encoder[0].bn_in.training  # batch norm stays in eval mode
        first, second = model(x), model(x)
        assert not torch.allclose(first, second)
        enable_mc_dropout(model, enabled=False)
        assert torch.equal(model(x), deterministic)
