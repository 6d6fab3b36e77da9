"""Ground-truth values of a stored label: a viewer's segment order and unknown values."""

import numpy as np

from lib.evaluation.study_scores import known_values
from lib.evaluation.summary import distance_band


def test_viewer_segment_order_is_mapped_by_name_and_unknown_values_counted():
    label = np.zeros((6, 6, 2), np.uint8)
    label[0, :, 0] = 1  # Slicer's first segment: soleus (ours 13)
    label[1, :, 0] = 2  # Slicer's second segment: vastus lateralis, left (ours 1 + 18)
    label[2, :2, 1] = 9  # not in label_info
    info = {"label_info": [{"name": "Soleus", "idx": 1}, {"name": "Vastus Lateralis - Left", "idx": 2}]}
    glob, unknown, ignore = known_values(label, info)
    assert set(np.unique(glob[0, :, 0])) == {13} and set(np.unique(glob[1, :, 0])) == {19}
    assert unknown == {9: 2}
    assert ignore[2, :2, 1].all() and ignore.sum() == 2  # masked out, not turned into a muscle
    assert not glob[2, :2, 1].any()


def test_an_unknown_stored_value_equal_to_a_mapped_muscle_masks_only_its_own_voxels():
    label = np.zeros((4, 4, 1), np.uint8)
    label[0, :, 0] = 1  # Slicer's soleus -> ours 13
    label[1, :, 0] = 13  # a stored 13 that label_info does not name: unknown
    glob, unknown, ignore = known_values(label, {"label_info": [{"name": "soleus", "idx": 1}]})
    assert unknown == {13: 4} and ignore[1].all() and not ignore[0].any()
    assert (glob[0, :, 0] == 13).all() and not glob[1].any()


def test_our_own_values_pass_and_values_above_the_label_set_are_unknown():
    label = np.array([[[0, 5, 36, 37, 200]]], np.uint16)
    glob, unknown, ignore = known_values(label, {})
    assert glob.ravel().tolist() == [0, 5, 36, 0, 0] and unknown == {37: 1, 200: 1}
    assert ignore.ravel().tolist() == [False, False, False, True, True]


def test_distance_bands():
    assert [distance_band(d) for d in (0, 1, 2, 3, 9)] == [
        "annotated (0)", "near (1-2)", "near (1-2)", "far (3+)", "far (3+)"]


def test_a_label_on_a_sub_grid_is_placed_on_the_image_grid():
    from lib.evaluation.study_scores import embed_in_grid

    affine = np.diag([-1.0, -1.0, 5.0, 1.0])
    label = np.full((4, 3, 2), 7, np.uint8)
    label_affine = affine.copy()
    label_affine[:3, 3] = affine[:3, :3] @ [2, 1, 3]  # starts at voxel (2, 1, 3) of the image
    out = embed_in_grid(label, label_affine, (8, 6, 6), affine)
    assert out.sum() == label.sum() and (out[2:6, 1:4, 3:5] == 7).all()


def test_a_label_on_another_grid_is_refused():
    import pytest

    from lib.evaluation.study_scores import embed_in_grid

    affine = np.diag([-1.0, -1.0, 5.0, 1.0])
    with pytest.raises(ValueError, match="not a part"):
        embed_in_grid(np.ones((4, 4, 1), np.uint8), np.diag([-2.0, -1.0, 5.0, 1.0]), (8, 8, 2), affine)
    shifted = affine.copy()
    shifted[0, 3] = -6.0  # 6 voxels along x: the 4-voxel label ends outside the 8-voxel image
    with pytest.raises(ValueError, match="outside"):
        embed_in_grid(np.ones((4, 4, 1), np.uint8), shifted, (8, 8, 2), affine)


def test_tags_come_from_the_csv_else_from_the_image_info(tmp_path):
    import json

    from lib.evaluation.studies import local_studies

    for name in ("a", "b"):
        (tmp_path / f"{name}.nii.gz").write_bytes(b"")
        (tmp_path / "labels" / "final").mkdir(parents=True, exist_ok=True)
        (tmp_path / "labels" / "final" / f"{name}.nii.gz").write_bytes(b"")
    (tmp_path / "unlabelled.nii.gz").write_bytes(b"")
    index = {"objects": {"a": {"image": {"info": {"severity": "severe", "subject": "p7"}}},
                         "b": {"image": {"info": {"severity": "severe"}}}}}
    (tmp_path / "datastore_v2.json").write_text(json.dumps(index))
    (tmp_path / "tags.csv").write_text("id,severity\nb,mild\n")
    studies = {s.id: s for s in local_studies(tmp_path)}
    assert set(studies) == {"a", "b"}
    assert (studies["a"].severity, studies["a"].subject) == ("severe", "p7")  # image info
    assert (studies["b"].severity, studies["b"].subject) == ("mild", "b")  # the CSV wins; own subject


def test_a_dicom_series_folder_of_a_local_studies_folder_is_a_study(tmp_path):
    """As the local datastore serves it: the folder's name is the id, its label in labels/final."""
    from lib.evaluation.studies import local_studies
    from tests.transforms.test_dicom_series import ge_multi_echo_folder

    ge_multi_echo_folder(tmp_path / "1.2.840.99")
    (tmp_path / "labels" / "final").mkdir(parents=True)
    (tmp_path / "labels" / "final" / "1.2.840.99.nii.gz").write_bytes(b"")
    (tmp_path / "notes").mkdir()  # not DICOM
    studies = local_studies(tmp_path)
    assert [(s.id, s.image) for s in studies] == [("1.2.840.99", str(tmp_path / "1.2.840.99"))]
