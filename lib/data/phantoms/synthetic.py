"""MR-like images of any contrast rendered from tissue and muscle maps (SynthSeg-style).

Billot et al. (SynthSeg, Medical Image Analysis 2023) train segmenters only on images drawn from
label maps with random contrast, resolution and artefacts, and they generalise to real scans of
any contrast. ``render`` does that for one 2D slice: for each sample it draws a mean per tissue
from a contrast family, jitters each muscle around a shared muscle level, mixes in fat by a
patchy per-muscle fat fraction (fat-infiltrated muscle lies between muscle and fat, in every
contrast), draws fascia where muscles meet, then texture, blur, a coarser in-plane resolution
(0.7-2 mm), a coil bias field, Rician noise, the robust normalisation inference uses, and gamma.

Families: fat-bright (T1, PD, GRE, Dixon fat and in-phase), fat-dark (Dixon water,
fat-saturated, STIR: marrow dark too), T2-like (fat bright, muscle dark, vessels bright) and
fully random means (SynthSeg's own). Cortical bone has no signal in any of them.

Speed: the smooth random fields are drawn on a coarse grid and brought up by two small matrix
products (torch's bilinear upsampling took 6 ms per 240 px field on this 2-core CPU, the matrix
products 0.3 ms); a 240 x 240 sample renders in about 10 ms.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage as ndi

from lib.data.phantoms.layout import (AIR, CORTEX, FAT_PAD, MARROW, MUSCLE, OBJECT, OTHER_MUSCLE, SKIN,
                                      SUBCUT_FAT, VESSEL)
from lib.transforms.geometry import MODEL_SPACING
from lib.transforms.intensity import robust_normalize
from lib.transforms.weights import IGNORE_VALUE

N_TISSUES = OBJECT + 1
FAMILIES = ("fat_bright", "fat_dark", "t2_like", "random")
FAMILY_WEIGHTS = (0.4, 0.25, 0.1, 0.25)


def tissue_means(rng: np.random.Generator, family: str) -> np.ndarray:
    """Mean signal of each tissue code for one sample, about [0, 1]."""
    u = rng.uniform
    means = np.zeros(N_TISSUES, np.float32)
    if family == "random":
        means[:] = u(0, 1, N_TISSUES)
        means[CORTEX], means[AIR] = u(0, 0.15), u(0, 0.05)
        return means
    if family == "fat_bright":
        fat, muscle, vessel = u(0.7, 1.0), u(0.15, 0.55), u(0.0, 0.5)
        marrow = fat * u(0.75, 1.05)
    elif family == "fat_dark":
        fat, muscle, vessel = u(0.0, 0.25), u(0.4, 1.0), u(0.0, 1.0)
        marrow = fat * u(0.6, 1.6)
    elif family == "t2_like":
        fat, muscle, vessel = u(0.6, 1.0), u(0.08, 0.3), u(0.5, 1.0)
        marrow = fat * u(0.7, 1.0)
    else:
        raise ValueError(f"unknown contrast family {family!r}: expected one of {', '.join(FAMILIES)}")
    means[AIR] = u(0, 0.03)
    means[SUBCUT_FAT], means[FAT_PAD], means[MARROW] = fat, fat * u(0.85, 1.05), marrow
    means[MUSCLE], means[OTHER_MUSCLE] = muscle, muscle * u(0.85, 1.15)
    means[SKIN] = u(min(fat, muscle), max(fat, muscle)) * u(0.8, 1.2)
    means[CORTEX], means[VESSEL], means[OBJECT] = u(0, 0.08), vessel, u(0.05, 1.0)
    return np.clip(means, 0, 1.2)


@functools.lru_cache(maxsize=64)
def interpolation_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation weights with half-pixel centres (as torch's bilinear)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), lo), 1 - (pos - lo))
    np.add.at(m, (np.arange(n_out), hi), pos - lo)
    return m


@functools.lru_cache(maxsize=64)
def area_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights averaging the input pixels each output pixel covers."""
    edges = np.linspace(0, n_in, n_out + 1)
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        for j in range(int(np.floor(edges[i])), min(int(np.ceil(edges[i + 1])), n_in)):
            m[i, j] = min(edges[i + 1], j + 1) - max(edges[i], j)
    return m / m.sum(1, keepdims=True)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float, n: int = 1) -> np.ndarray:
    """``n`` unit-sd Gaussian noise fields (H, W) smoothed over ``sigma_px`` (one field: (H, W))."""
    step = max(1, int(sigma_px // 2))
    coarse = tuple(max(2, -(-s // step)) for s in shape)
    small = ndi.gaussian_filter(rng.standard_normal((n, *coarse)).astype(np.float32),
                                (0, sigma_px / step, sigma_px / step))
    big = np.einsum("ij,njk,lk->nil", interpolation_matrix(shape[0], coarse[0]), small,
                    interpolation_matrix(shape[1], coarse[1]), optimize=True)
    big /= max(float(big.std()), 1e-6)
    return big if n > 1 else big[0]


def fascia(label: np.ndarray) -> np.ndarray:
    """Pixels where two different muscles meet (4-neighbourhood), unknown pixels left out."""
    values = np.where(label == IGNORE_VALUE, 0, label)
    edge = np.zeros(label.shape, bool)
    for axis in (0, 1):
        a, e = np.swapaxes(values, 0, axis), np.swapaxes(edge, 0, axis)
        e[1:] |= (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
    return edge


def render(tissue: np.ndarray, label: np.ndarray, rng: np.random.Generator, family: str | None = None,
           mm: float = MODEL_SPACING) -> np.ndarray:
    """A float32 image like ``tissue`` (H, W) with random appearance, normalised to [0, 1].

    tissue: codes of ``lib.data.phantoms.layout``; label: muscle values (each muscle's own level
    and fat fraction; 255 = unknown); family: a name of ``FAMILIES`` (random by default);
    mm: pixel size. The labels are not changed: only the appearance is drawn.
    """
    family = family or FAMILIES[rng.choice(len(FAMILIES), p=FAMILY_WEIGHTS)]
    means = tissue_means(rng, family)
    spread = rng.uniform(0.0, 0.06, N_TISSUES).astype(np.float32)
    image = means[tissue]
    muscle = (tissue == MUSCLE) | (tissue == OTHER_MUSCLE)
    if muscle.any():
        values = np.where(muscle, label, 0).astype(np.intp)
        level = (1 + rng.normal(0, 0.07, 256)).astype(np.float32)
        infiltrated = 0.15 if rng.uniform() < 0.5 else 0.6  # share of muscles with fat replacement
        fraction = np.where(rng.uniform(size=256) < infiltrated, rng.beta(1.2, 2.0, 256),
                            rng.uniform(0, 0.08, 256)).astype(np.float32)[values]
        patch = smooth_field(rng, tissue.shape, rng.uniform(1.5, 4) / mm)
        fraction = np.clip(fraction + (0.5 * np.minimum(fraction, 1 - fraction) + 0.02) * patch, 0, 1)
        fat = means[SUBCUT_FAT]
        image = np.where(muscle, (1 - fraction) * image * level[values] + fraction * fat, image)
        edge = fascia(np.where(muscle, label, 0)) & muscle
        mix = rng.uniform(0.2, 0.7)
        image[edge] = (1 - mix) * image[edge] + mix * (fat if rng.uniform() < 0.7 else means[CORTEX])
    image = image * (1 + spread[tissue] * smooth_field(rng, tissue.shape, rng.uniform(0.7, 2.0)))
    image = ndi.gaussian_filter(image, rng.uniform(0.3, 1.0))  # partial volume
    resolution = rng.uniform(0.7, 2.0)
    if resolution > 1.1 * mm:  # area-average onto the coarser grid, then linear back
        h, w = image.shape
        sh, sw = max(2, round(h * mm / resolution)), max(2, round(w * mm / resolution))
        small = area_matrix(sh, h) @ image @ area_matrix(sw, w).T
        image = interpolation_matrix(h, sh) @ small @ interpolation_matrix(w, sw).T
    image = image * np.exp(rng.uniform(0, 0.35) * smooth_field(rng, tissue.shape, rng.uniform(40, 120) / mm))
    sigma = rng.uniform(0.005, 0.05) * max(float(means.max()), 0.1)
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.sqrt(real * real + imaginary * imaginary)  # Rician magnitude
    image = robust_normalize(image[None].astype(np.float32))[0]
    return (image ** np.exp(rng.normal(0, 0.25))).astype(np.float32)
