"""``python main.py infer`` for scripted batch use: labels, CSV and one-line errors."""

import csv
import subprocess
import sys

import nibabel as nib
import numpy as np

from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from tests.conftest import ROOT


def run_main(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def test_infer_writes_labels_on_the_input_grid_and_a_csv(tmp_path):
    phantom = generate_phantom("leg", 20_800, n_slices=3, spacing=(1.2, 1.2, 5.0), shape=(320, 320))
    image = tmp_path / "leg.nii.gz"
    save_nifti(image, phantom.image, phantom.affine)
    result = run_main("infer", image, "--split-sides", "--csv", tmp_path / "stats.csv")
    assert result.returncode == 0, result.stderr
    label = nib.load(tmp_path / "leg_muscles.nii.gz")
    assert label.shape == phantom.image.shape and np.allclose(label.affine, nib.load(image).affine, atol=1e-4)
    rows = list(csv.DictReader(open(tmp_path / "stats.csv")))
    assert {r["label"] for r in rows} >= {"soleus_right", "soleus_left", "peroneus_right", "peroneus_left"}
    assert all(float(r["volume_ml"]) > 0 for r in rows)
    assert "region: leg" in result.stdout


def test_infer_errors_are_one_line(tmp_path):
    junk = tmp_path / "junk.nii.gz"
    junk.write_text("not an image")
    for args in (["infer", tmp_path / "missing.nii.gz"], ["infer", junk]):
        result = run_main(*args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert [line for line in result.stderr.splitlines() if "error" in line.lower()][-1].startswith("main.py infer: error:")
