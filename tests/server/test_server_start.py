"""The server as a MONAI Label user starts it: /info lists the app, the datastore is served."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import ROOT, Server, copy_studies


def count_study_images(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii")))


def test_info_lists_app_strategies_and_models(server):
    info = requests.get(f"{server.url}/info/", timeout=30).json()
    assert info["name"].startswith("Muscle segmentation")
    assert {"random", "foreground_random", "uncertain_slices", "power_uncertain", "class_stratified",
            "first"} <= set(info["strategies"])
    assert next(iter(info["strategies"])) == "foreground_random"  # what Slicer and OHIF preselect
    assert set(info["trainers"]) == {"muscle", "classifier", "segmentation_thigh", "segmentation_leg"}
    assert {"slice_uncertainty", "evaluation"} <= set(info["scoring"])
    assert info["trainers"]["segmentation_thigh"]["config"]["tolerance"] == 0.005
    models = info["models"]
    assert set(models) == {"muscle", "classifier", "segmentation_thigh", "segmentation_leg"}
    assert models["muscle"]["type"] == "segmentation" and models["classifier"]["type"] == "classification"
    assert models["muscle"]["labels"]["soleus"] == 13 and models["segmentation_thigh"]["labels"]["vastus_lateralis"] == 1
    assert {"region", "split_sides", "echo"} <= set(models["muscle"]["config"])


def test_datastore_stats_count_embedded_studies(server):
    stats = requests.get(f"{server.url}/datastore/", params={"output": "stats"}, timeout=30).json()
    expected = count_study_images(server.studies)
    assert expected >= 5
    assert stats["total"] == expected
    assert stats["completed"] >= 2  # the embedded studies ship some final labels


def test_unreadable_study_files_are_skipped_not_fatal(tmp_path):
    studies = copy_studies(tmp_path / "studies")
    (studies / "not_an_image.nii.gz").write_text("this is text, not NIfTI")
    (studies / "empty.nii").write_bytes(b"")
    (studies / "notes.txt").write_text("a stray file")
    srv = Server(studies, tmp_path / "server.log")
    try:
        srv.wait_ready()
        stats = requests.get(f"{srv.url}/datastore/", params={"output": "stats"}, timeout=30).json()
        assert stats["total"] == count_study_images(studies) - 2
        log = srv.log()
        assert log.count("Skipping unreadable study file") >= 2
        assert "not_an_image.nii.gz" in log
    finally:
        srv.stop()


def test_serve_rejects_missing_studies_folder_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "serve", "--studies", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "studies folder not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_monailabel_start_server_serves_the_same_app(tmp_path):
    studies = copy_studies(tmp_path / "studies")
    srv = Server(studies, tmp_path / "server.log", monailabel_cli=True)
    try:
        srv.wait_ready()
        info = requests.get(f"{srv.url}/info/", timeout=30).json()
        assert info["name"].startswith("Muscle segmentation")
        assert {"muscle", "classifier", "segmentation_thigh", "segmentation_leg"} <= set(info["models"])
    finally:
        srv.stop()
