"""Robust normalisation and the 128 x 128 classifier input (SPEC §3)."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from skimage.transform import resize

from lib.transforms.intensity import RobustNormalized, classifier_input, robust_normalize


def phantom(shape=(96, 80, 3), seed=0):
    """Zero background, two tissues and one bright outlier per slice: an MR-like magnitude."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x / 0.8) ** 2 + (y / 0.7) ** 2 < 1
    tissue = np.where(body, 300 + 200 * (x ** 2 + y ** 2 < 0.2), 0.0)
    img = tissue[..., None] + rng.normal(0, 10, shape) * body[..., None]
    img[10, 10, :] = 1e5  # a fat/vessel spike that min-max scaling would be ruined by
    return np.clip(img, 0, None)[None].astype(np.float32)


def test_normalisation_is_invariant_to_scanner_scale_and_offset():
    img = phantom()
    a = RobustNormalized("image")({"image": torch.from_numpy(img)})["image"]
    b = RobustNormalized("image")({"image": torch.from_numpy(img * 1000 + 5)})["image"]
    assert a.dtype == torch.float32 and a.shape == img.shape
    assert torch.allclose(a, b, atol=1e-5)
    assert a.min() == 0 and a.max() == 1
    body, bright = img[0] > 0, img[0] > 400
    contrast = np.median(a[0].numpy()[bright]) - np.median(a[0].numpy()[body & ~bright])
    assert contrast > 0.6  # the 1e5 spike did not squash the two tissues together
    assert (a[0].numpy()[~body] == 0).all()


def test_constant_and_two_valued_images():
    assert robust_normalize(np.full((1, 20, 20, 2), 7.5, np.float32)).max() == 0
    two = np.zeros((1, 20, 20, 2), np.float32)
    two[:, 5:15] = 42.0
    assert set(np.unique(robust_normalize(two))) == {0.0, 1.0}


def test_metatensor_meta_is_kept_and_bad_percentiles_refused():
    img = MetaTensor(torch.from_numpy(phantom()), affine=torch.diag(torch.tensor([-2.0, -2.0, 5.0, 1.0])))
    out = robust_normalize(img, 1, 99)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, img.affine)
    with pytest.raises(ValueError):
        RobustNormalized("image", lower=60, upper=40)


def test_classifier_input_is_128_and_smooth():
    img = np.zeros((1, 432, 432, 2), np.float32)
    img[0, ::2, :, 0] = 1.0  # one-pixel stripes: pure aliasing bait
    img[0, 100:300, 150:350, 1] = 1.0  # a square
    small = classifier_input(torch.from_numpy(img)).numpy()
    assert small.shape == (1, 128, 128, 2)
    assert np.abs(small[0, 8:-8, 8:-8, 0] - 0.5).max() < 0.05  # stripes average out, no moire
    reference = resize(img[0, :, :, 1], (128, 128), order=3, anti_aliasing=True)
    assert np.abs(small[0, :, :, 1] - reference).mean() < 0.02


def test_classifier_input_updates_the_affine():
    affine = torch.diag(torch.tensor([-1.037037, -1.037037, 5.0, 1.0], dtype=torch.float64))
    out = classifier_input(MetaTensor(torch.zeros(1, 432, 432, 1), affine=affine))
    assert np.allclose(np.abs(np.diag(out.affine.numpy()))[:3], [1.037037 * 432 / 128] * 2 + [5.0])
    centre_in = affine.numpy() @ [215.5, 215.5, 0, 1]
    assert np.allclose(out.affine.numpy() @ [63.5, 63.5, 0, 1], centre_in)  # same field-of-view centre
