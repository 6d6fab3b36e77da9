"""A series mixing echoes and magnitude/phase images is read as its first echo's magnitude: on a
PACS (``select_volume``) and from a DICOM folder (``load_volume``), by the one rule."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from lib.data.dicom.export import volume_to_series
from lib.data.phantoms.phantom import generate_phantom
from lib.errors import UserError
from lib.transforms.dicom_series import image_kind, select_volume
from lib.transforms.loading import load_volume


GE_KIND = {"M": 0, "P": 1, "R": 2, "I": 3}  # GE's private tag (0043,102F)


def multi_echo_series(volume, affine, kinds=("M", "P"), echoes=(1, 2), ge=False, key="me") -> list:
    """One SeriesInstanceUID holding every (echo, image type) at every position; GE style when
    ``ge``: ImageType says only OTHER, the image type is in the private tag (0043,102F)."""
    first = None
    out = []
    for echo in echoes:
        for kind in kinds:
            # distinct pixels per image: echo 2 darker, phase a ramp, so a wrong pick shows
            data = volume / echo if kind == "M" else np.broadcast_to(np.arange(volume.shape[0])[:, None, None],
                                                                    volume.shape) * 10.0
            series = volume_to_series(data, affine, f"{key}-{echo}-{kind}")
            first = first or series[0]
            for ds in series:
                ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, first.SeriesInstanceUID
                ds.FrameOfReferenceUID = first.FrameOfReferenceUID
                ds.EchoNumbers, ds.EchoTime = echo, f"{2.0 * echo:.1f}"
                ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"] if ge else ["ORIGINAL", "PRIMARY", kind, "ND"]
                if ge:
                    ds.add_new((0x0043, 0x102F), "SS", GE_KIND[kind])
                ds.InstanceNumber = len(out) + 1
                out.append(ds)
    return out


def ge_multi_echo_folder(folder, region="leg", n_slices=3, seed=20_044, shape=(64, 48)):
    """A raw GE multi-echo folder, as met: 2 echoes x magnitude, phase, real, imaginary at every
    slice position, one SeriesInstanceUID, files in no particular order; and its phantom."""
    phantom = generate_phantom(region, seed, n_slices=n_slices, spacing=(1.5, 1.5, 6.0), shape=shape)
    write(multi_echo_series(phantom.image, phantom.affine, kinds=("M", "P", "R", "I"), ge=True,
                            key=f"ge-{folder.name}"), folder)
    return folder, phantom


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
    for ds in twice:  # one series, its positions twice over and nothing to tell them apart
        ds.SeriesInstanceUID = twice[0].SeriesInstanceUID
    with pytest.raises(UserError, match="several images at one slice position"):
        select_volume(write(twice, tmp_path / "twice"), "S3")
    phase_only = multi_echo_series(volume, np.eye(4), kinds=("P",), echoes=(1,))
    with pytest.raises(UserError, match="no magnitude images"):
        select_volume(write(phase_only, tmp_path / "phase"), "S4")


def test_a_folder_of_several_series_is_refused_in_one_line_listing_them(tmp_path):
    volume = np.ones((16, 16, 2), np.float32)
    t1 = volume_to_series(volume, np.eye(4), "t1", description="AX T1")
    dixon = volume_to_series(volume, np.eye(4), "dixon", description="DIXON W")
    for ds in dixon:
        ds.SeriesNumber = 4
    folder = write(t1 + dixon, tmp_path / "study")
    for select in (lambda: select_volume(folder, "study"), lambda: load_volume(folder)):
        with pytest.raises(UserError) as err:
            select()
        message = str(err.value)
        assert message.startswith("series study: the folder holds 2 DICOM series, not one: #1 'AX T1' (2 images, ")
        assert "#4 'DIXON W' (2 images, " in message and str(dixon[0].SeriesInstanceUID) in message
        assert "folder of its own" in message and "\n" not in message


def test_load_volume_reads_a_ge_multi_echo_folder_as_its_first_echo_magnitude(tmp_path):
    """The DICOM folder path (``main.py infer``, local studies) uses the PACS rule: 3 positions
    x 2 echoes x M/P/R/I = 24 files give a 3-slice volume, not 24 slices, and say which."""
    folder, phantom = ge_multi_echo_folder(tmp_path / "ge_raw")
    volume = load_volume(folder)
    assert tuple(volume.shape) == (1, *phantom.image.shape)
    np.testing.assert_allclose(volume.numpy()[0], phantom.image, atol=1e-3)  # echo 1 magnitude, in order
    np.testing.assert_allclose(volume.affine.numpy(), phantom.affine, atol=1e-3)
    assert volume.meta["volume"] == ("echo 1 magnitude: 3 of 24 images (series holds 2 echo(es) of imaginary, "
                                     "magnitude, phase, real)")
    assert volume.meta["source_format"] == "dicom" and volume.meta["original_shape"][2] == 3
    second = load_volume(folder, echo=1)  # a later echo on request, as for a 4D file
    np.testing.assert_allclose(second.numpy()[0], phantom.image / 2, atol=phantom.image.max() / 30000)
    assert second.meta["volume"].startswith("echo 2 magnitude: 3 of 24 images")
    with pytest.raises(UserError, match="echo 2 requested but the series has 2 magnitude echo"):
        load_volume(folder, echo=2)
    assert len(list(folder.iterdir())) == 24  # the user's folder is read, never changed


def test_load_volume_refuses_a_series_without_slice_geometry(tmp_path):
    datasets = volume_to_series(np.ones((16, 16, 2), np.float32), np.eye(4), "nogeo")
    for ds in datasets:
        del ds.ImagePositionPatient
    with pytest.raises(UserError, match="series nogeo: images lack ImagePositionPatient"):
        load_volume(write(datasets, tmp_path / "nogeo"))
