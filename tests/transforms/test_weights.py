"""SPEC §5 weight map: class weights, border term, sigma per region, body mask, speed-ups exact."""

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from lib.labels import BORDER_SIGMA_PX
from lib.transforms.weights import (BorderWeightMapd, body_mask, border_weight_map, class_weight_map, cross_filter,
                                    fill_slice_holes, limb_components, nearest_two_distances)


def touching_pair(size=64):
    """A body rectangle holding muscle 1 (rows 16-31) and muscle 2 (rows 32-47) touching at row 31/32."""
    image = np.zeros((size, size), np.float32)
    image[8:56, 8:56] = 0.5
    label = np.zeros((size, size), np.uint8)
    label[16:32, 16:48] = 1
    label[32:48, 16:48] = 2
    return image, label


def border_term(image, label, region):
    """The border term alone (class weights off: 1 on every annotated pixel)."""
    return border_weight_map(image, label, 3, BORDER_SIGMA_PX[region], class_weights="uniform") - 1.0


def test_interface_pixels_outweigh_interiors():
    image, label = touching_pair()
    w = BorderWeightMapd(region="thigh")({"image": image[None], "label": label[None]})["weight"][0]
    assert w[31, 32] > w[18, 32] + 5  # muscle 1 at the interface vs deep in muscle 1 (same class weight)
    assert w[32, 32] > w[45, 32] + 5


def test_border_term_formula_and_sigma_per_region():
    image, label = touching_pair()
    thigh, leg = border_term(image, label, "thigh"), border_term(image, label, "leg")
    for row in (31, 28, 24, 20):  # muscle 1: d1 = 0 (own muscle), d2 = distance to muscle 2
        d2 = 32 - row
        assert thigh[row, 32] == pytest.approx(10 * np.exp(-(d2**2) / (2 * 7.0**2)), rel=1e-4)
        assert leg[row, 32] == pytest.approx(10 * np.exp(-(d2**2) / (2 * 8.0**2)), rel=1e-4)
    assert leg[24, 32] - thigh[24, 32] > 0.5  # wider band for the leg (sigma 8 vs 7)
    assert leg.sum() > 1.1 * thigh.sum()


def test_class_weights_are_inverse_frequencies():
    label = np.zeros((10, 10), np.uint8)
    label[:2] = 1  # 20 px of class 1, 5 px of class 2, 10 ignored, 65 background
    label[2, :5] = 2
    label[9] = 255
    w = class_weight_map(label, num_classes=4)
    n, c = 90, 4  # annotated pixels, classes
    assert w[0, 0] == pytest.approx(n / (c * 20))
    assert w[2, 0] == pytest.approx(n / (c * 5))
    assert w[5, 5] == pytest.approx(n / (c * 65))
    assert np.all(w[9] == 0)
    freq = np.array([0.8, 0.1, 0.05, 0.05])  # dataset-level frequencies: w_c = mean(f) / f_c
    fixed = class_weight_map(label, num_classes=4, class_frequencies=freq)
    assert fixed[0, 0] == pytest.approx(0.25 / 0.1) and fixed[5, 5] == pytest.approx(0.25 / 0.8)
    assert class_weight_map(label, 4, max_class_weight=2.0).max() == pytest.approx(2.0)


def test_border_term_only_inside_body():
    image, label = touching_pair()
    image[:, :20] = 0.0  # the body now starts at column 20; the muscles reach column 16
    label[:, 16:20] = 0
    term = border_term(image, label, "thigh")
    body = body_mask(image, label)
    assert not body[32, 18] and term[32, 18] == 0  # next to the interface, but outside the body
    assert term[32, 21] > 5


def test_copies_of_a_muscle_in_two_limbs_are_distinct_objects():
    label = np.zeros((40, 60), np.uint8)
    label[10:30, 10:28] = 1
    label[10:30, 32:50] = 1  # same muscle, other limb, 4 px away
    image = np.full(label.shape, 0.5, np.float32)
    term = border_weight_map(image, label, 2, 7.0, class_weights="uniform") - 1
    assert term[20, 29] == pytest.approx(10 * np.exp(-(2 + 3) ** 2 / 98), rel=1e-4)  # d1 = 2, d2 = 3


def test_cropped_distances_match_full_transforms():
    rng = np.random.default_rng(0)
    label = np.zeros((80, 80), np.uint8)
    for value in range(1, 6):
        r, c = rng.integers(5, 65, 2)
        label[r:r + rng.integers(4, 15), c:c + rng.integers(4, 15)] = value
    d1, d2 = nearest_two_distances(label, margin=200)
    masks = [comps == i for v in range(1, 6) for comps, n in [ndi.label(label == v, np.ones((3, 3)))]
             for i in range(1, n + 1)]
    full = np.sort(np.stack([ndi.distance_transform_edt(~m) for m in masks]), axis=0)
    np.testing.assert_allclose(d1, full[0], atol=1e-4)
    np.testing.assert_allclose(d2, full[1], atol=1e-4)
    near1, near2 = nearest_two_distances(label, margin=10)
    np.testing.assert_allclose(near2[full[1] <= 10], full[1][full[1] <= 10], atol=1e-4)
    assert np.all(near2[full[1] > 10] >= full[1][full[1] > 10] - 1e-4)


def test_limbs_are_the_two_largest_components():
    body = np.zeros((30, 60), bool)
    body[5:25, 2:25] = True
    body[5:20, 35:55] = True
    body[1, 58] = True  # a speck: not a limb
    ids, count = limb_components(body)
    assert count == 2 and ids[10, 10] == 1 and ids[10, 40] == 2 and ids[1, 58] == 0
    ids, count = limb_components(body[:, :30])
    assert count == 1


def test_transform_types_region_and_errors():
    image, label = touching_pair()
    data = {"image": torch.as_tensor(image[None]), "label": torch.as_tensor(label[None]), "region": "leg"}
    out = BorderWeightMapd()(data)["weight"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (1, 64, 64)
    leg = BorderWeightMapd(region="leg")(data)["weight"]
    assert torch.equal(out, leg)
    with pytest.raises(ValueError, match="region"):
        BorderWeightMapd()({"image": image[None], "label": label[None]})


def test_slice_holes_fill_as_scipy_does():
    rng = np.random.default_rng(3)
    mask = ndi.gaussian_filter(rng.random((60, 50, 7)), (2, 2, 0)) > 0.5  # blobs, some holes
    mask[10:30, 10:30, 2] = True
    mask[15:20, 15:20, 2] = False  # a hole: filled
    mask[10:30, 25, 2] = False  # a slit across the square: a shape scipy's filling must agree on
    mask[:, 0:3, 4] = True
    mask[5:8, 0:2, 4] = False  # background open to the slice edge: kept
    plane4 = np.zeros((3, 3, 3), bool)
    plane4[:, :, 1] = ndi.generate_binary_structure(2, 1)
    filled = fill_slice_holes(mask)
    assert filled.sum() > mask.sum()  # the random mask has holes to fill
    assert np.array_equal(filled, ndi.binary_fill_holes(mask, structure=plane4))
    image = ndi.gaussian_filter(rng.random((80, 70)), 2)
    image = (image - image.min()) / (image.max() - image.min())
    opened = cross_filter(cross_filter(image > 0.5, np.minimum))  # body_mask's own opening
    assert not np.array_equal(opened, ndi.binary_fill_holes(opened))  # there are holes
    assert np.array_equal(body_mask(image, threshold=0.5), ndi.binary_fill_holes(opened))
