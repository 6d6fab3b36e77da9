"""Tables of an evaluation, pooled from the per-(slice, muscle, side) rows of ``study_scores``.

Dice of a muscle in a group is pooled over the group's slices (2·Σ∩ / (Σpred + Σtruth)), as
the validation scores of training are; a region's Dice is the mean of its muscles' Dice, as in
the paper's tables (SPEC §6). Surface distances are means over the rows where both masks hold
the muscle; a muscle that is in the truth but not predicted counts as *missed*.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from lib.labels import MUSCLES, REGIONS

PAPER = {  # SPEC §6: validation and test Dice of the published networks
    "thigh": {"validation": 0.8894, "mild": 0.88, "severe": 0.87},
    "leg": {"validation": 0.9336, "mild": 0.93, "severe": 0.93},
}
DISTANCE_BANDS = (("annotated (0)", 0, 0), ("near (1-2)", 1, 2), ("far (3+)", 3, math.inf))


def pooled_dice(rows) -> float:
    inter = sum(r["n_inter"] for r in rows)
    total = sum(r["n_pred"] + r["n_truth"] for r in rows)
    return 2 * inter / total if total else float("nan")


def region_dice(rows, region: str) -> tuple[float, int]:
    """Mean over the region's muscles (those in the truth) of pooled Dice, and the slice count."""
    rows = [r for r in rows if r["region"] == region]
    truth_muscles = {r["muscle"] for r in rows if r["n_truth"]}
    scores = [pooled_dice([r for r in rows if r["muscle"] == m]) for m in truth_muscles]
    slices = {(r["study"], r["slice"]) for r in rows if r["n_truth"]}
    return (float(np.mean(scores)) if scores else float("nan")), len(slices)


def _group(rows, key) -> dict:
    groups = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return dict(sorted(groups.items()))


def _finite_mean(values) -> float:
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def per_muscle(rows) -> list[dict]:
    """One line per muscle of both regions: Dice (both sides, right, left), HD95, MSD, misses."""
    out = []
    for region in REGIONS:
        for muscle in MUSCLES[region]:
            mine = [r for r in rows if r["muscle"] == muscle]
            truth = [r for r in mine if r["n_truth"]]
            out.append({
                "region": region, "muscle": muscle, "slices": len({(r["study"], r["slice"]) for r in truth}),
                "dice": pooled_dice(mine),
                **{f"dice_{side}": pooled_dice([r for r in mine if r["side"] == side]) for side in ("right", "left")},
                "hd95_mm": _finite_mean(r["hd95_mm"] for r in mine),
                "msd_mm": _finite_mean(r["msd_mm"] for r in mine),
                "missed": sum(1 for r in truth if r["n_pred"] == 0),
                "invented": sum(1 for r in mine if r["n_truth"] == 0),
            })
    return out


def grouped(rows, key, name: str) -> list[dict]:
    """Region Dice of every group of rows that ``key`` forms (subject, severity, side ...)."""
    out = []
    for group, members in _group(rows, key).items():
        for region in REGIONS:
            dice, slices = region_dice(members, region)
            if slices:
                out.append({name: group, "region": region, "dice": dice, "slices": slices})
    return out


def distance_band(distance: int) -> str:
    return next((name for name, lo, hi in DISTANCE_BANDS if lo <= distance <= hi), "unknown")


def confusion(slices) -> dict:
    """Classifier confusion matrix over annotated slices whose truth has a region."""
    matrix = {t: {p: 0 for p in REGIONS} for t in REGIONS}
    for s in slices:
        if s["truth_region"] in REGIONS and s["predicted_region"] in REGIONS:
            matrix[s["truth_region"]][s["predicted_region"]] += 1
    total = sum(sum(row.values()) for row in matrix.values())
    correct = sum(matrix[r][r] for r in REGIONS)
    return {"matrix": matrix, "slices": total, "accuracy": correct / total if total else float("nan")}


def summarise(rows, slices, unknown: dict, skipped: dict) -> dict:
    """Everything the report shows, as plain JSON-able data."""
    headline = {region: dict(zip(("dice", "slices"), region_dice(rows, region))) for region in REGIONS}
    return {
        "headline": headline,
        "paper": PAPER,
        "classifier": confusion(slices),
        "muscles": per_muscle(rows),
        "sides": grouped(rows, lambda r: r["side"], "side"),
        "subjects": grouped(rows, lambda r: r["subject"], "subject"),
        "per_study": grouped(rows, lambda r: r["study"], "study"),
        "severity": grouped([r for r in rows if r["severity"]], lambda r: r["severity"], "severity"),
        "distance": grouped(rows, lambda r: distance_band(r["distance"]), "band"),
        "unknown_values": unknown,
        "skipped": skipped,
        "studies": len({s["study"] for s in slices}),
        "slices": len(slices),
    }
