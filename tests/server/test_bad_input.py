"""Bad input through the REST API: a 4xx with a message, nothing stored changes, the server serves on.

One real server per module on its own studies copy, started with ``--conf max_upload_mb 2`` so
the size limit is cheap to reach. Bad *labels* (shape, affine, values, names) are covered by
``tests/data/datastore/test_label_save.py``; here: broken image files on every upload route, ids that are
paths, unknown names, malformed ``params``, oversized bodies. "Nothing changed" is checked on
the bytes of ``datastore_v2.json``, the studies listing and a folder around the studies.
"""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
import requests

from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from tests.conftest import Server, copy_studies

IMAGE = "phantom_leg_s0004_healthy"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_input")
    with Server(copy_studies(base / "studies"), base / "server.log", ["--conf", "max_upload_mb", "2"]) as server:
        yield server


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad (and one good) image files, by name; each a real file a user could upload."""
    d = tmp_path_factory.mktemp("files")
    phantom = generate_phantom("leg", 5, n_slices=3, spacing=(1.2, 1.2, 5.0), shape=(96, 96))
    good = save_nifti(d / "good.nii.gz", phantom.image, phantom.affine)
    raw = gzip.decompress(good.read_bytes())
    (d / "truncated.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))  # header fine, data cut
    (d / "cut_gzip.nii.gz").write_bytes(good.read_bytes()[:5000])  # gzip stream cut
    (d / "zero.nii.gz").write_bytes(b"")
    (d / "text.nii.gz").write_text("patient list\nnot an image\n")
    header = nib.Nifti2Header()  # NIfTI-2: 64-bit dims, so a header can claim 10^5 x 10^5
    header.set_data_shape((100_000, 100_000, 1))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 544
    (d / "huge.nii").write_bytes(header.binaryblock + b"\0" * 1024)  # 1 KB claiming 20 GB
    save_nifti(d / "all_nan.nii.gz", np.full((32, 32, 2), np.nan, np.float32), phantom.affine, dtype=np.float32)
    some_nan = phantom.image.astype(np.float32)
    some_nan[:10, :10] = np.nan
    some_nan[0, 0, 0] = np.inf
    save_nifti(d / "some_nan.nii.gz", some_nan, phantom.affine, dtype=np.float32)
    return d


def snapshot(srv) -> tuple:
    """What must not change: the index bytes, every file under the studies' parent folder."""
    around = sorted(str(p.relative_to(srv.studies.parent)) for p in srv.studies.parent.rglob("*")
                    if "server" not in p.name and not p.name.startswith(".") and "/model_" not in f"/{p}")
    return (srv.studies / "datastore_v2.json").read_bytes(), around


def assert_4xx(r, status=None, words=""):
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert status is None or r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail and "Traceback" not in detail, detail


BROKEN = {"truncated.nii.gz": "truncated", "cut_gzip.nii.gz": "truncated", "zero.nii.gz": "empty",
          "text.nii.gz": "not a readable", "huge.nii": "(100000, 100000, 1)", "all_nan.nii.gz": "NaN"}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_upload_is_422_on_infer_and_on_datastore_and_nothing_is_stored(srv, files, name):
    before = snapshot(srv)
    with open(files / name, "rb") as f:
        r = requests.post(f"{srv.url}/infer/muscle", files={"file": (name, f)}, timeout=120)
    assert_4xx(r, 422, BROKEN[name])
    with open(files / name, "rb") as f:
        r = requests.put(f"{srv.url}/datastore/image", params={"image": "upload_x"}, files={"file": (name, f)},
                         timeout=120)
    assert_4xx(r, 422, BROKEN[name])
    assert snapshot(srv) == before
    assert requests.get(f"{srv.url}/info/", timeout=30).status_code == 200


def test_some_nan_voxels_are_zeroed_and_segmented(srv, files):
    """A few NaN/Inf voxels (masked maps) are not an error: they become 0, the rest is segmented."""
    with open(files / "some_nan.nii.gz", "rb") as f:
        r = requests.post(f"{srv.url}/infer/segmentation_leg", params={"output": "json"},
                          files={"file": ("some_nan.nii.gz", f)}, timeout=300)
    assert r.status_code == 200, r.text
    assert "soleus" in r.json()["measurements"]


def test_ids_that_are_paths_never_reach_a_file_outside_the_datastore(srv, files):
    outside = srv.studies.parent / "outside.nii.gz"  # a valid image next to the studies folder
    outside.write_bytes((files / "good.nii.gz").read_bytes())
    before = snapshot(srv)
    tricks = [str(outside), "../outside", "../outside.nii.gz", "..", "/etc/passwd", "sub\\..\\..\\x", "a/../../b"]
    for image in tricks:
        r = requests.post(f"{srv.url}/infer/classifier", params={"image": image, "output": "json"}, timeout=60)
        assert_4xx(r, 400, "path")
        r = requests.post(f"{srv.url}/infer/classifier", params={"image": IMAGE, "output": "json"},
                          data={"params": json.dumps({"image": image})}, timeout=60)
        assert_4xx(r, 400, "path")  # params may not swap the image for a path either
        for route, key in [("image", "image"), ("image/info", "image"), ("label", "label")]:
            r = requests.get(f"{srv.url}/datastore/{route}", params={key: image, "tag": "final"}, timeout=30)
            assert_4xx(r)
            assert r.content != outside.read_bytes()
        with open(files / "good.nii.gz", "rb") as f:
            r = requests.put(f"{srv.url}/datastore/image", params={"image": image}, files={"file": ("x.nii.gz", f)},
                             timeout=60)
        assert_4xx(r, 400, "path")
        with open(files / "good.nii.gz", "rb") as f:  # a tag is a folder name: ../../x would write outside
            r = requests.put(f"{srv.url}/datastore/label", params={"image": IMAGE, "tag": image},
                             files={"label": ("l.nii.gz", f)}, timeout=60)
        assert_4xx(r, 400, "path")
    # percent-encoded by hand (requests would encode the % itself): decoded once, then refused
    for raw in ["..%2F..%2Foutside", "%2E%2E%2Foutside", "%2Fetc%2Fpasswd", "..%5Coutside"]:
        r = requests.post(f"{srv.url}/infer/classifier?image={raw}&output=json", timeout=60)
        assert_4xx(r, 400, "path")
    r = requests.post(f"{srv.url}/infer/classifier?image=%252e%252e%252foutside&output=json", timeout=60)
    assert_4xx(r, 404)  # double-encoded: a literal name that matches no image
    with open(files / "good.nii.gz", "rb") as f:  # an upload's *file name* is the id when none is given
        r = requests.put(f"{srv.url}/datastore/image", files={"file": ("..", f)}, timeout=60)
    assert_4xx(r, 422, "path")
    assert snapshot(srv) == before
    with open(files / "good.nii.gz", "rb") as f:  # MONAI Label keeps only the base name: stored inside
        r = requests.put(f"{srv.url}/datastore/image", files={"file": ("../../evil.nii.gz", f)}, timeout=60)
    assert r.status_code == 200 and r.json() == {"image": "evil"}, r.text
    assert (srv.studies / "evil.nii.gz").is_file() and not (srv.studies.parent.parent / "evil.nii.gz").exists()


def test_a_file_type_the_datastore_does_not_serve_is_refused(srv):
    """``image=datastore_v2`` with a ``.json`` upload would have replaced the index itself."""
    before = snapshot(srv)
    r = requests.put(f"{srv.url}/datastore/image", params={"image": "datastore_v2"},
                     files={"file": ("index.json", b'{"objects": {}}')}, timeout=60)
    assert_4xx(r, 422, "not served")
    assert snapshot(srv) == before


def test_unknown_names_are_404_listing_what_exists(srv):
    for route, noun, known in [("infer", "model", "muscle"), ("train", "trainer", "segmentation_leg"),
                               ("activelearning", "strategy", "uncertain_slices"),
                               ("scoring", "scoring method", "slice_uncertainty")]:
        r = requests.post(f"{srv.url}/{route}/no_such_thing", params={"image": IMAGE}, timeout=60)
        assert_4xx(r, 404, f"unknown {noun} 'no_such_thing'")
        assert known in r.json()["detail"]
    r = requests.get(f"{srv.url}/train/", timeout=30)  # nothing was submitted to the background
    assert r.status_code == 404 and "No Train Tasks Found" in r.text, r.text


@pytest.mark.parametrize("params, words", [("{region: thigh}", "not valid JSON"), ("{", "not valid JSON"),
                                           ('["thigh"]', "JSON object"), ("null", "JSON object"), ("7", "JSON object")])
def test_malformed_params_json_is_422_on_every_form_route(srv, files, params, words):
    before = snapshot(srv)
    r = requests.post(f"{srv.url}/infer/classifier", params={"image": IMAGE}, data={"params": params}, timeout=60)
    assert_4xx(r, 422, words)
    with open(files / "good.nii.gz", "rb") as f:  # multipart, with a file, as viewers send it
        r = requests.put(f"{srv.url}/datastore/label", params={"image": IMAGE, "tag": "final"},
                         files={"label": ("l.nii.gz", f)}, data={"params": params}, timeout=60)
    assert_4xx(r, 422, words)
    with open(files / "good.nii.gz", "rb") as f:
        r = requests.put(f"{srv.url}/datastore/image", params={"image": "new_one"},
                         files={"file": ("n.nii.gz", f)}, data={"params": params}, timeout=60)
    assert_4xx(r, 422, words)
    r = requests.put(f"{srv.url}/datastore/image/info", params={"image": IMAGE}, data={"info": params}, timeout=60)
    assert_4xx(r, 422, words)
    assert snapshot(srv) == before


def test_upload_over_the_limit_is_413_with_a_message(srv):
    before = snapshot(srv)
    body = np.random.default_rng(0).bytes(3 * 2**20)  # 3 MB against --conf max_upload_mb 2
    r = requests.post(f"{srv.url}/infer/muscle", files={"file": ("big.nii.gz", body)}, timeout=60)
    assert_4xx(r, 413, "max_upload_mb")
    r = requests.put(f"{srv.url}/datastore/image", params={"image": "big"}, files={"file": ("big.nii.gz", body)},
                     timeout=60)
    assert_4xx(r, 413, "limit of 2 MB")

    def chunks():  # no Content-Length: the limit is counted while the (valid multipart) body streams in
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.nii.gz"\r\n\r\n'
        for i in range(0, len(body), 2**18):
            yield body[i:i + 2**18]
        yield b"\r\n--xyz--\r\n"

    r = requests.put(f"{srv.url}/datastore/image?image=big", data=chunks(),
                     headers={"Content-Type": "multipart/form-data; boundary=xyz"}, timeout=60)
    assert_4xx(r, 413, "max_upload_mb")
    assert snapshot(srv) == before
    r = requests.post(f"{srv.url}/infer/classifier", params={"image": IMAGE, "output": "json"}, timeout=120)
    assert r.status_code == 200 and r.json()["region"] == "leg", r.text  # still serving, small requests pass


def test_a_session_archive_is_refused_instead_of_unpacked(srv, tmp_path):
    """MONAI Label unpacks ``uncompress=true`` session uploads with member paths unchecked."""
    import io
    import tarfile

    target = tmp_path / "written_by_tar"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member = tarfile.TarInfo("../" * 12 + str(target).lstrip("/"))
        member.size = 5
        tar.addfile(member, io.BytesIO(b"owned"))
    r = requests.put(f"{srv.url}/session/", params={"uncompress": "true"},
                     files={"files": ("study.tar", buffer.getvalue())}, timeout=60)
    assert_4xx(r, 400, "uncompress")
    assert not target.exists()


def test_corrupt_dicom_is_422_as_a_file_and_as_a_series_session(srv):
    """A DICOM preamble with garbage after it: uploaded alone, and as a two-file series session."""
    garbage = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x14\x00" + b"not a data element" * 20
    r = requests.post(f"{srv.url}/infer/classifier", params={"output": "json"},
                      files={"file": ("slice.dcm", garbage)}, timeout=60)
    assert_4xx(r, 422, "not an image format")
    r = requests.put(f"{srv.url}/session/", files=[("files", ("a.dcm", garbage)), ("files", ("b.dcm", garbage))],
                     timeout=60)
    assert r.status_code == 200, r.text  # MONAI Label keeps whatever is uploaded in a session...
    r = requests.post(f"{srv.url}/infer/classifier", params={"session_id": r.json()["session_id"], "output": "json"},
                      timeout=60)
    assert_4xx(r, 422, "no volume can be built")  # ...and reading it is refused with a message


def test_batch_inference_reads_datastore_images_only(srv, files):
    """Batch inference takes its image list from JSON ``params``: a path there is refused too."""
    outside = srv.studies.parent / "outside_batch.nii.gz"
    outside.write_bytes((files / "good.nii.gz").read_bytes())
    body = {"device": "cpu", "multi_gpu": False, "max_workers": 1, "save_label": False}
    r = requests.post(f"{srv.url}/batch/infer/classifier", params={"run_sync": True},
                      json={**body, "images": [str(outside)]}, timeout=120)
    assert_4xx(r, 422, "only a datastore id")
    r = requests.post(f"{srv.url}/batch/infer/classifier", params={"run_sync": True},
                      json={**body, "images": [IMAGE]}, timeout=300)
    assert r.status_code == 200, r.text  # datastore ids still run
