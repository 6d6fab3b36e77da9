"""Inference through the real server, the way OHIF and Slicer call it."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import requests
from requests_toolbelt.multipart.decoder import MultipartDecoder

from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom


def multipart(response):
    parts = {}
    for part in MultipartDecoder.from_response(response).parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = disposition.split('name="')[1].split('"')[0]
        parts[name] = part.content
    return parts


def first_image_id(server, region):
    images = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    return sorted(i for i in images if region in i)[0]


def test_infer_muscle_returns_label_and_measurements(server, tmp_path):
    image_id = first_image_id(server, "thigh")
    r = requests.post(f"{server.url}/infer/muscle", params={"image": image_id},
                      data={"params": json.dumps({"split_sides": True})}, timeout=600)
    assert r.status_code == 200, r.text
    parts = multipart(r)
    result = json.loads(parts["params"])
    (tmp_path / "label.nii.gz").write_bytes(parts["image"])
    label = nib.load(tmp_path / "label.nii.gz")
    image = nib.load(server.studies / f"{image_id}.nii.gz")
    assert label.shape == image.shape and np.allclose(label.affine, image.affine, atol=1e-4)
    assert any(name.endswith("_right") for name in result["measurements"])
    assert all(m["volume_ml"] > 0 for m in result["measurements"].values())
    assert result["classification"]["region"] == "thigh"


def test_infer_classifier_returns_json_only(server):
    r = requests.post(f"{server.url}/infer/classifier", params={"image": first_image_id(server, "leg")}, timeout=300)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["region"] == "leg"
    assert all(s["region"] in ("thigh", "leg") for s in result["slices"])


def test_uploaded_file_and_session_are_inferred(server, tmp_path):
    phantom = generate_phantom("leg", 20_700, n_slices=3, spacing=(1.2, 1.2, 5.0), shape=(320, 320))
    path = tmp_path / "upload.nii.gz"
    save_nifti(path, phantom.image, phantom.affine)
    with open(path, "rb") as f:
        r = requests.post(f"{server.url}/infer/segmentation_leg", params={"output": "json"},
                          files={"file": ("upload.nii.gz", f)}, timeout=300)
    assert r.status_code == 200, r.text
    assert "soleus" in r.json()["measurements"]
    with open(path, "rb") as f:
        session = requests.put(f"{server.url}/session/", files={"files": ("upload.nii.gz", f)}, timeout=120).json()
    r = requests.post(f"{server.url}/infer/muscle", params={"session_id": session["session_id"], "output": "json"},
                      timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["classification"]["region"] == "leg"


def test_bad_requests_are_4xx_with_a_message_and_server_keeps_serving(server, tmp_path):
    r = requests.post(f"{server.url}/infer/muscle", params={"image": "no_such_image"}, timeout=60)
    assert r.status_code == 404 and "unknown image" in r.json()["detail"]
    image_id = first_image_id(server, "leg")
    r = requests.post(f"{server.url}/infer/muscle", params={"image": image_id},
                      data={"params": json.dumps({"region": "arm"})}, timeout=60)
    assert r.status_code == 422 and "region" in r.json()["detail"]
    junk = tmp_path / "junk.nii.gz"
    junk.write_text("not an image")
    with open(junk, "rb") as f:
        r = requests.post(f"{server.url}/infer/muscle", files={"file": ("junk.nii.gz", f)}, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200


def test_viewer_extras_are_accepted(server, tmp_path):
    """What Slicer's MONAI Label module sends with every request: NRRD result, dtype, client id."""
    params = {"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False,
              "client_id": "user-xyz", "label_info": [{"name": "soleus", "idx": 13}], "keep_largest": True}
    r = requests.post(f"{server.url}/infer/muscle", params={"image": first_image_id(server, "leg")},
                      data={"params": json.dumps(params)}, timeout=300)
    assert r.status_code == 200, r.text
    parts = multipart(r)
    (tmp_path / "label.nrrd").write_bytes(parts["image"])
    assert parts["image"][:4] == b"NRRD"
    assert "soleus" in json.loads(parts["params"])["measurements"]


def test_no_muscle_label_is_left_on_the_femur_of_a_real_thigh(server, tmp_path):
    """The shipped thigh segmenter labels the femur of the embedded real Dixon thigh as muscle on
    its distal slice; ``clear_bone`` (the default) takes those labels off and nothing else."""
    labels = {}
    for clear in (False, True):
        params = {"slices": [0], "clear_bone": clear, "cleanup": False}
        r = requests.post(f"{server.url}/infer/segmentation_thigh", params={"image": "real_thigh_dixon"},
                          data={"params": json.dumps(params)}, timeout=300)
        assert r.status_code == 200, r.text
        (tmp_path / f"{clear}.nii.gz").write_bytes(multipart(r)["image"])
        labels[clear] = np.asarray(nib.load(tmp_path / f"{clear}.nii.gz").dataobj)[:, :, 0]
    kept, painted = labels[True] > 0, labels[False] > 0
    assert not (kept & ~painted).any()  # nothing added
    assert np.array_equal(labels[True][kept], labels[False][kept])  # nothing relabelled
    cleared = painted & ~kept
    assert cleared.sum() * 0.8 * 0.8 > 300  # mm^2: at least the marrow of one femur
    r = requests.post(f"{server.url}/infer/segmentation_thigh", params={"image": "real_thigh_dixon"},
                      data={"params": json.dumps({"clear_bone": "maybe"})}, timeout=60)
    assert r.status_code == 422 and "clear_bone" in r.json()["detail"]


def test_a_slab_s_faded_end_slices_get_no_labels_unless_asked(server, tmp_path):
    """A 3D slab's signal fades at both ends (``lib.inference.limbs.faded_end_slices``): those
    slices are named in the answer and left unlabelled; ``skip_faded_ends: false`` labels them."""
    phantom = generate_phantom("leg", 20_701, n_slices=10, spacing=(1.2, 1.2, 5.0), shape=(320, 320))
    gains = np.array([0.1, 0.15] + [1] * 6 + [0.15, 0.1], np.float32)
    path = tmp_path / "slab.nii.gz"
    save_nifti(path, phantom.image * gains, phantom.affine)
    labels, results = {}, {}
    for skip in (True, False):
        with open(path, "rb") as f:
            r = requests.post(f"{server.url}/infer/segmentation_leg", files={"file": ("slab.nii.gz", f)},
                              data={"params": json.dumps({"skip_faded_ends": skip})}, timeout=300)
        assert r.status_code == 200, r.text
        parts = multipart(r)
        results[skip] = json.loads(parts["params"])
        (tmp_path / f"{skip}.nii.gz").write_bytes(parts["image"])
        labels[skip] = np.asarray(nib.load(tmp_path / f"{skip}.nii.gz").dataobj)
    ends, middle = [0, 1, 8, 9], list(range(2, 8))
    assert results[True]["faded_slices"] == ends and results[False]["faded_slices"] == []
    assert not labels[True][:, :, ends].any()
    assert all(labels[True][:, :, k].any() for k in middle)
    assert np.array_equal(labels[True][:, :, middle], labels[False][:, :, middle])
    assert labels[False][:, :, ends].any()
    with open(path, "rb") as f:
        r = requests.post(f"{server.url}/infer/segmentation_leg", files={"file": ("slab.nii.gz", f)},
                          data={"params": json.dumps({"skip_faded_ends": "maybe"})}, timeout=60)
    assert r.status_code == 422 and "skip_faded_ends" in r.json()["detail"]
