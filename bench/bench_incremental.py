"""One incremental training round through the real server (issue: incremental training).

    .venv/bin/python -m bench.bench_incremental [--epochs 4] [--steps 25]

A severe-infiltration thigh phantom of 16 slices (held-out seed) gets a corrected label on 10
of them; ``POST /train/segmentation_thigh`` runs one round with the default options; we time
it from the request to the task's end (as a user waits for it) and measure the mean Dice
on the 6 uncorrected slices before and after, plus the publish guard's phantom validation.
Writes ``bench/results/incremental.json`` and ``bench/results/incremental.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import NO_BACKGROUND_SCORING  # noqa: E402
from bench.bench_networks import machine  # noqa: E402
from lib.data.io import save_nifti  # noqa: E402
from lib.data.phantoms.phantom import generate_phantom  # noqa: E402
from lib.evaluation.metrics import mean_dice  # noqa: E402
from tests.conftest import Server  # noqa: E402
from tests.server.test_infer_api import multipart  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SUBJECT = "severe_thigh_20009"
CORRECTED = [0, 1, 3, 4, 6, 7, 9, 10, 12, 13]


def uncorrected_dice(server, truth, tmp: Path) -> float:
    r = requests.post(f"{server.url}/infer/segmentation_thigh", params={"image": SUBJECT}, timeout=600)
    r.raise_for_status()
    (tmp / "pred.nii.gz").write_bytes(multipart(r)["image"])
    pred = np.asarray(nib.load(tmp / "pred.nii.gz").dataobj)
    rest = [k for k in range(pred.shape[2]) if k not in CORRECTED]
    return mean_dice(pred[:, :, rest], truth[:, :, rest], 13)


def run(params: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        studies = tmp / "studies"
        studies.mkdir()
        phantom = generate_phantom("thigh", 20_009, n_slices=16, severity="severe", spacing=(1.037037, 1.037037, 5.0))
        save_nifti(studies / f"{SUBJECT}.nii.gz", phantom.image, phantom.affine)
        server = Server(studies, tmp / "server.log", NO_BACKGROUND_SCORING)
        try:
            server.wait_ready()
            before = uncorrected_dice(server, phantom.label, tmp)
            sparse = np.zeros_like(phantom.label)
            sparse[:, :, CORRECTED] = phantom.label[:, :, CORRECTED]
            save_nifti(tmp / "label.nii.gz", sparse.astype(np.uint8), phantom.affine)
            with open(tmp / "label.nii.gz", "rb") as f:
                requests.put(f"{server.url}/datastore/label", params={"image": SUBJECT, "tag": "final"},
                             data={"params": json.dumps({"annotated_slices": CORRECTED})},
                             files={"label": ("label.nii.gz", f)}, timeout=60).raise_for_status()
            start = time.time()
            task_id = requests.post(f"{server.url}/train/segmentation_thigh", json=params, timeout=60).json()["id"]
            while True:
                tasks = requests.get(f"{server.url}/train/", params={"all": True}, timeout=30).json()
                task = next(t for t in tasks if t["id"] == task_id)
                if task["status"] not in ("SUBMITTED", "RUNNING"):
                    break
                time.sleep(1)
            wall = time.time() - start
            stats = requests.get(f"{server.url}/info/", timeout=30).json()["train_stats"]["segmentation_thigh"]
            result = stats["results"]["segmentation_thigh"]
            after = uncorrected_dice(server, phantom.label, tmp)
        finally:
            server.stop()
    return {"machine": machine(), "corrected_slices": len(CORRECTED), "params": params, "task_status": task["status"],
            "round_seconds": round(wall, 1), "fit_seconds": result["history"]["seconds"],
            "status": result["status"], "dice_uncorrected_before": round(before, 4),
            "dice_uncorrected_after": round(after, 4), "gain": round(after - before, 4),
            "phantom_val_live": result["live_scores"]["phantom_val"],
            "phantom_val_candidate": result["candidate_scores"]["phantom_val"]}


def write(res: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "incremental.json").write_text(json.dumps(res, indent=2) + "\n")
    md = ["| corrected slices | round (request to end) | of which fine-tuning | outcome | Dice on uncorrected slices | phantom validation (guard) |",
          "| --- | --- | --- | --- | --- | --- |",
          f"| {res['corrected_slices']} | {res['round_seconds']} s | {res['fit_seconds']} s | {res['status']} | "
          f"{res['dice_uncorrected_before']} → {res['dice_uncorrected_after']} ({res['gain']:+.3f}) | "
          f"{res['phantom_val_live']} → {res['phantom_val_candidate']} |",
          "", f"Machine: {res['machine']}; options {res['params'] or 'defaults'}."]
    (RESULTS / "incremental.md").write_text("\n".join(md) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps", type=int)
    args = parser.parse_args()
    params = {k: v for k, v in (("epochs", args.epochs), ("steps_per_epoch", args.steps)) if v}
    res = run(params)
    write(res)
    print((RESULTS / "incremental.md").read_text())


if __name__ == "__main__":
    main()
