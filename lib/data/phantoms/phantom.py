"""Synthetic axial MRI of both thighs or both lower legs, with their muscle labels.

The images imitate the network input of SPEC §2 (first-echo magnitude of a multi-echo GRE:
fat bright, muscle intermediate, cortical bone dark, fatty marrow bright-ish), with thin
fat-signal fascia between muscles, Mercuri-like fat replacement of muscle by ``severity``,
a smooth multiplicative bias field and Rician noise. The anatomy (lib/data/phantoms/anatomy.py and
layout.py) is laid out per limb and mirrored between the patient's right (small X, LPS arrays)
and left limb; labels carry the global values of lib/labels.py and do not depend on ``severity``.

Everything is drawn from ``numpy.random.SeedSequence([seed, region])``, split into
independent streams for anatomy, fat replacement and noise: the same seed gives identical
arrays, and the same seed with another severity gives the same anatomy and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from lib import labels as L
from lib.data.phantoms import anatomy as A
from lib.data.phantoms.layout import (LAYOUT_REGION, AIR, CORTEX, FAT_PAD, MARROW, MUSCLE, MUSCLE_RANGE, OTHER_MUSCLE, SKIN,
                                      SUBCUT_FAT, VESSEL)
from lib.errors import UserError

SEVERITIES = ("healthy", "mild", "severe")
ANNOTATED_SLICES = {"thigh": 7, "leg": 3}  # SPEC §2: slices a study annotator labels
# Relative signal of each tissue (fat = 1) before gain, bias and noise: GRE first echo,
# where fat is bright, muscle intermediate, cortical bone and flowing blood dark.
FAT_SIGNAL = 1.0
TISSUE_SIGNAL = {AIR: 0.0, SKIN: 0.5, SUBCUT_FAT: 1.0, MUSCLE: 0.36, OTHER_MUSCLE: 0.36,
                 FAT_PAD: 0.95, CORTEX: 0.05, MARROW: 0.85, VESSEL: 0.12}


@dataclass
class Phantom:
    """One synthetic study; arrays are (X, Y, Z) in LPS (docs/CONVENTIONS.md).

    image: float32 magnitude, integer-valued as a scanner stores it (fat about 600-1400);
    label: uint8 global muscle values (lib/labels.py), every slice labelled;
    side: uint8, 0 outside the body, 1 right limb, 2 left limb; tissue: uint8 anatomy codes
    (lib/data/phantoms/layout.py); affine: 4x4 NIfTI affine ``diag(-sx, -sy, sz)`` plus origin.
    """

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    region: str
    seed: int
    severity: str
    side: np.ndarray
    tissue: np.ndarray


def phantom_affine(shape: tuple[int, int, int], spacing) -> np.ndarray:
    """LPS affine of an (X, Y, Z) grid with the given spacing, centred on the world origin."""
    sx, sy, sz = (float(s) for s in spacing)
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [sx * (shape[0] - 1) / 2, sy * (shape[1] - 1) / 2, -sz * (shape[2] - 1) / 2]
    return affine + 0.0  # no negative zeros in headers


def slice_positions(n_slices: int) -> np.ndarray:
    """Position t of each slice along the limb (0 = distal, 1 = proximal), slice centres."""
    return (np.arange(n_slices) + 0.5) / n_slices


def annotated_slices(n_slices: int, region: str, count: int | None = None) -> list[int]:
    """Slices an annotator labels (SPEC §2: 7 per thigh, 3 per leg), evenly spread in the
    range where every muscle is present (MUSCLE_RANGE); fewer if the volume has fewer.
    """
    count = ANNOTATED_SLICES[L.check_region(region)] if count is None else int(count)
    t = slice_positions(int(n_slices))
    inside = np.flatnonzero((t >= MUSCLE_RANGE[0]) & (t <= MUSCLE_RANGE[1]))
    if count <= 0 or inside.size == 0:
        return []
    if count >= inside.size:
        return inside.tolist()
    if count == 1:
        return [int(inside[inside.size // 2])]
    return np.round(np.linspace(inside[0], inside[-1], count)).astype(int).tolist()


def sparse_label(label: np.ndarray, slices) -> np.ndarray:
    """A copy of ``label`` with every slice not in ``slices`` set to 0 (unannotated)."""
    out = np.zeros_like(label)
    keep = list(slices)
    out[:, :, keep] = label[:, :, keep]
    return out


def check_arguments(region, seed, n_slices, severity, shape, spacing) -> None:
    """Raise UserError naming the first impossible argument."""
    if region not in L.REGIONS:
        raise UserError(f"unknown region {region!r}: expected one of {', '.join(L.REGIONS)}")
    if severity not in SEVERITIES:
        raise UserError(f"unknown severity {severity!r}: expected one of {', '.join(SEVERITIES)}")
    if int(seed) < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed}")
    if int(n_slices) < 1:
        raise UserError(f"number of slices must be at least 1, got {n_slices}")
    if len(shape) != 2 or min(shape) < 16:
        raise UserError(f"in-plane shape must be two sizes of at least 16 pixels, got {tuple(shape)}")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise UserError(f"spacing must be three positive sizes in mm, got {tuple(spacing)}")


def generate_phantom(region: str, seed: int, n_slices: int = 40, severity: str = "healthy",
                     shape=(432, 432), spacing=(1.04, 1.04, 5.0), layout: str | None = None) -> Phantom:
    """A seeded phantom of both thighs or both legs.

    region: "thigh" or "leg"; seed: non-negative int; n_slices: axial slices, spread over the
    limb from distal (k = 0, inferior) to proximal; severity: "healthy", "mild" (patchy fat in
    a few muscles) or "severe" (widespread); shape: (X, Y) pixels; spacing: (sx, sy, sz) mm.
    A field of view too small for the limbs shrinks the anatomy to fit. layout: a name of
    ``lib.data.phantoms.layout.LAYOUTS`` for ``region`` (default: the region's own, e.g.
    ``leg_anatomical`` instead of ``leg``).
    """
    check_arguments(region, seed, n_slices, severity, shape, spacing)
    layout = layout or region
    if LAYOUT_REGION.get(layout) != region:
        raise UserError(f"layout {layout!r} is not a {region} layout: expected one of "
                        f"{', '.join(k for k, r in LAYOUT_REGION.items() if r == region)}")
    streams = np.random.SeedSequence([int(seed), L.REGIONS.index(region)]).spawn(3)
    anat_rng, fat_rng, noise_rng = (np.random.default_rng(s) for s in streams)
    nx, ny = int(shape[0]), int(shape[1])
    subject = A.sample_subject(layout, anat_rng)
    limbs = [A.sample_limb(layout, subject, side, anat_rng) for side in (1, 2)]
    scale = A.place_limbs(limbs, (nx * spacing[0], ny * spacing[1]), anat_rng)
    tissue, cell, side = _geometry(limbs, scale, (nx, ny, int(n_slices)), spacing)
    label = _labels(limbs[0].layout, cell)
    image = _render(tissue, cell, side, limbs, severity, spacing, fat_rng, noise_rng)
    return Phantom(image=image, label=label, affine=phantom_affine(image.shape, spacing),
                   region=region, seed=int(seed), severity=severity, side=side, tissue=tissue)


def _geometry(limbs, scale, shape, spacing):
    """Tissue, partition cell (-1 = none) and side maps of the whole volume."""
    tissue = np.zeros(shape, np.uint8)
    cell = np.full(shape, -1, np.int8)
    side = np.zeros(shape, np.uint8)
    for limb in limbs:
        lo_x, hi_x, lo_y, hi_y = A.outline_extent(limb)
        ix = _index_range(limb.centre[0], lo_x * scale, hi_x * scale, spacing[0], shape[0])
        iy = _index_range(limb.centre[1], lo_y * scale, hi_y * scale, spacing[1], shape[1])
        dx = ((ix[:, None] * spacing[0] - limb.centre[0]) / scale).astype(np.float32)
        dy = ((iy[None, :] * spacing[1] - limb.centre[1]) / scale).astype(np.float32)
        dx, dy = np.broadcast_arrays(dx, dy)
        box = np.ix_(ix, iy)
        for k, t in enumerate(slice_positions(shape[2])):
            t_map, c_map = A.rasterise(limb, t, dx, dy)
            body = t_map > 0
            tissue[box + (k,)] = np.where(body, t_map, tissue[box + (k,)])
            cell[box + (k,)] = np.where(body, c_map, cell[box + (k,)])
            side[box + (k,)] = np.where(body, limb.side, side[box + (k,)])
    return tissue, cell, side


def _index_range(centre, lo, hi, step, n):
    """Pixel indices covering [centre + lo, centre + hi] mm (with a margin), clipped to the grid."""
    start = max(int(np.floor((centre + lo) / step)) - 2, 0)
    stop = min(int(np.ceil((centre + hi) / step)) + 3, n)
    return np.arange(start, stop)


def _labels(layout, cell):
    """Global label values of the partition cells (unlabelled structures -> 0)."""
    values = L.all_labels()
    lut = np.zeros(256, np.uint8)
    for k, c in enumerate(layout.cells):
        lut[k] = values[c.name] if c.name else 0
    return lut[cell.astype(np.uint8)]  # -1 wraps to 255 -> 0


def fat_fraction_targets(severity: str, susceptibility: np.ndarray) -> np.ndarray:
    """Mean fat fraction per muscle, Mercuri-like, monotone in severity for each muscle.

    healthy: traces (grade 0-1); mild: the ~third most susceptible muscles reach 15-45 %
    (grade 2a-2b); severe: most muscles 30-90 % (grade 2b-4).
    """
    u = susceptibility
    fraction = 0.02 + 0.04 * u
    if severity == "mild":
        fraction = fraction + 0.4 * np.clip((u - 0.62) / 0.38, 0.0, 1.0) ** 0.5
    elif severity == "severe":
        fraction = fraction + 0.85 * np.clip((u - 0.1) / 0.9, 0.0, 1.0) ** 0.6
    return np.clip(fraction, 0.0, 0.95)


def _smooth_noise(rng, shape, spacing, sigma_mm):
    """Unit-variance Gaussian-filtered noise with an in-plane correlation of ``sigma_mm``."""
    field = rng.standard_normal(shape, dtype=np.float32)
    sigma = (sigma_mm / spacing[0], sigma_mm / spacing[1], 0.6)
    field = ndi.gaussian_filter(field, sigma, mode="nearest")
    return field / max(float(field.std()), 1e-6)


def _render(tissue, cell, side, limbs, severity, spacing, fat_rng, noise_rng):
    """GRE-like magnitude: tissue signal, fat replacement, fascia, bias field, Rician noise."""
    n_cells = len(limbs[0].layout.cells)
    susceptibility = fat_rng.uniform(0.0, 1.0, n_cells)
    targets = np.stack([fat_fraction_targets(severity, np.clip(
        susceptibility + fat_rng.normal(0.0, 0.08, n_cells), 0.0, 1.0)) for _ in limbs])
    box = _body_box(side, margin=3)  # signal work only where the body is
    signal = np.zeros(tissue.shape, np.float32)
    signal[box] = _tissue_signal(tissue[box], cell[box], side[box], targets, spacing,
                                 fat_rng, noise_rng)
    signal *= _bias_field(noise_rng, tissue.shape)
    gain = noise_rng.uniform(600.0, 1400.0)
    sigma = noise_rng.uniform(0.018, 0.035) * FAT_SIGNAL
    real = signal + sigma * noise_rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * noise_rng.standard_normal(signal.shape, dtype=np.float32)
    return np.round(gain * np.sqrt(real * real + imag * imag)).astype(np.float32)  # integers, as a scanner stores


def _body_box(side, margin):
    """In-plane bounding box (as a slice tuple) of the body over all slices, plus a margin."""
    xs, ys = np.nonzero(side.any(axis=2))
    if xs.size == 0:
        return (slice(0, 0), slice(0, 0), slice(None))
    return (slice(max(xs.min() - margin, 0), xs.max() + margin + 1),
            slice(max(ys.min() - margin, 0), ys.max() + margin + 1), slice(None))


def _tissue_signal(tissue, cell, side, targets, spacing, fat_rng, noise_rng):
    """Noise-free relative signal (fat = 1) with fat replacement, fascia and partial volume."""
    lut = np.zeros(16, np.float32)
    for code, value in TISSUE_SIGNAL.items():
        lut[code] = value
    signal = lut[tissue]
    muscle = (tissue == MUSCLE) | (tissue == OTHER_MUSCLE)
    patch = _smooth_noise(fat_rng, tissue.shape, spacing, 2.5)[muscle]
    texture = _smooth_noise(noise_rng, tissue.shape, spacing, 1.5)[muscle]
    # Mercuri-like replacement: per-muscle mean fat fraction, patchy around it
    mean = targets[side[muscle].astype(np.intp) - 1, cell[muscle]]
    spread = 0.9 * np.minimum(mean, 1.0 - mean) + 0.01
    fraction = np.clip(mean + spread * patch, 0.0, 1.0)
    base = TISSUE_SIGNAL[MUSCLE] * (1.0 + 0.035 * texture)
    signal[muscle] = (1.0 - fraction) * base + fraction * FAT_SIGNAL
    # fascia: one-pixel fat-signal line where two muscle cells meet (partial volume)
    for axis in (0, 1):
        a, b = [slice(None)] * 3, [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        a, b = tuple(a), tuple(b)
        edge = muscle[a] & muscle[b] & (cell[a] != cell[b])
        signal[a][edge] = 0.45 * signal[a][edge] + 0.55 * FAT_SIGNAL
    return ndi.gaussian_filter(signal, (0.5, 0.5, 0.0))  # in-plane partial volume


def _bias_field(rng, shape):
    """Smooth multiplicative receive-coil bias: exp of a random quadratic, about ±20 %."""
    x = np.linspace(-1.0, 1.0, shape[0], dtype=np.float32)[:, None, None]
    y = np.linspace(-1.0, 1.0, shape[1], dtype=np.float32)[None, :, None]
    z = np.linspace(-1.0, 1.0, shape[2], dtype=np.float32)[None, None, :]
    c = rng.normal(0.0, 0.08, 6)
    return np.exp(c[0] * x + c[1] * y + c[2] * x * x + c[3] * y * y + c[4] * x * y + c[5] * z)
