"""Loading volumes: shapes, echoes, non-finite voxels, and a UserError for every bad input."""

import gzip

import nibabel as nib
import numpy as np
import pytest
import torch

from lib.errors import UserError
from lib.transforms.loading import LoadVolumed, load_volume

AFFINE = np.diag([-1.037037, -1.037037, 5.0, 1.0])


def save(path, arr, affine=AFFINE, cls=nib.Nifti1Image):
    cls(arr, affine).to_filename(str(path))
    return path


def test_3d_volume_and_label(tmp_path):
    img = np.random.default_rng(0).random((40, 30, 5)).astype(np.float32)
    lab = (img > 0.5).astype(np.int16) * 7
    data = LoadVolumed(["image", "label"], dtype=(np.float32, np.uint8))(
        {"image": save(tmp_path / "i.nii.gz", img), "label": save(tmp_path / "l.nii.gz", lab)})
    assert tuple(data["image"].shape) == (1, 40, 30, 5) and data["image"].dtype == torch.float32
    assert np.allclose(data["image"].affine.numpy(), AFFINE) and np.allclose(data["image"].numpy()[0], img)
    assert data["label"].dtype == torch.uint8 and set(np.unique(data["label"].numpy())) == {0, 7}
    meta = data["image"].meta
    assert (meta["echo"], meta["num_echoes"], meta["nonfinite_voxels"], meta["constant"]) == (0, 1, 0, False)


def test_2d_image_is_one_axial_slice(tmp_path):
    out = load_volume(save(tmp_path / "s.nii", np.ones((20, 24), np.float32)))
    assert tuple(out.shape) == (1, 20, 24, 1) and out.meta["constant"] is True


def test_multi_echo_picks_the_requested_echo(tmp_path):
    arr = np.stack([np.full((20, 20, 3), e, np.float32) for e in range(6)], -1)
    path = save(tmp_path / "me.nii.gz", arr)
    assert load_volume(path).max() == 0
    out = load_volume(path, echo=4)
    assert tuple(out.shape) == (1, 20, 20, 3) and out.max() == 4
    assert (out.meta["echo"], out.meta["num_echoes"]) == (4, 6)
    with pytest.raises(UserError, match="echo 6"):
        load_volume(path, echo=6)


def test_nonfinite_voxels_become_zero_and_are_counted(tmp_path):
    arr = np.ones((20, 20, 2), np.float32)
    arr[0, 0, 0], arr[1, 1, 1], arr[2, 2, 0] = np.nan, np.inf, -np.inf
    out = load_volume(save(tmp_path / "n.nii.gz", arr))
    assert torch.isfinite(out).all() and out.meta["nonfinite_voxels"] == 3 and out[0, 0, 0, 0] == 0


def test_axial_slices_along_axis_1_are_checked_in_plane(tmp_path):
    affine = np.array([[-1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 5.0, 0, 0], [0, 0, 0, 1]])
    out = load_volume(save(tmp_path / "a.nii", np.zeros((20, 3, 18), np.float32), affine))
    assert tuple(out.shape) == (1, 20, 3, 18)
    with pytest.raises(UserError, match="smaller than 16x16"):
        load_volume(save(tmp_path / "b.nii", np.zeros((20, 30, 12), np.float32), affine))


def write_header_only(path, shape, cls=nib.Nifti2Header):
    header = cls()
    header.set_data_dtype(np.float32)
    header.set_data_shape(shape)
    with open(path, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * 4 * 8)


def bad_inputs(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "text.nii.gz").write_text("this is not an image\n")
    (tmp_path / "plain.nii").write_bytes(b"\x00\x01garbage" * 60)
    with gzip.open(tmp_path / "gzipped_text.nii.gz", "wb") as f:
        f.write(b"hello, not a header" * 30)
    good = nib.Nifti1Image(np.ones((32, 32, 8), np.float32), AFFINE)
    blob = good.to_bytes()
    (tmp_path / "truncated.nii").write_bytes(blob[: len(blob) // 2])
    write_header_only(tmp_path / "huge.nii", (100000, 100000, 1))
    write_header_only(tmp_path / "many_voxels.nii", (2048, 2048, 2048))
    save(tmp_path / "tiny.nii.gz", np.ones((8, 12, 3), np.float32))
    save(tmp_path / "complex.nii", np.ones((20, 20, 2), np.complex64))
    save(tmp_path / "five_d.nii", np.ones((20, 20, 2, 3, 2), np.float32))
    singular = nib.Nifti1Image(np.ones((20, 20, 2), np.float32), AFFINE)
    singular.set_qform(None, code=0)
    singular.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=2)  # the sform wins: a flat voxel
    singular.to_filename(str(tmp_path / "singular.nii"))
    (tmp_path / "notes.txt").write_text("a text file\n")
    (tmp_path / "empty_folder").mkdir()
    return {
        "missing.nii.gz": "no such file", "empty.nii.gz": "empty file", "text.nii.gz": "not a readable",
        "plain.nii": "not a readable", "gzipped_text.nii.gz": "not a readable", "truncated.nii": "corrupt or truncated",
        "huge.nii": "beyond the limits", "many_voxels.nii": "beyond the limits", "tiny.nii.gz": "smaller than 16x16",
        "complex.nii": "complex", "five_d.nii": "5D", "singular.nii": "affine", "notes.txt": "not an image format",
        "empty_folder": "no readable DICOM",
    }


def test_every_bad_input_is_a_user_error_naming_the_problem(tmp_path):
    for name, message in bad_inputs(tmp_path).items():
        with pytest.raises(UserError, match=message) as err:
            load_volume(tmp_path / name)
        assert name in str(err.value)


def test_label_maps_must_hold_whole_numbers(tmp_path):
    with pytest.raises(UserError, match="whole numbers"):
        load_volume(save(tmp_path / "l.nii.gz", np.full((20, 20, 2), 1.5, np.float32)), dtype=np.uint8)


def test_dicom_series_folder(tmp_path):
    """A folder of one series (one file per slice, in no particular order) is read in slice order."""
    from lib.data.dicom.export import volume_to_series

    arr = (np.arange(20 * 24 * 5).reshape(20, 24, 5) % 200).astype(np.float32)  # (X, Y, Z)
    affine = np.diag([-0.8, -0.9, 3.0, 1.0])
    (tmp_path / "series").mkdir()
    for ds in volume_to_series(arr, affine, "plain"):
        ds.save_as(tmp_path / "series" / f"{ds.SOPInstanceUID}.dcm", write_like_original=False)
    out = load_volume(tmp_path / "series")
    assert tuple(out.shape) == (1, 20, 24, 5) and out.meta["source_format"] == "dicom"
    np.testing.assert_array_equal(out.numpy()[0], arr)
    np.testing.assert_allclose(out.affine.numpy(), affine, atol=1e-4)
    assert out.meta["volume"] == "all 5 images"
