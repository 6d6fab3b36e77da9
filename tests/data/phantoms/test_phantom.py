"""Synthetic phantoms (lib/data/phantoms/: phantom.py, anatomy.py, layout.py) and NIfTI I/O (lib/data/io.py)."""

from __future__ import annotations

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from lib import labels as L
from lib.data.io import load_nifti, save_nifti
from lib.data.phantoms import anatomy as A
from lib.data.phantoms.layout import LAYOUTS, MARROW, MUSCLE, MUSCLE_RANGE, SKIN, SUBCUT_FAT
from lib.data.phantoms.phantom import annotated_slices, generate_phantom, sparse_label
from lib.errors import UserError

SHAPE = (160, 160)
SPACING = (2.6, 2.6, 5.0)  # 416 mm field of view: both thighs fit at full size
N_SLICES = 12


@pytest.fixture(scope="module", params=L.REGIONS)
def phantom(request):
    return generate_phantom(request.param, seed=7, n_slices=N_SLICES, shape=SHAPE, spacing=SPACING)


def test_same_seed_gives_identical_arrays_and_another_seed_differs():
    a = generate_phantom("leg", 3, 4, "mild", SHAPE, SPACING)
    b = generate_phantom("leg", 3, 4, "mild", SHAPE, SPACING)
    c = generate_phantom("leg", 4, 4, "mild", SHAPE, SPACING)
    for name in ("image", "label", "side", "tissue", "affine"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.label, c.label)
    assert not np.array_equal(a.image, c.image)


def test_geometry_types_and_lps_affine(phantom):
    assert phantom.image.shape == phantom.label.shape == phantom.side.shape == (*SHAPE, N_SLICES)
    assert phantom.image.dtype == np.float32 and phantom.label.dtype == np.uint8
    np.testing.assert_allclose(np.diag(phantom.affine)[:3], [-SPACING[0], -SPACING[1], SPACING[2]])
    assert nib.aff2axcodes(phantom.affine) == ("L", "P", "S")
    assert np.isfinite(phantom.image).all() and phantom.image.min() >= 0


def test_every_muscle_of_the_region_in_each_annotated_slice_of_each_limb(phantom):
    own = set(L.region_labels(phantom.region).values())
    assert set(np.unique(phantom.label)) <= own | {0}  # no label of the other region anywhere
    for k in annotated_slices(N_SLICES, phantom.region):
        for side in (1, 2):
            present = set(np.unique(phantom.label[:, :, k][phantom.side[:, :, k] == side])) - {0}
            assert present == own, (k, side, own - present)


def test_each_muscle_is_one_region_per_limb_and_slice(phantom):
    for k in annotated_slices(N_SLICES, phantom.region):
        for side in (1, 2):
            lab = np.where(phantom.side[:, :, k] == side, phantom.label[:, :, k], 0)
            for value in L.region_labels(phantom.region).values():
                assert ndi.label(lab == value)[1] == 1, (k, side, value)


def test_labels_lie_in_muscle_tissue_inside_the_limbs(phantom):
    muscle = phantom.label > 0
    assert (phantom.side[muscle] > 0).all()
    assert (phantom.tissue[muscle] == MUSCLE).all()
    fat = phantom.tissue == SUBCUT_FAT
    assert phantom.image[fat].mean() > 1.8 * phantom.image[muscle].mean()  # GRE: fat bright


def test_both_limbs_present_with_the_right_limb_at_small_x_and_mirrored_layout(phantom):
    names = L.region_labels(phantom.region)
    lateral, medial = ("vastus_lateralis", "vastus_medialis") if phantom.region == "thigh" else \
        ("peroneus", "gastrocnemius_medialis")
    x = np.arange(SHAPE[0])[:, None, None]
    centre = {}
    for side in (1, 2):
        in_side = phantom.side == side
        assert in_side[:, :, 0].any() and in_side[:, :, -1].any()
        centre[side] = x.repeat(SHAPE[1], 1).repeat(N_SLICES, 2)[in_side].mean()
        lat_x = np.nonzero(in_side & (phantom.label == names[lateral]))[0].mean()
        med_x = np.nonzero(in_side & (phantom.label == names[medial]))[0].mean()
        # lateral points away from the midline: toward small X on the right limb
        assert (lat_x < med_x) if side == 1 else (lat_x > med_x)
    assert centre[1] < SHAPE[0] / 2 < centre[2]


def test_anterior_muscles_have_small_y(phantom):
    names = L.region_labels(phantom.region)
    front, back = ("rectus_femoris", "semitendinosus") if phantom.region == "thigh" else \
        ("tibialis_anterior", "soleus")
    y_front = np.nonzero(phantom.label == names[front])[1].mean()
    y_back = np.nonzero(phantom.label == names[back])[1].mean()
    assert y_front < y_back


def test_external_rotation_turns_bones_and_muscles_outward_inside_the_same_outline():
    rng = np.random.default_rng(0)
    limb = A.sample_limb("leg_anatomical", A.sample_subject("leg_anatomical", rng), 1, rng)
    assert np.deg2rad(-15.0) <= limb.external_rotation <= np.deg2rad(35.0)
    dx, dy = (a.astype(np.float32) for a in np.mgrid[-80:80:0.5, -80:80:0.5])
    straight = A.rasterise(replace(limb, external_rotation=0.0), 0.5, dx, dy)
    turned = A.rasterise(replace(limb, external_rotation=np.deg2rad(30.0)), 0.5, dx, dy)

    def lateral(tissue, cell, which):  # local lateral position (mm) of a structure's centroid
        mask = tissue == MARROW if which == "bone" else cell == which
        parts, _ = ndi.label(mask)
        biggest = parts == np.bincount(parts.ravel())[1:].argmax() + 1
        return A.array_to_local(limb, dx[biggest].mean(), dy[biggest].mean())[0]

    tibialis = [c.name for c in LAYOUTS["leg_anatomical"].cells].index("tibialis_anterior")
    assert lateral(*turned, "bone") > lateral(*straight, "bone") + 10  # the tibia (largest marrow)
    assert lateral(*turned, tibialis) > lateral(*straight, tibialis) + 10
    np.testing.assert_array_equal(turned[0] == SKIN, straight[0] == SKIN)  # the outline stays


def test_layered_leg_puts_both_gastrocnemii_over_the_soleus_as_one_region_each():
    """``leg_layered``: the heads are layers under the fascia of the calf's back, not wedges."""
    p = generate_phantom("leg", 7, N_SLICES, shape=SHAPE, spacing=SPACING, layout="leg_layered")
    names = L.region_labels("leg")
    k = N_SLICES // 2
    for side in (1, 2):
        lab = np.where(p.side[:, :, k] == side, p.label[:, :, k], 0)
        compartment = (p.side[:, :, k] == side) & (p.tissue[:, :, k] >= MUSCLE)  # inside the fascia
        depth = ndi.distance_transform_edt(compartment)  # px from the fascia
        soleus = np.median(depth[lab == names["soleus"]])
        for head in ("gastrocnemius_medialis", "gastrocnemius_lateralis"):
            assert ndi.label(lab == names[head])[1] == 1, (side, head)
            assert np.median(depth[lab == names[head]]) < 0.6 * soleus, (side, head)
        # the lateral head lies behind the soleus (larger Y is posterior); the medial one wraps its side
        lateral_y = np.nonzero(lab == names["gastrocnemius_lateralis"])[1].mean()
        assert lateral_y > np.nonzero(lab == names["soleus"])[1].mean() + 3, side
    assert names["gastrocnemius_lateralis"] not in p.label[:, :, 0]  # the lateral head ends above the ankle


@pytest.mark.parametrize("layout", ["thigh", "leg"])
def test_layouts_without_external_rotation_draw_none(layout):
    rng = np.random.default_rng(1)
    assert A.sample_limb(layout, A.sample_subject(layout, rng), 2, rng).external_rotation == 0.0


def test_shapes_change_smoothly_along_z():
    p = generate_phantom("thigh", 5, 24, shape=SHAPE, spacing=SPACING)
    k = 12
    overlap = np.mean(p.label[:, :, k][p.label[:, :, k] > 0] == p.label[:, :, k + 1][p.label[:, :, k] > 0])
    assert overlap > 0.8  # neighbouring slices mostly agree
    assert not np.array_equal(p.label[:, :, 2], p.label[:, :, 21])  # but the limb changes


@pytest.mark.parametrize("region", L.REGIONS)
def test_fat_replacement_moves_muscle_signal_toward_fat(region):
    ratios = []
    labels = None
    for severity in ("healthy", "mild", "severe"):
        p = generate_phantom(region, 11, 6, severity, SHAPE, SPACING)
        labels = p.label if labels is None else labels
        np.testing.assert_array_equal(p.label, labels)  # severity never changes the labels
        fat = p.image[p.tissue == SUBCUT_FAT].mean()
        ratios.append(p.image[p.label > 0].mean() / fat)
    assert ratios[0] < ratios[1] < ratios[2], ratios
    assert ratios[2] - ratios[0] > 0.15


@pytest.mark.parametrize("region, n_slices, expected", [("thigh", 52, 7), ("leg", 36, 3), ("thigh", 20, 7)])
def test_annotated_slices_are_spread_inside_the_muscle_range(region, n_slices, expected):
    slices = annotated_slices(n_slices, region)
    assert len(slices) == len(set(slices)) == expected
    t = (np.array(slices) + 0.5) / n_slices
    assert t.min() >= MUSCLE_RANGE[0] and t.max() <= MUSCLE_RANGE[1]
    assert t.max() - t.min() > 0.5  # spread, not bunched
    assert annotated_slices(n_slices, region, count=2) == [slices[0], slices[-1]]
    assert len(annotated_slices(4, region)) <= 4


@pytest.mark.parametrize("region, expected", [("thigh", 7), ("leg", 3)])
def test_sparse_label_keeps_only_the_annotated_slices(region, expected):
    p = generate_phantom(region, 2, 16, shape=(96, 96), spacing=(4.5, 4.5, 5.0))
    sparse = sparse_label(p.label, annotated_slices(16, region))
    kept = [k for k in range(16) if sparse[:, :, k].any()]
    assert len(kept) == expected
    for k in kept:
        np.testing.assert_array_equal(sparse[:, :, k], p.label[:, :, k])


@pytest.mark.parametrize("kwargs", [dict(region="arm"), dict(severity="extreme"), dict(n_slices=0),
                                    dict(shape=(8, 160)), dict(spacing=(1.0, 0.0, 5.0)), dict(seed=-1)])
def test_impossible_arguments_raise_user_error(kwargs):
    args = dict(region="thigh", seed=0, n_slices=2, severity="healthy", shape=(32, 32), spacing=SPACING)
    with pytest.raises(UserError):
        generate_phantom(**{**args, **kwargs})


def test_nifti_round_trip_is_compact_exact_enough_and_reproducible(tmp_path):
    p = generate_phantom("leg", 1, 3, "severe", (64, 48), (6.0, 6.0, 5.0))
    image = p.image + np.float32(0.25)  # not integral: stored scaled
    save_nifti(tmp_path / "a.nii.gz", image, p.affine)
    save_nifti(tmp_path / "labels" / "a.nii.gz", p.label, p.affine)
    loaded, affine = load_nifti(tmp_path / "a.nii.gz")
    label, label_affine = load_nifti(tmp_path / "labels" / "a.nii.gz")
    assert loaded.dtype == np.float32 and label.dtype == np.uint8
    assert np.abs(loaded - image).max() <= image.max() / 32000
    np.testing.assert_array_equal(label, p.label)
    np.testing.assert_allclose(affine, p.affine, atol=1e-5)
    np.testing.assert_allclose(label_affine, p.affine, atol=1e-5)
    assert nib.load(tmp_path / "a.nii.gz").get_data_dtype() == np.int16
    first = (tmp_path / "a.nii.gz").read_bytes()
    save_nifti(tmp_path / "a.nii.gz", image, p.affine)  # overwrite in place
    assert (tmp_path / "a.nii.gz").read_bytes() == first
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.nii.gz", "labels"]  # no temp files left
