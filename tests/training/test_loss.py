"""SPEC §5 losses: weighted cross-entropy, the Dice+CE alternative, the classifier's CE."""

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from lib.training.loss import (DiceCEWeighted, WeightedCrossEntropyLoss, make_classifier_loss,
                               make_segmentation_loss)


def batch(seed=0, n=2, c=4, size=8):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, size, size, generator=g, requires_grad=True)
    target = torch.randint(0, c, (n, 1, size, size), generator=g)
    return logits, target


def test_all_ones_weights_equal_plain_cross_entropy():
    logits, target = batch()
    plain = F.cross_entropy(logits, target[:, 0])
    loss = WeightedCrossEntropyLoss()
    assert loss(logits, target, torch.ones_like(target, dtype=torch.float32)).item() == pytest.approx(plain.item())
    assert loss(logits, target[:, 0]).item() == pytest.approx(plain.item())  # (N, H, W) target, no weight


def test_weights_scale_each_pixel():
    logits, target = batch()
    loss = WeightedCrossEntropyLoss()
    ones = torch.ones(target.shape)
    assert loss(logits, target, 3 * ones).item() == pytest.approx(3 * loss(logits, target, ones).item())
    weight = torch.zeros(target.shape)
    weight[0, 0, 2, 5] = 8.0  # one weighted pixel: the mean is 8 * its CE / number of pixels
    pixel = F.cross_entropy(logits, target[:, 0], reduction="none")[0, 2, 5]
    assert loss(logits, target, weight).item() == pytest.approx(8 * pixel.item() / target.numel())
    none = WeightedCrossEntropyLoss(reduction="none")(logits, target, weight)
    assert none.shape == (2, 8, 8) and none[0, 2, 5].item() == pytest.approx(8 * pixel.item())
    assert WeightedCrossEntropyLoss(reduction="sum")(logits, target, weight).item() == pytest.approx(8 * pixel.item())


def test_ignored_pixels_do_not_contribute():
    logits, target = batch()
    ignored = target.clone()
    ignored[:, :, :4] = 255  # top half unannotated
    loss = WeightedCrossEntropyLoss()
    value = loss(logits, ignored)
    expected = F.cross_entropy(logits[:, :, 4:], target[:, 0, 4:])
    assert value.item() == pytest.approx(expected.item())
    value.backward()
    assert torch.all(logits.grad[:, :, :4] == 0) and torch.any(logits.grad[:, :, 4:] != 0)
    other = logits.detach().clone()
    other[:, :, :4] = 100 * torch.randn_like(other[:, :, :4])
    assert loss(other, ignored).item() == pytest.approx(value.item())


def test_gradients_flow_and_lower_the_loss():
    logits, target = batch()
    weight = torch.rand(target.shape) + 0.5
    loss = make_segmentation_loss("weighted_ce")
    value = loss(logits, target, weight)
    value.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    stepped = (logits - 10 * logits.grad).detach()
    assert loss(stepped, target, weight) < value


def test_dice_ce_matches_monai_and_ignores_unannotated():
    logits, target = batch(seed=1)
    ours = make_segmentation_loss("dice_ce")
    monai = DiceCELoss(to_onehot_y=True, softmax=True)
    assert isinstance(ours, DiceCEWeighted)
    assert ours(logits, target).item() == pytest.approx(monai(logits, target).item(), rel=1e-5)
    ignored = target.clone()
    ignored[:, :, :4] = 255
    value = ours(logits, ignored)
    value.backward()
    assert torch.isfinite(value) and torch.all(logits.grad[:, :, :4] == 0)


def test_factory_and_classifier_loss():
    with pytest.raises(ValueError, match="weighted_ce"):
        make_segmentation_loss("focal")
    logits = torch.randn(5, 2)
    target = torch.tensor([0, 1, 1, 0, 1])
    assert make_classifier_loss()(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item())
