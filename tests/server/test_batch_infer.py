"""``POST /batch/infer/<model>`` through the real server on this CPU-only machine (issue: cohort
inference): MONAI Label 0.8.5's own batch task answered HTTP 500 here (ZeroDivisionError)."""

from __future__ import annotations

import time

import pytest
import requests

from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from tests.conftest import Server

IDS = ("leg_a", "leg_b")


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server of its own: two small leg phantoms, so that batch runs take seconds."""
    base = tmp_path_factory.mktemp("batch")
    studies = base / "studies"
    studies.mkdir()
    for seed, name in enumerate(IDS, start=20_300):
        phantom = generate_phantom("leg", seed, n_slices=3, spacing=(1.2, 1.2, 5.0), shape=(320, 320))
        save_nifti(studies / f"{name}.nii.gz", phantom.image, phantom.affine)
    with Server(studies, base / "server.log") as server:
        yield server


def labels_of(server, tag: str) -> set[str]:
    objects = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    return {i for i, entry in objects.items() if tag in entry.get("labels", {})}


def test_batch_infer_runs_on_cpu_and_saves_original_labels(small_server):
    # exactly the failing call of the issue: no params, so the route's defaults (device cuda, multi_gpu)
    r = requests.post(f"{small_server.url}/batch/infer/muscle", params={"run_sync": "true"}, timeout=600)
    assert r.status_code == 200, r.text
    result = r.json()
    assert sorted(result) == sorted(IDS)
    for image_id in IDS:
        assert result[image_id]["label"] == image_id and "error" not in result[image_id]
        assert result[image_id]["params"]["classification"]["region"] == "leg"
    assert labels_of(small_server, "original") >= set(IDS)
    assert not labels_of(small_server, "final")  # the model's answer is never a clinician's label
    assert requests.get(f"{small_server.url}/info/", timeout=30).status_code == 200


def test_background_batch_infer_shows_progress_in_the_task_status(small_server):
    r = requests.post(f"{small_server.url}/batch/infer/muscle", json={"images": [IDS[1]], "split_sides": True,
                                                                      "label_tag": "batch_run"}, timeout=60)
    assert r.status_code == 200, r.text
    task_id = r.json()["id"]
    deadline = time.time() + 600
    while True:
        tasks = requests.get(f"{small_server.url}/batch/infer", params={"all": True}, timeout=30).json()
        task = next(t for t in tasks if t["id"] == task_id)
        if task["status"] not in ("SUBMITTED", "RUNNING"):
            break
        assert time.time() < deadline, task
        time.sleep(1)
    details = "\n".join(task["details"])
    assert task["status"] == "DONE", details
    assert "batch infer muscle: 1 images on cpu" in details
    assert "batch infer muscle: 1/1 images (0 failed)" in details and "ETA" in details
    assert labels_of(small_server, "batch_run") == {IDS[1]}


@pytest.mark.parametrize("model, query, params, status, words", [
    ("no_such_model", {}, None, 404, "unknown model"),
    ("muscle", {}, {"images": ["no_such_image"]}, 404, "unknown image"),
    ("muscle", {"images": "some"}, None, 422, ""),
    ("muscle", {}, {"images": "some"}, 422, "images"),
    ("muscle", {}, {"images": ["../../etc/passwd"]}, 422, "path"),
    ("muscle", {}, {"region": "arm"}, 422, "region"),
    ("muscle", {}, {"split_sides": "maybe"}, 422, "split_sides"),
    ("muscle", {}, {"max_workers": -1}, 422, "max_workers"),
    ("muscle", {}, {"device": "tpu"}, 422, "device"),
    ("muscle", {}, {"gpus": "7"}, 422, "gpus"),
    ("muscle", {}, {"label_tag": "../final"}, 422, "label_tag"),
])
def test_bad_batch_parameters_are_4xx_and_start_nothing(small_server, model, query, params, status, words):
    before = requests.get(f"{small_server.url}/batch/infer", params={"all": True}, timeout=30)
    count = len(before.json()) if before.status_code == 200 else 0
    r = requests.post(f"{small_server.url}/batch/infer/{model}", params=query, json=params, timeout=60)
    assert r.status_code == status, r.text
    assert words in str(r.json()["detail"])
    after = requests.get(f"{small_server.url}/batch/infer", params={"all": True}, timeout=30)
    assert (len(after.json()) if after.status_code == 200 else 0) == count
