"""``python main.py infer <DICOMweb URL with a query>`` against a real Orthanc: each series found is
a study, downloaded, segmented and measured; a rerun asks the PACS, downloads nothing again."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from tests.conftest import ROOT, server_env
from tests.viewers.test_orthanc import USER, orthanc, upload_phantom  # noqa: F401 (fixture)


def test_infer_on_a_dicomweb_query_writes_the_cohort_table_and_resumes(orthanc, tmp_path):  # noqa: F811
    upload_phantom(orthanc, tmp_path / "upload")
    env = {**server_env(), "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": orthanc.password}
    out = tmp_path / "out"

    def infer(url):
        return subprocess.run([sys.executable, "main.py", "infer", url, "--out", str(out)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)

    first = infer(f"{orthanc.url}?BodyPartExamined=LEG")
    assert first.returncode == 0, first.stderr
    assert "1 segmented, 0 already done, 0 failed" in first.stdout
    cohort = json.loads((out / "cohort.json").read_text())
    (study,) = cohort["studies"]
    assert study["region"] == "leg" and study["info"]["patient_id"].startswith("phantom_leg")
    assert (out / study["label"]).is_file()
    rows = list(csv.DictReader(open(out / "measurements.csv")))
    assert {r["study"] for r in rows} == {study["id"]} and "soleus" in {r["muscle"] for r in rows}

    again = infer(f"{orthanc.url}?BodyPartExamined=LEG")
    assert again.returncode == 0 and "0 segmented, 1 already done" in again.stdout
    none = infer(f"{orthanc.url}?BodyPartExamined=THIGH")
    assert none.returncode == 2 and "no studies" in none.stderr
