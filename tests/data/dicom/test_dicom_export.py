"""Phantoms and NIfTI volumes as MR DICOM series: the geometry survives the PACS round trip.

MONAI Label's DICOMweb datastore reads a series with SimpleITK's GDCM series reader and
writes NIfTI; this test does the same and compares grid, affine and voxels with the source.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from lib.data.dicom.export import volume_to_series
from lib.data.phantoms.phantom import generate_phantom
from lib.errors import UserError


def write_series(datasets, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for ds in datasets:
        ds.save_as(folder / f"{ds.InstanceNumber:04d}.dcm", write_like_original=False)
    return folder


def read_like_monailabel(folder, tmp_path):
    """monailabel.datastore.utils.convert.dicom_to_nifti, step for step."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    sitk.WriteImage(reader.Execute(), str(tmp_path / "back.nii.gz"))
    return nib.load(tmp_path / "back.nii.gz")


def test_phantom_series_reads_back_on_its_own_grid(tmp_path):
    phantom = generate_phantom("thigh", 20_031, n_slices=6, spacing=(1.1, 1.3, 6.0), shape=(96, 80))
    datasets = volume_to_series(phantom.image, phantom.affine, "phantom-thigh-20031", body_part="thigh")
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1 and len(datasets) == 6
    first = pydicom.dcmread(write_series(datasets, tmp_path / "dcm") / "0001.dcm")
    assert first.Modality == "MR" and first.SOPClassUID == pydicom.uid.MRImageStorage
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([1.3, 1.1])
    assert float(first.SliceThickness) == pytest.approx(6.0)
    # LPS arrays: rows run toward the patient's left, columns toward posterior
    assert [float(v) for v in first.ImageOrientationPatient] == pytest.approx([1, 0, 0, 0, 1, 0])

    back = read_like_monailabel(tmp_path / "dcm", tmp_path)
    assert back.shape == phantom.image.shape
    assert np.allclose(back.affine, phantom.affine, atol=1e-3)
    assert np.array_equal(np.asarray(back.dataobj), phantom.image)


def test_an_oblique_float_nifti_keeps_orientation_and_values(tmp_path):
    rng = np.random.default_rng(3)
    volume = rng.normal(100.0, 30.0, (40, 30, 5)).astype(np.float32)
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 1.2, 4.0]) @ np.diag([1, 1, 1])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    back = read_like_monailabel(write_series(volume_to_series(volume, affine, "oblique"), tmp_path / "dcm"), tmp_path)
    assert np.allclose(back.affine, affine, atol=1e-3)
    step = (volume.max() - volume.min()) / 65535  # 16-bit rescaled: within one step
    assert np.max(np.abs(np.asarray(back.dataobj, np.float64) - volume)) <= step


def test_same_key_same_uids_and_bad_volumes_refused():
    volume = np.ones((8, 8, 2), np.float32)
    a, b = volume_to_series(volume, np.eye(4), "k"), volume_to_series(volume, np.eye(4), "k")
    assert [d.SOPInstanceUID for d in a] == [d.SOPInstanceUID for d in b]  # re-upload replaces
    assert a[0].SeriesInstanceUID != volume_to_series(volume, np.eye(4), "other")[0].SeriesInstanceUID
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(UserError, match="orthogonal"):
        volume_to_series(volume, sheared, "k")
    with pytest.raises(UserError, match="3D"):
        volume_to_series(np.ones((8, 8)), np.eye(4), "k")
