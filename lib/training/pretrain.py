"""The default weights: classifier and both segmenters trained on phantoms + the real slice.

``python main.py pretrain`` runs this. Phantom seeds are split once and for all so that the
held-out test set used to check the shipped weights is never seen in training or selection:
train seeds 0-9999, validation (model selection) 10000-19999, test 20000-29999.
Each network is written to ``weights/<name>.pt`` with a ``weights/<name>.json`` describing
how it was made (data, seeds, epochs, preset, validation Dice, time).

The segmenters train in stages (``PretrainPlan.thigh_stages`` / ``leg_stages``): each stage starts from the best
weights so far with a *fresh* optimiser and its own, lower learning rate. One continuous run of the
same 36 epochs (cosine decay) stalled at 0.905 thigh validation Dice against 0.93 with
restarts: AMSGrad's running maximum of squared gradients keeps the first epochs' large
gradients and shrinks every later step; a restart forgets them.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lib.data.phantoms.phantom import SEVERITIES, generate_phantom
from lib.labels import REGIONS
from lib.models.catalog import CLASSIFIER, NETWORKS, record_file, segmenter_name, weight_file
from lib.networks.checkpoint import build_from_checkpoint, save_checkpoint
from lib.networks.presets import build_classifier, build_segmenter
from lib.training.averaging import WeightAverage, recalibrate_batch_norm
from lib.training.loop import TrainSettings, fit
from lib.training.loss import make_segmentation_loss
from lib.training.slices import SliceSet, classifier_batches, segmentation_batches
from lib.training.validation import classifier_accuracy, segmenter_mean_dice
from lib.transforms.geometry import MODEL_SPACING
from lib.transforms.preprocess import classifier_slices, volume_to_model_grid

logger = logging.getLogger(__name__)

SEED_BASE = {"train": 0, "val": 10_000, "test": 20_000}
PHANTOM_SPACING = (MODEL_SPACING, MODEL_SPACING, 5.0)  # phantoms drawn on the model grid, 5 mm slices (SPEC §2)


@dataclass
class PretrainPlan:
    """What ``pretrain`` does; the defaults make the shipped weights (under an hour on 2 cores)."""

    preset: str = "compact"
    train_subjects: int = 24  # per region
    val_subjects: int = 4
    slices_per_subject: int = 12
    # epochs@learning rate of each restarted stage; the thigh (12 muscles) needs one stage more
    thigh_stages: str = "18@0.002,10@0.001,8@0.0005,8@0.00025"
    leg_stages: str = "18@0.002,10@0.001,8@0.0005"
    steps_per_epoch: int = 100
    batch_size: int = 4
    crop: int | None = 240
    real_slice_weight: float = 0.1  # share of leg batches drawn from the one real slice
    classifier_epochs: int = 16
    classifier_subjects: int = 48  # per region: images only, cheap, and the classifier needs their variety
    classifier_val_subjects: int = 12
    classifier_average_from: int = 6  # weights of this epoch and later are averaged (SWA)
    classifier_lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    loss: str = "weighted_ce"  # SPEC §5; "dice_ce" is the alternative
    init_from: str = ""  # folder of earlier weights to continue from (empty: from scratch)


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


def real_slices(weight: float) -> tuple[SliceSet, list]:
    from lib.data.phantoms.real_slice import load_real_slice

    real = load_real_slice()
    image, label = volume_to_model_grid(real.image, real.label, real.affine)
    return SliceSet.from_volume(image, label, "real_leg_t1", weight=weight), [(image, "leg")]


def _with_share(data: SliceSet, source: str, share: float) -> SliceSet:
    """Set sampling weights so that slices from ``source`` make up ``share`` of the draws."""
    mine = np.array([s == source for s in data.sources])
    if mine.any() and (~mine).any():
        data.weights = np.where(mine, share / mine.sum(), (1 - share) / (~mine).sum())
    return data


def parse_stages(text: str) -> list[tuple[int, float]]:
    """``"18@0.002,10@0.001"`` -> ``[(18, 0.002), (10, 0.001)]``; a ``ValueError`` names a bad stage."""
    stages = []
    for part in text.split(","):
        epochs, _, lr = part.strip().partition("@")
        try:
            stages.append((int(epochs), float(lr)))
        except ValueError:
            raise ValueError(f"stage {part.strip()!r} is not EPOCHS@LR (e.g. 18@0.002)") from None
        if stages[-1][0] < 1 or not 0 < stages[-1][1] < 1:
            raise ValueError(f"stage {part.strip()!r}: epochs must be >= 1 and 0 < lr < 1")
    return stages


def train_segmenter(region: str, plan: PretrainPlan, train: SliceSet, val: SliceSet, out: Path) -> dict:
    torch.manual_seed(plan.seed)
    model = initial_model(segmenter_name(region), plan, lambda: build_segmenter(region, plan.preset))
    stages = parse_stages(getattr(plan, f"{region}_stages"))
    histories = []
    for index, (epochs, lr) in enumerate(stages):  # each fit: a fresh optimiser from the best weights so far
        torch.manual_seed(plan.seed + index)
        settings = TrainSettings(epochs=epochs, steps_per_epoch=plan.steps_per_epoch, lr=lr, patience=2,
                                 device=plan.device)
        histories.append(fit(
            model, segmentation_batches(train, region, plan.batch_size, plan.crop, plan.seed + index),
            make_segmentation_loss(plan.loss), lambda m: segmenter_mean_dice(m, val, region), settings,
            on_epoch=lambda e, s, i=index: print(
                f"  {region} stage {i + 1}/{len(stages)} epoch {s['epoch']}/{s['epochs']} loss {s['loss']:.4f} "
                f"val Dice {s['val']:.4f} ({s['seconds']:.0f} s)", flush=True)))
    return _save(model, segmenter_name(region), plan, histories, out, region=region,
                 train_slices=len(train), val_slices=len(val))


# (grid, spacing mm) the classifier's phantoms are rendered on: the model grid, and smaller
# fields of view whose edges show after resampling (a leg in 288x240 mm passed for a thigh).
CLASSIFIER_FIELDS_OF_VIEW = (((432, 432), PHANTOM_SPACING), ((240, 200), (1.2, 1.2, 5.0)),
                             ((320, 320), (1.0, 1.0, 5.0)), ((384, 320), (1.1, 1.1, 5.0)))


def classifier_phantoms(split: str, subjects: int, n_slices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier inputs and classes of ``subjects`` phantoms per region, each rendered at every
    severity (the same anatomy with other fat, so that fat replacement is no cue to the region)
    and on a field of view cycling through ``CLASSIFIER_FIELDS_OF_VIEW``."""
    volumes = []
    for region in REGIONS:
        for i in range(subjects):
            for j, severity in enumerate(SEVERITIES):
                shape, spacing = CLASSIFIER_FIELDS_OF_VIEW[(i + j) % len(CLASSIFIER_FIELDS_OF_VIEW)]
                phantom = generate_phantom(region, SEED_BASE[split] + i, n_slices=n_slices, severity=severity,
                                           shape=shape, spacing=spacing)
                image, _ = volume_to_model_grid(phantom.image, None, phantom.affine)
                volumes.append(classifier_slices([(image, region)]))  # 128x128 at once: a tenth of the memory
    return torch.cat([x for x, _ in volumes]), torch.cat([y for _, y in volumes])


def classifier_data(plan: PretrainPlan) -> tuple[tuple, tuple]:
    """(inputs, classes) to train and to validate the classifier; the real slice comes first."""
    real_x, real_y = classifier_slices(real_slices(1.0)[1])
    x, y = classifier_phantoms("train", plan.classifier_subjects, plan.slices_per_subject)
    return (torch.cat([real_x, x]), torch.cat([real_y, y])), \
        classifier_phantoms("val", plan.classifier_val_subjects, plan.slices_per_subject)


def train_classifier(plan: PretrainPlan, train: tuple, val: tuple, out: Path) -> dict:
    """``train``/``val``: (inputs, classes) of ``classifier_data``; the first training input is
    the real slice: it gets ``real_slice_weight`` of the draws, as for the leg.

    Held-out accuracy was 0.75-0.91 with input dropout, shifts only and the best epoch kept:
    the batch norms learnt the variance of dropped-out inputs (Li et al., CVPR 2019), a slim,
    fatty thigh passed for a leg, and the best epoch on the validation set was chance. Hence no
    input dropout, random scale and rotation (``classifier_batches``), every subject at every
    severity, and the average of the later epochs' weights with batch-norm statistics
    recomputed. Random scaling takes size away as a cue, and what is left needs more training:
    10 epochs at lr 3e-4 stopped at a training loss of 0.15 and missed distal thigh slices,
    16 at 1e-3 reach 0.03 and missed none of 1,152 held-out slices (weights/README.md).
    """
    torch.manual_seed(plan.seed)
    (x, y), (vx, vy) = train, val
    weights = np.ones(len(x))
    weights[0] = plan.real_slice_weight * (len(x) - 1) / (1 - plan.real_slice_weight)
    model = initial_model(CLASSIFIER, plan, lambda: build_classifier(plan.preset, input_dropout=0.0))
    settings = TrainSettings(epochs=plan.classifier_epochs, steps_per_epoch=40, lr=plan.classifier_lr, device=plan.device,
                             amp=False, channels_last=False)
    average = WeightAverage()

    def on_epoch(_, s):
        print(f"  classifier epoch {s['epoch']}/{s['epochs']} loss {s['loss']:.4f} val accuracy {s['val']:.4f}",
              flush=True)
        if s["epoch"] >= plan.classifier_average_from:
            average.update(model)

    history = fit(model, classifier_batches(x, y, weights, 32, plan.seed), torch.nn.CrossEntropyLoss(),
                  lambda m: classifier_accuracy(m, vx, vy), settings, on_epoch=on_epoch, keep="last")
    average.copy_to(model)
    calibration = classifier_batches(x, y, weights, 32, plan.seed + 1)
    recalibrate_batch_norm(model, (next(calibration)[0] for _ in range(16)))
    score = classifier_accuracy(model, vx, vy)
    print(f"  classifier: average of epochs {plan.classifier_average_from}-{len(history.train_loss)}, "
          f"val accuracy {score:.4f}", flush=True)
    return _save(model, CLASSIFIER, plan, [history], out, train_slices=len(x), val_slices=len(vx),
                 subjects=(plan.classifier_subjects, plan.classifier_val_subjects),
                 validation_score=round(score, 4), averaged_epochs=average.count)


def _save(model, name: str, plan: PretrainPlan, histories: list, out: Path, subjects: tuple[int, int] | None = None,
          **extra) -> dict:
    """Write ``<name>.pt`` and ``<name>.json``; ``subjects``: (train, val) per region, the plan's by default."""
    n_train, n_val = subjects or (plan.train_subjects, plan.val_subjects)
    meta = {"name": name, "preset": plan.preset, "version": 0, "source": "pretrain",
            "validation_score": round(histories[-1].best_score, 4), **extra}
    # float16 storage keeps the shipped files small (issue: < 30 MB in all); Dice unchanged to 1e-4
    save_checkpoint(weight_file(out, name), model, meta, storage_dtype=torch.float16)
    record = {**meta, "plan": asdict(plan), "history": [h.summary() for h in histories],
              "seconds": round(sum(h.seconds for h in histories), 1),
              "seeds": {"train": [SEED_BASE["train"], SEED_BASE["train"] + n_train - 1],
                        "val": [SEED_BASE["val"], SEED_BASE["val"] + n_val - 1]},
              "data": "phantoms (lib/data/phantoms/phantom.py) + the real leg slice of shared/data (leg and classifier)",
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
    real = real_slices(1.0)[0]
    for region in REGIONS:
        if segmenter_name(region) not in networks:
            continue
        print(f"generating {region} phantoms ...", flush=True)
        train = phantom_slices(region, "train", plan.train_subjects, plan.slices_per_subject)[0]
        val = phantom_slices(region, "val", plan.val_subjects, plan.slices_per_subject)[0]
        if region == "leg":
            train = _with_share(train + real, "real_leg_t1", plan.real_slice_weight)
        records[segmenter_name(region)] = train_segmenter(region, plan, train, val, out)
    if CLASSIFIER in networks:
        print("generating classifier phantoms ...", flush=True)
        records[CLASSIFIER] = train_classifier(plan, *classifier_data(plan), out)
    print(f"pretrain finished in {time.time() - started:.0f} s", flush=True)
    return records
