"""Per-muscle measurements that quantitative-MRI studies extract from the ROIs.

For each label value present: voxel count, volume (mL), cross-sectional area per slice
(mm²) and its maximum, and mean / standard deviation of the image inside the ROI. Computed on
the input's own grid (the label returned to the user), with spacing from its affine, so the
same ROIs can be applied to fat-fraction or water-T2 maps of the same geometry.
``MeasureMusclesd`` is the last post-processing step of every segmentation answer.
"""

from __future__ import annotations

import csv
import io

import numpy as np
from monai.transforms import MapTransform

from lib.transforms.geometry import axial_axis

CSV_COLUMNS = ("label", "value", "voxels", "volume_ml", "max_area_mm2", "slices", "mean", "std")


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths (mm) along the array axes from a 4x4 affine."""
    return np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)


def measure_labels(label: np.ndarray, image: np.ndarray | None, affine: np.ndarray,
                   names: dict[str, int], slice_axis: int = 2) -> dict[str, dict]:
    """Measurements per label name present in ``label`` (X, Y, Z).

    Args:
        label: integer label volume on the input grid.
        image: the image on the same grid (intensity statistics), or None.
        affine: voxel-to-world affine of both.
        names: label name -> value; values found in ``label`` but not named are reported as
            ``unknown_<value>`` rather than dropped.
        slice_axis: the array axis across which "per-slice" areas are taken (the axial one).
    """
    label = np.asarray(label)
    spacing = voxel_spacing(affine)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    in_plane_mm2 = float(np.prod(np.delete(spacing, slice_axis)))
    by_value = {v: k for k, v in names.items()}
    # bincounts over the labelled voxels only (scipy.ndimage's per-label statistics took ~1 s on
    # 432x432x52; muscles are a fraction of the volume)
    where = np.flatnonzero(label)
    found = label.ravel()[where].astype(np.int64)
    n_values, n_slices = int(found.max(initial=0)) + 1, label.shape[slice_axis]
    slice_of = np.unravel_index(where, label.shape)[slice_axis]
    areas = np.bincount(found * n_slices + slice_of, minlength=n_values * n_slices).reshape(n_values, n_slices)
    areas = areas * in_plane_mm2
    counts = np.bincount(found, minlength=n_values)
    values = [v for v in range(1, n_values) if counts[v]]
    if image is not None and values:
        inside = np.asarray(image).ravel()[where].astype(np.float64)
        means = np.bincount(found, weights=inside, minlength=n_values) / np.maximum(counts, 1)
        squares = np.bincount(found, weights=inside * inside, minlength=n_values) / np.maximum(counts, 1)
        stds = np.sqrt(np.maximum(squares - means**2, 0.0))
    result = {}
    for v in values:
        per_slice = areas[v]
        entry = {
            "value": v,
            "voxels": int(counts[v]),
            "volume_ml": round(float(counts[v]) * voxel_ml, 3),
            "area_mm2_per_slice": {int(k): round(float(a), 1) for k, a in enumerate(per_slice) if a > 0},
            "max_area_mm2": round(float(per_slice.max()), 1),
        }
        if image is not None:
            entry["mean"] = round(float(means[v]), 4)
            entry["std"] = round(float(stds[v]), 4)
        result[by_value.get(v, f"unknown_{v}")] = entry
    return result


def measurements_csv(measurements: dict[str, dict]) -> str:
    """The measurements as CSV text, one row per label (areas summarised by slice count)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for name, m in sorted(measurements.items(), key=lambda item: item[1]["value"]):
        writer.writerow([name, m["value"], m["voxels"], m["volume_ml"], m["max_area_mm2"],
                         len(m["area_mm2_per_slice"]), m.get("mean", ""), m.get("std", "")])
    return out.getvalue()


class MeasureMusclesd(MapTransform):
    """Add ``result["measurements"]``: per-muscle volume, areas and intensity statistics.

    keys: the label volume (1, X, Y, Z) on the input grid; image_key: the original image on the
    same grid; names: label name -> value (the names the result uses).
    """

    def __init__(self, keys, names: dict[str, int], image_key: str = "image_original", result_key: str = "result"):
        super().__init__(keys)
        self.names, self.image_key, self.result_key = names, image_key, result_key

    def __call__(self, data):
        d = dict(data)
        original = d[self.image_key]
        affine = np.asarray(original.affine)
        for key in self.key_iterator(d):
            label = np.asarray(d[key])[0]
            result = dict(d.get(self.result_key) or {})
            result["measurements"] = measure_labels(label, np.asarray(original)[0], affine, self.names,
                                                    slice_axis=axial_axis(affine))
            d[self.result_key] = result
        return d
