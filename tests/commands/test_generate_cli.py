"""``python main.py generate`` (lib/commands/generate.py) and the embedded datastore studies/."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lib.commands import generate
from lib.data.io import load_nifti
from lib.data.phantoms.embedded import (EMBEDDED, NOTICE_FILE, REAL_VOLUMES, REAL_VOLUMES_DIR, REAL_VOLUMES_LICENSE,
                                        build_embedded)
from lib.data.phantoms.real_slice import ROIS_FILE
from lib.errors import UserError
from lib.paths import EMBEDDED_STUDIES, SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str):
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_rejects_zero_subjects_in_one_line_with_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "store"
    done = subprocess.run([sys.executable, "main.py", "generate", "--subjects", "0", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == ["main.py generate: error: --subjects must be at least 1, got 0"]
    assert not out.exists()


@pytest.mark.parametrize("argv", [
    ("--slices", "0"), ("--slices", "-3"), ("--region", "arm"), ("--severity", "extreme"),
    ("--annotate", "some"), ("--spacing", "1", "0", "5"), ("--spacing", "1", "1", "-5"),
    ("--shape", "8", "432"), ("--seed", "-1"), ("--subjects", "-2"),
])
def test_impossible_arguments_raise_user_error_before_writing(tmp_path, argv):
    out = tmp_path / "store"
    with pytest.raises(UserError) as error:
        generate.run(parse("--out", str(out), *argv))
    assert "\n" not in str(error.value)
    assert not out.exists()


def test_missing_out_is_a_user_error():
    with pytest.raises(UserError, match="--out"):
        generate.run(parse())


def test_tiny_run_writes_a_monai_label_datastore(tmp_path, capsys):
    out = tmp_path / "store"
    code = generate.run(parse("--out", str(out), "--region", "both", "--subjects", "2", "--slices", "12",
                              "--seed", "5", "--shape", "64", "48", "--spacing", "7", "7", "5"))
    assert code == 0
    ids = ["phantom_thigh_s0005_healthy", "phantom_leg_s0005_healthy",
           "phantom_thigh_s0006_mild", "phantom_leg_s0006_mild"]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{i}.nii.gz" for i in ids)
    assert sorted(p.name for p in (out / "labels" / "final").iterdir()) == sorted(f"{i}.nii.gz" for i in ids)
    for study in ids:
        image, affine = load_nifti(out / f"{study}.nii.gz")
        label, label_affine = load_nifti(out / "labels" / "final" / f"{study}.nii.gz")
        assert image.shape == label.shape == (64, 48, 12)
        np.testing.assert_allclose(label_affine, affine)
        assert nib.aff2axcodes(affine) == ("L", "P", "S")
        annotated = [k for k in range(12) if label[:, :, k].any()]
        assert len(annotated) == (7 if "thigh" in study else 3)
    assert "wrote 4 studies (4 labelled)" in capsys.readouterr().out


def test_annotate_none_writes_images_only(tmp_path):
    out = tmp_path / "store"
    generate.run(parse("--out", str(out), "--region", "leg", "--subjects", "1", "--slices", "2",
                       "--severity", "severe", "--annotate", "none", "--shape", "32", "32",
                       "--spacing", "12", "12", "5"))
    assert sorted(p.name for p in out.iterdir()) == ["phantom_leg_s0000_severe.nii.gz", "tags.csv"]  # no labels/
    assert (out / "tags.csv").read_text().splitlines() == ["id,subject,region,severity",
                                                           "phantom_leg_s0000_severe,s0000,leg,severe"]


def test_embedded_studies_are_small_labelled_as_promised_and_carry_the_notice():
    files = [p for p in EMBEDDED_STUDIES.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20
    labelled = {p.name for p in (EMBEDDED_STUDIES / "labels" / "final").glob("*.nii.gz")}
    expected = {f"{s.id}.nii.gz" for s in EMBEDDED if s.annotate != "none"} | {"real_leg_t1.nii.gz"}
    assert labelled == expected
    assert {s.region for s in EMBEDDED if s.annotate == "sparse"} == {"thigh", "leg"}
    assert len({s.spacing for s in EMBEDDED}) > 1
    for spec in EMBEDDED:
        assert (EMBEDDED_STUDIES / f"{spec.id}.nii.gz").exists()
    notice = (EMBEDDED_STUDIES / NOTICE_FILE).read_text()
    for needed in ("Apache License", "dafne-imaging/dafne-evaluation", "5f5d824b"):
        assert needed in notice
    # the unlabelled real volumes: 7 images in all, each real one named in the notice with its licence beside it
    images = {p.name[:-len(".nii.gz")] for p in EMBEDDED_STUDIES.glob("*.nii.gz")}
    assert images == {s.id for s in EMBEDDED} | {"real_leg_t1"} | set(REAL_VOLUMES)
    assert len(images) == 7
    assert set(REAL_VOLUMES) == {"real_thigh_dixon", "real_calf_t2"}
    for study in REAL_VOLUMES:
        assert f"`{study}.nii.gz`" in notice
    for needed in ("SWastling/musclemap", "bb20bfe5", "MIT License", "Copyright (c) 2025 Stephen Wastling",
                   "0006-Dixon_TE_345_th.nii.gz", "t2_te16ms.nii.gz", REAL_VOLUMES_LICENSE):
        assert needed in notice
    licence = (EMBEDDED_STUDIES / REAL_VOLUMES_LICENSE).read_text()
    assert licence.startswith("MIT License") and "Copyright (c) 2025 Stephen Wastling" in licence
    assert "`phantom_*` are synthetic" in notice and "`real_*` are the real MRI" in notice


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason="real sample data missing")
def test_rebuilding_the_embedded_studies_reproduces_the_committed_files(tmp_path):
    if not all((SHARED_DATA / REAL_VOLUMES_DIR / name).is_file() for name in REAL_VOLUMES.values()):
        pytest.skip(f"real volumes missing in {SHARED_DATA / REAL_VOLUMES_DIR}")
    stale = tmp_path / "phantom_thigh_s0099_mild.nii.gz"  # an older build's phantom
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"old")
    written = build_embedded(tmp_path)
    for path in written:
        committed = EMBEDDED_STUDIES / path.relative_to(tmp_path)
        assert path.read_bytes() == committed.read_bytes(), f"{committed} is stale: run main.py generate --embedded"
    assert not stale.exists()  # stale phantoms go, the real studies are written and stay
    for study in ("real_leg_t1", *REAL_VOLUMES):
        assert tmp_path / f"{study}.nii.gz" in written
    assert tmp_path / REAL_VOLUMES_LICENSE in written
    def shipped(folder):  # images, notices and final labels (not what a server run adds: index, lock, original/)
        return {p.relative_to(folder) for pattern in ("*.nii.gz", "*.md", "*.txt", "labels/final/*.nii.gz")
                for p in folder.glob(pattern)}
    assert shipped(tmp_path) == shipped(EMBEDDED_STUDIES)  # nothing committed that the build does not make
