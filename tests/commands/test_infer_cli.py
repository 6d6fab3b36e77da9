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


def test_infer_on_a_raw_ge_multi_echo_folder_segments_the_first_echo_magnitude_and_says_so(tmp_path):
    """2 echoes x magnitude, phase, real, imaginary at 3 positions = 24 files: a 3-slice volume,
    as the PACS path would serve it, not 24 slices; the choice is in the console and the JSON."""
    import json

    from tests.transforms.test_dicom_series import ge_multi_echo_folder

    folder, phantom = ge_multi_echo_folder(tmp_path / "ge_leg", shape=(200, 160))
    result = run_main("infer", folder, "--json", tmp_path / "result.json")
    assert result.returncode == 0, result.stderr
    said = ("echo 1 magnitude: 3 of 24 images (series holds 2 echo(es) of imaginary, magnitude, phase, real)")
    assert f"volume: {said}" in result.stdout
    assert json.loads((tmp_path / "result.json").read_text())["volume"] == said
    label = nib.load(tmp_path / "ge_leg_muscles.nii.gz")
    assert label.shape == phantom.image.shape  # 3 slices
    np.testing.assert_allclose(label.affine, phantom.affine, atol=1e-3)


def test_infer_on_a_folder_of_several_series_names_them_in_one_line(tmp_path):
    from lib.data.dicom.export import volume_to_series
    from tests.transforms.test_dicom_series import write

    volume = np.full((32, 32, 2), 100.0, np.float32)
    write(volume_to_series(volume, np.eye(4), "t1", description="AX T1")
          + volume_to_series(volume, np.eye(4), "t2", description="AX T2"), tmp_path / "study")
    result = run_main("infer", tmp_path / "study")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(error) == 1 and error[0].startswith("main.py infer: error: series study: the folder holds 2 DICOM "
                                                   "series, not one: "), result.stderr
    assert "#1 'AX T1' (2 images, " in error[0] and "#1 'AX T2' (2 images, " in error[0]
