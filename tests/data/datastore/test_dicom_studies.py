"""DICOM series in a local studies folder, through the real server: the PACS path's series and
echo rule (``lib.transforms.dicom_series``), served as a NIfTI volume, the choice in the image info.

The studies folder (a copy of the embedded one) gets a raw GE multi-echo series folder
(``ge_leg``: 3 positions x 2 echoes x magnitude, phase, real, imaginary = 24 files) and a folder
holding two series (``study_mixed``), which is logged and not served.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import requests

from lib.data.dicom.export import volume_to_series
from lib.data.io import save_nifti
from lib.data.phantoms.phantom import sparse_label
from tests.conftest import Server, copy_studies
from tests.transforms.test_dicom_series import ge_multi_echo_folder, write

IMAGE_ID = "ge_leg"
SAID = "echo 1 magnitude: 3 of 24 images (series holds 2 echo(es) of imaginary, magnitude, phase, real)"


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    base = tmp_path_factory.mktemp("dicom_studies")
    studies = copy_studies(base / "studies")
    _, phantom = ge_multi_echo_folder(studies / IMAGE_ID, shape=(200, 160))
    volume = np.full((32, 32, 2), 100.0, np.float32)
    write(volume_to_series(volume, np.eye(4), "t1", description="AX T1")
          + volume_to_series(volume, np.eye(4), "t2", description="AX T2"), studies / "study_mixed")
    return studies, phantom


@pytest.fixture(scope="module")
def srv(studies, tmp_path_factory):
    with Server(studies[0], tmp_path_factory.mktemp("dicom_studies_log") / "server.log") as server:
        yield server


def test_the_series_folder_is_served_and_the_folder_of_two_series_is_logged_not_served(srv):
    objects = requests.get(f"{srv.url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    assert IMAGE_ID in objects and "study_mixed" not in objects
    assert "phantom_leg_s0003_severe" in objects  # the NIfTI studies beside them as before
    log = srv.log_path.read_text()
    assert "Skipping DICOM folder" in log and "series study_mixed: the folder holds 2 DICOM series, not one" in log


def test_image_info_says_which_images_and_the_download_is_the_first_echo_magnitude(srv, studies, tmp_path):
    info = requests.get(f"{srv.url}/datastore/image/info", params={"image": IMAGE_ID}, timeout=60).json()
    assert info["volume"] == SAID
    assert info["path"].endswith(f".dicom_volumes/{IMAGE_ID}.nii.gz") and info["name"] == f"{IMAGE_ID}.nii.gz"
    r = requests.get(f"{srv.url}/datastore/image", params={"image": IMAGE_ID}, timeout=60)
    assert r.status_code == 200
    (tmp_path / "served.nii.gz").write_bytes(r.content)
    served = nib.load(tmp_path / "served.nii.gz")
    phantom = studies[1]
    assert served.shape == phantom.image.shape  # 3 slices, not 24
    np.testing.assert_allclose(np.asarray(served.dataobj), phantom.image, atol=1e-3)
    np.testing.assert_allclose(served.affine, phantom.affine, atol=1e-3)
    assert len(list((studies[0] / IMAGE_ID).iterdir())) == 24  # the user's folder is untouched


def test_infer_and_save_label_on_the_dicom_series(srv, studies, tmp_path):
    phantom = studies[1]
    r = requests.post(f"{srv.url}/infer/muscle", params={"image": IMAGE_ID, "output": "json"},
                      data={"params": json.dumps({"save_label": True})}, timeout=600)
    assert r.status_code == 200, r.text
    original = nib.load(srv.studies / "labels" / "original" / f"{IMAGE_ID}.nii.gz")
    assert original.shape == phantom.image.shape

    label = sparse_label(phantom.label, [1])
    path = save_nifti(tmp_path / "label.nii.gz", label, phantom.affine, dtype=np.uint8)
    with open(path, "rb") as f:
        r = requests.put(f"{srv.url}/datastore/label", params={"image": IMAGE_ID, "tag": "final"},
                         files={"label": ("label.nii.gz", f)}, data={"params": "{}"}, timeout=120)
    assert r.status_code == 200, r.text
    info = requests.get(f"{srv.url}/datastore/label/info", params={"label": IMAGE_ID, "tag": "final"},
                        timeout=30).json()
    assert info["annotated_slices"] == [1]
    stored = nib.load(srv.studies / "labels" / "final" / f"{IMAGE_ID}.nii.gz")
    assert np.array_equal(np.asarray(stored.dataobj), label)
