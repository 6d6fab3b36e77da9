"""``python main.py evaluate`` on a tiny generated datastore, run as a user runs it."""

import csv
import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from lib.labels import all_labels
from tests.conftest import ROOT

THIGH, LEG = "phantom_thigh_s20000_mild", "phantom_leg_s20001_severe"
ANNOTATED = [1, 4]  # the only annotated slices of THIGH, although its label fills every slice
UNKNOWN_VOXELS = 5 * 6


def main_py(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    base = tmp_path_factory.mktemp("evaluate")
    studies = base / "studies"
    assert main_py("generate", "--test-set", "--out", studies, "--subjects", 2, "--slices", 6).returncode == 0
    label_path = studies / "labels" / "final" / f"{LEG}.nii.gz"
    label = nib.load(label_path)
    data = np.asarray(label.dataobj).copy()
    data[0:5, 0:6, 2] = 77  # a value that is no muscle of ours, in the air of an annotated slice
    nib.save(nib.Nifti1Image(data, label.affine), label_path)
    index = {"objects": {THIGH: {"labels": {"final": {"info": {"annotated_slices": ANNOTATED}}}}}}
    (studies / "datastore_v2.json").write_text(json.dumps(index))
    shutil.copy(studies / f"{LEG}.nii.gz", studies / "unlabelled_leg.nii.gz")
    out = base / "report"
    proc = main_py("evaluate", "--studies", studies, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_report_has_every_muscle_and_both_severity_groups(evaluated):
    out, proc = evaluated
    summary = json.loads((out / "summary.json").read_text())
    assert {m["muscle"] for m in summary["muscles"] if m["slices"] and m["dice"] is not None} == set(all_labels())
    assert {(g["severity"], g["region"]) for g in summary["severity"]} == {
        ("mild", "thigh"), ("mild", "leg"), ("severe", "thigh"), ("severe", "leg")}
    report = (out / "report.md").read_text()
    for muscle in all_labels():
        assert f"| {muscle} |" in report
    assert "| mild |" in report and "| severe |" in report
    assert 0.5 < summary["headline"]["thigh"]["dice"] <= 1 and 0.5 < summary["headline"]["leg"]["dice"] <= 1
    assert summary["classifier"]["slices"] == len(ANNOTATED) + 3 * 6
    assert "thigh Dice" in proc.stdout


def test_figures_are_non_empty_pngs(evaluated):
    out, _ = evaluated
    figures = sorted((out / "figures").glob("*.png"))
    assert (out / "figures" / "dice_per_muscle.png") in figures
    assert any(p.name.startswith("worst_") for p in figures) and any(p.name.startswith("best_") for p in figures)
    for path in figures:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"]({path.relative_to(out).as_posix()})" in (out / "report.md").read_text()


def test_only_annotated_slices_are_ground_truth(evaluated):
    out, _ = evaluated
    slices = read_csv(out / "slices.csv")
    assert sorted(int(s["slice"]) for s in slices if s["study"] == THIGH) == ANNOTATED
    assert {int(r["slice"]) for r in read_csv(out / "rows.csv") if r["study"] == THIGH} == set(ANNOTATED)
    assert "unlabelled_leg" not in {s["study"] for s in slices}
    prediction = nib.load(out / "predictions" / f"{THIGH}.nii.gz")
    assert prediction.shape == nib.load(out.parent / "studies" / f"{THIGH}.nii.gz").shape
    unannotated = [k for k in range(6) if k not in ANNOTATED]
    assert not np.asarray(prediction.dataobj)[:, :, unannotated].any()  # never even predicted


def test_unknown_label_values_are_listed_not_dropped(evaluated):
    out, _ = evaluated
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unknown_values"] == {LEG: {"77": UNKNOWN_VOXELS}}
    assert f"| {LEG} | 77 | {UNKNOWN_VOXELS} |" in (out / "report.md").read_text()


def test_datastore_without_labels_is_exit_code_2(tmp_path):
    assert main_py("generate", "--out", tmp_path, "--subjects", 1, "--region", "leg", "--slices", 2,
                   "--annotate", "none").returncode == 0
    proc = main_py("evaluate", "--studies", tmp_path, "--out", tmp_path / "report")
    assert proc.returncode == 2
    assert "no labelled studies" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "report" / "report.md").exists()


@pytest.mark.parametrize("model", ["v7", "segmentation_knee:v1", "latest"])
def test_unknown_model_version_is_exit_code_2(tmp_path, model):
    proc = main_py("evaluate", "--studies", ROOT / "studies", "--model", model, "--model-dir", tmp_path,
                   "--out", tmp_path / "report")
    assert proc.returncode == 2 and "--model" in proc.stderr and "Traceback" not in proc.stderr


def test_unreachable_pacs_is_a_one_line_error(tmp_path):
    from tests.conftest import free_port

    proc = main_py("evaluate", "--studies", f"http://127.0.0.1:{free_port()}/dicom-web", "--out", tmp_path / "report")
    assert proc.returncode == 2 and "no DICOMweb server answers" in proc.stderr and "Traceback" not in proc.stderr
