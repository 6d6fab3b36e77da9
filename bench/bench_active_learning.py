"""Does slice-level active learning save annotation work? A simulated annotation loop.

    .venv/bin/python -m bench.bench_active_learning [--seeds 3] [--rounds 4] [--n 4]

As the issue sets it: the live model is weak, a thigh segmenter trained from scratch on a few
phantoms (``--weak-subjects``, the same subjects the incremental round replays, so that any
gain comes from the annotated slices). A pool of unlabelled thigh subjects of every severity
(12 slices each) waits for annotation. Each round the strategy names ``n`` slices (one image
per request, as the server answers), their true labels are "saved", and one incremental round
(``lib.training.incremental``, the train task's code, publish guard included) fine-tunes the
live model on every slice annotated so far. Mean Dice on held-out phantoms of every severity
after each round gives the learning curve. ``uncertain_slices`` (MC-dropout ranking,
``lib.inference.ranking``) against slice-level ``random``, over several seeds; the weak
model is the same for all. ``--start shipped`` starts instead from the shipped weights on a
cohort of severe fat infiltration only (the earlier set-up, where neither strategy gained).
``--strategies ... typical_uncertain`` adds the experiment of weighing uncertainty by the
typicality of each slice among the pool (``lib.inference.uncertainty.typicality``; tried,
not served). Writes ``bench/results/<--name>.{json,md,png}`` (default ``active_learning``),
with what each strategy picked (limb ends, severities).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_networks import machine  # noqa: E402
from lib.data.phantoms.phantom import SEVERITIES, generate_phantom  # noqa: E402
from lib.inference.ranking import choose_image, pick_spread  # noqa: E402
from lib.inference.uncertainty import entropy_scores, slice_embeddings, typicality  # noqa: E402
from lib.models.cache import load_network  # noqa: E402
from lib.models.catalog import segmenter_name, weight_file  # noqa: E402
from lib.models.registry import ModelRegistry  # noqa: E402
from lib.paths import SHIPPED_WEIGHTS  # noqa: E402
from lib.training.incremental import RoundSettings, run_round  # noqa: E402
from lib.training.pretrain import PHANTOM_SPACING, SEED_BASE, PretrainPlan, phantom_slices, train_segmenter  # noqa: E402
from lib.training.slices import SliceSet  # noqa: E402
from lib.training.validation import segmenter_mean_dice  # noqa: E402
from lib.transforms.preprocess import volume_to_model_grid  # noqa: E402

RESULTS = ROOT / "bench" / "results"
THIGH_SEGMENTER = segmenter_name("thigh")
POOL_SEED_BASE = 9_000  # inside the training seed range, unused by the shipped weights (0-47)


def thigh_subjects(seeds, severity: str | None, slices: int, prefix: str) -> list[SliceSet]:
    """Thigh phantoms on the model grid, one ``SliceSet`` each; severity None: cycle all three."""
    out = []
    for i, seed in enumerate(seeds):
        phantom = generate_phantom("thigh", seed, n_slices=slices, severity=severity or SEVERITIES[i % len(SEVERITIES)],
                                   spacing=PHANTOM_SPACING)
        image, label = volume_to_model_grid(phantom.image, phantom.label, phantom.affine)
        out.append(SliceSet.from_volume(image, label, f"{prefix}_{seed}"))
    return out


def weak_model(out: Path, subjects: int, epochs: int) -> Path:
    """A thigh segmenter trained from scratch on ``subjects`` phantoms (train seeds 0...)."""
    plan = PretrainPlan(train_subjects=subjects, val_subjects=2, thigh_stages=f"{epochs}@0.002", steps_per_epoch=50)
    train = phantom_slices("thigh", "train", subjects, plan.slices_per_subject)[0]
    val = phantom_slices("thigh", "val", 2, plan.slices_per_subject)[0]
    train_segmenter("thigh", plan, train, val, out)
    return weight_file(out, THIGH_SEGMENTER)


def choose(strategy: str, live: Path, pool: list[SliceSet], done: list[set], n: int, rng: random.Random):
    """(subject, slices) the strategy asks for next."""
    if strategy == "random":
        subjects = [i for i in range(len(pool)) if len(done[i]) < len(pool[i])]
        i = rng.choice(subjects)
        free = [k for k in range(len(pool[i])) if k not in done[i]]
        rng.shuffle(free)
        return i, pick_spread([(0.0, k) for k in free], n)
    model, _ = load_network(str(live))
    candidates = []
    for i, subject in enumerate(pool):
        values = entropy_scores(model, subject.images).tolist()
        candidates.append((i, [{"slice": k, "score": v, "region": "thigh", "empty": False}
                               for k, v in enumerate(values)], done[i]))
    if strategy == "typical_uncertain":  # density over the pool's unannotated slices
        free = [(i, k) for i, subject in enumerate(pool) for k in range(len(subject)) if k not in done[i]]
        embeddings = {i: slice_embeddings(model, subject.images).numpy() for i, subject in enumerate(pool)}
        typical = typicality(np.stack([embeddings[i][k] for i, k in free]))
        for (i, k), t in zip(free, typical):
            candidates[i][1][k]["typicality"] = float(t)
    subject, slices, _ = choose_image(candidates, n)
    return subject, slices


def run_loop(strategy: str, seed: int, weak: Path, pool, held_out: SliceSet, rounds: int, n: int, settings) -> list:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        registry = ModelRegistry(tmp, THIGH_SEGMENTER, weak)
        done = [set() for _ in pool]
        curve = [(0, segmenter_mean_dice(load_network(str(weak))[0], held_out, "thigh"))]
        picks = []
        for r in range(rounds):
            subject, slices = choose(strategy, registry.current(), pool, done, n, rng)
            picks.append([int(subject), [int(k) for k in slices]])
            done[subject] |= set(slices)
            train = SliceSet.empty()
            for i, subject_slices in enumerate(pool):
                if done[i]:
                    keep = sorted(done[i])
                    train = train + SliceSet(subject_slices.images[keep], subject_slices.labels[keep],
                                             subject_slices.weights[keep], [subject_slices.sources[k] for k in keep])
            result = run_round(THIGH_SEGMENTER, registry, train, SliceSet.empty(),
                               RoundSettings(**{**settings, "seed": seed}))
            dice = segmenter_mean_dice(load_network(str(registry.current()))[0], held_out, "thigh")
            curve.append((sum(len(d) for d in done), dice))
            print(f"  {strategy} seed {seed} round {r + 1}: {curve[-1][0]} slices, Dice {dice:.4f} "
                  f"({result['status']})", flush=True)
    return curve, picks


def pick_profile(picks: list, pool: list[SliceSet], severity_of) -> dict:
    """What a strategy asked for: share of picks per pool severity, and share at the limb's ends
    (the outer quarter of the slices at either end, where muscle shapes are least typical)."""
    flat = [(severity_of(i), k, len(pool[i])) for run in picks for i, slices in run for k in slices]
    ends = sum(1 for _, k, n in flat if not n / 4 <= k + 0.5 < 3 * n / 4)
    return {"picks": len(flat), "at_limb_ends": round(ends / len(flat), 3),
            "severity": {s: round(sum(1 for v, _, _ in flat if v == s) / len(flat), 3) for s in SEVERITIES}}


def slices_to_reach(curve, level: float):
    return next((k for k, d in curve if d >= level), None)


def report(res: dict, stem: str = "active_learning") -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    curves = {s: np.array([[d for _, d in c] for c in runs]) for s, runs in res["curves"].items()}
    counts = [k for k, _ in next(iter(res["curves"].values()))[0]]
    lines = ["| annotated slices | " + " | ".join(f"{s} mean Dice (± sd)" for s in curves) + " |",
             "| ---: | " + " | ".join("---:" for _ in curves) + " |"]
    for j, k in enumerate(counts):
        lines.append(f"| {k} | " + " | ".join(f"{c[:, j].mean():.4f} ± {c[:, j].std():.4f}" for c in curves.values()) + " |")
    final_random = curves["random"][:, -1].mean()
    res["slices_for_random_final_dice"] = {"random": counts[-1]}
    lines.append("")
    for name in (s for s in curves if s != "random"):
        reach = slices_to_reach(list(zip(counts, curves[name].mean(0))), final_random)
        saving = None if reach is None else 1 - reach / counts[-1]
        res["slices_for_random_final_dice"][name] = {"slices": reach, "saving": saving}
        lines.append(f"Random reaches {final_random:.4f} with {counts[-1]} slices; {name} reaches it with "
                     f"{reach if reach is not None else 'more than ' + str(counts[-1])} slices"
                     + (f" ({saving:.0%} fewer)." if saving is not None else ".") + "  ")
    lines += ["", "| strategy | slices picked | at the limb's ends (outer quarters) | "
              + " | ".join(f"from {s} subjects" for s in SEVERITIES) + " |",
              "| --- | ---: | ---: | " + " | ".join("---:" for _ in SEVERITIES) + " |"]
    lines += [f"| {name} | {p['picks']} | {p['at_limb_ends']:.0%} | "
              + " | ".join(f"{p['severity'][s]:.0%}" for s in SEVERITIES) + " |" for name, p in res["pick_profiles"].items()]
    lines += ["", f"Machine: {res['machine']['cpu']}, {res['machine']['threads']} threads; {res['seconds']:.0f} s in all."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, c in curves.items():
        ax.errorbar(counts, c.mean(0), yerr=c.std(0), marker="o", capsize=3, label=name)
    ax.set_xlabel("annotated slices")
    ax.set_ylabel("held-out mean Dice (thigh)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=4, help="slices asked per round")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each incremental round")
    parser.add_argument("--steps", type=int, default=25, help="optimiser steps per epoch")
    parser.add_argument("--strategies", nargs="+", default=["uncertain_slices", "random"],
                        choices=("uncertain_slices", "typical_uncertain", "random"),
                        help="typical_uncertain: uncertainty x typicality (k-NN density of encoder features)")
    parser.add_argument("--start", choices=("weak", "shipped"), default="weak")
    parser.add_argument("--weak-subjects", type=int, default=2)
    parser.add_argument("--weak-epochs", type=int, default=14, help="epochs of 50 steps for the weak model")
    parser.add_argument("--pool", type=int, default=6, help="unlabelled subjects")
    parser.add_argument("--lr", type=float, default=None, help="round learning rate (weak: 5e-4, shipped: 2e-4)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="publish guard (weak: 1.0, i.e. off: the weak model was picked on the guard's own "
                             "validation phantoms, so every candidate looked worse; shipped: the default 0.005)")
    parser.add_argument("--name", default="active_learning", help="results file name under bench/results/")
    args = parser.parse_args()
    if "random" not in args.strategies:
        parser.error("--strategies must include random: the baseline every curve is compared with")
    start, weak_start = time.time(), args.start == "weak"
    with tempfile.TemporaryDirectory() as tmp:
        if weak_start:
            weak = weak_model(Path(tmp), args.weak_subjects, args.weak_epochs)
            pool = thigh_subjects(range(POOL_SEED_BASE, POOL_SEED_BASE + args.pool), None, 12, "pool")
            held_out = thigh_subjects(range(SEED_BASE["test"] + 50, SEED_BASE["test"] + 56), None, 8, "held_out")
        else:
            weak = weight_file(SHIPPED_WEIGHTS, THIGH_SEGMENTER)
            pool = thigh_subjects(range(POOL_SEED_BASE, POOL_SEED_BASE + args.pool), "severe", 12, "pool")
            held_out = thigh_subjects(range(SEED_BASE["test"] + 50, SEED_BASE["test"] + 53), "severe", 8, "held_out")
        held_out = sum(held_out[1:], held_out[0])
        settings = {"epochs": args.epochs, "steps_per_epoch": args.steps, "replay_subjects": args.weak_subjects,
                    "val_subjects": 2, "replay_share": 0.3,
                    "lr": args.lr or (5e-4 if weak_start else 2e-4),
                    "tolerance": args.tolerance if args.tolerance is not None else (1.0 if weak_start else 0.005)}
        curves = {name: [] for name in args.strategies}
        picks = {strategy: [] for strategy in curves}
        for seed in range(args.seeds):
            for strategy in curves:
                curve, chosen = run_loop(strategy, seed, weak, pool, held_out, args.rounds, args.n, settings)
                curves[strategy].append(curve)
                picks[strategy].append(chosen)
        severity_of = (lambda i: SEVERITIES[i % len(SEVERITIES)]) if weak_start else (lambda i: "severe")
        profiles = {strategy: pick_profile(runs, pool, severity_of) for strategy, runs in picks.items()}
    report({"machine": machine(), "start": args.start, "weak_subjects": args.weak_subjects,
            "weak_epochs": args.weak_epochs, "pool_subjects": args.pool, "rounds": args.rounds, "n": args.n,
            "round_settings": settings, "curves": curves, "picks": picks, "pick_profiles": profiles,
            "seconds": time.time() - start}, args.name)
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
