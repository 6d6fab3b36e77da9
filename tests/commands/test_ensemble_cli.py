"""``python main.py ensemble``: pretrain's folders joined into one served leg network or interpolated
into one, and its errors."""

import json
import subprocess
import sys

import pytest
import torch

from lib.models.catalog import record_file, weight_file
from lib.networks.checkpoint import build_from_checkpoint, save_checkpoint
from lib.networks.ensemble import SoftmaxEnsemble
from lib.networks.presets import build_segmenter
from tests.conftest import ROOT

ERROR_TIMEOUT = 300  # torch takes long to import on a loaded machine


def ensemble(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "ensemble", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=ERROR_TIMEOUT)


@pytest.fixture
def pretrained(tmp_path):
    """Two folders as ``pretrain --out`` leaves them: leg weights and their record."""
    folders = []
    for seed in (0, 2):
        folder = tmp_path / f"leg_seed{seed}"
        torch.manual_seed(seed)
        save_checkpoint(weight_file(folder, "segmentation_leg"), build_segmenter("leg", "compact", width=2),
                        {"name": "segmentation_leg", "region": "leg", "preset": "compact", "class_weights": [1.0] * 7})
        record_file(folder, "segmentation_leg").write_text(json.dumps({"command": "python main.py pretrain",
                                                                       "plan": {"seed": seed}}))
        folders.append(folder)
    return folders


def test_members_become_one_network_whose_record_keeps_theirs(pretrained, tmp_path):
    out = tmp_path / "out"
    done = ensemble("--members", ",".join(map(str, pretrained)), "--out", str(out))
    assert done.returncode == 0, done.stderr
    model, meta = build_from_checkpoint(weight_file(out, "segmentation_leg"), return_meta=True)
    assert isinstance(model, SoftmaxEnsemble) and len(model.members) == 2 and meta["region"] == "leg"
    record = json.loads(record_file(out, "segmentation_leg").read_text())
    assert record["network"] == "ensemble" and record["command"].startswith("python main.py ensemble --members")
    assert [m["plan"]["seed"] for m in record["members"]] == [0, 2]


def test_a_member_folder_may_be_the_output(pretrained):
    """As when an ensemble replaces the shipped network in weights/ that is one of its members."""
    done = ensemble("--members", ",".join(map(str, pretrained)), "--out", str(pretrained[0]))
    assert done.returncode == 0, done.stderr
    assert isinstance(build_from_checkpoint(weight_file(pretrained[0], "segmentation_leg")), SoftmaxEnsemble)
    assert json.loads(record_file(pretrained[0], "segmentation_leg").read_text())["members"][0]["plan"]["seed"] == 0


def test_unpack_gives_back_each_member_with_its_record(pretrained, tmp_path):
    joined = tmp_path / "joined"
    assert ensemble("--members", ",".join(map(str, pretrained)), "--out", str(joined)).returncode == 0
    done = ensemble("--unpack", str(joined), "--out", str(tmp_path / "split"))
    assert done.returncode == 0, done.stderr
    for index, original in enumerate(pretrained, start=1):
        folder = tmp_path / "split" / f"member_{index}"
        model, meta = build_from_checkpoint(weight_file(folder, "segmentation_leg"), return_meta=True)
        assert meta["network"] == "segmenter" and meta["class_weights"] == [1.0] * 7 and meta["region"] == "leg"
        expected = build_from_checkpoint(weight_file(original, "segmentation_leg")).state_dict()
        assert all(torch.allclose(v, expected[k], atol=1e-3) for k, v in model.state_dict().items())  # float16 copies
        assert json.loads(record_file(folder, "segmentation_leg").read_text())["plan"]["seed"] == (index - 1) * 2
    single = ensemble("--unpack", str(pretrained[0]), "--out", str(tmp_path / "nothing"))
    assert single.returncode == 2 and "not an ensemble" in single.stderr and not (tmp_path / "nothing").exists()


@pytest.mark.parametrize("members, message", [
    ("{0}", "two or more folders"),
    ("{0},{missing}", "no segmentation_leg weights at"),
])
def test_bad_members_are_one_line_errors_and_write_nothing(pretrained, tmp_path, members, message):
    out = tmp_path / "out"
    done = ensemble("--members", members.format(pretrained[0], missing=tmp_path / "nowhere"), "--out", str(out))
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()


def test_interpolate_writes_one_network_between_the_two_with_both_records(pretrained, tmp_path):
    out = tmp_path / "mid"
    done = ensemble("--members", ",".join(map(str, pretrained)), "--interpolate", "0.5", "--out", str(out))
    assert done.returncode == 0, done.stderr
    model, meta = build_from_checkpoint(weight_file(out, "segmentation_leg"), return_meta=True)
    assert meta["network"] == "segmenter" and meta["interpolation"]["share"] == 0.5
    ends = [build_from_checkpoint(weight_file(f, "segmentation_leg")).state_dict() for f in pretrained]
    key = "encoder.0.conv_in.weight"
    assert torch.allclose(model.state_dict()[key], (ends[0][key] + ends[1][key]) / 2, atol=2e-3)
    record = json.loads(record_file(out, "segmentation_leg").read_text())
    assert record["interpolation_share"] == 0.5 and record["command"].endswith("--interpolate 0.5")
    assert (record["first"]["plan"]["seed"], record["second"]["plan"]["seed"]) == (0, 2)


@pytest.mark.parametrize("members, share, message", [
    ("{0},{1},{0}", "0.5", "exactly two --members"),
    ("{0},{1}", "-0.1", "must be in [0, 1]"),
])
def test_bad_interpolations_are_one_line_errors_and_write_nothing(pretrained, tmp_path, members, share, message):
    out = tmp_path / "out"
    done = ensemble("--members", members.format(*pretrained), "--interpolate", share, "--out", str(out))
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()
