"""``python main.py bench real``: registered, its region table covers every real slice, and its body
outline keeps a faded slice's dim muscle."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from bench.bench_real import body_outline, kept_loo, leg_segmenter_kind
from lib.data.real_volumes import REAL_VOLUMES, slice_regions
from tests.conftest import ROOT


def test_real_is_among_the_benchmarks():
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", "nosuch"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "real" in proc.stderr.split("expected one of")[1]


@pytest.mark.skipif(not REAL_VOLUMES.is_dir(), reason=f"real volumes not at {REAL_VOLUMES}")
def test_every_slice_of_every_real_volume_has_a_region():
    shapes = {p.name.removesuffix(".nii.gz"): nib.load(p).shape[2] for p in REAL_VOLUMES.glob("*.nii.gz")}
    expected = slice_regions(shapes)
    assert len(expected) == 5
    for name, regions in expected.items():
        assert None not in regions, name  # a slice missing from bench/real_regions.csv would go unscored
        assert set(regions) <= {"thigh", "leg", "knee", "ankle", "none"}, name


def test_body_outline_keeps_the_dim_muscle_of_a_faded_slice():
    """A faded slab-end slice: a bright skin and fat ring with a gap, and muscle inside it too dim for
    the body threshold. The whole limb is body; the air beside it is not."""
    rows, cols = np.mgrid[:200, :200]
    radius = np.hypot(rows - 100, cols - 100)
    image = np.zeros((200, 200), np.float32)
    image[radius < 60] = 2.0  # muscle: below the body threshold even on its own slice's scale
    ring = (radius >= 52) & (radius < 60) & ~((cols > 94) & (cols < 101) & (rows < 100))  # fat, a 6 px gap
    image[ring] = 30.0
    image += np.random.default_rng(0).uniform(0, 1.0, image.shape).astype(np.float32)  # background noise
    body = body_outline(image)
    assert body[radius < 50].mean() > 0.99  # the muscle inside the ring
    assert body[radius > 70].mean() < 0.01  # air


def test_the_leave_one_out_rows_say_whether_they_come_from_an_ensemble_or_one_network(tmp_path):
    """``bench real --loo-weights`` names what it scored, read from the weights' record: a row from
    one member must not pass for the shipped three-member ensemble."""
    ensemble, single, bare = tmp_path / "ensemble", tmp_path / "single", tmp_path / "bare"
    for folder in (ensemble, single, bare):
        folder.mkdir()
    (ensemble / "segmentation_leg.json").write_text(json.dumps({"members": [{}, {}, {}]}))
    (single / "segmentation_leg.json").write_text(json.dumps({"plan": {"class_weights": "uniform", "seed": 2}}))
    assert leg_segmenter_kind(ensemble) == "an ensemble of 3 members"
    assert leg_segmenter_kind(single) == "one network (class term uniform, seed 2)"
    assert leg_segmenter_kind(bare) == "not recorded"


@pytest.mark.skipif(not REAL_VOLUMES.is_dir(), reason=f"real data not at {REAL_VOLUMES}")
def test_the_anatomy_check_renders_both_anatomies_in_turn_of_contrast_with_their_truths():
    """The anatomy check's renders: as many of the real slice's anatomy as of the phantoms', every
    render of the slice with the slice's own truth (appearance changes, labels do not), six leg
    muscles in every truth and no unknown value (255) left in it."""
    from bench.bench_real import anatomy_renders

    renders = anatomy_renders(4)
    assert set(renders) == {"real_slice_anatomy", "phantom_anatomy"}
    real, phantom = renders["real_slice_anatomy"], renders["phantom_anatomy"]
    assert len(real) == len(phantom) == 4
    for image, truth in real + phantom:
        assert image.shape == truth.shape and image.shape[2] == 1
        assert set(np.unique(truth)) == {0, 13, 14, 15, 16, 17, 18}
    assert all(np.array_equal(truth, real[0][1]) for _, truth in real)
    assert not np.allclose(real[0][0], real[1][0])  # another contrast family
    assert not np.array_equal(phantom[0][1], phantom[1][1])  # another subject


def test_a_volume_is_cut_into_its_two_limbs_at_the_gap_and_each_is_centred_at_x_0(tmp_path):
    """``bench real``'s one-limb check: two limbs with air between them are cut there, the patient's
    left and right told from the affine, each moved to x = 0 as a scanner centres one limb; a
    volume of one limb is not cut."""
    from bench.bench_real import limb_halves, limb_volume
    from lib.transforms.geometry import world_x

    rows, cols = np.mgrid[:120, :80]
    limb = lambda r: (np.hypot(rows - r, cols - 40) < 22).astype(np.float32)  # noqa: E731
    noise = np.random.default_rng(0).uniform(0, 0.5, (120, 80, 4)).astype(np.float32)
    two = np.repeat(((limb(30) + 2 * limb(90)) * 100)[:, :, None], 4, 2) + noise  # the right limb brighter
    affine = np.diag([1.5, 1.5, 5.0, 1.0])  # RAS: the first axis points to the patient's right
    nib.save(nib.Nifti1Image(two, affine), tmp_path / "two.nii.gz")
    halves = limb_halves(tmp_path / "two.nii.gz")
    (axis, left), (_, right) = halves["left"], halves["right"]
    assert axis == 0 and left.start == 0 and right.stop == 120 and 52 <= left.stop == right.start <= 68
    limb_volume(tmp_path / "two.nii.gz", axis, right, tmp_path / "right.nii.gz")
    half = nib.load(tmp_path / "right.nii.gz")
    assert half.shape == (120 - right.start, 80, 4)
    x = world_x(half.affine, half.shape)
    assert abs(x[np.asarray(half.dataobj) > 50].mean()) < 1.5  # centred at x = 0, as a scan of one limb
    assert np.allclose(half.affine[:3, :3], affine[:3, :3]) and np.allclose(half.affine[1:3, 3], affine[1:3, 3])
    assert np.asarray(half.dataobj).max() > 150  # the brighter limb: the right one
    mirrored = np.diag([-1.5, 1.5, 5.0, 1.0])  # LAS: the first axis points to the left
    nib.save(nib.Nifti1Image(two, mirrored), tmp_path / "two_las.nii.gz")
    assert limb_halves(tmp_path / "two_las.nii.gz")["left"][1] == right
    one = np.repeat((limb(60) * 100)[:, :, None], 4, 2) + noise
    nib.save(nib.Nifti1Image(one, affine), tmp_path / "one.nii.gz")
    assert limb_halves(tmp_path / "one.nii.gz") is None


def test_kept_leave_one_out_results_need_the_same_classifier_and_leg_weights(tmp_path):
    """``--keep-loo``: the LOO rows involve the real leg slice only, so a new thigh segmenter keeps
    them; a new classifier or leg segmenter does not, and neither does a run without LOO rows."""
    saved = tmp_path / "real.json"
    saved.write_text(json.dumps({"date": "2026-12-06", "loo": {"before": {"x": 1}},
                                 "weights": "classifier:aa+segmentation_leg:bb+segmentation_thigh:cc"}))
    kept = kept_loo(saved, "classifier:aa+segmentation_leg:bb+segmentation_thigh:dd")
    assert kept["before"] == {"x": 1} and kept["kept_from"].startswith("2026-12-06 run")
    saved.write_text(json.dumps({"date": "2026-12-07", "loo": kept,
                                 "weights": "classifier:aa+segmentation_leg:bb+segmentation_thigh:dd"}))
    assert kept_loo(saved, "classifier:aa+segmentation_leg:bb+segmentation_thigh:ee")["kept_from"] == kept["kept_from"]
    for changed in ("classifier:ab+segmentation_leg:bb+segmentation_thigh:cc",
                    "classifier:aa+segmentation_leg:bc+segmentation_thigh:cc"):
        with pytest.raises(SystemExit, match="classifier or leg weights changed"):
            kept_loo(saved, changed)
    saved.write_text(json.dumps({"date": "2026-12-06", "loo": None, "weights": "classifier:aa"}))
    with pytest.raises(SystemExit, match="no leave-one-out results"):
        kept_loo(saved, "classifier:aa")
