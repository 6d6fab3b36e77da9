"""Spatial training augmentations of 2D slices (SPEC §5), MONAI dictionary transforms.

Each transform builds one dense map "output pixel -> source pixel" and resamples every key with
it: ``bicubic`` for images (clipped to the input's range, since cubic kernels overshoot),
``nearest`` for labels, so label values are copied, never invented. Coordinates beyond the image
read the nearest edge pixel. Arrays are (C, H, W) numpy or torch; a MetaTensor keeps its meta
unchanged (training-only transforms: no affine update, no inverse).
A weight map is best computed after these transforms (``train_augmentations`` does); listing
its key with mode "bilinear" warps it instead.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, convert_to_numpy, ensure_tuple_rep
from scipy import ndimage as ndi

from lib.transforms.weights import BODY_THRESHOLD, body_mask, cross_filter, limb_components

Coords = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]  # source rows, source cols, valid output pixels


def warp(array: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str,
         valid: np.ndarray | None = None) -> np.ndarray:
    """Resample (C, H, W) ``array`` at source coordinates (H, W) ``rows``/``cols``; 0 where not ``valid``."""
    _, height, width = array.shape
    if mode == "nearest":
        ri = np.clip(np.rint(rows), 0, height - 1).astype(np.intp)
        ci = np.clip(np.rint(cols), 0, width - 1).astype(np.intp)
        out = array[:, ri, ci]
    else:
        grid = np.stack([cols * (2.0 / max(width - 1, 1)) - 1, rows * (2.0 / max(height - 1, 1)) - 1], -1)
        src = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
        out = F.grid_sample(src, torch.from_numpy(grid.astype(np.float32))[None], mode=mode,
                            padding_mode="border", align_corners=True)[0].numpy()
        if mode == "bicubic":
            out = np.clip(out, array.min(), array.max())
        out = out.astype(array.dtype, copy=False)
    return out if valid is None else np.where(valid, out, np.zeros((), out.dtype))


class _RandWarpd(RandomizableTransform, MapTransform):
    """Shared plumbing: draw a source map once per call, resample each key with its mode."""

    def __init__(self, keys: KeysCollection, mode: str | Sequence[str], prob: float, allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.mode = ensure_tuple_rep(mode, len(self.keys))

    def source_coords(self, d: dict, shape: tuple[int, int]) -> Coords | None:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        self.randomize(None)
        first = next(self.key_iterator(d), None)
        if not self._do_transform or first is None:
            return d
        coords = self.source_coords(d, tuple(d[first].shape[1:]))
        if coords is None:
            return d
        rows, cols, valid = coords
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = convert_to_dst_type(warp(convert_to_numpy(d[key]), rows, cols, mode, valid), d[key])[0]
        return d


def _identity(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return rows.astype(np.float32), cols.astype(np.float32)


class RandLimbAffined(_RandWarpd):
    """Independent rotation and translation of each limb, pasted on an empty (zero) background.

    Limbs are the two largest components of the body mask (``lib.transforms.weights``), grown by
    ``margin`` px to keep the skin's partial-volume edge; anything else (noise, small blobs) is
    dropped. Each limb turns by U(-max_rotation, max_rotation) degrees about its centroid and
    moves by up to ``max_shift_fraction`` of its (turned) distance to each border: the image's,
    and between two limbs the midline of their gap, so a limb keeps its side and no limb pixel
    leaves the image (a rotation that cannot fit is skipped). Draws that still make the limbs
    overlap (limbs not apart along one axis) are redrawn ``max_tries`` times, then the shift,
    then the rotation is dropped.
    One limb (or two touching limbs, one component) moves as one piece. Output pixels take their
    label only from the same limb (nearest lookup), so labels never change limb; everything outside
    the moved limbs is 0 in every key (unannotated 255 too: nothing outside the body is muscle).

    keys/mode: keys to resample and their modes; image_key/label_key: where the body mask comes from.
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), mode: str | Sequence[str] = ("bicubic", "nearest"),
                 prob: float = 0.5, max_rotation: float = 7.0, max_shift_fraction: float = 1.0,
                 image_key: str = "image", label_key: str = "label", body_threshold: float = BODY_THRESHOLD,
                 margin: int = 2, max_tries: int = 5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, mode, prob, allow_missing_keys)
        self.max_rotation, self.max_shift_fraction = max_rotation, max_shift_fraction
        self.image_key, self.label_key, self.body_threshold = image_key, label_key, body_threshold
        self.margin, self.max_tries = margin, max_tries

    def _limb_ids(self, d: dict, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
        image = convert_to_numpy(d[self.image_key])[0] if self.image_key in d else None
        label = convert_to_numpy(d[self.label_key])[0] if self.label_key in d else None
        if image is None and label is None:
            return np.zeros(shape, np.int32), 0
        ids, count = limb_components(body_mask(image, label, self.body_threshold))
        grown = ids
        for _ in range(self.margin if count else 0):
            grown = cross_filter(grown)
        ids = np.where(ids > 0, ids, grown)
        return ids, count

    @staticmethod
    def _bounds(pixels: list, shape: tuple[int, int]) -> list[np.ndarray]:
        """Per limb, the (row, col) x (min, max) coordinates it may occupy: the image, and for two
        limbs apart along their centres' main axis, its own side of the midline of their gap."""
        bounds = [np.array([[0.0, shape[0] - 1.0], [0.0, shape[1] - 1.0]]) for _ in pixels]
        if len(pixels) == 2:
            centres = [np.array([p[0].mean(), p[1].mean()]) for p in pixels]
            axis = int(np.argmax(np.abs(centres[0] - centres[1])))
            low, high = (0, 1) if centres[0][axis] < centres[1][axis] else (1, 0)
            end_low, start_high = pixels[low][axis].max(), pixels[high][axis].min()
            if end_low < start_high:
                mid = (end_low + start_high) / 2.0
                bounds[low][axis, 1], bounds[high][axis, 0] = mid - 0.5, mid + 0.5
        return bounds

    @staticmethod
    def _fit(pixels: tuple[np.ndarray, np.ndarray], angle: float, bounds: np.ndarray) -> tuple | None:
        """(centre, cos, sin, lo, hi, extent) of a limb turned by ``angle`` about its centroid:
        [lo, hi] is the (row, col) shift range keeping it within ``bounds`` (None if none does)."""
        rows, cols = pixels
        centre = np.array([rows.mean(), cols.mean()])
        cos, sin = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
        dr, dc = rows - centre[0], cols - centre[1]
        rot_r, rot_c = cos * dr - sin * dc + centre[0], sin * dr + cos * dc + centre[1]
        lo = bounds[:, 0] - np.array([rot_r.min(), rot_c.min()])
        hi = bounds[:, 1] - np.array([rot_r.max(), rot_c.max()])
        extent = np.array([[rot_r.min(), rot_r.max()], [rot_c.min(), rot_c.max()]])
        return None if np.any(lo > hi + 1e-6) else (centre, cos, sin, lo, np.maximum(hi, lo), extent)

    @staticmethod
    def _member(ids: np.ndarray, limb: int, fit: tuple, shift: np.ndarray) -> tuple:
        """Over the moved limb's bounding box: (box, source rows, source cols, pixels landing in the limb)."""
        centre, cos, sin = fit[:3]
        height, width = ids.shape
        extent = fit[5]  # the turned limb's (row, col) x (min, max); the window adds the shift and a pixel of slack
        r0, c0 = (max(int(np.floor(extent[i, 0] + shift[i])) - 1, 0) for i in (0, 1))
        r1 = min(int(np.ceil(extent[0, 1] + shift[0])) + 2, height)
        c1 = min(int(np.ceil(extent[1, 1] + shift[1])) + 2, width)
        grid_r, grid_c = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        dr, dc = grid_r - (centre[0] + shift[0]), grid_c - (centre[1] + shift[1])
        src_r, src_c = cos * dr + sin * dc + centre[0], -sin * dr + cos * dc + centre[1]
        ri, ci = np.rint(src_r).astype(np.intp), np.rint(src_c).astype(np.intp)
        inside = (ri >= 0) & (ri < height) & (ci >= 0) & (ci < width)
        hit = np.zeros(inside.shape, bool)
        hit[inside] = ids[ri[inside], ci[inside]] == limb
        return (slice(r0, r1), slice(c0, c1)), src_r, src_c, hit

    def source_coords(self, d: dict, shape: tuple[int, int]) -> Coords | None:
        ids, count = self._limb_ids(d, shape)
        if count == 0:
            return None
        pixels = [np.nonzero(ids == limb) for limb in range(1, count + 1)]
        bounds = self._bounds(pixels, shape)
        angles = [self.R.uniform(-self.max_rotation, self.max_rotation) for _ in pixels]
        fits = [self._fit(p, a, b) or self._fit(p, 0.0, b) for p, a, b in zip(pixels, angles, bounds)]
        for attempt in range(self.max_tries + 2):  # fresh shifts; then no shift; then no rotation either
            if attempt < self.max_tries:
                draws = [self.R.uniform(0.0, 1.0, 2) for _ in fits]
                shifts = [np.clip(self.max_shift_fraction * (f[3] + u * (f[4] - f[3])), f[3], f[4])
                          for f, u in zip(fits, draws)]
            else:
                shifts = [np.zeros(2) for _ in fits]
            if attempt == self.max_tries + 1:
                fits = [self._fit(p, 0.0, b) for p, b in zip(pixels, bounds)]
            maps = [self._member(ids, i + 1, f, s) for i, (f, s) in enumerate(zip(fits, shifts))]
            cover = np.zeros(shape, np.uint8)
            for box, _, _, hit in maps:
                cover[box] += hit
            if cover.max() <= 1:
                break
        rows, cols = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        for box, src_r, src_c, hit in maps:
            rows[box][hit], cols[box][hit] = src_r[hit], src_c[hit]
        return rows, cols, cover > 0


class RandPiecewiseAffined(_RandWarpd):
    """Piecewise-affine jitter (SPEC §5, imgaug ``PiecewiseAffine``-like).

    A ``grid`` of control points spanning the image moves by Normal(0, s * size) per axis, with
    s ~ U(scale) (0.1-1 % of the image size) drawn per call; the dense displacement is the bilinear
    interpolation of the control shifts (a smooth stand-in for skimage's triangulated piecewise
    affine: ~10 ms instead of ~370 ms for skimage's estimate + cubic warp at 432 px).
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), mode: str | Sequence[str] = ("bicubic", "nearest"),
                 prob: float = 0.5, grid: tuple[int, int] = (4, 4), scale: tuple[float, float] = (0.001, 0.01),
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, mode, prob, allow_missing_keys)
        self.grid, self.scale = tuple(grid), tuple(scale)

    def source_coords(self, d: dict, shape: tuple[int, int]) -> Coords:
        s = self.R.uniform(*self.scale)
        shifts = self.R.normal(0.0, 1.0, (2, *self.grid)) * (s * np.array(shape, float))[:, None, None]
        dense = F.interpolate(torch.from_numpy(shifts.astype(np.float32))[None], size=shape, mode="bilinear",
                              align_corners=True)[0].numpy()
        rows, cols = _identity(shape)
        return rows + dense[0], cols + dense[1], None


class RandElasticd(_RandWarpd):
    """Elastic deformation in SPEC §5's (Simard / imgaug) parametrisation.

    Displacement per axis = alpha * gaussian_filter(U(-1, 1) noise, sigma), with alpha ~ U(alpha)
    (0-20) and sigma ~ U(sigma) (5-10 px) drawn per call. This parametrisation is gentle: the rms
    displacement is about alpha / (6 sigma) px (under 0.7 px at alpha 20, sigma 5).
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), mode: str | Sequence[str] = ("bicubic", "nearest"),
                 prob: float = 0.5, alpha: tuple[float, float] = (0.0, 20.0), sigma: tuple[float, float] = (5.0, 10.0),
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, mode, prob, allow_missing_keys)
        self.alpha, self.sigma = tuple(alpha), tuple(sigma)

    def smooth_noise(self, shape: tuple[int, int], sigma: float) -> np.ndarray:
        """gaussian_filter(U(-1, 1) noise, sigma), computed on a grid ``f`` times coarser.

        Averaging f x f blocks of the same noise keeps its variance per unit area, so smoothing
        the block means by sigma / f and interpolating back gives the same field statistics
        (rms and correlation within a few %) for sigma >= 2.5 f, at a fraction of the cost.
        """
        f = max(1, int(sigma // 2.5))
        padded = (-(-shape[0] // f) * f, -(-shape[1] // f) * f)
        noise = np.zeros(padded, np.float32)
        noise[: shape[0], : shape[1]] = self.R.uniform(-1.0, 1.0, shape)
        coarse = noise.reshape(padded[0] // f, f, padded[1] // f, f).mean(axis=(1, 3))
        coarse = ndi.gaussian_filter(coarse, sigma / f, mode="constant", truncate=3.0)
        dense = F.interpolate(torch.from_numpy(coarse)[None, None], size=padded, mode="bilinear", align_corners=False)
        return dense[0, 0, : shape[0], : shape[1]].numpy()

    def source_coords(self, d: dict, shape: tuple[int, int]) -> Coords:
        alpha, sigma = self.R.uniform(*self.alpha), self.R.uniform(*self.sigma)
        rows, cols = _identity(shape)
        return rows + alpha * self.smooth_noise(shape, sigma), cols + alpha * self.smooth_noise(shape, sigma), None
