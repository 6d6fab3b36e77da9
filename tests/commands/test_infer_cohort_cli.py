"""``python main.py infer DIR|LIST`` on many studies: tables, errors, resuming after ``kill -9``,
shards and their merge. Small phantoms (4 slices of 320 x 320), so that each study takes about a
second."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lib.data.dicom.export import volume_to_series
from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from tests.conftest import ROOT

STUDIES = [f"s{i:02d}_{region}" for i, region in enumerate(["leg", "thigh"] * 4)]


def main_py(*args):
    return [sys.executable, str(ROOT / "main.py"), *map(str, args)]


def run_main(*args, timeout=900):
    return subprocess.run(main_py(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def write_phantoms(folder, names, seed=20_500):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        phantom = generate_phantom(name.rsplit("_", 1)[1], seed + i, n_slices=4, spacing=(1.2, 1.2, 5.0),
                                   shape=(320, 320))
        save_nifti(folder / f"{name}.nii.gz", phantom.image, phantom.affine)


def done_records(out):
    found = {}
    for path in (out / "records").glob("*.json") if (out / "records").is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        if record.get("status") == "done":
            found[record["id"]] = (path.stat().st_mtime_ns, record["finished"], record["input_hash"])
    return found


def read_csv(path):
    return list(csv.DictReader(open(path)))


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort") / "studies"
    write_phantoms(folder, STUDIES)
    phantom = generate_phantom("leg", 20_590, n_slices=4, spacing=(1.2, 1.2, 5.0), shape=(320, 320))
    series = folder / "dicom" / "s99_leg_series"  # a DICOM series folder among the NIfTI files
    series.mkdir(parents=True)
    for k, ds in enumerate(volume_to_series(phantom.image, phantom.affine, "s99")):
        ds.save_as(series / f"IM{k:04d}", write_like_original=False)
    (folder / "broken.nii.gz").write_text("not an image")  # unreadable: reported, the run goes on
    return folder


def test_a_run_killed_midway_finishes_the_rest_without_redoing_finished_studies(cohort_dir, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(main_py("infer", cohort_dir, "--out", out), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while len(done_records(out)) < 2:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = done_records(out)
    total = len(STUDIES) + 1  # and the DICOM series
    assert 2 <= len(before) < total, "kill -9 came too late to test a resume"
    assert not (out / "measurements.csv").exists()

    rerun = run_main("infer", cohort_dir, "--out", out)
    assert rerun.returncode == 1, rerun.stderr  # 1: a study failed (broken.nii.gz), all others done
    after = done_records(out)
    assert len(after) == total
    assert {k: after[k] for k in before} == before, "a finished study was segmented again"
    assert f"{total - len(before)} segmented, {len(before)} already done, 1 failed" in rerun.stdout
    assert not [p for p in (out / "labels").iterdir() if p.name.startswith(".")], "temporary files left"

    rows = read_csv(out / "measurements.csv")
    assert {r["study"] for r in rows} == {*STUDIES, "dicom__s99_leg_series"}
    assert all(r["side"] in ("right", "left") and float(r["volume_ml"]) > 0 for r in rows)
    assert {r["study"] for r in rows if r["muscle"] == "soleus"} >= {s for s in STUDIES if s.endswith("leg")}
    errors = read_csv(out / "errors.csv")
    assert [e["study"] for e in errors] == ["broken"] and "not a readable" in errors[0]["error"]
    cohort = json.loads((out / "cohort.json").read_text())
    assert cohort["counts"] == {"studies": total + 1, "done": total, "failed": 1, "skipped": len(before),
                                "segmented": total - len(before)}
    regions = {s["id"]: s.get("region") for s in cohort["studies"]}
    assert all(regions[s] == s.rsplit("_", 1)[1] for s in STUDIES)
    assert all(isinstance(s.get("flagged_slices"), list) for s in cohort["studies"] if s["status"] == "done")
    assert (out / "labels" / "s00_leg.nii.gz").is_file()

    (cohort_dir / "broken.nii.gz").unlink()  # fixed by the user: the next run has nothing left to do
    again = run_main("infer", cohort_dir, "--out", out)
    assert again.returncode == 0 and f"0 segmented, {total} already done, 0 failed" in again.stdout


def test_two_shards_in_one_folder_then_merge(tmp_path):
    folder = tmp_path / "data"
    names = ["a_leg", "b_thigh", "c_leg"]
    write_phantoms(folder, names, seed=20_600)
    listing = folder / "cohort.txt"
    listing.write_text("".join(f"{n}.nii.gz\n" for n in names))
    out = tmp_path / "results"
    shards = [subprocess.Popen(main_py("infer", listing, "--out", out, "--part-id", i, "--num-parts", 2,
                                       "--threads", 1, "--split-sides"),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outputs = [s.communicate(timeout=900) for s in shards]
    assert [s.returncode for s in shards] == [0, 0], outputs
    assert "(part 0 of 0..1: 2)" in outputs[0][0] and "(part 1 of 0..1: 1)" in outputs[1][0]
    assert {r["study"] for r in read_csv(out / "measurements.part-0-of-2.csv")} == {"a_leg", "c_leg"}
    assert {r["study"] for r in read_csv(out / "measurements.part-1-of-2.csv")} == {"b_thigh"}

    merged = run_main("merge-cohort", out)
    assert merged.returncode == 0, merged.stderr
    assert "merged 2 part(s): 3 studies, 3 done, 0 failed" in merged.stdout
    rows = read_csv(out / "measurements.csv")
    assert {r["study"] for r in rows} == set(names)
    assert {r["side"] for r in rows} == {"right", "left"}
    left = [r for r in rows if r["side"] == "left"]
    assert all(int(r["value"]) > 18 for r in left)  # per-side values, as split_sides answers
    assert json.loads((out / "cohort.json").read_text())["merged_parts"] == [0, 1]

    (out / "cohort.part-1-of-2.json").unlink()
    missing = run_main("merge-cohort", out)
    assert missing.returncode == 2 and "parts [1] of 2 are missing" in missing.stderr


def test_cohort_command_line_mistakes_are_one_line(cohort_dir, tmp_path):
    for args, words in ((["--region", "leg"], "--region is for one image"),
                        (["--part-id", "2", "--num-parts", "2"], "--part-id must be in 0..1")):
        result = run_main("infer", cohort_dir, "--out", tmp_path / "o", *args, timeout=120)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr
