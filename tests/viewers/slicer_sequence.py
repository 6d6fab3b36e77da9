"""The REST sequence 3D Slicer's MONAI Label module runs, through ``MONAILabelClient``.

Slicer cannot be installed here, but its module speaks only the REST API, through this very
client (``plugins/slicer/MONAILabel``: ``MONAILabelLogic`` wraps ``MONAILabelClient``):

1. *Refresh*: ``info()``;
2. *Next Sample* with the strategy ``uncertain_slices``: ``next_sample(strategy, {})``, then the
   image is fetched from ``/datastore/image`` when its path is not local (Slicer's download);
3. *Run* with the model ``muscle``: ``infer(model, id, {"result_extension": ".nrrd",
   "result_dtype": "uint8"})`` (the two params Slicer adds);
4. *Submit Label*: the segmentation exported as a label map (NRRD) whose values are the
   *positions* of Slicer's segments, with ``{"label_info": [{"name", "idx"}]}``, tag empty;
5. *Train*: ``train_start(model, params)``, then ``train_status(False)`` polled, as its
   progress bar does.

``run_sequence`` runs it against any server URL (local datastore or DICOMweb) and returns
what each step answered, for the caller's datastore-specific checks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import itk
import numpy as np
import requests
from monailabel.client import MONAILabelClient

from lib.labels import SIDE_OFFSET, all_labels

SLICER_INFER_PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8"}
TINY_ROUND = {"epochs": 1, "steps_per_epoch": 2, "val_fraction": 0}


def slicer_name(value: int) -> str:
    """Slicer's display style for a side-split value: 19 -> ``"Vastus Lateralis - Left"``."""
    names = {v: k for k, v in all_labels().items()}
    side = "Left" if value > SIDE_OFFSET else "Right"
    return f"{names[value - SIDE_OFFSET if value > SIDE_OFFSET else value].replace('_', ' ').title()} - {side}"


@dataclass
class SequenceResult:
    """What each step of the sequence answered (arrays are ITK order: slice axis first)."""

    info: dict
    sample: dict
    image: np.ndarray  # the image Slicer loaded, (Z, Y, X)
    prediction: np.ndarray  # the infer result, global side-split values
    infer_params: dict
    label: np.ndarray  # the submitted Slicer label map: segment positions
    label_info: list[dict]
    expected: np.ndarray  # the submitted label in our global values
    corrected_slices: list[int]
    save_answer: dict
    train_task: dict | None = None
    train_polls: list[str] = field(default_factory=list)


def fetch_image(url: str, image_id: str, dest: Path) -> itk.Image:
    """Slicer's download of a sample whose path is not local: ``GET /datastore/image``."""
    r = requests.get(f"{url}/datastore/image", params={"image": image_id}, timeout=300)
    assert r.status_code == 200, r.text
    name = r.headers.get("content-disposition", "").split("filename=")[-1].strip('"') or "image.nii.gz"
    path = dest / f"sample_{Path(name).name}"
    path.write_bytes(r.content)
    return itk.imread(str(path))


def slicer_label(prediction: np.ndarray, slices: list[int], reverse: bool = True) -> tuple[np.ndarray, list[dict]]:
    """A Slicer segmentation exported as a label map: the prediction kept on ``slices`` only
    (the corrected ones), each muscle's value replaced by its segment position (1-based) in
    Slicer's list, which here is in the reverse of our order (names in Slicer's display style)."""
    kept = np.zeros_like(prediction)
    kept[slices] = prediction[slices]
    values = sorted((int(v) for v in np.unique(kept) if v), reverse=reverse)
    label = np.zeros(kept.shape, np.uint8)
    info = []
    for position, value in enumerate(values, start=1):
        label[kept == value] = position
        info.append({"name": slicer_name(value), "idx": position})
    return label, info


def wait_for_training(client: MONAILabelClient, task_id: str, timeout: float, polls: list[str]) -> dict:
    """Poll ``train_status`` as Slicer's progress timer does, until the round ends."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.train_status(False)
        polls.append(status.get("status", ""))
        if status.get("id") == task_id and status.get("status") not in ("SUBMITTED", "RUNNING"):
            return status
        time.sleep(2)
    raise TimeoutError(f"training did not end in {timeout} s; last status {polls[-1:]}")


def wait_for_scoring(url: str, timeout: float = 600) -> None:
    """Until the slice scoring the server queued at start-up has run: *Next Sample* never waits
    for it, and answers an unscored image (no region yet) while it runs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = requests.get(f"{url}/scoring/", params={"all": True}, timeout=30)
        if r.status_code == 404 or all(t["status"] not in ("SUBMITTED", "RUNNING") for t in r.json()):
            return
        time.sleep(1)
    raise TimeoutError(f"scoring still busy after {timeout} s")


def run_sequence(url: str, tmp: Path, train: bool = True, train_params: dict | None = None,
                 train_timeout: float = 900) -> SequenceResult:
    """Info, next sample (``uncertain_slices``), infer ``muscle``, save a Slicer label, train.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8000``.
        tmp: a folder for the client's files (Slicer's temp dir).
        train: also start a ``muscle`` training round and poll it to its end.
        train_params: the round's options (default: a tiny round, 1 epoch of 2 steps).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    client = MONAILabelClient(url, tmpdir=str(tmp), client_id="slicer-test")
    info = client.info()

    wait_for_scoring(url)  # as a clinician who opens Slicer once the server scored its images
    sample = client.next_sample("uncertain_slices", {})
    image = fetch_image(url, sample["id"], tmp)
    array = itk.array_from_image(image)

    # split_sides: the segments Slicer shows are then per side, as a clinician corrects them
    result_file, infer_params = client.infer("muscle", sample["id"], {**SLICER_INFER_PARAMS, "split_sides": True})
    assert result_file and result_file.endswith(".nrrd"), result_file
    result = itk.imread(result_file)
    prediction = np.asarray(itk.array_from_image(result)).astype(np.uint8)

    slices = [int(k) for k in sample.get("slices", [sample["slice"]])]
    label, label_info = slicer_label(prediction, slices)
    expected = np.zeros_like(prediction)
    expected[slices] = prediction[slices]
    label_image = itk.image_from_array(label)
    label_image.CopyInformation(result)  # Slicer exports on the volume's own geometry
    label_path = tmp / "slicer_label.nrrd"
    itk.imwrite(label_image, str(label_path))
    save_answer = client.save_label(sample["id"], str(label_path), params={"label_info": label_info})

    out = SequenceResult(info, sample, np.asarray(array), prediction, infer_params, label, label_info,
                         expected, slices, save_answer)
    if train:
        task = client.train_start("muscle", dict(train_params or TINY_ROUND))
        out.train_task = wait_for_training(client, task["id"], train_timeout, out.train_polls)
    return out
