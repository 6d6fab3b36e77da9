"""The real volumes' region table (lib/data/real_volumes.py), on a small folder and table written
here: slice ranges are inclusive, only certain slices of the asked region count, and a file whose
z points to the feet is recognised (its slice numbers are not the model grid's)."""

from __future__ import annotations

import numpy as np

from lib.data.io import save_nifti
from lib.data.real_volumes import certain_slices, slice_regions, z_points_to_head

TABLE = """volume,first_slice,last_slice,region
calf,0,1,none
calf,2,5,leg
calf,6,7,knee
thigh,0,3,thigh
"""


def test_certain_slices_of_a_region_come_from_the_table(tmp_path):
    for name in ("calf", "thigh", "unlisted"):
        save_nifti(tmp_path / f"{name}.nii.gz", np.zeros((4, 4, 8), np.float32), np.eye(4))
    table = tmp_path / "regions.csv"
    table.write_text(TABLE)
    assert certain_slices("leg", tmp_path, table) == {tmp_path / "calf.nii.gz": [2, 3, 4, 5]}
    assert certain_slices("thigh", tmp_path, table) == {tmp_path / "thigh.nii.gz": [0, 1, 2, 3]}
    regions = slice_regions({"calf": 8, "unlisted": 2}, table)
    assert regions["calf"] == ["none", "none", "leg", "leg", "leg", "leg", "knee", "knee"]
    assert regions["unlisted"] == [None, None]
    assert certain_slices("leg", tmp_path / "absent", table) == {}


def test_z_to_the_feet_is_recognised(tmp_path):
    head = save_nifti(tmp_path / "head.nii.gz", np.zeros((4, 4, 3), np.float32), np.eye(4))
    feet = save_nifti(tmp_path / "feet.nii.gz", np.zeros((4, 4, 3), np.float32), np.diag([1.0, 1.0, -1.0, 1.0]))
    assert z_points_to_head(head) and not z_points_to_head(feet)
