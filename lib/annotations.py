"""Clinician-corrected labels as training data: names to values, annotated slices, checks.

A ``final`` label in the datastore is a label volume on its image's grid plus the info that
was saved with it. Two conventions arrive:

- our own values (thigh 1-12, leg 13-18, left side + 18: ``lib.labels``), e.g. a corrected
  ``muscle`` result saved back as it came;
- a viewer's segment order, named by ``label_info`` (3D Slicer sends ``[{"name", "idx"}]``,
  OHIF a ``{name: value}`` map). Those are remapped by *name*, never by order; names as
  Dafne, MuscleMap or a lab's template write them are read through ``lib.label_aliases``,
  and a name that stays ambiguous (bare ``Gastrocnemius``) is refused.

Which slices are annotated comes from ``annotated_slices`` in the info, else from the slices
that hold any muscle (SPEC §2: an unannotated slice is unknown, not background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.errors import UserError
from lib.label_aliases import accepted_names, normalise_name, read_muscle_name
from lib.labels import SIDE_OFFSET, all_labels
from lib.options import parse_slices
from lib.transforms.geometry import axial_axis

BACKGROUND_NAMES = {"background", "bg", "0", "none", "unlabeled", "unlabelled"}
MAX_GLOBAL_VALUE = 2 * SIDE_OFFSET  # 36: left side of the last leg muscle


def _name_to_global(name: str) -> int:
    """Global value of a segment name: our muscle names or another tool's (``lib.label_aliases``),
    with an optional side (left = value + 18). ``UserError`` for an unknown or ambiguous name."""
    read = read_muscle_name(name)
    if read.muscle is None and read.candidates:
        choices = ", ".join(read.candidates[:-1]) + f" or {read.candidates[-1]}"
        raise UserError(f"label_info: ambiguous muscle name {name!r}: it may be {choices}; "
                        f"name each one on its own ({accepted_names()})")
    if read.muscle is None:
        raise UserError(f"label_info: unknown muscle name {name!r}; {accepted_names()}")
    return all_labels()[read.muscle] + (SIDE_OFFSET if read.side == "left" else 0)


def _entries(label_info) -> list[tuple[str, int]]:
    """(name, stored value) pairs from a Slicer list or an OHIF/MONAI Label mapping."""
    if isinstance(label_info, dict):
        return [(str(k), v) for k, v in label_info.items()]
    if isinstance(label_info, list):
        out = []
        for item in label_info:
            if not isinstance(item, dict) or "name" not in item:
                raise UserError("label_info entries must be objects with a 'name' and an 'idx' (or 'value')")
            out.append((str(item["name"]), item.get("idx", item.get("value"))))
        return out
    raise UserError("label_info must be a list of {name, idx} or a {name: value} object")


def value_map(label_info) -> dict[int, int] | None:
    """Stored value -> global value (sides kept) from ``label_info``; None means "ours already".

    Raises ``UserError`` for a name that is not one of our muscles, or values that are not
    integers or that two names share.
    """
    if not label_info:
        return None
    mapping: dict[int, int] = {}
    for name, value in _entries(label_info):
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise UserError(f"label_info: {name!r} has no integer value ({value!r})") from None
        if normalise_name(name) in BACKGROUND_NAMES or value == 0:
            continue
        target = _name_to_global(name)
        if value in mapping and mapping[value] != target:
            raise UserError(f"label_info: value {value} is given to two different muscles")
        mapping[value] = target
    return mapping


def to_global(label: np.ndarray, mapping: dict[int, int] | None) -> np.ndarray:
    """A stored label volume in global values (uint8); values without a name become 0."""
    label = np.asarray(label)
    if mapping is None:
        return label.astype(np.uint8)
    lut = np.zeros(max([int(label.max(initial=0)), *mapping.keys()]) + 1, np.uint8)
    for stored, value in mapping.items():
        lut[stored] = value
    return lut[label.astype(np.int64)]


def fold_sides(label: np.ndarray) -> np.ndarray:
    """Side-split values (left = v + 18) -> the muscle's value; training is side-agnostic."""
    label = np.asarray(label)
    return np.where(label > SIDE_OFFSET, label - SIDE_OFFSET, label).astype(np.uint8)


def annotated_slices(info: dict | None, label: np.ndarray, axis: int = 2) -> list[int]:
    """Annotated slice indices along ``axis``: ``info["annotated_slices"]`` else non-empty slices."""
    n = label.shape[axis]
    listed = (info or {}).get("annotated_slices")
    if listed is None:
        return [int(k) for k in np.flatnonzero(np.moveaxis(label, axis, -1).reshape(-1, n).any(0))]
    slices = parse_slices(listed, "annotated_slices") or []
    bad = [k for k in slices if not 0 <= k < n]
    if bad:
        raise UserError(f"annotated_slices {bad} outside the label's {n} slices")
    return slices


def shapes_match(label_shape, image_shape) -> bool:
    """Same grid, a 2D (X, Y) label counting as (X, Y, 1); image axes beyond 3 are ignored."""
    as_3d = lambda shape: tuple(shape)[:3] + (1,) * (3 - len(tuple(shape)[:3]))  # noqa: E731
    return len(tuple(label_shape)) in (2, 3) and as_3d(label_shape) == as_3d(image_shape)


@dataclass
class LabelCheck:
    """What a saved label holds, once checked: global values and its annotated slices."""

    label: np.ndarray  # global values, sides kept, on the image grid
    slices: list[int]  # annotated indices along ``axis``
    values: list[int]
    axis: int = 2  # the head-foot array axis

    def annotated_mask(self) -> np.ndarray:
        """Boolean volume: True on every voxel of an annotated slice."""
        mask = np.zeros(self.label.shape, bool)
        index = [slice(None)] * 3
        index[self.axis] = self.slices
        mask[tuple(index)] = True
        return mask


def check_label(label: np.ndarray, label_affine: np.ndarray, image_shape, image_affine: np.ndarray,
                info: dict | None) -> LabelCheck:
    """Validate a label against its image and info; raise ``UserError`` naming the problem.

    Checks: same grid (shape and affine to 1e-3 mm), values known (by ``label_info`` or ours),
    integer-valued, and at least one annotated slice holding a muscle.
    """
    info = info or {}
    label = np.asarray(label)
    if label.ndim == 4 and label.shape[3] == 1:
        label = label[..., 0]
    image_shape = tuple(image_shape)[:3]
    if not shapes_match(label.shape, image_shape):
        raise UserError(f"label shape {label.shape} does not match its image {image_shape}")
    if not np.allclose(np.asarray(label_affine), np.asarray(image_affine), atol=1e-3):
        raise UserError("label affine (orientation/spacing/origin) does not match its image")
    if not np.all(np.isfinite(label)) or np.any(label != np.round(label)) or label.min(initial=0) < 0:
        raise UserError("label values must be non-negative integers")
    mapping = value_map(info.get("label_info"))
    stored = np.unique(label).astype(np.int64)
    allowed = set(range(MAX_GLOBAL_VALUE + 1)) if mapping is None else {0, *mapping}
    unknown = [int(v) for v in stored if v not in allowed]
    if unknown:
        where = "label_info" if mapping is not None else "the label set (0-36, see /info labels)"
        raise UserError(f"label values {unknown[:10]} are not in {where}")
    glob = to_global(label, mapping)
    if glob.ndim == 2:
        glob = glob[:, :, None]
    axis = axial_axis(label_affine)
    slices = annotated_slices(info, glob, axis)
    values = sorted(int(v) for v in np.unique(np.take(glob, slices, axis=axis)) if v)
    if not values:
        raise UserError("label is empty: no muscle on any annotated slice")
    return LabelCheck(glob, slices, values, axis)
