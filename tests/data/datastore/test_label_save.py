"""Labels saved through the real server (``PUT /datastore/label``) are checked before storing.

One server per module, on its own copy of the studies (labels are written). A small leg
phantom (96 x 96 x 6 at 1 x 1 x 5 mm) is uploaded as the image; every rejected save must
answer 4xx with ``{"detail": message}`` and leave the stored final label and the datastore
file exactly as they were.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import requests

from lib import labels as L
from lib.annotations import to_global, value_map
from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom, sparse_label
from tests.conftest import Server, copy_studies

IMAGE_ID = "upload_leg_small"
SLICES = [1, 3, 4]
SLICER_ORDER = ["peroneus", "soleus", "tibialis_anterior", "gastrocnemius_lateralis", "extensor_digitorum_longus",
                "gastrocnemius_medialis"]  # a viewer's segment order, not ours (soleus = 13 is first in ours)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("label_save")
    with Server(copy_studies(base / "studies"), base / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def phantom(srv, tmp_path_factory):
    """The uploaded image (``IMAGE_ID``) and its phantom (labels on every slice)."""
    phantom = generate_phantom("leg", 31, n_slices=6, spacing=(1.0, 1.0, 5.0), shape=(96, 96))
    path = save_nifti(tmp_path_factory.mktemp("upload") / "image.nii.gz", phantom.image, phantom.affine)
    with open(path, "rb") as f:
        r = requests.put(f"{srv.url}/datastore/image", params={"image": IMAGE_ID},
                         files={"file": ("image.nii.gz", f)}, data={"params": "{}"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == {"image": IMAGE_ID}
    return phantom


def nifti_bytes(tmp_path, array, affine, name="label.nii.gz") -> bytes:
    return save_nifti(tmp_path / name, array, affine, dtype=np.asarray(array).dtype).read_bytes()


def slicer_label(phantom) -> tuple[np.ndarray, list[dict]]:
    """The phantom's sparse label in a viewer's segment order, and Slicer's ``label_info`` for it."""
    ours = L.all_labels()
    lut = np.zeros(2 * L.SIDE_OFFSET + 1, np.uint8)
    for idx, name in enumerate(SLICER_ORDER, start=1):
        lut[ours[name]] = idx
    label = lut[sparse_label(phantom.label, SLICES)]
    return label, [{"name": name.replace("_", " ").title(), "idx": idx} for idx, name in enumerate(SLICER_ORDER, 1)]


def put_label(srv, data: bytes, image=IMAGE_ID, filename="label.nii.gz", params=None, tag="final"):
    return requests.put(f"{srv.url}/datastore/label", params={"image": image, "tag": tag},
                        files={"label": (filename, data)}, data={"params": json.dumps(params or {})}, timeout=120)


def stored_state(srv) -> tuple[bytes, bytes, dict]:
    """(final label file bytes, datastore_v2.json bytes, this image's entry) as on disk now."""
    final = srv.studies / "labels" / "final"
    files = sorted(final.glob(f"{IMAGE_ID}.*"))
    assert len(files) == 1, files
    config = (srv.studies / "datastore_v2.json").read_bytes()
    return files[0].read_bytes(), config, json.loads(config)["objects"][IMAGE_ID]


def stored_state_any(srv) -> dict:
    """This image's datastore entry, whatever label files exist."""
    return json.loads((srv.studies / "datastore_v2.json").read_text())["objects"][IMAGE_ID]


@pytest.fixture(scope="module")
def saved(srv, phantom, tmp_path_factory):
    """The good sparse Slicer label, saved as ``final``: (response, uploaded bytes, label_info)."""
    label, label_info = slicer_label(phantom)
    data = nifti_bytes(tmp_path_factory.mktemp("good"), label, phantom.affine)
    return put_label(srv, data, params={"label_info": label_info, "client_id": "slicer"}), data, label_info


def test_good_sparse_slicer_label_is_saved_with_its_annotated_slices(srv, saved):
    r, data, label_info = saved
    assert r.status_code == 200, r.text
    assert r.json()["image"] == IMAGE_ID and r.json()["label"] == IMAGE_ID
    info = requests.get(f"{srv.url}/datastore/label/info", params={"label": IMAGE_ID, "tag": "final"},
                        timeout=30).json()
    assert info["annotated_slices"] == SLICES  # found by the check: the client sent none
    assert info["label_info"] == label_info and info["client_id"] == "slicer"  # the client's info is kept
    label_file, _, entry = stored_state(srv)
    assert label_file == data  # stored as sent: values remapped only when training reads it
    assert entry["labels"]["final"]["info"]["annotated_slices"] == SLICES
    download = requests.get(f"{srv.url}/datastore/label", params={"label": IMAGE_ID, "tag": "final"}, timeout=30)
    assert download.status_code == 200 and download.content == data


def test_client_annotated_slices_are_kept(srv, saved, phantom, tmp_path):
    label, label_info = slicer_label(phantom)  # slice 5 is annotated but holds no muscle
    r = put_label(srv, nifti_bytes(tmp_path, label, phantom.affine),
                  params={"label_info": label_info, "annotated_slices": [1, 3, 4, 5]})
    assert r.status_code == 200, r.text
    assert stored_state(srv)[2]["labels"]["final"]["info"]["annotated_slices"] == [1, 3, 4, 5]


def test_nrrd_label_from_slicer_is_checked_on_the_same_grid(srv, saved, phantom, tmp_path):
    """Slicer uploads ``.nrrd``: read through ITK, its affine is compared in the same convention."""
    import SimpleITK as sitk

    label, label_info = slicer_label(phantom)
    good, shifted = tmp_path / "good.nrrd", tmp_path / "shifted.nrrd"
    nifti_bytes(tmp_path, label, phantom.affine, "good.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "good.nii.gz")), str(good))
    moved = phantom.affine.copy()
    moved[:3, 3] += 10.0
    nifti_bytes(tmp_path, label, moved, "shifted.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "shifted.nii.gz")), str(shifted))

    before = stored_state(srv)
    r = put_label(srv, shifted.read_bytes(), filename="label.nrrd", params={"label_info": label_info})
    assert r.status_code == 422 and "affine" in r.json()["detail"], r.text
    assert stored_state(srv) == before
    r = put_label(srv, good.read_bytes(), filename="label.nrrd", params={"label_info": label_info})
    assert r.status_code == 200, r.text
    info = stored_state_any(srv)
    assert info["labels"]["final"]["ext"] == ".nrrd" and info["labels"]["final"]["info"]["annotated_slices"] == SLICES


@pytest.fixture
def good_final(srv, saved, phantom, tmp_path):
    """A good NIfTI final label stored again (the NRRD test may have replaced it); its state."""
    label, label_info = slicer_label(phantom)
    for stale in (srv.studies / "labels" / "final").glob(f"{IMAGE_ID}.*"):
        if not stale.name.endswith(".nii.gz"):
            requests.delete(f"{srv.url}/datastore/label", params={"id": IMAGE_ID, "tag": "final"}, timeout=30)
    r = put_label(srv, nifti_bytes(tmp_path, label, phantom.affine, "good_final.nii.gz"),
                  params={"label_info": label_info})
    assert r.status_code == 200, r.text
    return stored_state(srv)


def _bad_labels(phantom, tmp_path):
    label, label_info = slicer_label(phantom)
    ours = sparse_label(phantom.label, SLICES)
    other_affine = phantom.affine.copy()
    other_affine[2, 2] = 3.0  # 3 mm slices instead of 5
    return {
        "shape": (nifti_bytes(tmp_path, label[:, :90], phantom.affine), {"label_info": label_info}, "shape"),
        "2d": (nifti_bytes(tmp_path, label[:, :, 1], phantom.affine), {"label_info": label_info}, "shape"),
        "affine": (nifti_bytes(tmp_path, label, other_affine), {"label_info": label_info}, "affine"),
        "value": (nifti_bytes(tmp_path, np.where(ours == 14, 40, ours).astype(np.uint8), phantom.affine), {},
                  "[40]"),
        "value_not_in_label_info": (nifti_bytes(tmp_path, label, phantom.affine),
                                    {"label_info": label_info[:-1]}, "not in label_info"),
        "unknown_name": (nifti_bytes(tmp_path, label, phantom.affine),
                         {"label_info": [*label_info[:-1], {"name": "Tibialis Posterior", "idx": 6}]},
                         "unknown muscle name 'Tibialis Posterior'; accepted names: vastus_lateralis (VL)"),
        "ambiguous_name": (nifti_bytes(tmp_path, label, phantom.affine),  # MuscleMap's one gastrocnemius label
                           {"label_info": [*label_info[:-1], {"name": "Gastrocnemius_R", "idx": 6}]},
                           "ambiguous muscle name 'Gastrocnemius_R': it may be gastrocnemius_medialis or "
                           "gastrocnemius_lateralis"),
        "empty": (nifti_bytes(tmp_path, np.zeros_like(label), phantom.affine), {"label_info": label_info},
                  "label is empty"),
        "empty_on_annotated": (nifti_bytes(tmp_path, label, phantom.affine),
                               {"label_info": label_info, "annotated_slices": [0, 2]}, "label is empty"),
        "bad_slices": (nifti_bytes(tmp_path, label, phantom.affine),
                       {"label_info": label_info, "annotated_slices": [4, 6]}, "annotated_slices"),
        "not_nifti": (b"this is not an image\n" * 10, {}, "not a readable NIfTI image"),
        "zero_bytes": (b"", {}, "empty"),
    }


BAD = ["shape", "2d", "affine", "value", "value_not_in_label_info", "unknown_name", "ambiguous_name", "empty",
       "empty_on_annotated", "bad_slices", "not_nifti", "zero_bytes"]


@pytest.mark.parametrize("case", BAD)
def test_bad_label_is_422_with_a_message_and_nothing_changes(srv, good_final, phantom, tmp_path, case):
    data, params, words = _bad_labels(phantom, tmp_path)[case]
    r = put_label(srv, data, params=params)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert words in detail and "\n" not in detail and "/tmp" not in detail, detail
    assert stored_state(srv) == good_final  # label file, datastore file and entry byte-identical


def test_label_named_as_dafne_or_a_lab_template_writes_it_is_saved_and_read_as_ours(srv, good_final, phantom,
                                                                                     tmp_path):
    """Dafne's long and short names, side suffixes, Peroneus Longus: saved (not 422), kept as sent,
    and read back into our values exactly as training reads a label (``value_map``)."""
    label, _ = slicer_label(phantom)
    names = {"peroneus": "Peroneus Longus", "soleus": "SOL_R", "tibialis_anterior": "TA R",
             "gastrocnemius_lateralis": "LG", "extensor_digitorum_longus": "Extensor Longus Digitorum",
             "gastrocnemius_medialis": "Gastrocnemius Medialis_R"}
    label_info = [{"name": names[muscle], "idx": idx} for idx, muscle in enumerate(SLICER_ORDER, start=1)]
    data = nifti_bytes(tmp_path, label, phantom.affine)
    r = put_label(srv, data, params={"label_info": label_info, "client_id": "dafne"})
    assert r.status_code == 200, r.text
    stored, _, entry = stored_state(srv)
    assert stored == data and entry["labels"]["final"]["info"]["label_info"] == label_info
    assert entry["labels"]["final"]["info"]["annotated_slices"] == SLICES
    saved = np.asarray(nib.load(srv.studies / "labels" / "final" / f"{IMAGE_ID}.nii.gz").dataobj)
    as_ours = to_global(saved, value_map(entry["labels"]["final"]["info"]["label_info"]))
    assert np.array_equal(as_ours, sparse_label(phantom.label, SLICES))  # right side / no side: our values


def test_text_file_with_another_name_is_4xx(srv, good_final):
    r = put_label(srv, b"name,value\nsoleus,1\n", filename="labels.csv")
    assert 400 <= r.status_code < 500, r.text
    assert "not an image" in r.json()["detail"]
    assert stored_state(srv) == good_final
    assert not list((srv.studies / "labels" / "final").glob(f"{IMAGE_ID}.csv"))


def test_label_for_unknown_image_is_404(srv, good_final, phantom, tmp_path):
    label, label_info = slicer_label(phantom)
    r = put_label(srv, nifti_bytes(tmp_path, label, phantom.affine), image="no_such_image",
                  params={"label_info": label_info})
    assert r.status_code == 404, r.text
    assert r.json() == {"detail": "image 'no_such_image' not found"}
    assert not list((srv.studies / "labels").rglob("no_such_image*"))
    assert stored_state(srv) == good_final


def test_server_keeps_serving_after_rejections(srv, good_final):
    assert requests.get(f"{srv.url}/info/", timeout=30).status_code == 200
    stats = requests.get(f"{srv.url}/datastore/", timeout=30).json()
    assert stats["label_tags"]["final"] >= 1


def test_infer_result_saved_by_monai_label_as_original_still_works(srv, phantom):
    """MONAI Label stores an infer result under tag ``original`` (``save_label``); not checked."""
    r = requests.post(f"{srv.url}/infer/muscle", params={"image": IMAGE_ID},
                      data={"params": json.dumps({"save_label": True})}, timeout=300)
    assert r.status_code == 200, r.text
    entry = stored_state_any(srv)
    assert "original" in entry["labels"], entry
    saved = nib.load(srv.studies / "labels" / "original" / f"{IMAGE_ID}{entry['labels']['original']['ext']}")
    assert saved.shape[:3] == phantom.image.shape
