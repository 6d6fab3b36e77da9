"""Clinician labels as training data (lib/annotations.py): names, values, slices, checks."""

from __future__ import annotations

import numpy as np
import pytest

from lib import labels as L
from lib.annotations import (LabelCheck, annotated_slices, check_label, fold_sides, normalise_name, to_global,
                                  value_map)
from lib.errors import UserError
from lib.options import parse_slices

AFFINE = np.diag([-1.0, -1.0, 5.0, 1.0])  # LPS-like phantom affine: array axis 2 is head-foot
SHAPE = (24, 24, 6)


def sparse(values_by_slice: dict[int, list[int]], shape=SHAPE) -> np.ndarray:
    """A label with the given values painted as small squares on the given slices."""
    label = np.zeros(shape, np.uint8)
    for k, values in values_by_slice.items():
        for i, v in enumerate(values):
            label[2 + 3 * i: 4 + 3 * i, 2:6, k] = v
    return label


@pytest.mark.parametrize("name, expected", [
    ("Vastus Lateralis - Left", "vastus_lateralis_left"),
    ("  biceps-femoris (long head) ", "biceps_femoris_long_head"),
    ("SOLEUS", "soleus"),
    ("gastrocnemius__medialis", "gastrocnemius_medialis"),
])
def test_normalise_name(name, expected):
    assert normalise_name(name) == expected


def test_value_map_names_with_side_suffixes_and_prefixes():
    vl, soleus = L.all_labels()["vastus_lateralis"], L.all_labels()["soleus"]
    mapping = value_map({"Vastus Lateralis - Left": 1, "vastus_lateralis_right": 2, "Left Soleus": 3,
                         "soleus": 4, "Soleus Right": 5, "background": 0})
    assert mapping == {1: vl + L.SIDE_OFFSET, 2: vl, 3: soleus + L.SIDE_OFFSET, 4: soleus, 5: soleus}
    assert max(mapping.values()) <= 2 * L.SIDE_OFFSET


def test_value_map_slicer_list_equals_dict_and_ignores_order():
    slicer = [{"name": "tibialis_anterior", "idx": 1}, {"name": "Soleus", "idx": 2}, {"name": "peroneus", "idx": 3}]
    ohif = {"peroneus": 3, "soleus": 2, "Tibialis Anterior": 1}
    ours = L.all_labels()
    assert value_map(slicer) == value_map(ohif) == {1: ours["tibialis_anterior"], 2: ours["soleus"],
                                                     3: ours["peroneus"]}
    assert value_map([{"name": "soleus", "value": 7}]) == {7: ours["soleus"]}  # "value" is accepted for "idx"


@pytest.mark.parametrize("label_info, words", [
    ({"popliteus": 1}, "unknown muscle name 'popliteus'"),
    ({"quadriceps": 1}, "ambiguous muscle name 'quadriceps'"),
    ([{"name": "soleus", "idx": "x"}], "no integer value"),
    ({"soleus": 1, "peroneus": 1}, "two different muscles"),
    ([{"idx": 1}], "'name'"),
    ("soleus", "label_info must be"),
])
def test_value_map_refuses_bad_label_info(label_info, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        value_map(label_info)


def test_value_map_empty_means_ours():
    assert value_map(None) is None and value_map({}) is None and value_map([]) is None


def test_to_global_remaps_by_name_and_drops_unnamed_values():
    label = np.array([[0, 1, 2], [3, 4, 0]], np.uint16)
    out = to_global(label, {1: 13, 2: 31, 3: 1})
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 13, 31], [1, 0, 0]]  # 4 has no name: 0
    assert to_global(label, None).tolist() == label.tolist()


def test_fold_sides():
    label = np.array([0, 1, 18, 19, 31, 36], np.uint8)
    assert fold_sides(label).tolist() == [0, 1, 18, 1, 13, 18]
    assert fold_sides(label).dtype == np.uint8


def test_annotated_slices_from_info_or_from_non_empty_slices():
    label = sparse({1: [3], 4: [5, 6]})
    assert annotated_slices(None, label) == [1, 4]
    assert annotated_slices({}, label) == [1, 4]
    # an annotated slice may be empty (no muscle there), and listing wins over content
    assert annotated_slices({"annotated_slices": [4, 0, 4]}, label) == [0, 4]
    assert annotated_slices({"annotated_slices": "4, 1"}, label) == [1, 4]
    assert annotated_slices(None, np.moveaxis(label, 2, 0), axis=0) == [1, 4]
    with pytest.raises(UserError, match=r"outside the label's 6 slices"):
        annotated_slices({"annotated_slices": [2, 6]}, label)
    with pytest.raises(UserError, match="list of slice indices"):
        parse_slices(["a"])


def test_check_label_good_sparse_label_in_slicer_order():
    ours = L.all_labels()
    info = {"label_info": [{"name": "peroneus", "idx": 1}, {"name": "soleus", "idx": 2}]}
    check = check_label(sparse({1: [1, 2], 3: [2]}), AFFINE, SHAPE, AFFINE, info)
    assert isinstance(check, LabelCheck)
    assert check.slices == [1, 3] and check.axis == 2
    assert check.values == sorted([ours["peroneus"], ours["soleus"]])
    assert set(np.unique(check.label)) == {0, ours["peroneus"], ours["soleus"]}
    mask = check.annotated_mask()
    assert mask[:, :, [1, 3]].all() and not mask[:, :, [0, 2, 4, 5]].any()


def test_check_label_accepts_our_values_and_a_4d_singleton_label():
    check = check_label(sparse({2: [1, 19]})[..., None], AFFINE, SHAPE, AFFINE, {})
    assert check.values == [1, 19] and check.slices == [2]


@pytest.mark.parametrize("label, affine, info, words", [
    (sparse({1: [1]}, (24, 20, 6)), AFFINE, {}, "label shape"),
    (sparse({1: [1]})[:, :, 1], AFFINE, {}, "label shape"),  # a 2D label for a 6-slice image
    (np.ones(6), AFFINE, {}, "label shape"),
    (sparse({1: [1]}), np.diag([-1.0, -1.0, 3.0, 1.0]), {}, "affine"),
    (sparse({1: [37]}), AFFINE, {}, r"label values \[37\] are not in the label set"),
    (sparse({1: [3]}), AFFINE, {"label_info": {"soleus": 1}}, r"label values \[3\] are not in label_info"),
    (sparse({1: [1]}), AFFINE, {"label_info": {"hamstrings": 1}}, "ambiguous muscle name 'hamstrings'"),
    (sparse({1: [1]}).astype(np.float32) * 0.5, AFFINE, {}, "non-negative integers"),
    (np.zeros(SHAPE, np.uint8), AFFINE, {}, "label is empty"),
    (sparse({1: [1]}), AFFINE, {"annotated_slices": [2]}, "label is empty"),  # muscle only off the annotated ones
    (sparse({1: [1]}), AFFINE, {"annotated_slices": [9]}, "outside the label's 6 slices"),
    (sparse({1: [1]}), AFFINE, {"annotated_slices": "one"}, "list of slice indices"),
])
def test_check_label_refuses(label, affine, info, words):
    with pytest.raises(UserError, match=words):
        check_label(label, affine, SHAPE, AFFINE, info)


def test_check_label_2d_image_and_label():
    label = sparse({0: [5]}, (24, 24, 1))[:, :, 0]
    check = check_label(label, AFFINE, (24, 24), AFFINE, {})
    assert check.label.shape == (24, 24, 1) and check.slices == [0] and check.values == [5]
