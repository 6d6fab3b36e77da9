"""Scoring method ``evaluation`` and ``GET /evaluation/`` on the real server (embedded studies)."""

import re

import requests

LABELLED = {"phantom_thigh_s0001_mild": "thigh", "phantom_leg_s0003_severe": "leg", "real_leg_t1": "leg"}


def test_evaluation_report_is_made_and_served(server):
    before = requests.get(f"{server.url}/evaluation/", timeout=30)
    assert before.status_code == 404 and "/scoring/evaluation" in before.json()["detail"]

    task = server.run_scoring("evaluation")
    assert task["status"] == "DONE", task

    summary = requests.get(f"{server.url}/evaluation/", timeout=30).json()
    assert summary["studies"] == len(LABELLED)
    for region in ("thigh", "leg"):
        assert 0.5 < summary["headline"][region]["dice"] <= 1.0
    assert summary["classifier"]["slices"] == summary["slices"] > 0
    report = requests.get(f"{server.url}/evaluation/report", timeout=30)
    assert report.status_code == 200 and "## Per muscle" in report.text
    names = re.findall(r"\]\(figures/([^)]+\.png)\)", report.text)
    assert "dice_per_muscle.png" in names
    for name in names:
        figure = requests.get(f"{server.url}/evaluation/figures/{name}", timeout=30)
        assert figure.status_code == 200 and figure.content[:4] == b"\x89PNG"

    for image_id, region in LABELLED.items():
        info = requests.get(f"{server.url}/datastore/image/info", params={"image": image_id}, timeout=30).json()
        assert 0.0 <= info["evaluation"]["dice"][region] <= 1.0 and info["evaluation"]["model"] == "live"


def test_figure_route_serves_only_report_figures(server):
    for name in ("..%2Fsummary.json", "..%2F..%2Fclassifier.pt", "missing.png", ".hidden.png"):
        r = requests.get(f"{server.url}/evaluation/figures/{name}", timeout=30)
        assert r.status_code == 404, name
