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
    glob, unknown = known_values(label, info)
    assert set(np.unique(glob[0, :, 0])) == {13} and set(np.unique(glob[1, :, 0])) == {19}
    assert unknown == {9: 2}
    assert (glob[2, :2, 1] == 9).all()  # kept as is, to be masked out, not turned into a muscle


def test_our_own_values_pass_and_values_above_the_label_set_are_unknown():
    label = np.array([[[0, 5, 36, 37, 200]]], np.uint16)
    glob, unknown = known_values(label, {})
    assert glob.ravel().tolist() == [0, 5, 36, 37, 200] and unknown == {37: 1, 200: 1}


def test_distance_bands():
    assert [distance_band(d) for d in (0, 1, 2, 3, 9)] == [
        "annotated (0)", "near (1-2)", "near (1-2)", "far (3+)", "far (3+)"]
