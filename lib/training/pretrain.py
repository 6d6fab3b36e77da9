"""The default weights: classifier and both segmenters, trained on images of random contrast.

``python main.py pretrain`` runs this. Every network learns from images rendered with random
contrast from label maps (SynthSeg-style, ``lib.training.sources``): phantom anatomy of the
layouts of ``PretrainPlan.leg_phantoms`` (both leg layouts by default), the 35 real thigh
shapes, and the real leg slice (``--real-slice-weight 0`` leaves it out: the leave-one-out model
of ``bench real``), phantoms also in their own GRE-like images.
The segmenters see one limb's crop, the classifier one limb's 256 px crop downsized to 128, as
inference does (``lib.inference.limbs``). Phantom seeds are split once and for all so that the
held-out test set used to check the shipped weights is never seen in training or selection:
train seeds 0-9999, validation (model selection) 10000-19999, test 20000-29999.
Each network is written to ``weights/<name>.pt`` with a ``weights/<name>.json`` describing
how it was made (data, seeds, epochs, preset, validation Dice, time).

The segmenters train in stages (``PretrainPlan.thigh_stages`` / ``leg_stages``): each stage starts from the best
weights so far with a *fresh* optimiser and its own, lower learning rate. One continuous run of the
same 36 epochs (cosine decay) stalled at 0.905 thigh validation Dice against 0.93 with
restarts: AMSGrad's running maximum of squared gradients keeps the first epochs' large
gradients and shrinks every later step; a restart forgets them.

From scratch a segmenter may first train warm-up stages (``PretrainPlan.thigh_warmup``) on the
phantoms' own GRE-like images alone, and only then its stages on every source. The thigh needs
this: from scratch on random contrast its 12 muscles reached a validation Dice of 0.27 after 8
epochs and 0.39 after 28 (docs/REAL_MRI.md), where the phantoms' own look is learnt at once and
the random-contrast stages then carry it over. The thigh's warm-up draws whole phantom slices cut
around a limb and augmented in intensity and shape (``<region>_warmup_crops="slice"``, the sampler
of incremental training): a warm-up on limb crops of the same images learnt their own contrast as
well but carried over much less (held-out fat-dark thighs 0.175 against 0.296; after the stages
0.379 against 0.623). The saved network may be moved back part of the way
towards that start (``<region>_interpolate``, WiSE-FT): it keeps the start's accuracy on the
phantoms and gains the random-contrast robustness.

A segmenter may be an ensemble (``PretrainPlan.leg_members``): each member is trained as one
network with its own class term and seed (all else from the plan) into ``<out>/.members/``, then
the members are joined into ``<out>/<name>.pt`` (``lib.models.ensembles``) and their folder removed.
The shipped leg segmenter is three: the class term of SPEC §5 with seed 0, and the uniform class
term with seeds 0 and 2 (docs/REAL_MRI.md: their softmax average scores higher on the held-out
real slice than any of them). A member may train another recipe (``MEMBER_RECIPES``): the first
leg member trains the thigh's (``+warmup``), the way the shipped leg's first member started, and
lifts the ensemble on held-out phantoms from 0.868 to 0.901 (docs/REAL_MRI.md, 2026-12-07).
"""

from __future__ import annotations

import copy
import json
import logging
import platform
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lib.data.phantoms.layout import LAYOUT_REGION
from lib.data.phantoms.phantom import SEVERITIES, generate_phantom
from lib.data.real_volumes import REAL_VOLUMES, certain_slices
from lib.files import write_json_atomic
from lib.labels import REGIONS
from lib.models.catalog import CLASSIFIER, NETWORKS, record_file, segmenter_name, weight_file
from lib.models.ensembles import join_folders
from lib.networks.checkpoint import (build_from_checkpoint, interpolated_class_weights, interpolated_state,
                                     save_checkpoint)
from lib.networks.logit_adjustment import attach
from lib.networks.presets import build_classifier, build_segmenter
from lib.training.averaging import WeightAverage, recalibrate_batch_norm
from lib.training.loop import TrainSettings, fit
from lib.training.loss import make_segmentation_loss
from lib.training.slices import SliceSet, segmentation_batches as slice_batches
from lib.training.sources import (LAYOUTS, PHANTOM_SPACING, SEED_BASE, ClassifierValidation, SegmenterValidation,
                                  classifier_sources, segmenter_sources)
from lib.training.self_training import pseudo_labelled_slices
from lib.training.synthetic import classifier_batches, loss_class_weights, segmentation_batches
from lib.transforms.preprocess import volume_to_model_grid

logger = logging.getLogger(__name__)
SELF_TRAINING_SEED = 100  # offset of the self-training stages' seeds from the plan's
# The thigh's recipe (docs/REAL_MRI.md, 2026-12-07): warm-up stages on whole phantom slices cut around
# a limb, then stages on every source, saved 0.7 of the way from the warm-up's end to where they end.
WARMUP_RECIPE = {"warmup": "18@0.002,10@0.001,8@0.0005,8@0.00025", "warmup_crops": "slice",
                 "stages": "10@0.0005,10@0.00025,10@0.00025", "interpolate": 0.7}
# what an ensemble member written CLASS_WEIGHTS@SEED+NAME trains with, in place of its region's
# <region>_<key> settings
MEMBER_RECIPES = {"warmup": WARMUP_RECIPE}



@dataclass
class PretrainPlan:
    """What ``pretrain`` does. The defaults are the shipped networks' recipes; the shipped thigh and
    the shipped leg's first member themselves started from networks of 2026-11-25 (weights/README.md)."""

    preset: str = "compact"
    train_subjects: int = 24  # per region
    val_subjects: int = 4
    slices_per_subject: int = 12
    # epochs@learning rate of each restarted stage (the thigh's after its warm-up, below)
    thigh_stages: str = WARMUP_RECIPE["stages"]
    leg_stages: str = "20@0.002,12@0.001,10@0.0005,6@0.00025"
    # stages after those, on pseudo-labels of the unlabelled real volumes mixed in
    # (lib.training.self_training), e.g. "8@0.0005,6@0.00025"; empty: none (README: with the
    # network as its own teacher the held-out slice moved -0.020 to +0.026, so it is not a default)
    thigh_self_training: str = ""
    leg_self_training: str = ""
    self_training_share: float = 0.5  # share of the self-training draws from the real volumes
    # comma-separated weight folders whose segmenters, softmax averaged, label the real volumes
    # (empty: the network being trained labels them itself)
    self_training_teachers: str = ""
    steps_per_epoch: int = 100
    batch_size: int = 4
    crop: int | None = 240
    real_slice_weight: float = 0.1  # share of leg and classifier draws from the real slice (0: left out)
    shapes_weight: float = 0.45  # share of thigh draws from the real thigh shapes
    own_image_share: float = 0.2  # share of phantom draws in the phantom's own GRE-like image
    # "INTENSITY,INVERSION": probabilities of each intensity augmentation and of the fat/muscle
    # inversion on those own images (lib.training.synthetic.own_image_augmentations; the
    # 2026-11-25 recipe: 0.25,0.15); "0,0": gamma jitter alone
    thigh_own_image_augment: str = "0,0"
    leg_own_image_augment: str = "0,0"
    # what the warm-up draws: "slice", 240 px cuts of whole phantom slices around a limb with
    # lib.transforms.augment.train_augmentations (the 2026-11-25 recipe, lib.training.slices;
    # held-out fat-dark thighs 0.296 at the warm-up's end against 0.175, docs/REAL_MRI.md
    # 2026-12-07); "limb", deformed limb crops of the phantoms' own images (lib.training.synthetic)
    thigh_warmup_crops: str = WARMUP_RECIPE["warmup_crops"]
    leg_warmup_crops: str = "limb"
    # share of each segmenter's crops with the chosen limb alone in the field of view
    # (lib.training.synthetic.draw_maps): scans of one limb
    thigh_one_limb_share: float = 0.3
    leg_one_limb_share: float = 0.0
    classifier_epochs: int = 12
    classifier_subjects: int = 24  # per region, every slice along the limb (ends included)
    classifier_val_subjects: int = 6
    classifier_average_from: int = 6  # weights of this epoch and later are averaged (SWA)
    classifier_lr: float = 1e-3
    # magnification range of the classifier's crops (low,high); wider than the segmenters' 0.85-1.2
    # so that a slim thigh or a large calf is not routed by its size (README: on the real volumes
    # with their pixels declared 0.7-1.25 times their size)
    classifier_scale: str = "0.7,1.45"
    seed: int = 0
    device: str = "cpu"
    loss: str = "weighted_ce"  # SPEC §5; "dice_ce" is the alternative
    # the weight map's class term: SPEC §5's capped inverse frequency, or "uniform" (border term only)
    class_weights: str = "inverse_frequency"
    # a segmenter trained as a softmax ensemble: comma-separated CLASS_WEIGHTS@SEED[+RECIPE], one per
    # member (each overrides class_weights and seed; a recipe of MEMBER_RECIPES overrides the region's
    # warm-up, stages and interpolation); empty: one network with class_weights and seed
    thigh_members: str = ""
    leg_members: str = "inverse_frequency@0+warmup,uniform@0,uniform@2"
    # phantom anatomies (lib.data.phantoms.layout) the segmenters train and are selected on;
    # "leg,leg_layered" draws the gastrocnemii as layers (docs/REAL_MRI.md)
    thigh_phantoms: str = ",".join(LAYOUTS["thigh"])
    leg_phantoms: str = ",".join(LAYOUTS["leg"])
    init_from: str = ""  # folder of earlier weights to continue from (empty: from scratch)
    # stages on the phantoms' own GRE-like images alone before <region>_stages, when starting from
    # scratch (skipped with init_from): a start from which the random-contrast stages learn
    thigh_warmup: str = WARMUP_RECIPE["warmup"]
    leg_warmup: str = ""
    # the segmenter is saved this share of the way from the network its <region>_stages started from
    # (the warm-up's end, or the init_from network) to the trained one (WiSE-FT,
    # lib.networks.checkpoint.save_interpolation); 1: as trained
    thigh_interpolate: float = WARMUP_RECIPE["interpolate"]
    leg_interpolate: float = 1.0


def initial_model(name: str, plan: PretrainPlan, build):
    """A fresh network, or the one saved under ``plan.init_from`` to continue training it."""
    if not plan.init_from:
        return build()
    model = build_from_checkpoint(weight_file(plan.init_from, name))
    model.train()
    return model


def phantom_slices(region: str, split: str, subjects: int, n_slices: int) -> tuple[SliceSet, list]:
    """Every labelled slice of ``subjects`` phantoms of a split, on the model grid, and the
    (image volume, region) pairs for the classifier."""
    data, volumes = SliceSet.empty(), []
    for i in range(subjects):
        seed = SEED_BASE[split] + i
        phantom = generate_phantom(region, seed, n_slices=n_slices, severity=SEVERITIES[i % len(SEVERITIES)],
                                   spacing=PHANTOM_SPACING)
        image, label = volume_to_model_grid(phantom.image, phantom.label, phantom.affine)
        data = data + SliceSet.from_volume(image, label, f"phantom_{region}_{seed}")
        volumes.append((image, region))
    return data, volumes


def parse_scale_range(text: str) -> tuple[float, float]:
    """``"LOW,HIGH"`` -> ``(low, high)`` with ``0 < low <= high``."""
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"expected LOW,HIGH (e.g. 0.7,1.45), got {text!r}") from None
    if not 0 < low <= high:
        raise ValueError(f"expected 0 < LOW <= HIGH, got {text!r}")
    return low, high


def parse_probabilities(text: str) -> tuple[float, float]:
    """``"INTENSITY,INVERSION"`` -> two probabilities in [0, 1]; ValueError with a message otherwise."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"own-image augmentation must be two probabilities INTENSITY,INVERSION in [0, 1], got {text!r}")
    return values


def parse_phantoms(region: str, text: str) -> tuple[str, ...]:
    """``"leg,leg_layered"`` -> the layout names, each checked to be one of ``region``'s."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    known = [name for name, owner in LAYOUT_REGION.items() if owner == region]
    bad = [name for name in names if name not in known]
    if bad or not names:
        raise ValueError(f"{', '.join(bad) or 'none given'}: use {region} layouts from {', '.join(known)}, "
                         "comma-separated")
    return names


def parse_stages(text: str) -> list[tuple[int, float]]:
    """``"18@0.002,10@0.001"`` -> ``[(18, 0.002), (10, 0.001)]``, ``""`` -> ``[]``; a ``ValueError``
    names a bad stage."""
    stages = []
    if not text.strip():
        return stages
    for part in text.split(","):
        epochs, _, lr = part.strip().partition("@")
        try:
            stages.append((int(epochs), float(lr)))
        except ValueError:
            raise ValueError(f"stage {part.strip()!r} is not EPOCHS@LR (e.g. 18@0.002)") from None
        if stages[-1][0] < 1 or not 0 < stages[-1][1] < 1:
            raise ValueError(f"stage {part.strip()!r}: epochs must be >= 1 and 0 < lr < 1")
    return stages


class Member(NamedTuple):
    """One member of an ensemble: its class term, seed and recipe (a name of ``MEMBER_RECIPES``;
    "" trains the region's own stages)."""

    class_weights: str
    seed: int
    recipe: str = ""


def parse_members(text: str) -> list[Member]:
    """``"inverse_frequency@0+warmup,uniform@2"`` -> ``[Member("inverse_frequency", 0, "warmup"),
    Member("uniform", 2)]``: each member's class term, seed and optional recipe ("" -> none: one
    network)."""
    from lib.transforms.weights import CLASS_WEIGHT_MODES

    members = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        head, plus, recipe = item.partition("+")
        class_weights, _, seed = head.partition("@")
        if class_weights not in CLASS_WEIGHT_MODES or not seed.strip().isdigit():
            raise ValueError(f"member {item!r} is not CLASS_WEIGHTS@SEED[+RECIPE] with CLASS_WEIGHTS one of "
                             f"{', '.join(CLASS_WEIGHT_MODES)} and SEED a whole number")
        if plus and recipe not in MEMBER_RECIPES:
            raise ValueError(f"member {item!r}: recipe {recipe!r} is not one of {', '.join(MEMBER_RECIPES)}")
        members.append(Member(class_weights, int(seed), recipe))
    return members


def member_plan(plan: PretrainPlan, region: str, member: Member) -> PretrainPlan:
    """The one-network plan a member trains with: its class term and seed, its recipe's settings."""
    recipe = {f"{region}_{key}": value for key, value in MEMBER_RECIPES.get(member.recipe, {}).items()}
    return replace(plan, class_weights=member.class_weights, seed=member.seed, **recipe,
                   **{f"{region}_members": ""})


def train_region(region: str, plan: PretrainPlan, out: Path) -> dict:
    """``region``'s segmenter: one network, or the ensemble of ``<region>_members`` (module doc)."""
    members = parse_members(getattr(plan, f"{region}_members"))
    if len(members) <= 1:
        one = member_plan(plan, region, members[0]) if members else replace(plan, **{f"{region}_members": ""})
        return train_segmenter(region, one, out)
    name = segmenter_name(region)
    work = out / ".members" / name
    folders, started = [], time.time()
    for index, member in enumerate(members, start=1):
        recipe = f", recipe {member.recipe}" if member.recipe else ""
        print(f"{name}: member {index} of {len(members)} (class weights {member.class_weights}, seed {member.seed}"
              f"{recipe})", flush=True)
        folders.append(work / f"member_{index}")
        train_segmenter(region, member_plan(plan, region, member), folders[-1])
    validate = SegmenterValidation(region, plan.val_subjects, plan.slices_per_subject,
                                   layouts=parse_phantoms(region, getattr(plan, f"{region}_phantoms")))
    record = join_folders(folders, out, name, "python main.py pretrain", plan=asdict(plan),
                          seconds=round(time.time() - started, 1))
    record["validation_score"] = round(validate(build_from_checkpoint(weight_file(out, name))), 4)
    write_json_atomic(record_file(out, name), record)
    shutil.rmtree(work)
    if not any((out / ".members").iterdir()):
        (out / ".members").rmdir()
    return record


def train_segmenter(region: str, plan: PretrainPlan, out: Path) -> dict:
    """``region``'s segmenter on rendered limb crops, restarted stages, selected on phantom validation:
    from scratch its warm-up stages first (the phantoms' own images), then its stages on every
    source; saved ``<region>_interpolate`` of the way from where those stages started."""
    print(f"preparing {region} label sources ...", flush=True)
    layouts = parse_phantoms(region, getattr(plan, f"{region}_phantoms"))
    sources, shares = segmenter_sources(region, plan.train_subjects, plan.slices_per_subject, plan.shapes_weight,
                                        plan.real_slice_weight, layouts)
    validate = SegmenterValidation(region, plan.val_subjects, plan.slices_per_subject, layouts=layouts)
    torch.manual_seed(plan.seed)
    name = segmenter_name(region)
    model = initial_model(name, plan, lambda: build_segmenter(region, plan.preset))
    histories, start = [], None
    warmup = [] if plan.init_from else parse_stages(getattr(plan, f"{region}_warmup"))
    if warmup:  # sources[0] holds the phantoms, the only source with images of its own
        warm_weights = loss_class_weights(sources[:1], region, plan.class_weights)
        attach(model, {"class_weights": warm_weights})
        histories += train_stages(model, region, plan, warmup, sources[:1], [1.0], validate, own_image_share=1.0,
                                  label="warm-up", sampler=warmup_sampler(sources[0], region, plan))
        start = {"from": "warm-up", "state": copy.deepcopy(model.state_dict()), "class_weights": warm_weights,
                 "validation_score": histories[-1].best_score}
    weights = loss_class_weights(sources, region, plan.class_weights)
    attach(model, {"class_weights": weights})  # validation scores what will be served
    share = getattr(plan, f"{region}_interpolate")
    histories += train_stages(model, region, plan, parse_stages(getattr(plan, f"{region}_stages")), sources, shares,
                              validate, own_image_share=plan.own_image_share, leave_start=share < 1)
    self_trained, real_slices = self_train(model, region, plan, sources, shares, validate)
    histories += self_trained
    score = self_trained[-1].val_score[-1] if self_trained else None
    extra = {}
    if share < 1:
        if start is None:  # continued: interpolate towards the network it was continued from
            init, meta = build_from_checkpoint(weight_file(plan.init_from, name), return_meta=True)
            start = {"from": "init_from", "state": init.state_dict(), "class_weights": meta["class_weights"],
                     "validation_score": meta.get("validation_score")}
        trained = histories[-1].best_score if score is None else score
        weights, score, extra["interpolation"] = interpolate_with_start(model, weights, start, share, validate, name,
                                                                        trained)
    return _save(model, name, plan, histories, out, region=region, input="limb",
                 class_weights=weights, score=score, **extra,
                 self_training_slices=real_slices,
                 train_slices=sum(len(source) for source in sources),
                 sources={source.sources[0].split(":")[0] if len(source) == 1 else f"{len(source)} slices": share
                          for source, share in zip(sources, shares)})


def train_stages(model, region: str, plan: PretrainPlan, stages: list[tuple[int, float]], sources: list,
                 shares: list, validate, own_image_share: float, label: str = "stage", seed_offset: int = 0,
                 keep: str = "best", leave_start: bool = False, sampler=None) -> list:
    """Restarted stages: each a fresh optimiser, seeded ``plan.seed + seed_offset + its index`` (so
    a warm-up and the stages after it draw as two separate calls would). ``keep="best"``: each
    stage starts from the best weights so far and halves its rate after 2 epochs without gain;
    ``"last"``: each keeps its last epoch at its rate (``fit``). ``leave_start``: the first stage
    keeps its best trained epoch even below its starting weights (those are kept apart, to be
    interpolated back to: a start that already validates high would otherwise be restored after
    every stage, and the stages would learn nothing). ``sampler``: seed -> batches, in place of
    the rendered crops of ``sources``."""
    histories = []
    for index, (epochs, lr) in enumerate(stages):
        seed = plan.seed + seed_offset + index
        torch.manual_seed(seed)
        settings = TrainSettings(epochs=epochs, steps_per_epoch=plan.steps_per_epoch, lr=lr,
                                 patience=2 if keep == "best" else epochs, device=plan.device)
        batches = sampler(seed) if sampler is not None else segmentation_batches(
            sources, shares, region, plan.batch_size, plan.crop or 240, seed, own_image_share, plan.class_weights,
            getattr(plan, f"{region}_one_limb_share"),
            parse_probabilities(getattr(plan, f"{region}_own_image_augment")))
        histories.append(fit(
            model, batches, make_segmentation_loss(plan.loss), validate, settings,
            keep="best_trained" if leave_start and index == 0 and keep == "best" else keep,
            on_epoch=lambda e, s, i=index: print(
                f"  {region} {label} {i + 1}/{len(stages)} epoch {s['epoch']}/{s['epochs']} loss {s['loss']:.4f} "
                f"val Dice {s['val']:.4f} ({s['seconds']:.0f} s)", flush=True)))
    return histories


def warmup_sampler(phantoms, region: str, plan: PretrainPlan):
    """``<region>_warmup_crops="slice"``: seed -> batches of whole phantom slices cut around a limb
    and augmented as the 2026-11-25 recipe did (``lib.training.slices.segmentation_batches``; the
    own-image and one-limb options do not reach it); None for ``"limb"``, the rendered limb crops."""
    if getattr(plan, f"{region}_warmup_crops") != "slice":
        return None
    data = SliceSet(torch.from_numpy(phantoms.images[:, None].astype(np.float32)),
                    torch.from_numpy(phantoms.label[:, None].astype(np.uint8)), np.ones(len(phantoms)),
                    list(phantoms.sources))
    return lambda seed: slice_batches(data, region, plan.batch_size, plan.crop or 240, seed,
                                      class_weights=plan.class_weights)


def interpolate_with_start(model, weights: list[float], start: dict, share: float, validate, name: str,
                           trained_score: float) -> tuple[list[float], float, dict]:
    """Move a trained network's weights (in place) back towards the network its stages started
    from, to ``share`` of the way from that one to the trained one (WiSE-FT,
    ``lib.networks.checkpoint.save_interpolation``: the start's strengths kept, the new training's
    robustness gained). ``start``: its ``state``, ``class_weights``, ``validation_score`` and what
    it was (``from``). Returns the interpolated class weights, the validation score of the
    interpolated network, and what the record says of it."""
    model.load_state_dict(interpolated_state(start["state"], model.state_dict(), share))
    weights = interpolated_class_weights(start["class_weights"], weights, share)
    attach(model, {"class_weights": weights})
    score = validate(model)
    print(f"  {name}: {1 - share:g} x the {start['from']} network + {share:g} x the trained one: "
          f"val Dice {score:.4f} (trained {trained_score:.4f})", flush=True)
    start_score = start["validation_score"]
    return weights, score, {"share": share, "start": start["from"],
                            "start_validation_score": None if start_score is None else round(start_score, 4),
                            "trained_validation_score": round(trained_score, 4)}


def teacher_folders(plan: PretrainPlan) -> list[str]:
    """The weight folders of ``--self-training-teachers``, in order."""
    return [folder.strip() for folder in plan.self_training_teachers.split(",") if folder.strip()]


def self_train(model, region: str, plan: PretrainPlan, sources: list, shares: list,
               validate) -> tuple[list, list[str]]:
    """The self-training stages of ``region`` (``lib.training.self_training``): the segmenter labels
    the certain ``region`` slices of the real volumes, then trains on them mixed with ``sources``.
    Each stage keeps its last epoch: the phantom validation cannot see what the real images teach.
    Returns the stages' histories and the real slices used (``volume:slice``)."""
    stages = parse_stages(getattr(plan, f"{region}_self_training"))
    if not stages:
        return [], []
    teachers = [build_from_checkpoint(weight_file(folder, segmenter_name(region)))
                for folder in teacher_folders(plan)] or [model]
    pseudo = pseudo_labelled_slices(teachers, region, certain_slices(region))
    if pseudo is None:
        print(f"no real {region} volumes in {REAL_VOLUMES}: self-training skipped", flush=True)
        return [], []
    volumes = sorted({name.split(":")[0] for name in pseudo.sources})
    by = f"{len(teachers)} teachers' softmax average" if len(teachers) > 1 else "one teacher"
    print(f"self-training on {len(pseudo)} real {region} slices labelled by {by} ({', '.join(volumes)})",
          flush=True)
    share = plan.self_training_share
    sources, shares = sources + [pseudo], [w * (1 - share) for w in shares] + [share]
    histories = train_stages(model, region, plan, stages, sources, shares, validate, plan.own_image_share,
                             label="self-training", seed_offset=SELF_TRAINING_SEED, keep="last")
    return histories, list(pseudo.sources)


def train_classifier(plan: PretrainPlan, out: Path) -> dict:
    """The thigh/leg classifier on rendered limb crops of every source, every slice of the limb.

    Earlier whole-slice classifiers learnt the field of view, limb size and fat as cues and called
    real legs "thigh" (0 to 0.40 of the slices of three real leg volumes); on one limb's crop of
    random contrast those cues are gone and anatomy is left (weights/README.md). The weights of
    the later epochs are averaged and the batch-norm statistics recomputed, as before: single
    epochs still swing on held-out data.
    """
    print("preparing classifier label sources ...", flush=True)
    sources, classes, shares = classifier_sources(plan.classifier_subjects, 16, plan.real_slice_weight)
    validate = ClassifierValidation(plan.classifier_val_subjects, plan.slices_per_subject)
    torch.manual_seed(plan.seed)
    model = initial_model(CLASSIFIER, plan, lambda: build_classifier(plan.preset, input_dropout=0.0))
    settings = TrainSettings(epochs=plan.classifier_epochs, steps_per_epoch=40, lr=plan.classifier_lr,
                             device=plan.device, amp=False, channels_last=False)
    average = WeightAverage()

    def on_epoch(_, s):
        print(f"  classifier epoch {s['epoch']}/{s['epochs']} loss {s['loss']:.4f} val accuracy {s['val']:.4f}",
              flush=True)
        if s["epoch"] >= plan.classifier_average_from:
            average.update(model)

    scale_range = parse_scale_range(plan.classifier_scale)
    history = fit(model, classifier_batches(sources, classes, shares, 32, plan.seed, scale_range),
                  torch.nn.CrossEntropyLoss(), validate, settings, on_epoch=on_epoch, keep="last")
    average.copy_to(model)
    calibration = classifier_batches(sources, classes, shares, 32, plan.seed + 1, scale_range)
    recalibrate_batch_norm(model, (next(calibration)[0] for _ in range(16)))
    score = validate(model)
    print(f"  classifier: average of epochs {plan.classifier_average_from}-{len(history.train_loss)}, "
          f"val accuracy {score:.4f}", flush=True)
    return _save(model, CLASSIFIER, plan, [history], out, input="limb",
                 subjects=(plan.classifier_subjects, plan.classifier_val_subjects),
                 validation_score=round(score, 4), averaged_epochs=average.count, val_slices=validate.slices)


def _save(model, name: str, plan: PretrainPlan, histories: list, out: Path, subjects: tuple[int, int] | None = None,
          score: float | None = None, **extra) -> dict:
    """Write ``<name>.pt`` and ``<name>.json``; ``subjects``: (train, val) per region, the plan's by
    default; ``score``: the saved weights' validation score when they are not the last stage's best."""
    n_train, n_val = subjects or (plan.train_subjects, plan.val_subjects)
    meta = {"name": name, "preset": plan.preset, "version": 0, "source": "pretrain",
            "validation_score": round(histories[-1].best_score if score is None else score, 4), **extra}
    # float16 storage keeps the shipped files small (issue: < 30 MB in all); Dice unchanged to 1e-4
    save_checkpoint(weight_file(out, name), model, meta, storage_dtype=torch.float16)
    record = {**meta, "plan": asdict(plan), "history": [h.summary() for h in histories],
              "seconds": round(sum(h.seconds for h in histories), 1),
              "seeds": {"train": [SEED_BASE["train"], SEED_BASE["train"] + n_train - 1],
                        "val": [SEED_BASE["val"], SEED_BASE["val"] + n_val - 1]},
              "data": "images of random contrast rendered from label maps (lib/training/sources.py): phantoms "
                      "(lib/data/phantoms), the real thigh shapes and the real leg slice of shared/data",
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                         f"torch {torch.__version__}",
              "command": "python main.py pretrain"}
    earlier = record_file(plan.init_from, name) if plan.init_from else None
    if earlier is not None and earlier.is_file():  # keep the whole history of a continued network
        record["continued_from"] = json.loads(earlier.read_text())
    record_file(out, name).write_text(json.dumps(record, indent=2) + "\n")
    return record


def pretrain(plan: PretrainPlan, out: Path, networks=NETWORKS) -> dict:
    """Train the requested networks and write them to ``out``; returns their records."""
    out.mkdir(parents=True, exist_ok=True)
    records, started = {}, time.time()
    for region in REGIONS:
        if segmenter_name(region) in networks:
            records[segmenter_name(region)] = train_region(region, plan, out)
    if CLASSIFIER in networks:
        records[CLASSIFIER] = train_classifier(plan, out)
    print(f"pretrain finished in {time.time() - started:.0f} s", flush=True)
    return records
