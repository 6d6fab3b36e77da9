"""``python main.py pretrain``: restarted stages, the record of how weights were made, clear errors."""

import json
import subprocess
import sys

import pytest
import torch

from lib.data.phantoms.real_slice import ROIS_FILE
from lib.data.real_volumes import certain_slices
from lib.models.catalog import weight_file
from lib.networks.checkpoint import build_from_checkpoint
from lib.paths import SHARED_DATA, SHIPPED_WEIGHTS
from lib.networks.ensemble import SoftmaxEnsemble
from lib.training.pretrain import PretrainPlan, member_plan, parse_members, parse_stages, warmup_sampler
from lib.training.sources import segmenter_sources
from lib.training.synthetic import loss_class_weights
from tests.conftest import ROOT


# A one-line error comes before any training, but torch and MONAI take long to import on a loaded machine.
ERROR_TIMEOUT = 300


def pretrain(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "pretrain", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_stages_parse_and_bad_ones_are_named():
    assert parse_stages("18@0.002, 10@1e-3") == [(18, 0.002), (10, 0.001)]
    assert parse_stages("") == [] and parse_stages(" ") == []  # no stages: self-training off, or continue only
    for bad in ("18", "x@0.1", "0@0.1", "5@2"):
        with pytest.raises(ValueError, match="stage"):
            parse_stages(bad)


def test_bad_stage_is_a_one_line_error_and_writes_nothing(tmp_path):
    proc = pretrain("--leg-stages", "10@fast", "--out", str(tmp_path / "w"), timeout=ERROR_TIMEOUT)
    assert proc.returncode == 2 and "--leg-stages: stage '10@fast'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"pretrain needs the real slice at {SHARED_DATA}")
def test_tiny_staged_run_records_every_stage(tmp_path):
    proc = pretrain("--networks", "segmentation_leg", "--leg-members", "", "--leg-stages", "1@0.002,1@0.001",
                    "--steps-per-epoch", "2", "--leg-phantoms", "leg,leg_layered",
                    "--train-subjects", "1", "--val-subjects", "1", "--slices-per-subject", "2",
                    "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "segmentation_leg.json").read_text())
    assert [h["epochs_run"] for h in record["history"]] == [1, 1]
    assert record["plan"]["leg_stages"] == "1@0.002,1@0.001" and record["seconds"] > 0
    assert record["plan"]["leg_phantoms"] == "leg,leg_layered"
    assert record["validation_score"] == max(h["best_score"] for h in record["history"])  # best kept across stages
    assert (tmp_path / "segmentation_leg.pt").stat().st_size > 1e6
    weights = record["class_weights"]  # served as the logit adjustment (lib.networks.logit_adjustment)
    assert len(weights) == 7 and weights[0] < 1 < min(weights[1:]) and max(weights) <= 20


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"pretrain needs the real slice at {SHARED_DATA}")
def test_uniform_class_weights_are_recorded_and_served_unadjusted(tmp_path):
    proc = pretrain("--networks", "segmentation_leg", "--leg-stages", "1@0.002", "--steps-per-epoch", "2",
                    "--train-subjects", "1", "--val-subjects", "1", "--slices-per-subject", "2",
                    "--class-weights", "uniform", "--leg-members", "", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "segmentation_leg.json").read_text())
    assert record["class_weights"] == [1.0] * 7 and record["plan"]["class_weights"] == "uniform"
    model = build_from_checkpoint(tmp_path / "segmentation_leg.pt")
    assert torch.equal(model.logit_adjustment, torch.zeros(7))  # log(1) = 0: nothing to undo


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists() or not certain_slices("leg"),
                    reason=f"self-training needs the real slice and the real volumes at {SHARED_DATA}")
def test_self_training_continues_a_network_on_its_teachers_labels_of_the_real_leg_slices(tmp_path):
    """A member of the shipped ensemble continued, the whole ensemble (twice) teaching."""
    unpacked = subprocess.run([sys.executable, str(ROOT / "main.py"), "ensemble", "--unpack", str(SHIPPED_WEIGHTS),
                               "--out", str(tmp_path / "members")], cwd=ROOT, capture_output=True, text=True,
                              timeout=ERROR_TIMEOUT)
    assert unpacked.returncode == 0, unpacked.stderr
    member = tmp_path / "members" / "member_1"
    proc = pretrain("--networks", "segmentation_leg", "--leg-members", "", "--init-from", str(member),
                    "--leg-stages", "", "--leg-self-training", "1@0.0005",
                    "--self-training-teachers", f"{SHIPPED_WEIGHTS},{SHIPPED_WEIGHTS}",
                    "--steps-per-epoch", "2", "--train-subjects", "1", "--val-subjects", "1",
                    "--slices-per-subject", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "labelled by 2 teachers' softmax average" in proc.stdout
    record = json.loads((tmp_path / "segmentation_leg.json").read_text())
    used = {}
    for name in record["self_training_slices"]:
        volume, k = name.split(":")
        used.setdefault(volume, []).append(int(k))
    expected = {path.name.removesuffix(".nii.gz"): slices for path, slices in certain_slices("leg").items()}
    assert used.keys() <= expected.keys() and all(set(k) <= set(expected[v]) for v, k in used.items())
    assert sum(map(len, used.values())) > 0.9 * sum(map(len, expected.values()))  # slices with limbs: nearly all
    assert [h["epochs_run"] for h in record["history"]] == [1]  # continued: no pretraining stage ran
    assert record["continued_from"]["name"] == "segmentation_leg"
    before = build_from_checkpoint(weight_file(member, "segmentation_leg")).state_dict()
    after = build_from_checkpoint(tmp_path / "segmentation_leg.pt").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"pretrain needs the real slice at {SHARED_DATA}")
def test_interpolate_keeps_that_share_of_the_training_from_the_init_and_scores_what_it_saves(tmp_path):
    """``--thigh-interpolate 0`` with ``--init-from``: the training runs, then the saved network is
    the one it started from (WiSE-FT's end point), scored and recorded as such beside the trained
    network's score. The stages do not fall back on that start when it validates higher."""
    proc = pretrain("--networks", "segmentation_thigh", "--init-from", str(SHIPPED_WEIGHTS), "--thigh-stages", "1@0.002",
                    "--thigh-warmup", "1@0.002", "--thigh-interpolate", "0", "--steps-per-epoch", "2",
                    "--train-subjects", "1", "--val-subjects", "1", "--slices-per-subject", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "segmentation_thigh.json").read_text())
    assert "warm-up" not in proc.stdout and len(record["history"]) == 1  # continued: no warm-up
    # its trained epoch is kept even below the start it continues (kept apart for the interpolation)
    assert record["history"][0]["best_epoch"] == 0
    interpolation = record["interpolation"]
    assert interpolation["share"] == 0 and interpolation["start"] == "init_from"
    assert interpolation["trained_validation_score"] == record["history"][0]["best_score"]
    start = build_from_checkpoint(SHIPPED_WEIGHTS / "segmentation_thigh.pt", return_meta=True)
    saved = build_from_checkpoint(tmp_path / "segmentation_thigh.pt", return_meta=True)
    assert all(torch.allclose(v, start[0].state_dict()[k]) for k, v in saved[0].state_dict().items())
    assert saved[1]["class_weights"] == pytest.approx(start[1]["class_weights"], rel=1e-3)
    assert f"val Dice {record['validation_score']:.4f} (trained" in proc.stdout  # the saved network's own score


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"pretrain needs the real slice at {SHARED_DATA}")
def test_warmup_on_the_phantoms_own_images_comes_first_and_is_the_interpolation_start(tmp_path):
    """From scratch, ``--thigh-warmup`` trains on the phantoms' own images (their class weights:
    no real shapes), then the stages train on every source; ``--thigh-interpolate 0`` saves the
    warm-up's end, scored as the warm-up scored it."""
    proc = pretrain("--networks", "segmentation_thigh", "--thigh-warmup", "1@0.002", "--thigh-stages", "1@0.001",
                    "--thigh-interpolate", "0", "--steps-per-epoch", "2", "--train-subjects", "1",
                    "--val-subjects", "1", "--slices-per-subject", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "thigh warm-up 1/1 epoch 1/1" in proc.stdout and "thigh stage 1/1 epoch 1/1" in proc.stdout
    record = json.loads((tmp_path / "segmentation_thigh.json").read_text())
    assert [h["epochs_run"] for h in record["history"]] == [1, 1]
    interpolation = record["interpolation"]
    assert interpolation["start"] == "warm-up" and interpolation["share"] == 0
    assert interpolation["start_validation_score"] == record["history"][0]["best_score"]
    assert interpolation["trained_validation_score"] == record["history"][1]["best_score"]
    assert record["validation_score"] == pytest.approx(interpolation["start_validation_score"], abs=2e-4)
    # saved: the warm-up's class weights, counted on the phantoms alone (the stages' count the real shapes too)
    sources, _ = segmenter_sources("thigh", 1, 2, PretrainPlan.shapes_weight, PretrainPlan.real_slice_weight)
    warm, every = (loss_class_weights(chosen, "thigh", "inverse_frequency") for chosen in (sources[:1], sources))
    assert record["class_weights"] == pytest.approx(warm, rel=1e-3) and warm != pytest.approx(every, rel=1e-3)


@pytest.mark.parametrize("args, message", [
    (["--leg-stages", ""], "--leg-stages may be empty only with --init-from"),
    (["--leg-stages", "", "--init-from", str(SHIPPED_WEIGHTS)], "nothing to train"),
    (["--leg-self-training", "4@fast"], "--leg-self-training: stage '4@fast'"),
    (["--self-training-share", "1"], "--self-training-share must be between 0 and 1"),
    (["--leg-one-limb-share", "1.5"], "--leg-one-limb-share must be between 0 and 1"),
    (["--leg-interpolate", "1.5"], "--leg-interpolate must be between 0 and 1"),
    (["--leg-interpolate", "0.5", "--leg-warmup", ""], "--leg-interpolate needs a start to interpolate towards"),
    (["--leg-warmup", "2@x"], "--leg-warmup: stage '2@x'"),
    (["--leg-self-training", "1@0.0005", "--self-training-teachers", "/nonexistent/seed1"],
     "--self-training-teachers: no /nonexistent/seed1/segmentation_leg.pt"),
])
def test_bad_self_training_settings_are_one_line_errors(tmp_path, args, message):
    proc = pretrain("--networks", "segmentation_leg", *args, "--out", str(tmp_path / "w"), timeout=ERROR_TIMEOUT)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-500:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


def test_members_parse_and_bad_ones_are_named():
    assert parse_members("inverse_frequency@0, uniform@2") == [("inverse_frequency", 0, ""), ("uniform", 2, "")]
    assert parse_members("inverse_frequency@0+warmup") == [("inverse_frequency", 0, "warmup")]
    assert parse_members("") == []
    for bad in ("uniform", "sqrt@1", "uniform@x", "uniform@-1", "+warmup"):
        with pytest.raises(ValueError, match="CLASS_WEIGHTS@SEED"):
            parse_members(bad)
    with pytest.raises(ValueError, match="recipe 'slow' is not one of warmup"):
        parse_members("uniform@1+slow")


def test_a_member_with_a_recipe_trains_it_and_the_others_the_region_settings():
    """``+warmup``: the thigh's recipe (warm-up on whole phantom slices, its stages, saved 0.7 of the
    way from the warm-up's end) in place of the leg's own stages; the other members keep those."""
    plan = PretrainPlan()
    warm, plain = (member_plan(plan, "leg", member) for member in parse_members("inverse_frequency@0+warmup,uniform@2"))
    assert (warm.leg_warmup, warm.leg_warmup_crops, warm.leg_stages, warm.leg_interpolate) == (
        plan.thigh_warmup, "slice", plan.thigh_stages, 0.7)
    assert (warm.class_weights, warm.seed, warm.leg_members) == ("inverse_frequency", 0, "")
    assert (plain.leg_warmup, plain.leg_stages, plain.leg_interpolate) == ("", plan.leg_stages, 1.0)
    assert (plain.class_weights, plain.seed, plain.leg_members) == ("uniform", 2, "")
    assert warm.thigh_stages == plan.thigh_stages  # the other region is untouched


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"pretrain needs the real slice at {SHARED_DATA}")
def test_leg_members_are_trained_and_joined_into_one_ensemble(tmp_path):
    """The shipped leg segmenter's recipe in miniature: members with their own class term and seed."""
    proc = pretrain("--networks", "segmentation_leg", "--leg-members", "inverse_frequency@0,uniform@1",
                    "--leg-stages", "1@0.002", "--steps-per-epoch", "2", "--train-subjects", "1", "--val-subjects", "1",
                    "--slices-per-subject", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    model, meta = build_from_checkpoint(tmp_path / "segmentation_leg.pt", return_meta=True)
    assert isinstance(model, SoftmaxEnsemble) and len(model.members) == 2
    uniform = [1.0] * 7
    assert meta["member_class_weights"][0] != uniform and meta["member_class_weights"][1] == uniform
    record = json.loads((tmp_path / "segmentation_leg.json").read_text())
    assert record["network"] == "ensemble" and record["command"] == "python main.py pretrain"
    assert [(m["plan"]["class_weights"], m["plan"]["seed"]) for m in record["members"]] == [
        ("inverse_frequency", 0), ("uniform", 1)]
    assert 0 <= record["validation_score"] <= 1 and record["seconds"] > 0
    assert record["plan"]["leg_members"] == "inverse_frequency@0,uniform@1"
    assert not (tmp_path / ".members").exists()  # the members live on inside the ensemble only


@pytest.mark.parametrize("args, message", [
    (["--leg-members", "uniform@x"], "--leg-members: member 'uniform@x' is not CLASS_WEIGHTS@SEED"),
    (["--leg-members", "uniform@1+slow,uniform@2"], "--leg-members: member 'uniform@1+slow': recipe 'slow'"),
    (["--leg-stages", "1@0.002"], "--leg-stages would not reach member 1 of --leg-members "
                                   "(inverse_frequency@0+warmup): its recipe sets them; drop +warmup"),
    (["--seed", "3"], "--seed would not reach the leg segmenter"),
    (["--class-weights", "uniform"], "--class-weights would not reach the leg segmenter"),
    (["--leg-phantoms", "leg,thigh"], "--leg-phantoms: thigh: use leg layouts from leg, leg_anatomical"),
    (["--leg-own-image-augment", "0.25"], "--leg-own-image-augment: own-image augmentation must be two probabilities"),
    (["--leg-own-image-augment", "0.25,1.5"], "INTENSITY,INVERSION in [0, 1], got '0.25,1.5'"),
    (["--leg-warmup-crops", "whole"], "--leg-warmup-crops must be limb or slice, got 'whole'"),
])
def test_bad_member_settings_are_one_line_errors(tmp_path, args, message):
    proc = pretrain("--networks", "segmentation_leg", *args, "--out", str(tmp_path / "w"), timeout=ERROR_TIMEOUT)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-500:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


def test_continuing_the_shipped_leg_ensemble_is_a_one_line_error(tmp_path):
    """Pretraining records one network's class weights: an ensemble's members would lose theirs."""
    proc = pretrain("--networks", "segmentation_leg", "--init-from", str(SHIPPED_WEIGHTS), "--leg-stages", "1@0.001",
                    "--out", str(tmp_path / "w"), timeout=ERROR_TIMEOUT)
    assert proc.returncode == 2 and "is an ensemble" in proc.stderr and "ensemble --unpack" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


def test_unknown_class_weights_are_a_one_line_error(tmp_path):
    proc = pretrain("--class-weights", "sqrt", "--out", str(tmp_path / "w"), timeout=ERROR_TIMEOUT)
    assert proc.returncode == 2 and "--class-weights must be inverse_frequency or uniform" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


@pytest.mark.skipif(not (SHARED_DATA / ROIS_FILE).exists(), reason=f"pretrain needs the real slice at {SHARED_DATA}")
def test_tiny_classifier_run_records_its_weight_average(tmp_path):
    proc = pretrain("--networks", "classifier", "--classifier-epochs", "1", "--classifier-average-from", "1",
                    "--classifier-subjects", "1", "--classifier-val-subjects", "1", "--slices-per-subject", "2",
                    "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "classifier.json").read_text())
    assert record["averaged_epochs"] == 1 and record["seeds"]["train"] == [0, 0]
    # 1 validation phantom per region, 2 slices each, every slice's limbs classified
    assert 0 <= record["validation_score"] <= 1 and record["val_slices"] == 4
    assert record["input"] == "limb"  # the pipeline crops limbs for this classifier
    assert record["plan"]["classifier_scale"] == "0.7,1.45"  # the crops' magnification range is recorded


@pytest.mark.parametrize("args,message", [
    (("--classifier-epochs", "3", "--classifier-average-from", "4"), "--classifier-average-from must not exceed"),
    (("--classifier-lr", "0"), "--classifier-lr must be between 0 and 1"),
    (("--classifier-scale", "1.4,0.7"), "--classifier-scale: expected 0 < LOW <= HIGH"),
    (("--classifier-scale", "wide"), "--classifier-scale: expected LOW,HIGH"),
])
def test_bad_classifier_settings_are_one_line_errors(tmp_path, args, message):
    proc = pretrain(*args, "--out", str(tmp_path / "w"), timeout=ERROR_TIMEOUT)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


def test_slice_warmup_crops_cut_whole_phantom_slices_around_a_limb():
    """``--thigh-warmup-crops slice``, the 2026-11-25 sampler (whole model-grid phantom slices cut
    to the crop around a limb, ``train_augmentations``, each crop robustly normalised), seeded;
    the thigh's default; ``limb`` draws the rendered limb crops (None here)."""
    sources, _ = segmenter_sources("thigh", 1, 2, 0.0, 0.0)
    assert warmup_sampler(sources[0], "thigh", PretrainPlan(thigh_warmup_crops="limb")) is None
    sampler = warmup_sampler(sources[0], "thigh", PretrainPlan())
    images, labels, weights = next(sampler(3))
    assert images.shape == labels.shape == weights.shape == (4, 1, 240, 240)
    assert 0 < int(labels.max()) <= 12 and float(weights.min()) > 0
    assert torch.equal(images, next(sampler(3))[0]) and not torch.equal(images, next(sampler(4))[0])
    assert (images.flatten(1) < 0.05).float().mean(1).min() > 0.1  # cut around a limb: air round it
