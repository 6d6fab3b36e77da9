"""``python main.py pretrain``: restarted stages, the record of how weights were made, clear errors."""

import json
import subprocess
import sys

import pytest
import torch

from lib.data.phantoms.real_slice import ROIS_FILE
from lib.networks.checkpoint import build_from_checkpoint
from lib.paths import SHARED_DATA
from lib.training.pretrain import parse_stages
from tests.conftest import ROOT


# A one-line error comes before any training, but torch and MONAI take long to import on a loaded machine.
ERROR_TIMEOUT = 300


def pretrain(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "pretrain", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_stages_parse_and_bad_ones_are_named():
    assert parse_stages("18@0.002, 10@1e-3") == [(18, 0.002), (10, 0.001)]
    for bad in ("18", "x@0.1", "0@0.1", "5@2"):
        with pytest.raises(ValueError, match="stage"):
            parse_stages(bad)


def test_bad_stage_is_a_one_line_error_and_writes_nothing(tmp_path):
    proc = pretrain("--leg-stages", "10@fast", "--out", str(tmp_path / "w"), timeout=ERROR_TIMEOUT)
    assert proc.returncode == 2 and "--leg-stages: stage '10@fast'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"pretrain needs the real slice at {SHARED_DATA}")
def test_tiny_staged_run_records_every_stage(tmp_path):
    proc = pretrain("--networks", "segmentation_leg", "--leg-stages", "1@0.002,1@0.001", "--steps-per-epoch", "2",
                    "--train-subjects", "1", "--val-subjects", "1", "--slices-per-subject", "2",
                    "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "segmentation_leg.json").read_text())
    assert [h["epochs_run"] for h in record["history"]] == [1, 1]
    assert record["plan"]["leg_stages"] == "1@0.002,1@0.001" and record["seconds"] > 0
    assert record["validation_score"] == max(h["best_score"] for h in record["history"])  # best kept across stages
    assert (tmp_path / "segmentation_leg.pt").stat().st_size > 1e6
    weights = record["class_weights"]  # served as the logit adjustment (lib.networks.logit_adjustment)
    assert len(weights) == 7 and weights[0] < 1 < min(weights[1:]) and max(weights) <= 20


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"pretrain needs the real slice at {SHARED_DATA}")
def test_uniform_class_weights_are_recorded_and_served_unadjusted(tmp_path):
    proc = pretrain("--networks", "segmentation_leg", "--leg-stages", "1@0.002", "--steps-per-epoch", "2",
                    "--train-subjects", "1", "--val-subjects", "1", "--slices-per-subject", "2",
                    "--class-weights", "uniform", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "segmentation_leg.json").read_text())
    assert record["class_weights"] == [1.0] * 7 and record["plan"]["class_weights"] == "uniform"
    model = build_from_checkpoint(tmp_path / "segmentation_leg.pt")
    assert torch.equal(model.logit_adjustment, torch.zeros(7))  # log(1) = 0: nothing to undo


def test_unknown_class_weights_are_a_one_line_error(tmp_path):
    proc = pretrain("--class-weights", "sqrt", "--out", str(tmp_path / "w"), timeout=ERROR_TIMEOUT)
    assert proc.returncode == 2 and "--class-weights must be inverse_frequency or uniform" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"pretrain needs the real slice at {SHARED_DATA}")
def test_tiny_classifier_run_records_its_weight_average(tmp_path):
    proc = pretrain("--networks", "classifier", "--classifier-epochs", "1", "--classifier-average-from", "1",
                    "--classifier-subjects", "1", "--classifier-val-subjects", "1", "--slices-per-subject", "2",
                    "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "classifier.json").read_text())
    assert record["averaged_epochs"] == 1 and record["seeds"]["train"] == [0, 0]
    # 1 validation phantom per region, 2 slices each, every slice's limbs classified
    assert 0 <= record["validation_score"] <= 1 and record["val_slices"] == 4
    assert record["input"] == "limb"  # the pipeline crops limbs for this classifier


@pytest.mark.parametrize("args,message", [
    (("--classifier-epochs", "3", "--classifier-average-from", "4"), "--classifier-average-from must not exceed"),
    (("--classifier-lr", "0"), "--classifier-lr must be between 0 and 1"),
])
def test_bad_classifier_settings_are_one_line_errors(tmp_path, args, message):
    proc = pretrain(*args, "--out", str(tmp_path / "w"), timeout=ERROR_TIMEOUT)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()
