"""``python main.py pretrain``: train the default weights (shipped in ``weights/``)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from lib.errors import UserError
from lib.labels import REGIONS
from lib.models.catalog import NETWORKS, segmenter_name, weight_file
from lib.paths import SHIPPED_WEIGHTS


def add_arguments(parser):
    from lib.training.pretrain import PretrainPlan

    defaults = PretrainPlan()
    parser.add_argument("--out", default=str(SHIPPED_WEIGHTS),
                        help="output folder (default: the shipped weights/)")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    for f in fields(PretrainPlan):
        value = getattr(defaults, f.name)
        kind = int if isinstance(value, int) and not isinstance(value, bool) else float if isinstance(value, float) else str
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=value, help=f"(default {value})")


def run(args) -> int:
    from lib.networks.presets import get_preset
    from lib.training.pretrain import (PretrainPlan, parse_members, parse_phantoms, parse_probabilities,
                                       parse_scale_range, parse_stages, pretrain, teacher_folders)
    from lib.transforms.weights import CLASS_WEIGHT_MODES

    plan = PretrainPlan(**{f.name: getattr(args, f.name) for f in fields(PretrainPlan)})
    for name in ("train_subjects", "val_subjects", "slices_per_subject", "classifier_epochs", "classifier_subjects",
                 "classifier_val_subjects", "classifier_average_from", "steps_per_epoch", "batch_size"):
        if getattr(plan, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < plan.classifier_lr < 1:
        raise UserError(f"--classifier-lr must be between 0 and 1, got {plan.classifier_lr}")
    if plan.classifier_average_from > plan.classifier_epochs:
        raise UserError("--classifier-average-from must not exceed --classifier-epochs")
    try:
        parse_scale_range(plan.classifier_scale)
    except ValueError as error:
        raise UserError(f"--classifier-scale: {error}") from None
    for name in ("thigh_stages", "leg_stages", "thigh_warmup", "leg_warmup", "thigh_self_training",
                 "leg_self_training"):
        try:
            parse_stages(getattr(plan, name))
        except ValueError as error:
            raise UserError(f"--{name.replace('_', '-')}: {error}") from None
    if plan.class_weights not in CLASS_WEIGHT_MODES:
        raise UserError(f"--class-weights must be {' or '.join(CLASS_WEIGHT_MODES)}, got {plan.class_weights!r}")
    defaults = PretrainPlan()
    for region in REGIONS:
        if segmenter_name(region) not in args.networks:
            continue
        parsed = {}
        for option, parse in (("members", parse_members), ("phantoms", lambda text: parse_phantoms(region, text)),
                              ("own_image_augment", parse_probabilities)):
            try:
                parsed[option] = parse(getattr(plan, f"{region}_{option}"))
            except ValueError as error:
                raise UserError(f"--{region}-{option.replace('_', '-')}: {error}") from None
        crops = getattr(plan, f"{region}_warmup_crops")
        if crops not in ("limb", "slice"):
            raise UserError(f"--{region}-warmup-crops must be limb or slice, got {crops!r}")
        members = parsed["members"]
        changed = [f"--{name.replace('_', '-')}" for name in ("class_weights", "seed")
                   if getattr(plan, name) != getattr(defaults, name)]
        if len(members) > 1 and changed:
            raise UserError(f"{' and '.join(changed)} would not reach the {region} segmenter: it trains the members "
                            f"of --{region}-members ({getattr(plan, f'{region}_members')}), each with its own class "
                            f"weights and seed; give --{region}-members '' for one network, or set them there")
        stages = parse_stages(getattr(plan, f"{region}_stages"))
        self_training = parse_stages(getattr(plan, f"{region}_self_training"))
        if not stages and not plan.init_from:
            raise UserError(f"--{region}-stages may be empty only with --init-from (a network to continue)")
        if not stages and not self_training:
            raise UserError(f"--{region}-stages and --{region}-self-training are both empty: nothing to train")
        for teacher in (weight_file(folder, segmenter_name(region)) for folder in teacher_folders(plan)):
            if self_training and not Path(teacher).is_file():
                raise UserError(f"--self-training-teachers: no {teacher}")
    if not 0 < plan.self_training_share < 1:
        raise UserError(f"--self-training-share must be between 0 and 1, got {plan.self_training_share}")
    get_preset(plan.preset)  # unknown preset -> error before any work
    if plan.loss not in ("weighted_ce", "dice_ce"):
        raise UserError(f"--loss must be weighted_ce or dice_ce, got {plan.loss!r}")
    if plan.init_from and not Path(plan.init_from).is_dir():
        raise UserError(f"--init-from folder not found: {plan.init_from}")
    if plan.init_from:
        from lib.networks.checkpoint import load_checkpoint
        for name in args.networks:
            path = weight_file(plan.init_from, name)
            if path.is_file() and load_checkpoint(path)[1].get("network") == "ensemble":
                # pretraining writes one network's class weights: an ensemble's members would lose theirs
                raise UserError(f"--init-from: {path} is an ensemble; split it with `python main.py ensemble "
                                f"--unpack {plan.init_from} --out DIR`, continue each member, join them again "
                                "with `python main.py ensemble --members ...`")
    for region in REGIONS:
        for option in ("one_limb_share", "interpolate"):
            value = getattr(plan, f"{region}_{option}")
            if not 0 <= value <= 1:
                raise UserError(f"--{region}-{option.replace('_', '-')} must be between 0 and 1, got {value}")
        if segmenter_name(region) in args.networks:
            if getattr(plan, f"{region}_interpolate") < 1:
                check_interpolation_start(plan, region)
            check_member_recipes(plan, region)
    records = pretrain(plan, Path(args.out), networks=args.networks)
    for name, record in records.items():
        print(f"{name}: validation {record['validation_score']:.4f} -> {weight_file(args.out, name)}")
    return 0


def check_interpolation_start(plan, region: str) -> None:
    """``--<region>-interpolate`` below 1 needs a network to interpolate towards: the warm-up's end
    (from scratch) or the ``--init-from`` segmenter, with the class weights ``pretrain`` writes."""
    from lib.networks.checkpoint import load_checkpoint
    from lib.training.pretrain import parse_stages

    option = f"--{region}-interpolate"
    if not plan.init_from:
        if not parse_stages(getattr(plan, f"{region}_warmup")):
            raise UserError(f"{option} needs a start to interpolate towards: --{region}-warmup stages (from "
                            f"scratch) or --init-from; give {option} 1 to save the network as trained")
        return
    path = weight_file(plan.init_from, segmenter_name(region))
    if not path.is_file() or "class_weights" not in load_checkpoint(path)[1]:
        raise UserError(f"{option}: {path} is not a segmenter with class weights to interpolate towards "
                        "(pretrain writes them)")


def check_member_recipes(plan, region: str) -> None:
    """A member with a recipe trains the recipe's settings: the same options given on the command line
    would not reach it, so they are an error rather than silently ignored."""
    from lib.training.pretrain import MEMBER_RECIPES, PretrainPlan, parse_members

    defaults = PretrainPlan()
    for index, member in enumerate(parse_members(getattr(plan, f"{region}_members")), start=1):
        overridden = [f"--{region}-{key.replace('_', '-')}" for key in MEMBER_RECIPES.get(member.recipe, {})
                      if getattr(plan, f"{region}_{key}") != getattr(defaults, f"{region}_{key}")]
        if overridden:
            raise UserError(f"{' and '.join(overridden)} would not reach member {index} of --{region}-members "
                            f"({member.class_weights}@{member.seed}+{member.recipe}): its recipe sets them; "
                            f"drop +{member.recipe} to train that member with them")
