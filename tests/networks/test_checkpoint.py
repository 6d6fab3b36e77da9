"""Checkpoints: round trip, metadata, atomic writes and safe (weights-only) loading."""

from __future__ import annotations

import os

import pytest
import torch

from lib.networks.checkpoint import (CheckpointError, build_from_checkpoint, load_checkpoint,
                                     save_checkpoint)
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
