"""The SynthSeg-style renderer (lib/data/phantoms/synthetic.py): reproducible, never touches the
maps it renders, and each contrast family keeps the tissue order it promises.

Maps: one leg and one thigh phantom slice on the model grid (``phantom_label_slices``, a fraction
of a second; the real thigh shapes take about a minute to load and are not needed here). Tissue
brightness is the median over the tissue's pixels, eroded by 2 px where the tissue is thick
(fat, muscle, marrow, air) so that partial volume at the edges does not decide it.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from lib.data.phantoms.layout import AIR, CORTEX, MARROW, MUSCLE, SUBCUT_FAT, VESSEL
from lib.data.phantoms.shapes import phantom_label_slices
from lib.data.phantoms.synthetic import FAMILIES, render, tissue_means
from lib.transforms.weights import IGNORE_VALUE

SEEDS = range(6)


@pytest.fixture(scope="module")
def maps():
    """{region: (tissue, label)}: the middle slice of a 3-slice phantom, (432, 432) uint8 each."""
    out = {}
    for region in ("leg", "thigh"):
        slices = phantom_label_slices(region, [3], n_slices=3)
        out[region] = (slices.tissue[1].copy(), slices.label[1].copy())
    return out


def brightness(image: np.ndarray, tissue: np.ndarray, code: int, erode: int = 2) -> float:
    mask = tissue == code
    if erode:
        mask = ndi.binary_erosion(mask, iterations=erode)
    assert mask.sum() > 20, f"tissue {code}: too few pixels to judge"
    return float(np.median(image[mask]))


@pytest.mark.parametrize("family", [*FAMILIES, None])
def test_output_is_finite_float32_of_the_input_shape(maps, family):
    for tissue, label in maps.values():
        image = render(tissue, label, np.random.default_rng(0), family)
        assert image.dtype == np.float32 and image.shape == tissue.shape
        assert np.isfinite(image).all() and image.min() >= 0.0
        assert image.std() > 0  # an image, not a constant


@pytest.mark.parametrize("family", [*FAMILIES, None])
def test_same_seed_same_image_other_seed_other_image(maps, family):
    tissue, label = maps["leg"]
    first = render(tissue, label, np.random.default_rng(11), family)
    again = render(tissue, label, np.random.default_rng(11), family)
    other = render(tissue, label, np.random.default_rng(12), family)
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_a_non_square_crop_and_a_coarser_pixel_size_render_too(maps):
    tissue, label = maps["thigh"]
    tissue, label = tissue[40:300, 10:400], label[40:300, 10:400]
    for seed in range(3):
        image = render(tissue, label, np.random.default_rng(seed), mm=1.5)
        assert image.shape == (260, 390) and image.dtype == np.float32 and np.isfinite(image).all()


def test_the_maps_are_not_changed(maps):
    """render draws only the appearance: tissue and label (unknown pixels included) stay as given."""
    tissue, label = maps["thigh"]
    label = label.copy()
    label[label == label[label > 0].min()] = IGNORE_VALUE  # one muscle unknown, as a thigh shape's adductor longus
    tissue_before, label_before = tissue.copy(), label.copy()
    for family in FAMILIES:
        for seed in range(3):
            image = render(tissue, label, np.random.default_rng(seed), family)
            assert np.isfinite(image).all()
            assert np.array_equal(tissue, tissue_before) and tissue.dtype == tissue_before.dtype
            assert np.array_equal(label, label_before) and label.dtype == label_before.dtype


def test_fat_bright_fat_brighter_than_muscle_bone_cortex_dark(maps):
    for tissue, label in maps.values():
        for seed in SEEDS:
            image = render(tissue, label, np.random.default_rng(seed), "fat_bright")
            fat, muscle = brightness(image, tissue, SUBCUT_FAT), brightness(image, tissue, MUSCLE)
            assert fat > 1.1 * muscle, (seed, fat, muscle)
            assert brightness(image, tissue, CORTEX, erode=0) < muscle, seed
            assert brightness(image, tissue, AIR, erode=3) < muscle, seed


def test_fat_dark_fat_and_marrow_darker_than_muscle(maps):
    for tissue, label in maps.values():
        for seed in SEEDS:
            image = render(tissue, label, np.random.default_rng(seed), "fat_dark")
            fat, muscle = brightness(image, tissue, SUBCUT_FAT), brightness(image, tissue, MUSCLE)
            assert fat < muscle, (seed, fat, muscle)
            assert brightness(image, tissue, MARROW) < muscle, seed  # fat-saturated: marrow dark too
            assert brightness(image, tissue, CORTEX, erode=0) < muscle, seed


def test_t2_like_fat_and_vessels_bright_muscle_dark(maps):
    for tissue, label in maps.values():
        for seed in SEEDS:
            image = render(tissue, label, np.random.default_rng(seed), "t2_like")
            fat, muscle = brightness(image, tissue, SUBCUT_FAT), brightness(image, tissue, MUSCLE)
            assert fat > 1.3 * muscle, (seed, fat, muscle)
            assert brightness(image, tissue, VESSEL, erode=0) > muscle, seed
            assert brightness(image, tissue, MARROW) > muscle, seed
            assert brightness(image, tissue, CORTEX, erode=0) < muscle, seed


def test_random_family_draws_both_orders_of_fat_and_muscle(maps):
    tissue, label = maps["leg"]
    brighter = set()
    for seed in range(16):
        image = render(tissue, label, np.random.default_rng(seed), "random")
        brighter.add(brightness(image, tissue, SUBCUT_FAT) > brightness(image, tissue, MUSCLE))
    assert brighter == {True, False}


def test_tissue_means_keep_each_family_order_and_reject_unknown_families():
    for seed in range(50):
        rng = np.random.default_rng(seed)
        bright, dark, t2 = (tissue_means(rng, f) for f in ("fat_bright", "fat_dark", "t2_like"))
        assert bright[SUBCUT_FAT] > bright[MUSCLE] and dark[SUBCUT_FAT] < dark[MUSCLE]
        assert t2[SUBCUT_FAT] > t2[MUSCLE] and t2[VESSEL] > t2[MUSCLE]
        for means in (bright, dark, t2, tissue_means(rng, "random")):
            assert means.dtype == np.float32 and ((means >= 0) & (means <= 1.2)).all()
            assert means[AIR] <= 0.05 and means[CORTEX] <= 0.15
    with pytest.raises(ValueError, match="unknown contrast family"):
        tissue_means(np.random.default_rng(0), "flair")
    with pytest.raises(ValueError, match="unknown contrast family"):
        render(np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8), np.random.default_rng(0), "flair")
