"""Per-muscle measurements on hand-built label maps with known answers."""

import numpy as np

from lib.inference.measurements import measure_labels, measurements_csv


def test_volume_area_and_intensity_of_a_known_box():
    label = np.zeros((20, 20, 4), np.uint8)
    label[2:7, 3:5, 1:3] = 4  # 5 x 2 x 2 voxels of rectus femoris
    image = np.zeros(label.shape, np.float32)
    image[label == 4] = np.tile([10.0, 20.0], 10)
    affine = np.diag([-0.5, -2.0, 5.0, 1.0])  # 0.5 x 2 x 5 mm voxels, LPS
    m = measure_labels(label, image, affine, {"rectus_femoris": 4})["rectus_femoris"]
    assert m["voxels"] == 20
    assert m["volume_ml"] == 20 * 0.5 * 2.0 * 5.0 / 1000
    assert m["area_mm2_per_slice"] == {1: 10.0, 2: 10.0}  # 10 pixels of 1 mm² per slice
    assert m["max_area_mm2"] == 10.0
    assert m["mean"] == 15.0 and m["std"] == 5.0


def test_unknown_values_are_reported_not_dropped():
    label = np.zeros((8, 8, 1), np.uint8)
    label[1, 1, 0] = 1
    label[5, 5, 0] = 77
    m = measure_labels(label, None, np.eye(4), {"vastus_lateralis": 1})
    assert set(m) == {"vastus_lateralis", "unknown_77"}
    assert "mean" not in m["vastus_lateralis"]
    csv = measurements_csv(m)
    assert csv.splitlines()[0].startswith("label,value,voxels")
    assert len(csv.splitlines()) == 3
