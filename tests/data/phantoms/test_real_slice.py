"""The real labelled leg slice (lib/data/phantoms/real_slice.py) and its copy in studies/."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from lib import labels as L
from lib.data.io import load_nifti
from lib.data.phantoms.real_slice import ROIS_FILE, load_real_slice, roi_target
from lib.errors import UserError
from lib.paths import EMBEDDED_STUDIES, SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(),
                                reason=f"real sample data not at {SHARED_DATA}")


@pytest.fixture(scope="module")
def real():
    return load_real_slice()


@pytest.fixture(scope="module")
def rois():
    with np.load(SHARED_DATA / ROIS_FILE, allow_pickle=False) as f:
        return {name: f[name][..., 0] > 0 for name in f.files}  # (rows, cols)


def test_shapes_types_and_lps_affine(real):
    assert real.image.shape == real.label.shape == real.side.shape == (384, 324, 1)  # X = cols
    assert real.image.dtype == np.float32 and real.label.dtype == np.uint8
    assert nib.aff2axcodes(real.affine) == ("L", "P", "S")
    np.testing.assert_allclose(np.diag(real.affine)[:3], [-1.0416667, -1.0416667, 5.0], rtol=1e-6)


def test_twelve_rois_map_to_the_six_leg_labels_on_both_sides(real, rois):
    assert len(rois) == 12
    targets = {roi_target(name) for name in rois}
    leg = set(L.region_labels("leg").values())
    assert targets == {(value, side) for value in leg for side in (1, 2)}
    assert set(np.unique(real.label)) == leg | {0}
    for value in leg:
        sides = set(np.unique(real.side[real.label == value]))
        assert sides == {1, 2}, value


def test_right_rois_are_on_the_small_x_half(real, rois):
    half = real.image.shape[0] / 2
    for name, mask_rc in rois.items():
        value, side = roi_target(name)
        x = np.nonzero(mask_rc.T)[0]  # (X, Y) = transposed (rows, cols)
        assert (x.max() < half) if name.endswith("_R") else (x.min() > half), name
        assert side == (1 if name.endswith("_R") else 2)
        # the label carries the ROI's value on (almost) all its pixels: overlaps are rare
        assert np.mean(real.label[:, :, 0][mask_rc.T] == value) > 0.95, name


def test_smallest_roi_wins_where_rois_overlap(real, rois):
    stacked = np.stack(list(rois.values()))
    overlap = stacked.sum(0) > 1
    assert overlap.any()  # the file does have a few overlapping pixels
    areas = {name: mask.sum() for name, mask in rois.items()}
    for r, c in zip(*np.nonzero(overlap)):
        owners = [name for name, mask in rois.items() if mask[r, c]]
        smallest = min(owners, key=areas.get)
        assert real.label[c, r, 0] == roi_target(smallest)[0]


def test_side_map_covers_the_limbs_and_the_image_shows_them(real):
    for side in (1, 2):
        limb = real.side[:, :, 0] == side
        assert limb.sum() > 1.3 * (real.label[:, :, 0][limb] > 0).sum()  # skin, fat, bone too
    assert real.image[real.side == 0].mean() < 0.2 * real.image[real.side > 0].mean()


def test_unknown_roi_name_is_a_user_error():
    with pytest.raises(UserError):
        roi_target("Gluteus_R")
    with pytest.raises(UserError):
        roi_target("Soleus_X")


def test_embedded_copy_matches_the_source(real):
    image, affine = load_nifti(EMBEDDED_STUDIES / "real_leg_t1.nii.gz")
    label, _ = load_nifti(EMBEDDED_STUDIES / "labels" / "final" / "real_leg_t1.nii.gz")
    np.testing.assert_array_equal(image, real.image)  # integral values are stored exactly
    np.testing.assert_array_equal(label, real.label)
    np.testing.assert_allclose(affine, real.affine, atol=1e-5)
