"""Faults: kill -9 during label saves and during training, and a full disk during a save.

After each kill the server is started again on the same studies and model folders and must
come up with a consistent state: the index parses, each label file is one of the labels sent
(never a part) and its index info belongs to that very file; the live model and every kept
version load as checkpoints, ``history.json`` parses, and a new training round can run (no
stuck lock). The kill is ``SIGKILL`` to the server *and* its background processes (training
runs in one), as a crash or an OOM kill of the container would do.

A kill lands at a random point, rarely between the two renames of a save; that exact point is
also tested deterministically in-process (the file system is left as a kill there leaves it).
The full disk is real: the studies live on a small tmpfs (needs root; skipped elsewhere).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import requests

import lib.data.datastore.safe as safe
from lib.data.datastore.local import MuscleDatastore
from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom, sparse_label
from lib.networks.checkpoint import load_checkpoint
from tests.conftest import ROOT, Server, copy_studies

IMAGE = "fault_leg"
VARIANTS = [[0, 2], [1, 3, 5], [4], [0, 1, 2, 3]]  # annotated slices of the labels a client cycles through


def kill_tree(server: Server) -> None:
    """SIGKILL the server and every process it started (MONAI Label's background tasks)."""
    root = psutil.Process(server.process.pid)
    for proc in [*root.children(recursive=True), root]:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    server.process.wait(timeout=30)
    server._log.close()


def restart(server: Server, tmp_path, name: str) -> Server:
    return Server(server.studies, tmp_path / f"{name}.log", model_dir=server.model_dir).__enter__()


@pytest.fixture
def phantom_and_labels(tmp_path):
    phantom = generate_phantom("leg", 77, n_slices=6, spacing=(1.2, 1.2, 5.0), shape=(96, 96))
    image = save_nifti(tmp_path / "image.nii.gz", phantom.image, phantom.affine)
    labels = {tuple(v): save_nifti(tmp_path / f"l{i}.nii.gz", sparse_label(phantom.label, v).astype(np.uint8),
                                   phantom.affine, dtype=np.uint8).read_bytes() for i, v in enumerate(VARIANTS)}
    return image, labels


def assert_label_consistent(studies, labels: dict) -> None:
    """The stored label is one of those sent, whole, and its info describes that same file."""
    index = json.loads((studies / "datastore_v2.json").read_text())
    entry = index["objects"][IMAGE]["labels"].get("final")
    if entry is None:  # killed before the first save completed
        return
    stored = (studies / "labels" / "final" / f"{IMAGE}{entry['ext']}").read_bytes()
    slices = next((list(v) for v, data in labels.items() if data == stored), None)
    assert slices is not None, "the stored label is none of the labels sent (partial or mixed)"
    assert entry["info"].get("annotated_slices", slices) == slices, (entry["info"], slices)


def test_kill_during_label_saves_leaves_whole_labels_with_their_own_info(tmp_path, phantom_and_labels):
    image, labels = phantom_and_labels
    servers = [Server(copy_studies(tmp_path / "studies"), tmp_path / "s0.log").__enter__()]
    try:
        r = requests.put(f"{servers[-1].url}/datastore/image", params={"image": IMAGE},
                         files={"file": ("i.nii.gz", image.read_bytes())}, timeout=60)
        assert r.status_code == 200, r.text
        rng = random.Random(9)
        for cycle in range(3):
            answers = kill_while_saving(servers[-1], labels, rng.uniform(0.5, 2.0))
            assert answers and set(answers) == {200}, answers  # saves happened, all fine until the kill
            servers.append(restart(servers[-1], tmp_path, f"s{cycle + 1}"))
            assert_label_consistent(servers[-1].studies, labels)
            r = requests.get(f"{servers[-1].url}/datastore/label", params={"label": IMAGE, "tag": "final"},
                             timeout=30)
            assert r.status_code == 200 and r.content in labels.values()
    finally:
        servers[-1].stop()


def kill_while_saving(server: Server, labels: dict, after_s: float) -> list[int]:
    """Save label after label from a thread; SIGKILL the server after ``after_s``; the answers."""
    stop, answers = threading.Event(), []

    def save_forever():
        while not stop.is_set():
            data = labels[tuple(VARIANTS[len(answers) % len(VARIANTS)])]
            try:
                r = requests.put(f"{server.url}/datastore/label", params={"image": IMAGE, "tag": "final"},
                                 files={"label": ("l.nii.gz", data)}, timeout=30)
                answers.append(r.status_code)
            except requests.RequestException:
                return  # the server died under us

    saver = threading.Thread(target=save_forever, daemon=True)
    saver.start()
    time.sleep(after_s)
    kill_tree(server)
    stop.set()
    saver.join(timeout=30)
    return answers


def test_a_kill_between_the_two_renames_is_completed_at_the_next_start(tmp_path, phantom_and_labels, monkeypatch):
    """In-process: the label rename 'never happens' (what a kill there leaves), then a restart."""
    image, labels = phantom_and_labels
    studies = copy_studies(tmp_path / "studies")
    store = MuscleDatastore(str(studies), auto_reload=False)
    store.add_image(IMAGE, str(image), {})
    first, second = (tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    first.write_bytes(labels[tuple(VARIANTS[0])])
    second.write_bytes(labels[tuple(VARIANTS[1])])
    store.save_label(IMAGE, str(first), "final", {})

    class Killed(BaseException):
        pass

    real_commit = safe.commit_staged

    def die_before_label_rename(tmp, path, durable=True):
        if str(path).endswith(f"{IMAGE}.nii.gz") and "labels" in str(path):
            raise Killed  # the process is gone: the staged file stays where it is
        return real_commit(tmp, path, durable)

    monkeypatch.setattr(safe, "commit_staged", die_before_label_rename)
    with pytest.raises(Killed):
        store.save_label(IMAGE, str(second), "final", {})
    monkeypatch.setattr(safe, "commit_staged", real_commit)
    stored = studies / "labels" / "final" / f"{IMAGE}.nii.gz"
    assert stored.read_bytes() == labels[tuple(VARIANTS[0])]  # the crash state: new index, old label file
    MuscleDatastore(str(studies), auto_reload=False)  # the next start
    assert stored.read_bytes() == labels[tuple(VARIANTS[1])]
    assert_label_consistent(studies, labels)
    assert not list(stored.parent.glob(".*.tmp"))


def test_kill_during_training_keeps_the_live_model_and_versions_loadable(tmp_path):
    server = Server(copy_studies(tmp_path / "studies"), tmp_path / "t0.log").__enter__()
    r = requests.post(f"{server.url}/train/segmentation_leg", json={"epochs": 3, "steps_per_epoch": 15}, timeout=60)
    assert r.status_code == 200, r.text
    stats = server.model_dir / "stats" / "segmentation_leg.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (stats.exists() and json.loads(stats.read_text()).get("epoch", 0) >= 1):
        time.sleep(0.5)
    assert stats.exists(), server.log()
    time.sleep(random.Random(3).uniform(0, 3))  # somewhere in the later epochs, validation or publishing
    kill_tree(server)

    for path in [server.model_dir / "segmentation_leg.pt", *server.model_dir.glob("versions/*/v*.pt")]:
        if path.exists():
            load_checkpoint(path)  # raises on a partial or foreign file
    for path in server.model_dir.glob("versions/*/*.json"):
        json.loads(path.read_text())
    listing = subprocess.run([sys.executable, str(ROOT / "main.py"), "models", "--model-dir", str(server.model_dir)],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert listing.returncode == 0, listing.stderr

    server = restart(server, tmp_path, "t1")
    try:  # the round's file lock died with the process: a new round runs to the end
        r = requests.post(f"{server.url}/train/segmentation_leg", json={"epochs": 1, "steps_per_epoch": 2}, timeout=60)
        assert r.status_code == 200, r.text
        deadline = time.time() + 400
        while time.time() < deadline:
            r = requests.get(f"{server.url}/train/", timeout=30)
            if r.status_code == 200 and r.json()["status"] in ("DONE", "ERROR"):
                break
            time.sleep(2)
        assert r.json()["status"] == "DONE", r.json()
        r = requests.post(f"{server.url}/infer/segmentation_leg", params={"image": "real_leg_t1", "output": "json"},
                          timeout=300)
        assert r.status_code == 200, r.text
    finally:
        server.stop()


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("a full disk needs a tmpfs mount (root); not available here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_save_cleanly_and_the_server_serves_on(tmp_path, tiny_disk, phantom_and_labels):
    image, labels = phantom_and_labels
    server = Server(copy_studies(tiny_disk / "studies"), tmp_path / "d.log").__enter__()
    try:
        r = requests.put(f"{server.url}/datastore/image", params={"image": IMAGE},
                         files={"file": ("i.nii.gz", image.read_bytes())}, timeout=60)
        assert r.status_code == 200, r.text
        first = labels[tuple(VARIANTS[0])]
        assert requests.put(f"{server.url}/datastore/label", params={"image": IMAGE, "tag": "final"},
                            files={"label": ("l.nii.gz", first)}, timeout=60).status_code == 200
        index = (server.studies / "datastore_v2.json").read_bytes()
        filler = tiny_disk / "filler"
        with open(filler, "wb", buffering=0) as f:  # fill the disk to the last byte
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        r = requests.put(f"{server.url}/datastore/label", params={"image": IMAGE, "tag": "final"},
                         files={"label": ("l.nii.gz", labels[tuple(VARIANTS[1])])}, timeout=60)
        assert r.status_code == 507 and "no space left" in r.json()["detail"], r.text
        assert (server.studies / "labels" / "final" / f"{IMAGE}.nii.gz").read_bytes() == first
        assert (server.studies / "datastore_v2.json").read_bytes() == index
        assert not list(server.studies.rglob(".*.tmp"))  # nothing half-written left behind
        assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
        filler.unlink()
        r = requests.put(f"{server.url}/datastore/label", params={"image": IMAGE, "tag": "final"},
                         files={"label": ("l.nii.gz", labels[tuple(VARIANTS[1])])}, timeout=60)
        assert r.status_code == 200, r.text
    finally:
        server.stop()
