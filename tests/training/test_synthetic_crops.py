"""Rendered training crops (lib/training/synthetic.py): labels are copied from the source maps,
never invented; a batch holds only the region's channels or unknown (255); same seed, same batch.

Sources: phantom slices on the model grid (``phantom_label_slices``: a fraction of a second), a
thigh one with one muscle marked unknown as the real thigh shapes have adductor longus.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from lib.data.phantoms.layout import AIR, OBJECT
from lib.data.phantoms.shapes import LabelSlices, phantom_label_slices
from lib.labels import num_classes, region_labels
from lib.training.synthetic import (classifier_batches, draw_maps, keep_centre_limb, limb_centres, segmentation_batches,
                                    to_channels)
from lib.transforms.weights import IGNORE_VALUE

CROP = 240


@pytest.fixture(scope="module")
def sources():
    """{region: LabelSlices}; the thigh's adductor longus (12) is unknown (255), as in real shapes."""
    leg = phantom_label_slices("leg", [3], n_slices=2)
    thigh = phantom_label_slices("thigh", [4], n_slices=2)
    thigh.label[thigh.label == region_labels("thigh")["adductor_longus"]] = IGNORE_VALUE
    return {"leg": leg, "thigh": thigh}


def allowed_channels(region: str) -> set[int]:
    return set(range(num_classes(region))) | {IGNORE_VALUE}


def take(batches, n: int):
    return [next(batches) for _ in range(n)]


@pytest.mark.parametrize("region", ["leg", "thigh"])
def test_drawn_maps_copy_the_source_values_and_leave_the_source_alone(sources, region):
    source = sources[region]
    before = (source.tissue.copy(), source.label.copy())
    rng = np.random.default_rng(5)
    centres = limb_centres(source.tissue)
    label_values = set(np.unique(source.label).tolist()) | {0}  # objects and cut edges are background
    tissue_values = set(np.unique(source.tissue).tolist()) | {AIR, OBJECT}
    for k in range(12):
        index = k % len(source)
        tissue, label = draw_maps(source, index, centres[index][k % len(centres[index])], CROP, rng)
        assert tissue.shape == label.shape == (CROP, CROP) and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) <= label_values
        assert set(np.unique(tissue).tolist()) <= tissue_values
        assert (label > 0).any()  # the crop is around a limb
        assert not label[tissue == OBJECT].any()  # a pad or bottle is never muscle
    assert np.array_equal(source.tissue, before[0]) and np.array_equal(source.label, before[1])


@pytest.mark.parametrize("region", ["leg", "thigh"])
def test_segmentation_batches_hold_only_the_regions_channels_or_unknown(sources, region):
    batches = segmentation_batches([sources[region]], [1.0], region, batch_size=3, size=CROP, seed=0)
    seen = set()
    for images, labels, weights in take(batches, 2):
        assert images.shape == labels.shape == weights.shape == (3, 1, CROP, CROP)
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert torch.isfinite(images).all() and torch.isfinite(weights).all() and (weights >= 0).all()
        values = set(torch.unique(labels).tolist())
        assert values <= allowed_channels(region), values
        seen |= values
    assert len(seen - {0, IGNORE_VALUE}) >= 3  # muscles, not only background
    if region == "thigh":
        assert IGNORE_VALUE in seen  # the unknown muscle stays unknown, never background


def test_other_regions_muscles_become_background_and_unknown_stays_unknown():
    label = np.array([[0, 1, 12, 13, 18, IGNORE_VALUE]], np.uint8)
    assert to_channels(label, "thigh").tolist() == [[0, 1, 12, 0, 0, IGNORE_VALUE]]
    assert to_channels(label, "leg").tolist() == [[0, 0, 0, 1, 6, IGNORE_VALUE]]


def test_a_source_with_its_own_image_gives_the_same_kind_of_batch(sources):
    leg = sources["leg"]
    own = LabelSlices(leg.tissue, leg.label, "leg", leg.sources,
                      images=np.random.default_rng(0).uniform(0, 1, leg.tissue.shape).astype(np.float32))
    images, labels, _ = next(segmentation_batches([own], [1.0], "leg", batch_size=4, size=CROP, seed=3,
                                                  own_image_share=1.0))
    assert torch.isfinite(images).all() and set(torch.unique(labels).tolist()) <= allowed_channels("leg")


def test_own_images_augmented_keep_their_labels_are_reproducible_and_sometimes_invert_fat(sources):
    """``own_image_augment`` changes only the own images' intensities (the 2026-11-25 recipe); the
    labels and weight maps' draws stay, the same seed gives the same batch, and with the
    inversion always on the fat ring ends darker than the muscle in some crops."""
    thigh = sources["thigh"]
    tissue = thigh.tissue
    own = LabelSlices(tissue, thigh.label, "thigh", thigh.sources,
                      images=np.select([tissue == AIR, thigh.label > 0], [0.02, 0.45], 0.9).astype(np.float32))
    plain = take(segmentation_batches([own], [1.0], "thigh", batch_size=4, size=CROP, seed=5, own_image_share=1.0), 3)
    augmented = [take(segmentation_batches([own], [1.0], "thigh", batch_size=4, size=CROP, seed=5, own_image_share=1.0,
                                           own_image_augment=(0.25, 1.0)), 3) for _ in range(2)]
    for (x0, y0, _), (x1, y1, _), (x2, y2, _) in zip(plain, *augmented):
        assert torch.equal(y0, y1) and torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.isfinite(x1).all()
    inverted = 0
    for (x0, y0, _), (x1, _, _) in zip(plain, augmented[0]):
        for k in range(x0.shape[0]):
            muscle, fat = (y0[k, 0] > 0) & (y0[k, 0] != IGNORE_VALUE), x0[k, 0] > 0.8
            if muscle.any() and fat.any():
                inverted += int(x1[k, 0][fat].mean() < x1[k, 0][muscle].mean())
                assert x0[k, 0][fat].mean() > x0[k, 0][muscle].mean()
    assert inverted >= 3


def test_a_one_limb_crop_of_an_own_image_gives_the_other_limb_the_airs_level(sources):
    thigh = sources["thigh"]
    own = LabelSlices(thigh.tissue, thigh.label, "thigh", thigh.sources,
                      images=np.where(thigh.tissue == AIR, 0.02, 0.7).astype(np.float32))
    centre = limb_centres(thigh.tissue)[0][0]
    other_limb_seen = 0
    for k in range(6):
        tissue, label, image = draw_maps(own, 0, centre, CROP, np.random.default_rng(k), own_image=True,
                                         one_limb_share=1.0)
        both_tissue, _, both_image = draw_maps(own, 0, centre, CROP, np.random.default_rng(k), own_image=True)
        assert body_components(tissue) == 1 and not label[tissue == AIR].any()
        far = ndi.binary_erosion(tissue == AIR, iterations=3)  # off the kept limb's interpolated edge
        assert image[far].max() <= 0.02 + 1e-4  # air (0.02) or the zeros beyond the source slice
        other_limb_seen += int((both_image[far] > 0.1).any())
    assert other_limb_seen >= 2  # where the other thigh showed, it is gone


def test_same_seed_same_batch_other_seed_other_batch(sources):
    both, weights = [sources["leg"], sources["thigh"]], [0.5, 0.5]
    first = take(segmentation_batches(both, weights, "leg", batch_size=2, size=CROP, seed=7), 2)
    again = take(segmentation_batches(both, weights, "leg", batch_size=2, size=CROP, seed=7), 2)
    other = take(segmentation_batches(both, weights, "leg", batch_size=2, size=CROP, seed=8), 2)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


def body_components(tissue: np.ndarray) -> int:
    return ndi.label((tissue != AIR) & (tissue != OBJECT))[1]


def test_a_one_limb_crop_keeps_only_the_limb_at_its_centre(sources):
    """The thigh phantom's crops hold both thighs; with ``one_limb_share`` 1 only the chosen one is
    left, its labels untouched, and with 0 the crops are those of the recipe before the share."""
    thigh = sources["thigh"]
    centre = limb_centres(thigh.tissue)[0][0]
    both = [draw_maps(thigh, 0, centre, CROP, np.random.default_rng(k), one_limb_share=0.0) for k in range(6)]
    alone = [draw_maps(thigh, 0, centre, CROP, np.random.default_rng(k), one_limb_share=1.0) for k in range(6)]
    assert sum(body_components(tissue) >= 2 for tissue, _ in both) >= 2  # the other thigh shows in some crops
    for (tissue, label), (tissue1, label1) in zip(both, alone):
        assert body_components(tissue1) == 1
        assert label1[tissue1 == AIR].max(initial=0) == 0
        assert (label1 > 0).sum() > 0.3 * (label > 0).sum()  # the chosen limb's muscles are kept
    before = take(segmentation_batches([thigh], [1.0], "thigh", batch_size=2, size=CROP, seed=7), 2)
    off = take(segmentation_batches([thigh], [1.0], "thigh", batch_size=2, size=CROP, seed=7, one_limb_share=0.0), 2)
    assert all(torch.equal(x, y) for a, b in zip(before, off) for x, y in zip(a, b))


def test_keep_centre_limb_keeps_what_touches_the_centre_limb_and_leaves_a_crop_without_one_alone():
    rows, cols = np.ogrid[:100, :100]
    tissue = np.zeros((100, 100), np.uint8)
    tissue[(rows - 50) ** 2 + (cols - 12) ** 2 < 10 ** 2] = 3
    tissue[(rows - 50) ** 2 + (cols - 88) ** 2 < 10 ** 2] = 3
    label = (tissue > 0).astype(np.uint8) * 5
    t, l = tissue.copy(), label.copy()
    keep_centre_limb(t, l)
    assert np.array_equal(t, tissue) and np.array_equal(l, label)  # no limb within 20 px of the centre
    tissue[(rows - 50) ** 2 + (cols - 50) ** 2 < 12 ** 2] = 3  # a limb at the centre ...
    tissue[48:52, 20:40] = 3  # ... touching the left one
    label = (tissue > 0).astype(np.uint8) * 5
    keep_centre_limb(tissue, label)
    assert tissue[50, 12] and tissue[50, 50] and label[50, 12]
    assert not tissue[50, 88] and not label[50, 88]


def test_classifier_batches_are_reproducible_finite_and_carry_each_sources_class(sources):
    both = [sources["thigh"], sources["leg"]]
    x, y = next(classifier_batches(both, [0, 1], [0.5, 0.5], batch_size=6, seed=2))
    x2, y2 = next(classifier_batches(both, [0, 1], [0.5, 0.5], batch_size=6, seed=2))
    assert x.shape == (6, 1, 128, 128) and torch.isfinite(x).all()
    assert set(y.tolist()) <= {0, 1}
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_the_scale_range_sets_how_large_a_limb_is_drawn(sources):
    """The classifier's crops take a wider scale range than the segmenters' (PretrainPlan)."""
    thigh = sources["thigh"]
    centre = limb_centres(thigh.tissue)[0][0]
    area = {s: np.mean([(draw_maps(thigh, 0, centre, CROP, np.random.default_rng(k), scale_range=(s, s))[1] > 0).sum()
                        for k in range(4)]) for s in (0.6, 1.0)}
    assert 0.25 < area[0.6] / area[1.0] < 0.5  # 0.36 = 0.6 ** 2, give or take the warp and the crop edge
    both = [sources["thigh"], sources["leg"]]
    small = next(classifier_batches(both, [0, 1], [0.5, 0.5], batch_size=4, seed=2, scale_range=(0.6, 0.6)))
    large = next(classifier_batches(both, [0, 1], [0.5, 0.5], batch_size=4, seed=2, scale_range=(1.4, 1.4)))
    assert torch.equal(small[1], large[1]) and not torch.equal(small[0], large[0])


def test_a_source_drawn_only_in_its_own_images_is_never_rendered(sources):
    leg = sources["leg"]
    flat = np.full(leg.tissue.shape, 0.5, np.float32)  # a rendered crop would vary with the tissue
    own = LabelSlices(leg.tissue, leg.label, "leg", leg.sources, images=flat, own_image_only=True)
    images, labels, _ = next(segmentation_batches([own], [1.0], "leg", batch_size=4, size=CROP, seed=3,
                                                  own_image_share=0.0))
    for image in images[:, 0]:  # one gamma-jittered grey (zero beyond the slice's edge): its own image
        inside = image[image > 0]
        assert float((inside > image.max() - 1e-5).float().mean()) > 0.95
    assert set(torch.unique(labels).tolist()) <= allowed_channels("leg")
