"""A series mixing echoes and magnitude/phase images is read as its first echo's magnitude."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from lib.data.dicom.export import volume_to_series
from lib.data.dicom.series import image_kind, select_volume
from lib.data.phantoms.phantom import generate_phantom
from lib.errors import UserError


def multi_echo_series(volume, affine, kinds=("M", "P"), echoes=(1, 2)) -> list:
    """One SeriesInstanceUID holding every (echo, image type) at every position, GE style:
    image type in the private tag (0043,102F) when ``ge``, else in ImageType."""
    first = None
    out = []
    for echo in echoes:
        for kind in kinds:
            # distinct pixels per image: echo 2 darker, phase a ramp, so a wrong pick shows
            data = volume / echo if kind == "M" else np.broadcast_to(np.arange(volume.shape[0])[:, None, None],
                                                                    volume.shape) * 10.0
            series = volume_to_series(data, affine, f"me-{echo}-{kind}")
            first = first or series[0]
            for ds in series:
                ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, first.SeriesInstanceUID
                ds.FrameOfReferenceUID = first.FrameOfReferenceUID
                ds.EchoNumbers, ds.EchoTime = echo, f"{2.0 * echo:.1f}"
                ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "ND"]
                ds.InstanceNumber = len(out) + 1
                out.append(ds)
    return out


def write(datasets, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for ds in datasets:
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", write_like_original=False)
    return folder


def read_volume(paths) -> np.ndarray:
    """As the DICOMweb datastore does: the kept files alone in a folder, GDCM's series order."""
    folder = paths[0].parent.parent / f"{paths[0].parent.name}_kept"
    folder.mkdir()
    for path in paths:
        shutil.copy(path, folder / path.name)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return np.transpose(sitk.GetArrayFromImage(reader.Execute()), (2, 1, 0))  # (X, Y, Z)


def test_first_echo_magnitude_is_picked_and_named(tmp_path):
    phantom = generate_phantom("leg", 20_041, n_slices=4, spacing=(1.2, 1.2, 6.0), shape=(96, 80))
    folder = write(multi_echo_series(phantom.image, phantom.affine), tmp_path / "series")
    selection = select_volume(folder, "S1")
    assert len(selection.kept) == 4 and len(selection.dropped) == 12
    assert selection.description == "echo 1 magnitude: 4 of 16 images (series holds 2 echo(es) of magnitude, phase)"
    assert np.array_equal(read_volume(selection.kept), phantom.image)


def test_ge_private_image_type_and_single_series_untouched(tmp_path):
    phantom = generate_phantom("thigh", 20_042, n_slices=3, spacing=(1.0, 1.0, 5.0), shape=(64, 64))
    datasets = multi_echo_series(phantom.image, phantom.affine, kinds=("M", "P"), echoes=(1,))
    for ds in datasets:  # GE: ImageType says OTHER, the private tag says magnitude (0) or phase (1)
        kind = ds.ImageType[2]
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.add_new((0x0043, 0x102F), "SS", 0 if kind == "M" else 1)
    assert [image_kind(ds) for ds in datasets[:1] + datasets[-1:]] == ["magnitude", "phase"]
    selection = select_volume(write(datasets, tmp_path / "ge"))
    assert np.array_equal(read_volume(selection.kept), phantom.image)
    plain = select_volume(write(volume_to_series(phantom.image, phantom.affine, "plain"), tmp_path / "plain"))
    assert plain.dropped == [] and plain.description == "all 3 images"


def test_missing_geometry_and_ambiguous_series_are_refused(tmp_path):
    volume = np.ones((16, 16, 2), np.float32)
    datasets = volume_to_series(volume, np.eye(4), "nogeo")
    del datasets[1].ImagePositionPatient
    with pytest.raises(UserError, match="series S2: images lack ImagePositionPatient"):
        select_volume(write(datasets, tmp_path / "nogeo"), "S2")
    twice = volume_to_series(volume, np.eye(4), "a") + volume_to_series(volume, np.eye(4), "b")
    with pytest.raises(UserError, match="several images at one slice position"):
        select_volume(write(twice, tmp_path / "twice"), "S3")
    phase_only = multi_echo_series(volume, np.eye(4), kinds=("P",), echoes=(1,))
    with pytest.raises(UserError, match="no magnitude images"):
        select_volume(write(phase_only, tmp_path / "phase"), "S4")
