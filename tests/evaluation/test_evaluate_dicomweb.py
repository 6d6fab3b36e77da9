"""``python main.py evaluate --studies <DICOMweb URL>`` against a real Orthanc.

A leg phantom is uploaded with ``main.py upload``; its label (two annotated slices, Slicer's
segment order) is stored as a DICOM SEG by the app's DICOMweb datastore, as a viewer's save
does. The evaluation fetches series and SEG, maps segments by name and scores those slices.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lib.data.io import save_nifti
from lib.labels import region_labels
from tests.conftest import ROOT, server_env
from tests.viewers.test_orthanc import USER, orthanc, upload_phantom  # noqa: F401 (fixture)

ANNOTATED = [1, 3]


@pytest.fixture(scope="module")
def pacs_with_seg(orthanc, tmp_path_factory, monkeypatch_module):  # noqa: F811
    base = tmp_path_factory.mktemp("eval_pacs")
    phantom, _ = upload_phantom(orthanc, base / "upload")
    from monailabel.config import settings

    from lib.data.dicom.dicomweb_datastore import dicomweb_datastore

    monkeypatch_module.setenv("PATH", server_env()["PATH"])  # itkimage2segimage (dcmqi) from the venv
    for key, value in (("USERNAME", USER), ("PASSWORD", orthanc.password), ("CACHE_PATH", str(base / "cache"))):
        monkeypatch_module.setattr(settings, f"MONAI_LABEL_DICOMWEB_{key}", value)
    monkeypatch_module.setattr(settings, "MONAI_LABEL_DICOMWEB_SEARCH_FILTER", {"Modality": "MR"})
    store = dicomweb_datastore(orthanc.url)
    (image_id,) = store.list_images()
    names = list(region_labels("leg"))[::-1]  # Slicer numbers its segments its own way: reversed here
    label = np.zeros_like(phantom.label)
    for k in ANNOTATED:
        for i, name in enumerate(names, start=1):
            label[:, :, k][phantom.label[:, :, k] == region_labels("leg")[name]] = i
    path = save_nifti(base / "label.nii.gz", label, phantom.affine)
    store.save_label(image_id, str(path), "final", {"label_info": [{"name": n, "idx": i} for i, n in enumerate(names, 1)]})
    return base, image_id


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_evaluation_reads_series_and_seg_from_the_pacs(orthanc, pacs_with_seg):  # noqa: F811
    base, image_id = pacs_with_seg
    env = {**server_env(), "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": orthanc.password}
    out = base / "report"
    run = subprocess.run([sys.executable, "main.py", "evaluate", "--studies", orthanc.url, "--out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["studies"] == 1 and not summary["unknown_values"] and not summary["skipped"]
    with open(out / "slices.csv", newline="") as f:
        slices = list(csv.DictReader(f))
    assert [(s["study"], int(s["slice"])) for s in slices] == [(image_id, k) for k in ANNOTATED]
    leg = {m["muscle"]: m for m in summary["muscles"] if m["region"] == "leg"}
    assert all(m["slices"] == len(ANNOTATED) for m in leg.values())  # every muscle found under its own name
    assert summary["headline"]["leg"]["dice"] > 0.7
    assert all(s["truth_region"] == "leg" for s in slices)
    assert os.path.exists(out / "predictions" / f"{image_id}.nii.gz")
