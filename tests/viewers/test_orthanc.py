"""A real Orthanc (DICOMweb) as the datastore: upload, Slicer's sequence, DICOM SEG back in the PACS.

Orthanc is started by the test itself with ``scripts/orthanc.sh`` on a free loopback port, a
storage folder in the test's temp dir and a random password; the test skips (with the reason)
only when the Debian packages cannot be installed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests

from lib.data.dicom.dicomweb import dicomweb_client
from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from tests.conftest import ROOT, Server, free_port, server_env
from tests.viewers.slicer_sequence import run_sequence

USER = "muscle-test"


class Orthanc:
    """``bash scripts/orthanc.sh`` in the foreground, on its own port and storage."""

    def __init__(self, base):
        self.password = secrets.token_urlsafe(12)
        for attempt in range(3):  # a free port can be taken between choosing and binding it
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}/dicom-web"
            self.env = {**os.environ, "ORTHANC_PORT": str(self.port), "ORTHANC_DIR": str(base / "orthanc"),
                        "ORTHANC_USER": USER, "ORTHANC_PASSWORD": self.password}
            self.log = open(base / f"orthanc{attempt}.log", "w")
            self.process = subprocess.Popen(["bash", "scripts/orthanc.sh"], cwd=ROOT, env=self.env,
                                            stdout=self.log, stderr=subprocess.STDOUT)
            deadline = time.time() + 60
            while not self.ready() and self.process.poll() is None:
                assert time.time() < deadline, "Orthanc did not start in 60 s"
                time.sleep(0.5)
            if self.process.poll() is None:
                break
            self.log.close()
        assert self.process.poll() is None, (base / f"orthanc{attempt}.log").read_text()
        self.client = dicomweb_client(self.url, (USER, self.password))

    def ready(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/system", auth=(USER, self.password),
                                timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    @staticmethod
    def install_error() -> str:
        """Why ``scripts/orthanc.sh install`` failed, or "" when Orthanc is (now) installed."""
        run = subprocess.run(["bash", "scripts/orthanc.sh", "install"], cwd=ROOT, capture_output=True, text=True)
        return "" if run.returncode == 0 else (run.stderr.strip().splitlines() or ["failed"])[-1]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    why = Orthanc.install_error()
    if why:
        pytest.skip(f"Orthanc cannot be installed here: {why}")
    pacs = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield pacs
    pacs.stop()


def upload_phantom(orthanc, folder):
    """One leg phantom uploaded with ``python main.py upload``, as the README says."""
    folder.mkdir(parents=True, exist_ok=True)
    phantom = generate_phantom("leg", 20_011, n_slices=6, severity="mild", spacing=(1.2, 1.2, 6.0), shape=(240, 200))
    save_nifti(folder / "phantom_leg_20011.nii.gz", phantom.image, phantom.affine)
    env = {**server_env(), "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": orthanc.password}
    run = subprocess.run([sys.executable, "main.py", "upload", str(folder), "--url", orthanc.url], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return phantom, run.stdout


@pytest.fixture(scope="module")
def phantom_series(orthanc, tmp_path_factory):
    return upload_phantom(orthanc, tmp_path_factory.mktemp("phantoms"))


def test_upload_stores_one_mr_series_with_geometry_and_refuses_a_wrong_login(orthanc, phantom_series):
    phantom, out = phantom_series
    series = [pydicom.Dataset.from_json(s) for s in orthanc.client.search_for_series(search_filters={"Modality": "MR"})]
    assert len(series) == 1 and series[0].SeriesInstanceUID in out
    meta = [pydicom.Dataset.from_json(m) for m in orthanc.client.retrieve_series_metadata(
        str(series[0].StudyInstanceUID), str(series[0].SeriesInstanceUID))]
    assert len(meta) == phantom.image.shape[2]
    z = sorted(float(m.ImagePositionPatient[2]) for m in meta)
    assert np.allclose(np.diff(z), 6.0) and all(float(m.SliceThickness) == 6.0 for m in meta)
    assert all([float(v) for v in m.PixelSpacing] == [1.2, 1.2] and m.Modality == "MR" for m in meta)

    env = {**server_env(), "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": "wrong"}
    run = subprocess.run([sys.executable, "main.py", "upload", str(ROOT / "studies" / "real_leg_t1.nii.gz"),
                          "--url", orthanc.url], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "HTTP 401" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert requests.get(orthanc.url + "/studies", timeout=10).status_code == 401  # no login, no data


@pytest.fixture(scope="module")
def pacs_server(orthanc, phantom_series, tmp_path_factory):
    """``python main.py serve --dicomweb URL`` with the login in MONAI Label's variables."""
    base = tmp_path_factory.mktemp("pacs_server")
    saved = dict(os.environ)
    os.environ.update({"MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": orthanc.password,
                       "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(base / "cache"),
                       "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "1"})  # series uploaded later are listed
    try:
        server = Server(orthanc.url, base / "server.log")  # Popen copied the environment
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with server:
        yield server


def seg_series(orthanc) -> list[pydicom.Dataset]:
    return [pydicom.Dataset.from_json(s) for s in orthanc.client.search_for_series(search_filters={"Modality": "SEG"})]


def test_slicer_sequence_against_orthanc_stores_a_muscle_named_seg(orthanc, pacs_server, tmp_path):
    mr = pydicom.Dataset.from_json(orthanc.client.search_for_series(search_filters={"Modality": "MR"})[0])
    assert "serve: 1 series match {'Modality': 'MR'}" in pacs_server.log_path.read_text()
    stats = requests.get(f"{pacs_server.url}/datastore/", params={"output": "stats"}, timeout=30).json()
    assert stats["total"] == 1  # the MR series is listed: MONAI Label's default filter is CT

    seq = run_sequence(pacs_server.url, tmp_path / "slicer", train=True)
    assert seq.sample["id"] == str(mr.SeriesInstanceUID)
    assert 0 <= seq.sample["slice"] < seq.image.shape[0] and seq.prediction[seq.sample["slice"]].any()
    assert seq.prediction.shape == seq.image.shape and seq.save_answer["image"] == seq.sample["id"]

    segs = seg_series(orthanc)
    assert len(segs) == 1
    instance = orthanc.client.retrieve_series(str(segs[0].StudyInstanceUID), str(segs[0].SeriesInstanceUID))[0]
    seg = hd.seg.Segmentation.from_dataset(instance)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == seq.sample["id"]
    assert seg.StudyInstanceUID == mr.StudyInstanceUID
    # one segment per submitted muscle, named ours whatever Slicer called it
    from lib.data.dicom.dicomweb_datastore import segment_entries

    values = sorted(int(v) for v in np.unique(seq.expected) if v)
    names = {d.SegmentNumber: d.SegmentLabel for d in seg.SegmentSequence}
    assert sorted(names.values()) == sorted(e["name"] for e in segment_entries(values))
    assert any(n.endswith("_left") for n in names.values()) and any(n.endswith("_right") for n in names.values())
    # the pixels of the corrected slice, segment by segment, where the label put them
    k = seq.corrected_slices[0]
    metas = [pydicom.Dataset.from_json(m) for m in orthanc.client.retrieve_series_metadata(
        str(mr.StudyInstanceUID), str(mr.SeriesInstanceUID))]
    source = {int(m.InstanceNumber) - 1: str(m.SOPInstanceUID) for m in metas}[k]
    by_name = {e["name"]: e["idx"] for e in segment_entries(values)}
    # dcmqi does not state SpatialLocationsPreserved: check the frames' geometry ourselves
    positions = {tuple(round(float(v), 2) for v in m.ImagePositionPatient) for m in metas}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        assert tuple(round(float(v), 2) for v in frame.PlanePositionSequence[0].ImagePositionPatient) in positions
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == pytest.approx([float(v) for v in metas[0].PixelSpacing])
    pixels = seg.get_pixels_by_source_instance([source], combine_segments=True, relabel=False,
                                               ignore_spatial_locations=True)[0]
    ours = np.zeros_like(pixels, dtype=np.uint8)
    for number, name in names.items():
        ours[pixels == number] = by_name[name]
    assert np.array_equal(ours, seq.expected[k])

    # Train, started from the client: the round read the label back and trained on its slice
    assert seq.train_task["status"] == "DONE", seq.train_task
    stats = requests.get(f"{pacs_server.url}/info/", timeout=30).json()["train_stats"]["muscle"]
    used = {i["image"]: i for i in stats["images"]}[seq.sample["id"]]
    assert used["annotated_slices"] == seq.corrected_slices
    assert used["voxels"] == {str(v): int((seq.expected == v).sum()) for v in values}


def test_a_label_with_unknown_muscle_names_is_refused_and_nothing_reaches_the_pacs(orthanc, pacs_server, tmp_path):
    before = len(seg_series(orthanc))
    image_id = str(pydicom.Dataset.from_json(orthanc.client.search_for_series(
        search_filters={"Modality": "MR"})[0]).SeriesInstanceUID)
    r = requests.get(f"{pacs_server.url}/datastore/image", params={"image": image_id}, timeout=120)
    (tmp_path / "image.nii.gz").write_bytes(r.content)
    import nibabel as nib

    image = nib.load(tmp_path / "image.nii.gz")
    label = np.zeros(image.shape, np.uint8)
    label[50:60, 50:60, 1] = 1
    save_nifti(tmp_path / "label.nii.gz", label, image.affine)
    with open(tmp_path / "label.nii.gz", "rb") as f:
        r = requests.put(f"{pacs_server.url}/datastore/label", params={"image": image_id, "tag": "final"},
                         data={"params": json.dumps({"label_info": [{"name": "Biceps Brachii", "idx": 1}]})},
                         files={"label": ("label.nii.gz", f)}, timeout=120)
    assert r.status_code == 422 and "Biceps Brachii" in r.text
    assert len(seg_series(orthanc)) == before


def test_an_infer_result_comes_back_as_a_muscle_named_seg_aligned_with_the_series(orthanc, pacs_server, tmp_path):
    from lib.data.dicom.dicomweb_datastore import segment_entries
    from tests.server.test_infer_api import multipart

    mr = pydicom.Dataset.from_json(orthanc.client.search_for_series(search_filters={"Modality": "MR"})[0])
    image_id = str(mr.SeriesInstanceUID)
    r = requests.post(f"{pacs_server.url}/infer/muscle", params={"image": image_id}, timeout=300)
    assert r.status_code == 200, r.text
    (tmp_path / "label.nii.gz").write_bytes(multipart(r)["image"])
    import nibabel as nib

    label = np.asarray(nib.load(tmp_path / "label.nii.gz").dataobj)  # (X, Y, Z)
    values = sorted(int(v) for v in np.unique(label) if v)
    # MONAI Label's own DICOM SEG output; label_info must be present, its content is not used
    r = requests.post(f"{pacs_server.url}/infer/muscle", params={"image": image_id, "output": "dicom_seg"},
                      data={"params": json.dumps({"label_info": []})}, timeout=300)
    assert r.status_code == 200, r.text
    (tmp_path / "result.dcm").write_bytes(r.content)
    seg = hd.seg.segread(tmp_path / "result.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == image_id
    by_name = {e["name"]: e["idx"] for e in segment_entries(values)}
    names = {d.SegmentNumber: d.SegmentLabel for d in seg.SegmentSequence}
    assert sorted(names.values()) == sorted(by_name)  # named by value, not by the request's label_info
    metas = [pydicom.Dataset.from_json(m) for m in orthanc.client.retrieve_series_metadata(
        str(mr.StudyInstanceUID), image_id)]
    for meta in metas:  # every slice: the SEG's pixels are the label's, under our values
        k = int(meta.InstanceNumber) - 1
        pixels = seg.get_pixels_by_source_instance([str(meta.SOPInstanceUID)], combine_segments=True,
                                                   relabel=False, ignore_spatial_locations=True)[0]
        ours = np.zeros_like(pixels, dtype=np.uint8)
        for number, name in names.items():
            ours[pixels == number] = by_name[name]
        assert np.array_equal(ours, label[:, :, k].T), k


def test_a_folder_of_dicom_files_is_uploaded_as_it_is(orthanc, tmp_path):
    """Runs after the sequence tests: it adds a second MR series to the PACS."""
    env = {**server_env(), "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": orthanc.password}
    upload = [sys.executable, "main.py", "upload"]
    run = subprocess.run([*upload, str(ROOT / "studies" / "real_leg_t1.nii.gz"), "--out", str(tmp_path / "dcm")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    folder = tmp_path / "dcm" / "real_leg_t1"
    files = sorted(folder.glob("*.dcm"))
    written = pydicom.dcmread(files[0])
    (folder / "README.txt").write_text("not DICOM: skipped")
    before = {s["0020000E"]["Value"][0] for s in orthanc.client.search_for_series(search_filters={"Modality": "MR"})}
    run = subprocess.run([*upload, str(tmp_path / "dcm"), "--url", orthanc.url], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    after = {s["0020000E"]["Value"][0] for s in orthanc.client.search_for_series(search_filters={"Modality": "MR"})}
    assert after - before == {str(written.SeriesInstanceUID)} and f"({len(files)} instances)" in run.stdout
    stored = orthanc.client.retrieve_instance(str(written.StudyInstanceUID), str(written.SeriesInstanceUID),
                                              str(written.SOPInstanceUID))
    assert np.array_equal(stored.pixel_array, written.pixel_array)  # sent as it was, pixels untouched


def test_a_multi_echo_series_is_served_as_its_first_echo_and_a_broken_one_does_not_stop_the_others(
        orthanc, pacs_server, tmp_path):
    """Runs last: adds a 2-echo magnitude/phase series and one without slice positions."""
    from lib.data.dicom.export import volume_to_series
    from tests.transforms.test_dicom_series import multi_echo_series, write

    phantom = generate_phantom("leg", 20_043, n_slices=4, spacing=(1.2, 1.2, 6.0), shape=(160, 128))
    mixed = multi_echo_series(phantom.image, phantom.affine)
    broken = volume_to_series(phantom.image, phantom.affine, "no-positions")
    for ds in broken:
        del ds.ImagePositionPatient
    write(mixed, tmp_path / "dicom" / "mixed")
    write(broken, tmp_path / "dicom" / "broken")
    env = {**server_env(), "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": orthanc.password}
    run = subprocess.run([sys.executable, "main.py", "upload", str(tmp_path / "dicom"), "--url", orthanc.url],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    mixed_id, broken_id = str(mixed[0].SeriesInstanceUID), str(broken[0].SeriesInstanceUID)
    time.sleep(2)  # the server's series list is cached for MONAI_LABEL_DICOMWEB_CACHE_EXPIRY (1 s here)

    r = requests.post(f"{pacs_server.url}/infer/muscle", params={"image": broken_id, "output": "json"}, timeout=300)
    assert r.status_code == 422 and "lack ImagePositionPatient" in r.text, r.text
    r = requests.post(f"{pacs_server.url}/infer/muscle", params={"image": mixed_id, "output": "json"}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["classification"]["region"] == "leg"
    info = requests.get(f"{pacs_server.url}/datastore/image/info", params={"image": mixed_id}, timeout=30).json()
    assert info["volume"].startswith("echo 1 magnitude: 4 of 16 images")
    image = requests.get(f"{pacs_server.url}/datastore/image", params={"image": mixed_id}, timeout=60)
    (tmp_path / "mixed.nii.gz").write_bytes(image.content)
    import nibabel as nib

    served = nib.load(tmp_path / "mixed.nii.gz")
    assert np.array_equal(np.asarray(served.dataobj), phantom.image)  # echo 1 magnitude, in order
    stats = requests.get(f"{pacs_server.url}/datastore/", params={"output": "stats"}, timeout=30).json()
    assert stats["total"] == 3  # phantom, real slice, the mixed series; not the broken one
    sample = requests.post(f"{pacs_server.url}/activelearning/uncertain_slices", json={}, timeout=600)
    assert sample.status_code == 200 and sample.json()["id"] != broken_id, sample.text
    assert not list(ROOT.glob(f"{mixed_id}*")), "a series downloaded outside the cache"


def test_processes_sharing_the_series_cache_each_get_the_whole_first_echo(orthanc, tmp_path):
    """The server's processes (an infer and a scoring task, say) share the series cache. Each must
    see the series downloaded and sorted once, never another's half-done folder (under load one
    served 'echo 1 magnitude: 4 of 12 images' of a 16-image series)."""
    from concurrent.futures import ThreadPoolExecutor

    import nibabel as nib
    from dicomweb_client.session_utils import create_session_from_user_pass
    from monailabel.datastore.dicom import DICOMwebClientX

    from lib.data.dicom.dicomweb_datastore import MuscleDicomWebDatastore
    from tests.transforms.test_dicom_series import multi_echo_series

    phantom = generate_phantom("leg", 20_045, n_slices=4, spacing=(1.2, 1.2, 6.0), shape=(160, 128))
    mixed = multi_echo_series(phantom.image, phantom.affine, key="shared-cache")
    orthanc.client.store_instances(mixed)
    series_id = str(mixed[0].SeriesInstanceUID)

    def one_process(_):
        client = DICOMwebClientX(url=orthanc.url, session=create_session_from_user_pass(USER, orthanc.password))
        store = MuscleDicomWebDatastore(client, search_filter={"Modality": "MR"}, cache_path=str(tmp_path / "cache"))
        uri = store.get_image_uri(series_id)
        return uri, store.get_image_info(series_id).get("volume", "")

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one_process, range(4)))
    for uri, volume in answers:
        assert volume.startswith("echo 1 magnitude: 4 of 16 images"), volume
        assert np.array_equal(np.asarray(nib.load(uri).dataobj), phantom.image)
    assert len(list((tmp_path / "cache").rglob("*.dcm"))) == 16  # 4 used, 12 set aside, no copies left
    assert not list(ROOT.glob(f"{series_id}*")), "a note written outside the cache"
