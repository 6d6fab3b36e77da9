"""Score the routed pipeline on the annotated slices of one labelled study.

Only annotated slices are ground truth (SPEC §2: an unannotated slice is unknown, not
background): the label info's ``annotated_slices``, else the slices holding any muscle. The
pipeline runs on exactly those slices. Each (slice, muscle, side) present in the truth or the
prediction gives one row of voxel counts (so any group's Dice can be pooled later), Hausdorff
95 and mean surface distance in mm (2D, in-plane spacing). Sides come from world coordinates
for both maps (``lib.transforms.postprocess.split_sides``), whatever the label stored.

Label values that are no muscle of ours are counted as *unknown* and reported; their voxels
are left out of every score (in the prediction too), never silently turned into background.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lib.annotations import MAX_GLOBAL_VALUE, annotated_slices, fold_sides, shapes_match, to_global, value_map
from lib.data.phantoms.phantom import annotated_slices as protocol_slices
from lib.evaluation.metrics import surface_distances
from lib.evaluation.studies import LabelledStudy
from lib.inference.pipeline import label_volume, save_label_nifti, segment_muscles_in
from lib.labels import SIDE_OFFSET, all_labels, region_of_values
from lib.transforms.geometry import axial_axis
from lib.transforms.loading import load_volume
from lib.transforms.postprocess import split_sides

MUSCLE_NAMES = {v: k for k, v in all_labels().items()}
SIDES = ("right", "left")


@dataclass
class StudyScores:
    """Rows of one study: per (slice, muscle, side), per slice, and its unknown label values."""

    rows: list[dict] = field(default_factory=list)
    slices: list[dict] = field(default_factory=list)
    unknown: dict[int, int] = field(default_factory=dict)  # stored value -> voxels


def known_values(label: np.ndarray, info: dict) -> tuple[np.ndarray, dict[int, int], np.ndarray]:
    """Global values (sides kept; ``lib.annotations.to_global``) with 0 where the stored value
    is no muscle of ours, the voxel count of each such unknown value, and where they lie.

    The unknown voxels are masked by position, not by value: a viewer's stored value can be
    unknown while the same number is a muscle once mapped."""
    mapping = value_map(info.get("label_info"))
    label = np.asarray(label).astype(np.int64)
    allowed = set(range(MAX_GLOBAL_VALUE + 1)) if mapping is None else {0, *mapping}
    values, counts = np.unique(label, return_counts=True)
    unknown = {int(v): int(c) for v, c in zip(values, counts) if int(v) not in allowed}
    ignore = np.isin(label, list(unknown))
    return to_global(np.where(ignore, 0, label), mapping), unknown, ignore


def load_truth(study: LabelledStudy, image) -> tuple[np.ndarray, dict[int, int], np.ndarray]:
    """The study's label on its image's grid (MetaTensor ``image``) in global values, and its
    unknown values (``known_values``)."""
    label = load_volume(study.label, dtype=np.uint16)
    affine = image.affine.numpy()
    if shapes_match(label.shape[1:], image.shape[1:]) and np.allclose(label.affine.numpy(), affine, atol=1e-3):
        stored = label[0].numpy().reshape(image.shape[1:4])
    else:  # e.g. a DICOM SEG that holds only its annotated frames
        stored = embed_in_grid(label[0].numpy(), label.affine.numpy(), tuple(image.shape[1:4]), affine)
    return known_values(stored, study.info)


def embed_in_grid(label: np.ndarray, label_affine: np.ndarray, shape: tuple, affine: np.ndarray) -> np.ndarray:
    """A label on a sub-grid of the image (same axes and spacing, a whole-voxel offset) placed
    on the image grid, 0 elsewhere; ``ValueError`` for any other grid (no resampling guesses)."""
    to_image = np.linalg.inv(affine) @ label_affine
    offset = to_image[:3, 3]
    if not np.allclose(to_image[:3, :3], np.eye(3), atol=1e-3) or not np.allclose(offset, np.round(offset), atol=1e-2):
        raise ValueError(f"label grid {label.shape} is not a part of its image's grid {shape}")
    label = label.reshape(label.shape[:3] + (1,) * (3 - label.ndim))
    start = np.round(offset).astype(int)
    stop = start + np.array(label.shape[:3])
    if (start < 0).any() or (stop > np.array(shape)).any():
        raise ValueError(f"label grid {label.shape} reaches outside its image's grid {shape}")
    out = np.zeros(shape, label.dtype)
    out[tuple(slice(a, b) for a, b in zip(start, stop))] = label
    return out


def _plane(volume: np.ndarray, k: int, axis: int) -> np.ndarray:
    return np.take(volume, k, axis=axis)


def score_study(study: LabelledStudy, weights: dict[str, list[str]], prediction_path: Path,
                device: str = "cpu") -> StudyScores:
    """Run the ``muscle`` pipeline with ``weights`` (the model store's candidates of each network)
    on the study's annotated slices and score them.

    The predicted label volume is kept at ``prediction_path`` (NIfTI, the image's grid).
    """
    image = load_volume(study.image)
    affine = image.affine.numpy()
    truth, unknown, ignore = load_truth(study, image)
    axis = axial_axis(affine)
    slices = annotated_slices(study.info, truth, axis)
    result = StudyScores(unknown=unknown)
    if not slices:
        return result
    predicted = segment_muscles_in(study.image, weights, slices, device)
    answer = predicted["result"]
    prediction_path.parent.mkdir(parents=True, exist_ok=True)
    save_label_nifti(prediction_path, *label_volume(predicted))
    pred = load_volume(prediction_path, dtype=np.uint8)[0].numpy()
    pred = np.where(ignore, 0, pred).astype(np.uint8)
    truth_sides, pred_sides = split_sides(fold_sides(truth), affine), split_sides(fold_sides(pred), affine)

    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    inplane = [float(s) for i, s in enumerate(spacing) if i != axis]
    routed = {s["slice"]: s["region"] for s in answer.get("classification", {}).get("slices", [])}
    study_region = region_of_values(np.unique(truth[truth > 0])) or "thigh"
    protocol = protocol_slices(truth.shape[axis], study_region)
    for k in slices:
        t2, p2 = _plane(truth_sides, k, axis), _plane(pred_sides, k, axis)
        present = sorted((set(np.unique(t2).tolist()) | set(np.unique(p2).tolist())) - {0})
        hd95, msd = surface_distances(np.stack([p2 == v for v in present] or [np.zeros_like(p2, bool)])[:len(present)],
                                      np.stack([t2 == v for v in present] or [np.zeros_like(t2, bool)])[:len(present)],
                                      inplane)
        truth_region = region_of_values(fold_sides(t2[t2 > 0]))
        distance = int(min(abs(k - p) for p in protocol)) if protocol else -1
        base = {"study": study.id, "subject": study.subject, "severity": study.severity, "slice": int(k),
                "distance": distance}
        slice_rows = []
        for i, value in enumerate(present):
            muscle_value = int(value) - SIDE_OFFSET if value > SIDE_OFFSET else int(value)
            inter = int(np.count_nonzero((t2 == value) & (p2 == value)))
            n_pred, n_truth = int(np.count_nonzero(p2 == value)), int(np.count_nonzero(t2 == value))
            slice_rows.append({**base, "region": region_of_values([muscle_value]), "muscle": MUSCLE_NAMES[muscle_value],
                               "value": muscle_value, "side": SIDES[int(value > SIDE_OFFSET)],
                               "n_pred": n_pred, "n_truth": n_truth, "n_inter": inter,
                               "dice": 2 * inter / (n_pred + n_truth), "hd95_mm": float(hd95[i]), "msd_mm": float(msd[i])})
        result.rows += slice_rows
        dices = [r["dice"] for r in slice_rows if r["n_truth"]]
        result.slices.append({**base, "truth_region": truth_region or "",
                              "predicted_region": routed.get(int(k), ""),
                              "mean_dice": float(np.mean(dices)) if dices else float("nan")})
    return result
