"""3D Slicer's MONAI Label sequence against the local datastore (a copy of the embedded studies).

The same ``run_sequence`` runs against Orthanc in ``test_orthanc.py``; here the checks read
the local datastore's own record of the saved label.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import itk
import numpy as np
import pytest
import requests

from lib.annotations import to_global, value_map
from lib.labels import SIDE_OFFSET
from tests.conftest import Server, copy_studies
from tests.viewers.slicer_sequence import run_sequence


def stored_label(url, image_id, tmp_path):
    """The saved label as the server hands it back (ITK order) and the info stored with it."""
    r = requests.get(f"{url}/datastore/label", params={"label": image_id, "tag": "final"}, timeout=60)
    assert r.status_code == 200, r.text
    path = tmp_path / ("stored" + "".join(Path(r.headers["content-disposition"].split("filename=")[-1].strip('"')).suffixes))
    path.write_bytes(r.content)
    objects = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    return np.asarray(itk.array_from_image(itk.imread(str(path)))), objects[image_id]["labels"]["final"]["info"]


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    """Its own server: the sequence saves a label and publishes (or not) a trained model."""
    base = tmp_path_factory.mktemp("slicer")
    studies = copy_studies(base / "studies")
    shutil.rmtree(studies / "labels")  # unlabelled: the round trains on the Slicer label alone
    with Server(studies, base / "server.log") as srv:
        yield srv


def test_slicer_sequence_on_the_local_datastore(local_server, tmp_path):
    srv = local_server
    seq = run_sequence(srv.url, tmp_path / "slicer")

    # Refresh: what Slicer fills its model and strategy boxes with
    assert "muscle" in seq.info["models"] and seq.info["models"]["muscle"]["type"] == "segmentation"
    assert "uncertain_slices" in seq.info["strategies"] and "muscle" in seq.info["trainers"]

    # Next Sample: an image of the datastore and a slice index inside it, never an empty slice
    assert seq.sample["id"] in requests.get(f"{srv.url}/datastore/", params={"output": "all"},
                                            timeout=30).json()["objects"]
    n_slices = seq.image.shape[0]
    assert 0 <= seq.sample["slice"] < n_slices and seq.sample["slice"] == seq.corrected_slices[0]
    assert all(0 <= k < n_slices for k in seq.sample["slices"])
    assert seq.prediction[seq.sample["slice"]].any()  # the model sees muscle on the suggested slice
    info = requests.get(f"{srv.url}/datastore/image/info", params={"image": seq.sample["id"]}, timeout=30).json()
    assert info["suggested_slices"]["slices"] == seq.sample["slices"]  # kept for a viewer plugin

    # Infer: an NRRD on the image's grid, both sides labelled, measurements per side
    assert seq.prediction.shape == seq.image.shape
    assert (seq.prediction > SIDE_OFFSET).any() and ((seq.prediction > 0) & (seq.prediction <= SIDE_OFFSET)).any()
    assert any(name.endswith("_left") for name in seq.infer_params["measurements"])

    # Submit label: stored under our values, whatever Slicer's segment order and names
    assert seq.label_info[0]["idx"] == 1 and seq.label.max() == len(seq.label_info)
    assert seq.label_info[0]["name"].endswith(("- Left", "- Right"))
    stored, final = stored_label(srv.url, seq.sample["id"], tmp_path)
    assert final["annotated_slices"] == seq.corrected_slices  # the slices that hold muscle
    as_ours = to_global(stored, value_map(final.get("label_info")))
    assert np.array_equal(as_ours, seq.expected)

    # Train: the round Slicer started ran to its end and used the corrected slices
    assert seq.train_task["status"] == "DONE", seq.train_task
    stats = requests.get(f"{srv.url}/info/", timeout=30).json()["train_stats"]["muscle"]
    used = {i["image"]: i for i in stats["images"]}[seq.sample["id"]]
    assert used["annotated_slices"] == seq.corrected_slices
    assert used["voxels"] == {str(v): int((seq.expected == v).sum()) for v in np.unique(seq.expected) if v}
    result = stats["results"][f"segmentation_{seq.sample['region']}"]
    assert result["train_slices"] == len(seq.corrected_slices), result  # the only labelled image
    assert result["status"] in ("published", "rejected"), result
