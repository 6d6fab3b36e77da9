"""The model grid of SPEC §3 and its exact inverse.

Model grid: canonical orientation LPS (docs/CONVENTIONS.md) with axial slices along the last
axis, in-plane spacing 1.037037 mm (the through-plane spacing is kept), centre pad-or-crop to
432 x 432. ``ToModelGridd`` goes there; ``FromModelGridd`` (or MONAI ``Invertd`` over a Compose
holding ``ToModelGridd``) puts a prediction back on the input's own grid, shape and affine.

Why not ``Orientationd`` + ``Spacingd`` + ``ResizeWithPadOrCropd``: that chain resamples in 3D
(float64 ``grid_sample``): 0.8 s to the grid and 0.6 s back (``Invertd``) for an image + label
of 512 x 512 x 40 at 0.8 mm on this 2-core machine (0.05 s and 0.02 s here), and its trace needs
the forward instance to invert. The through-plane axis is never resampled and the in-plane map
is axis-aligned, so here: reorientation is a flip/permute (exact, nibabel ``io_orientation``),
the zoom is torch's 2D upsampling over all slices at once (channels-last view: no transposed
copies), the pad/crop is one slice copy, and the trace record holds all the inverse needs.
Oblique acquisitions keep their residual rotation in the affine (no resampling across it).
``axial_axis`` and ``world_x`` read the head-foot array axis and the RAS x of voxels from any
affine: which axis slice indices count along, and which side a voxel is on.

Conventions: the zoom follows torch ``interpolate``'s half-pixel rule (input and resampled grid
share their outer edge), the pad/crop MONAI's centre rule (start ``(m - 432) // 2``). When the
in-plane spacing already is 1.037037 mm (relative tolerance 1e-4) there is no zoom at all and the
round trip of a label map is exact (up to voxels cropped away from an input wider than 432).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import TraceKeys, convert_to_tensor, ensure_tuple_rep
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

MODEL_SPACING = 1.037037  # mm, in-plane (SPEC §3)
MODEL_SIZE = 432  # pixels, in-plane (SPEC §3)
CANONICAL = "LPS"  # docs/CONVENTIONS.md
SAME_SPACING_RTOL = 1e-4  # below this a spacing counts as the model's: < 0.03 px drift at 512 px


def world_x(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """RAS x (mm) of every voxel of an (X, Y, Z) grid."""
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    a = np.asarray(affine, dtype=np.float32)
    return a[0, 0] * i + a[0, 1] * j + a[0, 2] * k + a[0, 3]


def axial_axis(affine: np.ndarray) -> int:
    """The array axis closest to the S-I direction."""
    return int(np.argmax(np.abs(np.asarray(affine)[2, :3]) / np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)))


def axis_map(n: int, spacing: float, target: float = MODEL_SPACING, size: int = MODEL_SIZE):
    """``(a, m, start)`` of one in-plane axis: ``n`` pixels of ``spacing`` mm -> model grid.

    The axis is resampled to ``m`` pixels of ``target`` mm, pixel ``k`` sitting at input index
    ``a * k + (a - 1) / 2`` (torch ``interpolate``'s half-pixel rule: both grids share their outer
    edge), then model pixel ``j`` is resampled pixel ``j + start`` (MONAI's centre crop/pad rule).
    """
    a = target / spacing
    if abs(a - 1.0) < SAME_SPACING_RTOL:
        a = 1.0
    m = max(1, int(round(n / a)))
    start = (m - size) // 2 if m >= size else -((size - m) // 2)
    return a, m, start


_UPSAMPLE = {  # aten ops: they take the output size *and* the exact scale (F.interpolate takes one)
    "nearest": lambda v, hw, s: torch.ops.aten._upsample_nearest_exact2d(v, hw, *s),
    "bilinear": lambda v, hw, s: torch.ops.aten.upsample_bilinear2d(v, hw, False, *s),
    "bicubic": lambda v, hw, s: torch.ops.aten.upsample_bicubic2d(v, hw, False, *s),
}


def zoom_inplane(x: torch.Tensor, out_hw, scales, mode: str = "bilinear") -> torch.Tensor:
    """Resample axes 1, 2 of ``(C, X, Y, Z)``: output pixel ``p`` samples ``(p + 0.5) / scale - 0.5``.

    mode: ``nearest`` (dtype kept; ties round up), ``bilinear`` or ``bicubic`` (float32). The
    ``(C, Z, X, Y)`` view of the volume is channels-last, which torch's upsampling kernels
    vectorise over Z, and the result comes back in ``(C, X, Y, Z)`` order without a copy.
    """
    if tuple(out_hw) == tuple(x.shape[1:3]) and all(s == 1.0 for s in scales):
        return x if mode == "nearest" else x.float()
    v = (x if mode == "nearest" else x.float()).permute(0, 3, 1, 2)
    return _UPSAMPLE[mode](v, [int(n) for n in out_hw], [float(s) for s in scales]).permute(0, 2, 3, 1)


def crop_or_pad(x: torch.Tensor, starts, out_hw) -> torch.Tensor:
    """``out[:, j0, j1] = x[:, j0 + starts[0], j1 + starts[1]]``, zero where that is outside ``x``."""
    out = x.new_zeros((x.shape[0], *out_hw, x.shape[3]))
    dst = [slice(max(0, -s), min(size, n - s)) for size, n, s in zip(out_hw, x.shape[1:3], starts)]
    if all(d.stop > d.start for d in dst):
        src = [slice(d.start + s, d.stop + s) for d, s in zip(dst, starts)]
        out[:, dst[0], dst[1]] = x[:, src[0], src[1]]
    return out


def to_grid_inplane(x: torch.Tensor, maps, size: int, mode: str) -> torch.Tensor:
    """Oriented ``(C, X, Y, Z)`` -> ``(C, size, size, Z)`` with the ``axis_map`` of each axis."""
    (a0, m0, s0), (a1, m1, s1) = maps
    return crop_or_pad(zoom_inplane(x, (m0, m1), (1 / a0, 1 / a1), mode), (s0, s1), (size, size))


def from_grid_inplane(y: torch.Tensor, maps, out_hw, mode: str) -> torch.Tensor:
    """Exact inverse geometry of ``to_grid_inplane``: model grid -> oriented input grid ``out_hw``."""
    (a0, m0, s0), (a1, m1, s1) = maps
    return zoom_inplane(crop_or_pad(y, (-s0, -s1), (m0, m1)), out_hw, (a0, a1), mode)


def _reorient(x: torch.Tensor, ornt: np.ndarray) -> torch.Tensor:
    """nibabel ``apply_orientation`` for a channel-first tensor (channel axis untouched)."""
    flips = [axis + 1 for axis, flip in enumerate(ornt[:, 1]) if flip == -1]
    x = torch.flip(x, flips) if flips else x
    return x.permute(0, *(int(i) + 1 for i in np.argsort(ornt[:, 0])))


def _map_affine(maps) -> np.ndarray:
    """Voxel-to-voxel affine (model index -> oriented input index) of the in-plane maps."""
    (a0, _, s0), (a1, _, s1) = maps
    b0, b1 = a0 * s0 + (a0 - 1) / 2, a1 * s1 + (a1 - 1) / 2
    return np.array([[a0, 0, 0, b0], [0, a1, 0, b1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)


def _affine(img: MetaTensor) -> np.ndarray:
    aff = np.asarray(img.affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise ValueError(f"expected a 4x4 affine for a (C, X, Y, Z) volume, got {aff.shape}")
    return aff


def to_model_grid(img, mode="bilinear", axcodes=CANONICAL, spacing=MODEL_SPACING, size=MODEL_SIZE):
    """``(C, X, Y, Z)`` MetaTensor -> ``(C, size, size, Z')`` in ``axcodes``, plus the inverse record."""
    img = convert_to_tensor(img, track_meta=True)
    if img.ndim != 4:
        raise ValueError(f"expected a channel-first (C, X, Y, Z) volume, got shape {tuple(img.shape)}")
    affine, shape = _affine(img), tuple(img.shape[1:])
    start, end = io_orientation(affine), axcodes2ornt(axcodes)
    ornt = ornt_transform(start, end)
    x = _reorient(img.as_tensor(), ornt)
    oriented = affine @ inv_ornt_aff(ornt, shape)
    pix = np.linalg.norm(oriented[:3, :2], axis=0)
    maps = [axis_map(n, s, spacing, size) for n, s in zip(x.shape[1:3], pix)]
    out = MetaTensor(to_grid_inplane(x, maps, size, mode).contiguous(), meta=dict(img.meta))
    out.applied_operations = list(img.applied_operations)
    out.affine = torch.as_tensor(oriented @ _map_affine(maps))
    info = {"mode": mode, "affine": affine.tolist(), "maps": maps, "shape": list(x.shape[1:]),
            "ornt_back": ornt_transform(end, start).tolist()}
    return out, info


def from_model_grid(pred, info: dict, mode: str = "auto") -> MetaTensor:
    """Put a model-grid ``(C, 432, 432, Z)`` prediction back on the grid recorded in ``info``.

    mode: ``auto`` = nearest for integer/bool data (label maps), bilinear for floats
    (probabilities); pass ``nearest`` for label maps stored as floats. Outside the model grid
    (parts cropped away) the result is 0, so the argmax of probabilities there is background.
    """
    pred = convert_to_tensor(pred, track_meta=True)
    shape = info["shape"]
    if pred.ndim != 4 or pred.shape[3] != shape[2]:
        raise ValueError(f"expected a (C, X, Y, {shape[2]}) model-grid prediction, got {tuple(pred.shape)}")
    if mode == "auto":
        mode = "bilinear" if pred.is_floating_point() else "nearest"
    back = from_grid_inplane(pred.as_tensor(), info["maps"], shape[:2], mode)
    out = MetaTensor(_reorient(back, np.asarray(info["ornt_back"])).contiguous(), meta=dict(pred.meta))
    out.affine = torch.as_tensor(np.asarray(info["affine"], dtype=np.float64))
    return out


class ToModelGridd(MapTransform, InvertibleTransform):
    """SPEC §3 pre-processing geometry for image and label keys (invertible, ``Invertd``-ready).

    keys: MetaTensor ``(C, X, Y, Z)`` entries (2D inputs: Z = 1, see ``loading``);
    mode: one per key or one for all: ``bilinear`` / ``bicubic`` for images, ``nearest`` for labels;
    axcodes, spacing, size: the canonical orientation, in-plane mm and pixels of the model grid.
    Each output carries its inverse record in ``applied_operations`` (class ``ToModelGridd``).
    """

    def __init__(self, keys, mode="bilinear", axcodes=CANONICAL, spacing=MODEL_SPACING, size=MODEL_SIZE,
                 allow_missing_keys=False):
        super().__init__(keys, allow_missing_keys)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.axcodes, self.spacing, self.size = axcodes, spacing, size

    def __call__(self, data):
        d = dict(data)
        for key, mode in self.key_iterator(d, self.mode):
            out, info = to_model_grid(d[key], mode, self.axcodes, self.spacing, self.size)
            d[key] = self.push_transform(out, orig_size=info["shape"], extra_info=info)
        return d

    def inverse(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            info = self.pop_transform(d[key])[TraceKeys.EXTRA_INFO]
            ops = d[key].applied_operations
            d[key] = from_model_grid(d[key], info, "nearest" if info["mode"] == "nearest" else "auto")
            d[key].applied_operations = ops
        return d


class FromModelGridd(MapTransform):
    """Put predictions back on the input's grid without the forward instance (inference post-step).

    keys: predictions ``(C, 432, 432, Z)``: label maps (integer: nearest) or probabilities
    (float: bilinear); ref_key: the entry that went through ``ToModelGridd`` (its latest record
    is used, not removed); mode: ``auto`` | ``nearest`` | ``bilinear`` (see ``from_model_grid``).
    """

    def __init__(self, keys, ref_key="image", mode="auto", allow_missing_keys=False):
        super().__init__(keys, allow_missing_keys)
        self.ref_key, self.mode = ref_key, ensure_tuple_rep(mode, len(self.keys))

    def __call__(self, data):
        d = dict(data)
        ops = getattr(d[self.ref_key], "applied_operations", [])
        records = [op for op in ops if op.get(TraceKeys.CLASS_NAME) == ToModelGridd.__name__]
        if not records:
            raise ValueError(f"{self.ref_key!r} did not go through ToModelGridd: nothing to invert")
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = from_model_grid(d[key], records[-1][TraceKeys.EXTRA_INFO], mode)
        return d


def slice_to_model_grid(slice2d, spacing, mode="bilinear", target=MODEL_SPACING, size=MODEL_SIZE) -> np.ndarray:
    """One 2D ``(X, Y)`` slice, already in the canonical orientation, to the model grid.

    spacing: ``(sx, sy)`` in mm; mode: as ``zoom_inplane``. For training code on slices.
    """
    x = torch.as_tensor(np.asarray(slice2d))[None, :, :, None]
    maps = [axis_map(n, s, target, size) for n, s in zip(x.shape[1:3], spacing)]
    return to_grid_inplane(x, maps, size, mode)[0, :, :, 0].numpy()
