"""One incremental round: fine-tune a live network on corrected slices, publish only if not worse.

The round starts from the published weights (never from scratch), mixes the clinician's
slices with a replay of phantom slices (so that what the model knew is kept while real data
are scarce), trains a few short epochs, then compares candidate and live model on the same
fixed validation slices: the user's validation images (``lib.training.splits``) and the
held-out phantom validation set. The candidate is published only if its score is not lower
than the live model's by more than ``tolerance``.

Until the user has a validation image (the first image always trains), a segmenter's round is
judged on the phantoms alone. They cannot tell whether the round helped on the user's scans, only
whether it forgot what the model knew, and adapting to a real site costs some phantom Dice: with
``tolerance`` the guard rejected a round on the one real leg slice whose phantom Dice fell by
0.007 (0.921 -> 0.914), and the user saw no change. Without user validation a segmenter may
therefore lose up to ``phantom_tolerance`` (0.02: the phantom margin issue 16 allows the shipped
weights), or ``tolerance`` if that is larger, on the phantoms. The classifier keeps
``tolerance``: a routing slip costs a whole slice.
"""

from __future__ import annotations

import copy
import functools
import math
import tempfile
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
import torch

from lib.errors import UserError
from lib.inference.batching import limb_classifier_inputs
from lib.inference.limbs import find_limbs
from lib.labels import REGIONS
from lib.models.catalog import region_of, weight_file
from lib.models.registry import ModelRegistry
from lib.networks.checkpoint import build_from_checkpoint, save_checkpoint
from lib.options import parse_bool
from lib.training.loop import TrainSettings, fit
from lib.training.loss import make_segmentation_loss
from lib.training.pretrain import phantom_slices
from lib.training.slices import SliceSet, classifier_batches, segmentation_batches
from lib.training.validation import classifier_accuracy, segmenter_mean_dice
from lib.transforms.preprocess import classifier_slices


@dataclass
class RoundSettings:
    """Options of one round (request ``params`` of ``POST /train/<model>``)."""

    epochs: int = 4
    steps_per_epoch: int = 25
    lr: float = 2e-4
    batch_size: int = 4
    crop: int = 240
    tolerance: float = 0.005  # the candidate may score this much below the live model
    phantom_tolerance: float = 0.02  # the same for a segmenter judged on phantoms alone (no user validation yet)
    replay_share: float = 0.5  # share of training draws from phantoms (earlier knowledge)
    replay_subjects: int = 6  # phantom subjects per region replayed
    val_subjects: int = 4  # phantom validation subjects per region (seeds 10000+)
    val_fraction: float = 0.2  # share of images assigned to validation (fixed per image)
    keep_versions: int = 5
    seed: int = 0
    device: str = "cpu"
    freeze_norm: bool = True  # batch-norm statistics stay those of the live model

    ALIASES = {"max_epochs": "epochs", "train_batch_size": "batch_size", "learning_rate": "lr"}

    @classmethod
    def from_request(cls, request: dict) -> "RoundSettings":
        """Typed settings from a request; unknown keys (viewer extras) are ignored."""
        values = {}
        for key, value in request.items():
            key = cls.ALIASES.get(key, key)
            field_ = next((f for f in fields(cls) if f.name == key), None)
            if field_ is None or value is None or value == "":
                continue
            kind = type(getattr(cls(), key))
            try:
                if kind is bool:
                    values[key] = parse_bool(value, key)
                    continue
                values[key] = kind(value) if kind is not int else int(float(value))
            except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
                raise UserError(f"train option {key}={value!r} is not a valid {kind.__name__}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "keep_versions", "replay_subjects", "val_subjects"):
            if getattr(self, name) < 1:
                raise UserError(f"train option {name} must be at least 1")
        if not 0 < self.lr < 1:
            raise UserError("train option lr must be in (0, 1)")
        if (not 0 <= self.replay_share < 1 or not 0 <= self.val_fraction < 1
                or min(self.tolerance, self.phantom_tolerance) < 0):
            raise UserError("replay_share and val_fraction must be in [0, 1), tolerance and phantom_tolerance >= 0")
        if self.crop % 48 or self.crop < 48:
            raise UserError("train option crop must be a positive multiple of 48")


@functools.lru_cache(maxsize=8)
def phantom_set(region: str, split: str, subjects: int) -> SliceSet:
    """Phantom slices of a region (train: replay, val: the fixed validation set)."""
    return phantom_slices(region, split, subjects, 8)[0]


def replay_weights(n_user: int, n_replay: int, replay_share: float) -> np.ndarray:
    """Sampling weights of ``n_user`` then ``n_replay`` examples: replay gets ``replay_share``."""
    if not n_user or not n_replay:
        return np.ones(n_user + n_replay)
    return np.concatenate([np.full(n_user, (1 - replay_share) / n_user), np.full(n_replay, replay_share / n_replay)])


def mixed(user: SliceSet, replay: SliceSet, replay_share: float) -> SliceSet:
    """User slices + replay, weighted so that replay makes ``replay_share`` of the draws."""
    data = user + replay
    data.weights = replay_weights(len(user), len(replay), replay_share)
    return data


def combined_score(model, score_sets: dict[str, Callable]) -> tuple[float, dict]:
    """Mean over the validation sets of each set's score (NaN sets ignored), and each score."""
    parts = {name: float(score(model)) for name, score in score_sets.items()}
    finite = [v for v in parts.values() if math.isfinite(v)]
    return (float(np.mean(finite)) if finite else math.nan), {k: round(v, 4) for k, v in parts.items()}


def guard_tolerance(settings: RoundSettings, phantoms_only: bool) -> float:
    """How much lower than the live model a candidate may score: ``tolerance``, widened to
    ``phantom_tolerance`` for a segmenter that only phantoms judge (see the module doc)."""
    return max(settings.tolerance, settings.phantom_tolerance) if phantoms_only else settings.tolerance


def class_term_of(live_meta: dict) -> str:
    """The class term the live network's loss used: "uniform" when its recorded class weights are
    all 1 (``pretrain --class-weights uniform``), else SPEC §5's inverse frequency. A fine-tuned
    version keeps its parent's meta and logit adjustment, so it must keep its parent's loss too:
    a class-weighted round on a uniformly trained network would grow labels that nothing undoes.
    An ensemble's output is already a plain posterior (each member's adjustment applied inside,
    ``lib.networks.ensemble``), so its rounds are uniform."""
    if live_meta.get("network") == "ensemble":
        return "uniform"
    weights = live_meta.get("class_weights")
    return "uniform" if weights is not None and np.allclose(weights, 1.0) else "inverse_frequency"


def segmenter_plan(region: str, train: SliceSet, val: SliceSet, settings: RoundSettings, seed: int = 0,
                   class_weights: str = "inverse_frequency"):
    """Batches, loss and validation sets of a segmenter round (class_weights: see ``class_term_of``)."""
    data = mixed(train, phantom_set(region, "train", settings.replay_subjects), settings.replay_share)
    batches = segmentation_batches(data, region, settings.batch_size, settings.crop, seed,
                                   class_weights=class_weights)
    phantoms = phantom_set(region, "val", settings.val_subjects)
    sets = {"phantom_val": lambda m: segmenter_mean_dice(m, phantoms, region)}
    if len(val):
        sets["user_val"] = lambda m: segmenter_mean_dice(m, val, region)
    return batches, make_segmentation_loss("weighted_ce"), sets


def _classifier_examples(data: SliceSet, limbs: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier inputs and classes of every slice with a region: each limb's crop for a
    classifier made for limbs (``limbs``), else the whole slice downsized to 128 x 128."""
    volumes = [(img[0].numpy()[:, :, None], region) for img, region in zip(data.images, data.regions()) if region]
    if not volumes:
        return torch.zeros(0, 1, 128, 128), torch.zeros(0, dtype=torch.long)
    if not limbs:
        return classifier_slices(volumes)
    inputs, classes = [], []
    for volume, region in volumes:
        x, _ = limb_classifier_inputs(volume, [0], find_limbs(volume, [0]))
        inputs.append(x)
        classes.append(torch.full((len(x),), REGIONS.index(region), dtype=torch.long))
    return torch.cat(inputs), torch.cat(classes)


def classifier_plan(train: SliceSet, val: SliceSet, settings: RoundSettings, seed: int = 0, limbs: bool = False):
    """Batches, loss and validation sets of a classifier round (every labelled slice counts)."""
    ux, uy = _classifier_examples(train, limbs)
    replay = [phantom_set(r, "train", settings.replay_subjects) for r in REGIONS]
    rx, ry = _classifier_examples(replay[0] + replay[1], limbs)
    x, y = torch.cat([ux, rx]), torch.cat([uy, ry])
    batches = classifier_batches(x, y, replay_weights(len(ux), len(rx), settings.replay_share), 32, seed)
    vx, vy = _classifier_examples(phantom_set("thigh", "val", settings.val_subjects)
                                  + phantom_set("leg", "val", settings.val_subjects), limbs)
    sets = {"phantom_val": lambda m: classifier_accuracy(m, vx, vy)}
    ux_val, uy_val = _classifier_examples(val, limbs)
    if len(ux_val):
        sets["user_val"] = lambda m: classifier_accuracy(m, ux_val, uy_val)
    return batches, torch.nn.CrossEntropyLoss(), sets


def run_round(network: str, registry: ModelRegistry, train: SliceSet, val: SliceSet, settings: RoundSettings,
              on_epoch: Callable[[int, dict], None] | None = None, rank: int = 0) -> dict:
    """Fine-tune ``network`` from its live weights, guard, publish; returns what happened.

    ``train``/``val``: the user's corrected slices of the fixed split (global values). Under
    ``torch.distributed`` every process runs this and rank 0 alone publishes.
    """
    region = region_of(network)
    if region is not None:
        train, val = train.select(region), val.select(region)
        if not len(train):
            return {"network": network, "status": "skipped", "reason": f"no corrected {region} slices to train on"}
    elif not len(train):
        return {"network": network, "status": "skipped", "reason": "no corrected slices to train on"}
    live_path = registry.current()
    model, live_meta = build_from_checkpoint(live_path, return_meta=True)
    if region is not None:
        batches, loss, sets = segmenter_plan(region, train, val, settings, settings.seed + rank,
                                             class_term_of(live_meta))
    else:
        batches, loss, sets = classifier_plan(train, val, settings, settings.seed + rank,
                                              limbs=live_meta.get("input") == "limb")
    torch.manual_seed(settings.seed)
    live_score, live_parts = combined_score(model, sets)
    fit_settings = TrainSettings(epochs=settings.epochs, steps_per_epoch=settings.steps_per_epoch, lr=settings.lr,
                                 patience=2, device=settings.device, freeze_norm=settings.freeze_norm)
    history = fit(model, batches, loss, lambda m: combined_score(m, sets)[0], fit_settings, on_epoch=on_epoch,
                  keep="best_trained")
    model.to("cpu")
    candidate_score, candidate_parts = combined_score(model, sets)
    phantoms_only = region is not None and "user_val" not in sets
    tolerance = guard_tolerance(settings, phantoms_only)
    result = {"network": network, "train_slices": len(train), "val_slices": len(val),
              "live_score": round(live_score, 4), "candidate_score": round(candidate_score, 4),
              "live_scores": live_parts, "candidate_scores": candidate_parts,
              "metric": "mean Dice" if region else "accuracy", "tolerance": tolerance,
              "guard": "phantoms only (no user validation image yet)" if phantoms_only else "all validation sets",
              "history": history.summary(), "settings": asdict(settings), "from": str(live_path)}
    if rank != 0:
        return result
    if not candidate_score >= live_score - tolerance:  # NaN fails too
        result.update(status="rejected", reason=f"candidate {candidate_score:.4f} < live {live_score:.4f} "
                                                f"- tolerance {tolerance}: live model kept")
        registry.record({"event": "reject", "live_score": result["live_score"],
                         "candidate_score": result["candidate_score"], "reason": result["reason"]})
        return result
    meta = _meta_of(live_meta, network, result)
    with tempfile.TemporaryDirectory(dir=registry.model_dir) as tmp:
        candidate = save_checkpoint(weight_file(tmp, network), model, meta)
        result["version"] = registry.publish(candidate, {k: result[k] for k in (
            "live_score", "candidate_score", "live_scores", "candidate_scores", "metric", "train_slices",
            "val_slices", "from")})
    result["status"] = "published"
    return result


def _meta_of(live_meta: dict, network: str, result: dict) -> dict:
    """The live checkpoint's meta carried over, marked as a fine-tuned version."""
    meta = {k: v for k, v in copy.deepcopy(live_meta).items() if k not in ("network", "config")}
    meta.update(name=network, source="incremental", validation_score=result["candidate_score"])
    return meta
