"""Which studies a cohort holds, their ids, shards, Dixon pairs and hashes; the tables and their merge."""

from __future__ import annotations

import csv
import json

import pytest

from lib.cohort.sources import (Study, find_studies, input_hash, is_cohort_source, list_studies, pair_dixon,
                                shard, split_url)
from lib.cohort.tables import merge_parts, write_tables
from lib.errors import UserError


def touch(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def cohort(tmp_path):
    root = tmp_path / "cohort"
    touch(root / "b.nii.gz")
    touch(root / "a.nii")
    touch(root / "sub-01" / "anat" / "t1.nii.gz")
    touch(root / "sub-01" / "anat" / "t1_warp.mat")  # other files beside images: no DICOM series
    touch(root / "dicom" / "series7" / "IM0001")  # a folder of files that are no documents: a DICOM series
    touch(root / "dicom" / "series7" / "IM0002")
    touch(root / "dicom" / "README.md")  # documents alone make no study
    touch(root / "labels" / "final" / "a.nii.gz")  # MONAI Label's labels: not studies
    touch(root / ".hidden" / "x.nii.gz")
    touch(root / "tags.csv")
    touch(root / "out" / "labels" / "a.nii.gz")  # the run's own output inside the folder
    return root


def test_a_folder_gives_its_images_and_dicom_series_with_stable_ids(cohort):
    studies = find_studies(cohort, exclude=[cohort / "out"])
    assert [(s.id, s.kind) for s in studies] == [("a", "file"), ("b", "file"), ("dicom__series7", "dicom"),
                                                 ("sub-01__anat__t1", "file")]
    assert studies[2].source == str(cohort / "dicom" / "series7")


def test_what_infer_takes_as_many_studies(cohort, tmp_path):
    assert is_cohort_source(cohort)
    assert is_cohort_source("http://127.0.0.1:8042/dicom-web?BodyPartExamined=LEG")
    assert is_cohort_source(touch(tmp_path / "list.txt"))
    assert not is_cohort_source(cohort / "a.nii")  # one image
    assert not is_cohort_source(cohort / "dicom" / "series7")  # one DICOM series folder
    assert not is_cohort_source(tmp_path / "missing")


def test_a_list_file_names_studies_relative_to_itself(tmp_path):
    touch(tmp_path / "data" / "s1" / "scan.nii.gz")
    touch(tmp_path / "data" / "s2" / "scan.nii.gz")
    listing = touch(tmp_path / "data" / "cohort.txt", "# my cohort\ns1/scan.nii.gz\n\n" + str(tmp_path / "data" / "s2" / "scan.nii.gz") + "\ns3/missing.nii.gz\n")
    studies = list_studies(listing)
    assert [s.id for s in studies] == ["s1__scan", "s2__scan", "s3__missing"]
    with pytest.raises(UserError, match="no study"):
        list_studies(touch(tmp_path / "empty.txt", "# nothing\n"))


def test_ids_must_be_unique(tmp_path):
    touch(tmp_path / "c" / "x.nii")
    touch(tmp_path / "c" / "x.nii.gz")
    with pytest.raises(UserError, match="share the id 'x'"):
        find_studies(tmp_path / "c")


def test_shards_cover_every_study_once_by_index_modulo(cohort):
    studies = find_studies(cohort, exclude=[cohort / "out"])
    parts = [[s.id for s in shard(list(reversed(studies)), i, 3)] for i in range(3)]
    assert parts == [["a", "sub-01__anat__t1"], ["b"], ["dicom__series7"]]
    with pytest.raises(UserError):
        shard(studies, 3, 3)


def test_dixon_pairs_by_name_tags(tmp_path):
    for name in ("s1_water.nii.gz", "s1_fat.nii.gz", "s1_in.nii.gz", "s2_water.nii.gz"):
        touch(tmp_path / "d" / name)
    paired, left_out = pair_dixon(find_studies(tmp_path / "d"), "_water", "_fat")
    assert [(s.id, s.fat) for s in paired] == [("s1_water", str(tmp_path / "d" / "s1_fat.nii.gz")),
                                               ("s2_water", str(tmp_path / "d" / "s2_fat.nii.gz"))]
    assert left_out == 1  # s1_in
    with pytest.raises(UserError):
        pair_dixon(paired, "_w", "_w")


def test_the_input_hash_follows_the_content(cohort):
    study = Study("a", str(cohort / "a.nii"), "file")
    series = Study("s", str(cohort / "dicom" / "series7"), "dicom")
    before = input_hash(study), input_hash(series)
    touch(cohort / "a.nii", "y")
    touch(cohort / "dicom" / "series7" / "IM0003")
    after = input_hash(study), input_hash(series)
    assert before[0] != after[0] and before[1] != after[1]
    assert input_hash(study) == after[0]
    with pytest.raises(UserError, match="no such file"):
        input_hash(Study("m", str(cohort / "missing.nii"), "file"))


def test_dicomweb_url_and_query():
    assert split_url("http://h:8042/dicom-web/?BodyPartExamined=LEG&Modality=MR") == (
        "http://h:8042/dicom-web", {"Modality": "MR", "BodyPartExamined": "LEG"})
    assert split_url("https://pacs/dicom-web")[1] == {"Modality": "MR"}


def record(study_id, status="done", version="v1", region="leg"):
    if status != "done":
        return {"id": study_id, "status": "failed", "source": f"/d/{study_id}", "error": "unreadable"}
    measurements = [{"muscle": "soleus", "side": side, "value": value, "voxels": 10, "volume_ml": 1.0,
                     "area_mm2_per_slice": {"0": 5.0, "1": 5.0}, "max_area_mm2": 5.0, "mean": 2.0, "std": 0.5,
                     "fat_fraction": 0.1} for side, value in (("right", 13), ("left", 31))]
    return {"id": study_id, "status": "done", "source": f"/d/{study_id}", "label": f"labels/{study_id}.nii.gz",
            "region": region, "flagged_slices": [2], "classification": {"region": region},
            "measurements": measurements, "model_version": version}


def read_csv(path):
    return list(csv.DictReader(open(path)))


def test_tables_and_the_merge_of_parts(tmp_path):
    run = {"source": "/d", "model_version": "v1", "settings": {"split_sides": False}}
    shared, own = tmp_path / "shared", tmp_path / "own"
    write_tables([record("a"), record("c", "failed")], shared, run, 0, 3)
    write_tables([record("b")], shared, run, 1, 3)
    rows = read_csv(shared / "measurements.part-0-of-3.csv")
    assert [(r["study"], r["muscle"], r["side"], r["slices"], r["fat_fraction"]) for r in rows] == [
        ("a", "soleus", "right", "2", "0.1"), ("a", "soleus", "left", "2", "0.1")]
    assert read_csv(shared / "errors.part-0-of-3.csv") == [{"study": "c", "source": "/d/c", "error": "unreadable"}]
    with pytest.raises(UserError, match=r"parts \[2\] of 3 are missing"):
        merge_parts([shared])
    write_tables([record("d")], own, run, 2, 3)
    merged = merge_parts([shared, own])
    assert [r["study"] for r in read_csv(shared / "measurements.csv")] == ["a", "a", "b", "b", "d", "d"]
    assert [r["study"] for r in read_csv(shared / "errors.csv")] == ["c"]
    cohort = json.loads((shared / "cohort.json").read_text())
    assert cohort == merged and cohort["merged_parts"] == [0, 1, 2] and cohort["missing_parts"] == []
    assert cohort["counts"] == {"studies": 4, "done": 3, "failed": 1}
    assert [s["id"] for s in cohort["studies"]] == ["a", "b", "c", "d"]
    assert cohort["studies"][3]["label"] == "../own/labels/d.nii.gz"  # relative to the merged tables
    assert cohort["studies"][0]["flagged_slices"] == [2]
    write_tables([record("d")], own, {**run, "model_version": "v2"}, 2, 3)
    with pytest.raises(UserError, match="model version"):
        merge_parts([shared, own])
    assert merge_parts([shared], tmp_path / "partial", partial=True)["missing_parts"] == [2]
