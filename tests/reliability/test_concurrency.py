"""8 annotators at once while the model trains and slices are scored in the background.

Each client owns one uploaded leg phantom (96 x 96 x 6) and does ``ROUNDS`` times: infer,
save a label that differs every round (other annotated slices), read it back, ask for the next
sample. Meanwhile a tiny training round (1 epoch of 2 steps) and the slice scoring run in MONAI
Label's background processes, which write the same ``datastore_v2.json`` from another process,
and a reader polls that file from disk. Checked: no 5xx, every saved label reads back
byte-identical, the index always parses as JSON and, at the end, holds each image's *last*
save (no update lost between processes). Throughput and p50/p95 latencies are printed (run
with ``-s``); they are reported, not asserted.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom, sparse_label
from tests.conftest import Server, copy_studies

CLIENTS = 8
ROUNDS = 3
SLICES = [[0, 2], [1, 3, 5], [2, 4]]  # annotated slices per round: each round's label differs


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("concurrency")
    with Server(copy_studies(base / "studies"), base / "server.log") as server:
        yield server


def upload_images(srv, tmp_path) -> dict:
    """One leg phantom per client, uploaded through the API; returns {image id: phantom}."""
    phantoms = {}
    for i in range(CLIENTS):
        phantom = generate_phantom("leg", 500 + i, n_slices=6, spacing=(1.2, 1.2, 5.0), shape=(96, 96))
        path = save_nifti(tmp_path / f"c{i}.nii.gz", phantom.image, phantom.affine)
        r = requests.put(f"{srv.url}/datastore/image", params={"image": f"client_{i}"},
                         files={"file": (path.name, path.read_bytes())}, timeout=120)
        assert r.status_code == 200, r.text
        phantoms[f"client_{i}"] = phantom
    return phantoms


def client(srv, image_id, phantom, tmp_path, timings, errors, samples=None):
    """One annotator's session; every answer is recorded, every 5xx is an error; the next-sample
    answers go to ``samples`` when given."""
    session = requests.Session()

    def timed(kind, method, url, **kwargs):
        start = time.perf_counter()
        r = session.request(method, f"{srv.url}{url}", timeout=600, **kwargs)
        timings.append((kind, time.perf_counter() - start))
        if r.status_code >= 500:
            errors.append(f"{kind} {r.status_code}: {r.text[:300]}")
        return r

    for rnd, slices in enumerate(SLICES[:ROUNDS]):
        r = timed("infer", "POST", f"/infer/muscle", params={"image": image_id, "output": "json"})
        assert r.status_code == 200, r.text
        label = sparse_label(phantom.label, slices).astype(np.uint8)
        sent = save_nifti(tmp_path / f"{image_id}_{rnd}.nii.gz", label, phantom.affine, dtype=np.uint8).read_bytes()
        r = timed("save_label", "PUT", "/datastore/label", params={"image": image_id, "tag": "final"},
                  files={"label": ("label.nii.gz", sent)}, data={"params": json.dumps({"client_id": image_id})})
        assert r.status_code == 200, r.text
        r = timed("read_label", "GET", "/datastore/label", params={"label": image_id, "tag": "final"})
        assert r.status_code == 200 and r.content == sent, f"{image_id} round {rnd}: label read back differs"
        strategy = "uncertain_slices" if rnd == ROUNDS - 1 else "random"
        body = {"region": "leg"} if strategy == "uncertain_slices" else {}
        r = timed("next_sample", "POST", f"/activelearning/{strategy}", json=body)
        assert r.status_code == 200, r.text
        if samples is not None:
            samples.append((strategy, r.json()))
    return sent


def poll_index(path, stop, failures, reads):
    """Read the index from disk as another program (a backup, a second reader) would."""
    while not stop.is_set():
        try:
            json.loads(path.read_text())
            reads.append(1)
        except FileNotFoundError:
            pass
        except ValueError as exc:
            failures.append(str(exc))
        time.sleep(0.02)


def wait_idle(srv, kind, timeout=420):
    """Until MONAI Label runs no ``kind`` (train / scoring) task; returns the last task's status."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if requests.get(f"{srv.url}/{kind}/", params={"check_if_running": True}, timeout=30).status_code == 404:
            return requests.get(f"{srv.url}/{kind}/", timeout=30).json()
        time.sleep(2)
    raise TimeoutError(f"{kind} still running after {timeout} s")


def test_eight_clients_while_training_lose_no_label_and_keep_the_index_valid(srv, tmp_path):
    phantoms = upload_images(srv, tmp_path)
    stop, failures, reads, timings, errors = threading.Event(), [], [], [], []
    reader = threading.Thread(target=poll_index, args=(srv.studies / "datastore_v2.json", stop, failures, reads),
                              daemon=True)
    reader.start()
    try:
        run_clients_while_training(srv, phantoms, tmp_path, timings, errors, stop, failures, reads, reader)
    finally:
        stop.set()


def run_clients_while_training(srv, phantoms, tmp_path, timings, errors, stop, failures, reads, reader):
    r = requests.post(f"{srv.url}/train/segmentation_leg",
                      json={"epochs": 1, "steps_per_epoch": 2}, timeout=60)
    assert r.status_code == 200 and r.json()["status"] in ("SUBMITTED", "RUNNING"), r.text
    r = requests.post(f"{srv.url}/scoring/slice_uncertainty", timeout=60)  # a second background writer
    assert r.status_code == 200 or (r.status_code == 429 and "Already Running" in r.text), r.text  # the uploads queued it
    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = {image_id: pool.submit(client, srv, image_id, phantom, tmp_path, timings, errors)
                   for image_id, phantom in phantoms.items()}
        last = {image_id: f.result() for image_id, f in futures.items()}
    wall = time.perf_counter() - start
    train = wait_idle(srv, "train")
    wait_idle(srv, "scoring")
    stop.set()
    reader.join()

    assert errors == []
    assert failures == [] and len(reads) > 10  # the file on disk was always whole JSON
    assert train["status"] == "DONE", train
    index = json.loads((srv.studies / "datastore_v2.json").read_text())
    for image_id, sent in last.items():
        entry = index["objects"][image_id]["labels"]["final"]
        assert entry["info"]["annotated_slices"] == SLICES[ROUNDS - 1], (image_id, entry)  # the last save won
        assert (srv.studies / "labels" / "final" / f"{image_id}.nii.gz").read_bytes() == sent
    scored = [i for i, o in index["objects"].items() if "slice_scores" in o["image"].get("info", {})]
    assert scored, "slice scores (scoring process, strategy) are kept next to the labels"

    requests_done = len(timings)
    print(f"\n{CLIENTS} clients x {ROUNDS} rounds: {requests_done} requests in {wall:.1f} s "
          f"({requests_done / wall:.2f} req/s) while training and scoring ran")
    for kind in ("infer", "save_label", "read_label", "next_sample"):
        t = np.array([s for k, s in timings if k == kind])
        print(f"  {kind:12s} n={len(t):3d} p50 {np.percentile(t, 50):6.2f} s  p95 {np.percentile(t, 95):6.2f} s")
