"""A cohort run in process: Dixon fat fraction, and what makes a finished study stale."""

from __future__ import annotations

import numpy as np
import pytest

from lib.cohort.run import CohortRun, fat_fraction_means, run_studies, sides
from lib.cohort.sources import find_studies, pair_dixon
from lib.data.io import save_nifti
from lib.data.phantoms.phantom import generate_phantom
from lib.models.store import ModelStore
from lib.transforms.postprocess import split_sides


def test_fat_fraction_means_per_label():
    label = np.array([[[0, 1, 1, 2]]])
    water = np.array([[[5.0, 3.0, 1.0, 0.0]]])
    fat = np.array([[[5.0, 1.0, 3.0, 0.0]]])  # label 2: no signal at all, no fraction
    assert fat_fraction_means(label, water, fat) == {1: 0.5}


def test_sides_on_the_muscle_box_are_split_sides():
    for region, seed in (("thigh", 20_710), ("leg", 20_711)):
        phantom = generate_phantom(region, seed, n_slices=3, spacing=(1.2, 1.2, 5.0), shape=(320, 320))
        label = phantom.label.copy()
        label[:, :, 1] = 0  # a slice without muscle
        flipped = np.diag([-1.0, 1.0, 1.0, 1.0]) @ phantom.affine  # another orientation
        for affine in (phantom.affine, flipped):
            assert np.array_equal(sides(label, affine), split_sides(label, affine))
    assert not sides(np.zeros((4, 4, 2), np.uint8), np.eye(4)).any()


@pytest.fixture(scope="module")
def dixon(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dixon")
    phantom = generate_phantom("leg", 20_700, n_slices=3, spacing=(1.2, 1.2, 5.0), shape=(320, 320))
    water = np.maximum(phantom.image, 0)
    save_nifti(folder / "p1_water.nii.gz", water, phantom.affine, dtype=np.float32)
    save_nifti(folder / "p1_fat.nii.gz", water / 3.0, phantom.affine, dtype=np.float32)  # F / (W + F) = 0.25
    save_nifti(folder / "p1_in.nii.gz", water, phantom.affine, dtype=np.float32)  # neither tag: left out
    save_nifti(folder / "p2_water.nii.gz", water, phantom.affine, dtype=np.float32)
    save_nifti(folder / "p2_fat.nii.gz", water[:, :, :2], phantom.affine, dtype=np.float32)  # another grid
    return folder


def test_dixon_pairs_add_the_mean_fat_fraction_and_stale_records_are_redone(dixon, tmp_path):
    studies, left_out = pair_dixon(find_studies(dixon), "_water", "_fat")
    assert [s.id for s in studies] == ["p1_water", "p2_water"] and left_out == 1
    run = CohortRun(tmp_path / "out", ModelStore(tmp_path / "model").weights("live"),
                    fat_fraction=("_water", "_fat"))
    first = run_studies(studies, run)
    assert (first["segmented"], first["failed"], first["skipped"]) == (1, 1, 0)
    done, failed = first["records"]
    assert "another grid" in failed["error"]
    assert done["region"] == "leg" and done["measurements"]
    assert all(abs(m["fat_fraction"] - 0.25) < 1e-3 for m in done["measurements"])
    assert {m["side"] for m in done["measurements"]} <= {"right", "left"}

    assert run_studies(studies[:1], run)["skipped"] == 1  # current: nothing to do
    run.model_version = "a newly published model"
    assert run_studies(studies[:1], run)["segmented"] == 1
    run.split_sides = True  # other settings: other results
    again = run_studies(studies[:1], run)
    assert again["segmented"] == 1 and again["records"][0]["label_values"] == "side"
