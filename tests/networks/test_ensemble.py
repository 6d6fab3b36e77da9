"""A softmax ensemble of segmenters: one checkpoint, each member's logit adjustment, the fast path."""

from __future__ import annotations

import pytest
import torch

from lib.errors import UserError
from lib.networks.checkpoint import build_from_checkpoint, save_checkpoint, save_ensemble
from lib.networks.ensemble import SoftmaxEnsemble
from lib.networks.fast import predict_logits, prepare_for_inference
from lib.networks.presets import build_classifier, build_segmenter

WEIGHTED = [0.15, 11.1, 15.4, 20.0, 20.0, 20.0, 20.0]


@pytest.fixture
def members(tmp_path):
    """Two tiny leg segmenters of different seeds, one trained with class weights, one uniform."""
    paths = []
    for seed, weights in ((1, WEIGHTED), (2, [1.0] * 7)):
        torch.manual_seed(seed)
        model = build_segmenter("leg", "compact", width=2)
        for module in model.modules():  # batch norms that are not the identity, so folding matters
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
        paths.append(save_checkpoint(tmp_path / f"m{seed}" / "segmentation_leg.pt", model.eval(),
                                     {"name": "segmentation_leg", "region": "leg", "preset": "compact",
                                      "class_weights": weights, "validation_score": 0.5 + seed / 10}))
    return paths


def test_the_ensemble_serves_the_mean_of_its_members_adjusted_probabilities(members, tmp_path):
    path = save_ensemble(tmp_path / "ens" / "segmentation_leg.pt", members, {"command": "test"})
    ensemble, meta = build_from_checkpoint(path, return_meta=True)
    assert isinstance(ensemble, SoftmaxEnsemble) and meta["network"] == "ensemble"
    assert meta["member_class_weights"] == [WEIGHTED, [1.0] * 7] and meta["command"] == "test"
    assert meta["region"] == "leg" and [m["validation_score"] for m in meta["members"]] == [0.6, 0.7]
    x = torch.rand(3, 1, 96, 96)
    singles = [build_from_checkpoint(p) for p in members]
    assert singles[0].logit_adjustment is not None  # the weighted member's predictions are adjusted
    expected = torch.stack([torch.softmax(predict_logits(m, x), 1) for m in singles]).mean(0)
    assert not torch.allclose(torch.softmax(predict_logits(singles[0], x), 1), expected, atol=1e-3)
    served = torch.softmax(predict_logits(ensemble, x), 1)
    assert torch.allclose(served, expected, atol=2e-3)  # float16 storage
    fast = prepare_for_inference(ensemble, precision="fp32")
    assert all(m.logit_adjustment is None for m in fast.members)  # folded into each member's head
    assert torch.allclose(torch.softmax(predict_logits(fast, x), 1), served, atol=1e-5)


def test_built_networks_and_ensembles_join_as_they_are(members, tmp_path):
    """Self-training's teachers: prepared networks, one of them an ensemble, averaged as one."""
    ensemble = build_from_checkpoint(save_ensemble(tmp_path / "e.pt", members))
    teachers = [prepare_for_inference(build_from_checkpoint(members[0]), precision="fp32"),
                prepare_for_inference(ensemble, precision="fp32")]
    joined = SoftmaxEnsemble(teachers)
    assert joined.members[0] is teachers[0]  # used, not copied
    x = torch.rand(2, 1, 96, 96)
    expected = torch.stack([torch.softmax(predict_logits(t, x), 1) for t in teachers]).mean(0)
    assert torch.allclose(torch.softmax(predict_logits(joined, x), 1), expected, atol=1e-5)


def test_the_ensemble_output_is_a_log_probability_with_and_without_gradients(members, tmp_path):
    """Inference sums softmaxes (fast), training takes a logsumexp (exact gradients): same values."""
    ensemble = build_from_checkpoint(save_ensemble(tmp_path / "e.pt", members))
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        out = ensemble(x)
    assert torch.allclose(out.exp().sum(1), torch.ones(2, 96, 96), atol=1e-5)
    trained = ensemble(x)
    assert torch.allclose(trained, out, atol=1e-5)
    torch.nn.functional.nll_loss(trained, torch.randint(0, 7, (2, 96, 96))).backward()
    gradients = [p.grad for p in ensemble.parameters() if p.grad is not None]
    assert len(gradients) == len(list(ensemble.parameters())) and all(g.isfinite().all() for g in gradients)


def test_members_must_be_segmenters_of_one_region(members, tmp_path):
    thigh = save_checkpoint(tmp_path / "t.pt", build_segmenter("thigh", "compact", width=2),
                            {"name": "segmentation_thigh", "region": "thigh", "preset": "compact"})
    classifier = save_checkpoint(tmp_path / "c.pt", build_classifier("compact", width=2))
    with pytest.raises(UserError, match="disagree on 'name'"):
        save_ensemble(tmp_path / "e.pt", [members[0], thigh])
    with pytest.raises(UserError, match="not a segmenter"):
        save_ensemble(tmp_path / "e.pt", [members[0], classifier])
    with pytest.raises(UserError, match="at least two"):
        save_ensemble(tmp_path / "e.pt", members[:1])
    assert not (tmp_path / "e.pt").exists()


def test_an_ensemble_of_mismatched_networks_is_refused():
    with pytest.raises(ValueError, match="same input channels and classes"):
        SoftmaxEnsemble([{"num_classes": 7, "width": 2}, {"num_classes": 13, "width": 2}])
