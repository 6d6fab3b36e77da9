"""Logit adjustment: the class weights a checkpoint records shift its predictions, served or not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.networks.checkpoint import CheckpointError, build_from_checkpoint, save_checkpoint
from lib.networks.fast import predict_logits, prepare_for_inference
from lib.networks.logit_adjustment import attach, logit_offsets
from lib.networks.presets import build_classifier, build_segmenter

LEG_WEIGHTS = [0.15, 11.0, 15.0, 20.0, 20.0, 20.0, 20.0]


def test_offsets_are_minus_tau_log_weight():
    offsets = logit_offsets([0.5, 1.0, 20.0], tau=0.5)
    assert torch.allclose(offsets, torch.tensor([-0.5 * np.log(0.5), 0.0, -0.5 * np.log(20.0)]).float())
    assert torch.equal(logit_offsets([3.0, 7.0], tau=0.0), torch.zeros(2))
    assert logit_offsets([2.0, 0.0])[1] == 0  # a class absent from training: nothing to undo
    # the rarest class, weighted most in training, loses most
    assert int(logit_offsets(LEG_WEIGHTS).argmin()) == 3 and int(logit_offsets(LEG_WEIGHTS).argmax()) == 0


@pytest.mark.parametrize("bad", [[], [1.0, -2.0], [1.0, float("nan")], [1.0, float("inf")], [[1.0, 2.0]]])
def test_offsets_refuse_weights_that_are_not_finite_and_non_negative(bad):
    with pytest.raises(ValueError, match="class weights"):
        logit_offsets(bad)


def test_attach_sets_nothing_without_weights_and_refuses_a_wrong_count():
    model = build_segmenter("leg", "compact", width=2)
    assert attach(model, {}).logit_adjustment is None
    with pytest.raises(ValueError, match="3 class weights for a network of 7 classes"):
        attach(model, {"class_weights": [1.0, 2.0, 3.0]})


def test_checkpoint_weights_shift_the_served_logits(tmp_path):
    torch.manual_seed(0)
    model = build_segmenter("leg", "compact", width=2).eval()
    save_checkpoint(tmp_path / "plain.pt", model, {"region": "leg"})
    save_checkpoint(tmp_path / "adjusted.pt", model, {"region": "leg", "class_weights": LEG_WEIGHTS})
    plain, adjusted = build_from_checkpoint(tmp_path / "plain.pt"), build_from_checkpoint(tmp_path / "adjusted.pt")
    assert plain.logit_adjustment is None
    x = torch.rand(2, 1, 96, 96)
    expected = predict_logits(plain, x) + logit_offsets(LEG_WEIGHTS).view(1, -1, 1, 1)
    assert torch.allclose(predict_logits(adjusted, x), expected, atol=1e-5)  # training copy: added to logits
    served = prepare_for_inference(adjusted, precision="fp32")
    assert served.logit_adjustment is None  # folded into the last conv's bias: no cost per batch
    assert torch.allclose(predict_logits(served, x), expected, atol=1e-4)
    assert adjusted.logit_adjustment is not None  # the copy was folded, not the original
    assert not torch.allclose(predict_logits(prepare_for_inference(plain, precision="fp32"), x), expected, atol=1e-3)


def test_a_checkpoint_whose_weights_do_not_fit_is_refused(tmp_path):
    model = build_segmenter("leg", "compact", width=2)
    save_checkpoint(tmp_path / "bad.pt", model, {"class_weights": [1.0] * 13})
    with pytest.raises(CheckpointError, match="13 class weights for a network of 7 classes"):
        build_from_checkpoint(tmp_path / "bad.pt")


def test_the_classifier_is_served_as_it_is(tmp_path):
    model = build_classifier("compact", width=2)
    save_checkpoint(tmp_path / "c.pt", model, {})
    assert build_from_checkpoint(tmp_path / "c.pt").logit_adjustment is None
