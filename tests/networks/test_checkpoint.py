"""Checkpoints: round trip, metadata, atomic writes and safe (weights-only) loading."""

from __future__ import annotations

import os

import pytest
import torch

from lib.errors import UserError
from lib.networks.checkpoint import (CheckpointError, build_from_checkpoint, load_checkpoint,
                                     save_checkpoint, save_interpolation)
from lib.networks.fast import prepare_for_inference
from lib.networks.presets import build_classifier, build_segmenter


def test_round_trip_rebuilds_the_same_network(tmp_path):
    torch.manual_seed(1)
    model = build_segmenter("leg", "compact", width=2).eval()
    model.encoder[0].bn_in.running_mean.fill_(0.3)  # buffers travel too
    path = save_checkpoint(tmp_path / "sub" / "leg.pt", model,
                           {"preset": "compact", "region": "leg", "version": 3})
    assert sorted(os.listdir(path.parent)) == ["leg.pt"]  # no temporary file left behind
    rebuilt, meta = build_from_checkpoint(path, return_meta=True)
    assert meta["region"] == "leg" and meta["version"] == 3
    assert meta["network"] == "segmenter" and meta["config"]["num_classes"] == 7
    assert not rebuilt.training
    x = torch.rand(1, 1, 96, 96)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_classifier_round_trip_and_load_checkpoint(tmp_path):
    model = build_classifier("compact", width=2)
    save_checkpoint(tmp_path / "c.pt", model, {"classes": ["thigh", "leg"]})
    state, meta = load_checkpoint(tmp_path / "c.pt")
    assert meta["classes"] == ["thigh", "leg"] and meta["network"] == "classifier"
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert isinstance(build_from_checkpoint(tmp_path / "c.pt"), type(model))


def test_overwrite_is_whole(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_classifier(width=2), {"version": 1})
    save_checkpoint(path, build_classifier(width=4), {"version": 2})
    model, meta = build_from_checkpoint(path, return_meta=True)
    assert meta["version"] == 2 and model.config["width"] == 4


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    path = save_checkpoint(tmp_path / "m.pt", build_classifier(width=2), {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is not a"):
        load_checkpoint(tmp_path / "foreign.pt")


class _Exploit:
    """A pickle that would create a file when unpickled (what weights_only must refuse)."""

    target = ""

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_loading_never_unpickles_code(tmp_path):
    marker = tmp_path / "pwned"
    _Exploit.target = str(marker)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "muscle-networks/1", "meta_json": "{}", "state_dict": {},
                "payload": _Exploit()}, evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the file really is an exploit: plain loading runs it
    assert marker.exists()


def test_bad_meta_and_mismatched_weights(tmp_path):
    model = build_classifier(width=2)
    with pytest.raises(ValueError, match="JSON-able"):
        save_checkpoint(tmp_path / "x.pt", model, {"bad": object()})
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="BN-folded"):
        save_checkpoint(tmp_path / "x.pt", prepare_for_inference(model, precision="fp32"), {})
    # Weights of a width-2 classifier under a width-4 config: a clear error, not a crash.
    path = save_checkpoint(tmp_path / "x.pt", model, {})
    state, _ = load_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    payload["meta_json"] = payload["meta_json"].replace('"width": 2', '"width": 4')
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not fit"):
        build_from_checkpoint(path)


def _leg_segmenter(tmp_path, seed: int, class_weights, width: int = 2):
    torch.manual_seed(seed)
    model = build_segmenter("leg", "compact", width=width).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.num_batches_tracked.fill_(seed)
    return save_checkpoint(tmp_path / f"s{seed}_w{width}.pt", model,
                           {"name": "segmentation_leg", "region": "leg", "preset": "compact",
                            "class_weights": class_weights, "validation_score": seed / 10})


def test_interpolation_lies_between_the_two_networks_weight_by_weight(tmp_path):
    first = _leg_segmenter(tmp_path, 1, [0.1, 10, 10, 10, 10, 10, 0])
    second = _leg_segmenter(tmp_path, 2, [0.4, 10, 10, 10, 10, 40, 2])
    path = save_interpolation(tmp_path / "mid.pt", first, second, 0.25, {"command": "test"})
    mixed, meta = build_from_checkpoint(path, return_meta=True)
    a, b = build_from_checkpoint(first).state_dict(), build_from_checkpoint(second).state_dict()
    for key, value in mixed.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * a[key] + 0.25 * b[key], atol=2e-3), key  # float16 storage
        else:  # batch counts are kept from the first, not averaged
            assert torch.equal(value, a[key]), key
    assert not torch.allclose(mixed.state_dict()["encoder.0.conv_in.weight"], a["encoder.0.conv_in.weight"], atol=1e-3)
    # Geometric in the weights, so linear in the logit offsets; weight 0 counts as 1.
    assert meta["class_weights"] == pytest.approx([0.1 ** 0.75 * 0.4 ** 0.25, 10, 10, 10, 10, 10 ** 0.75 * 40 ** 0.25,
                                                   2 ** 0.25], rel=1e-3)
    assert meta["interpolation"] == {"share": 0.25, "first": {"validation_score": 0.1}, "second": {"validation_score": 0.2}}
    assert "validation_score" not in meta and meta["command"] == "test"  # measured on the ends, not on this network
    x = torch.rand(1, 1, 96, 96)
    with torch.no_grad():  # share 0, stored as it is, serves the first network's predictions
        start = save_interpolation(tmp_path / "a.pt", first, second, 0.0, storage_dtype=None)
        assert torch.allclose(build_from_checkpoint(start)(x), build_from_checkpoint(first)(x), atol=1e-6)


def test_interpolation_refuses_other_networks_and_shares_outside_0_1(tmp_path):
    first = _leg_segmenter(tmp_path, 1, [1.0] * 7)
    with pytest.raises(UserError, match="in \\[0, 1\\]"):
        save_interpolation(tmp_path / "x.pt", first, first, 1.5)
    with pytest.raises(UserError, match="different networks"):
        save_interpolation(tmp_path / "x.pt", first, _leg_segmenter(tmp_path, 2, [1.0] * 7, width=4), 0.5)
    with pytest.raises(UserError, match="class weights"):
        save_interpolation(tmp_path / "x.pt", first, _leg_segmenter(tmp_path, 3, None), 0.5)
    assert not (tmp_path / "x.pt").exists()
