"""Which region each slice is, and which segmenter it goes to (SPEC §1: the tree's inner node).

A real volume is thigh, leg, or leg below thigh with one change at the knee. So the volume is
routed as a whole: the split of its slices, ordered from foot to head (the model grid's z), into
leg below and thigh above that is most likely under the classifier's per-slice probabilities,
with a penalty (``CHANGE_PENALTY``) for a change inside the volume, so that a short run of
confident but wrong slices cannot cut a leg in two. A sliding majority (the earlier
``region_window``) let a run of 24 wrong slices through on a real calf. Slices where the
classifier disagrees with the split are listed in ``disagreeing_slices``. Slices with no limb
(``nan`` probability: a slab's faded end, air) are listed in ``empty_slices`` and go to no
segmenter; in the answer they still carry the region of the part of the volume they lie in and
a probability of 0.5 (the classifier saw nothing), so that every slice has a region a client can
count, as before limbs were found.

A request may force the region (``region`` = "thigh" / "leg"): every slice then goes to that
region's segmenter and the classifier does not run.
"""

from __future__ import annotations

import numpy as np

from lib.labels import REGIONS

CHANGE_PENALTY = 3.0  # nats: a change inside the volume must be worth about 20:1 summed over slices
PROB_FLOOR = 0.02  # no single slice counts for more than 49:1


def monotone_split(p_thigh, penalty: float = CHANGE_PENALTY, floor: float = PROB_FLOOR) -> int:
    """The best split ``k`` (0..n) of slices ordered foot to head: ``[0, k)`` leg, ``[k, n)`` thigh.

    Maximises ``sum(log P(leg) below k) + sum(log P(thigh) from k) - penalty * (0 < k < n)``.
    """
    p = np.clip(np.asarray(p_thigh, np.float64), floor, 1 - floor)
    n = len(p)
    below = np.concatenate([[0.0], np.cumsum(np.log1p(-p))])
    above = np.concatenate([np.cumsum(np.log(p)[::-1])[::-1], [0.0]])
    score = below + above
    score[1:n] -= penalty
    return int(np.argmax(score))


def split_regions(p_thigh: np.ndarray, slices: list[int]) -> np.ndarray:
    """Region index (0 thigh, 1 leg, -1 none) of each of ``slices`` (any order), from their
    P(thigh) (``nan`` = no limb). The split runs over the slices with a limb, in z order."""
    p_thigh = np.asarray(p_thigh, np.float64)
    out = np.full(len(slices), -1)
    order = np.argsort(slices, kind="stable")
    anatomy = order[~np.isnan(p_thigh[order])]
    if anatomy.size:
        k = monotone_split(p_thigh[anatomy])
        out[anatomy] = np.where(np.arange(anatomy.size) < k, REGIONS.index("leg"), REGIONS.index("thigh"))
    return out


def regions_by_position(regions: np.ndarray, slices: list[int]) -> np.ndarray:
    """``regions`` with each slice without a limb (-1) given the region of the nearest slice with
    one along z (the part of the volume it lies in); all -1 stays -1 where no slice has a limb."""
    known = np.flatnonzero(regions >= 0)
    if not known.size:
        return regions
    z = np.asarray(slices)
    nearest = known[np.abs(z[:, None] - z[known][None, :]).argmin(1)]
    return np.where(regions >= 0, regions, regions[nearest])


def region_summary(p_thigh: np.ndarray, slices: list[int]) -> dict:
    """Per-slice region and the probability the classifier gave it, the volume's region (the one
    with more slices), the slices where the classifier disagrees with the split, and MONAI
    Label's ``prediction``."""
    p_thigh = np.asarray(p_thigh, np.float64)
    regions = split_regions(p_thigh, slices)
    probabilities = np.stack([p_thigh, 1 - p_thigh], 1)
    counts = np.bincount(regions[regions >= 0], minlength=len(REGIONS))
    found = ~np.isnan(p_thigh)
    own = np.where(p_thigh >= 0.5, 0, 1)
    in_z = [i for i in np.argsort(slices, kind="stable") if regions[i] >= 0]
    change = [int(slices[b]) for a, b in zip(in_z, in_z[1:]) if regions[a] != regions[b]]
    return {
        "region": REGIONS[int(counts.argmax())] if counts.any() else None,
        "slice_counts": {r: int(c) for r, c in zip(REGIONS, counts)},
        "change_at_slice": change[0] if change else None,
        "disagreeing_slices": [int(k) for k, r, o, f in zip(slices, regions, own, found) if f and r != o],
        "empty_slices": [int(k) for k, f in zip(slices, found) if not f],
        "slices": [{"slice": int(k), "region": REGIONS[place] if place >= 0 else None,
                    "probability": round(float(p[r]), 4) if r >= 0 else 0.5}
                   for k, r, p, place in zip(slices, regions, probabilities, regions_by_position(regions, slices))],
        "prediction": [{"idx": i, "label": name,
                        "score": round(float(np.nanmean(probabilities[:, i])), 4) if found.any() else 0.0}
                       for i, name in enumerate(REGIONS)],
    }


def route(slices: list[int], region: str = "auto", p_thigh: np.ndarray | None = None) -> tuple[dict, dict[str, list[int]]]:
    """The region summary and the slices each region's segmenter gets.

    Args:
        slices: the slice indices to route.
        region: "auto" (the classifier decides) or a region every slice goes to.
        p_thigh: the classifier's P(thigh) per slice (``nan``: no limb); only for "auto".
    """
    if region == "auto":
        summary = region_summary(p_thigh, slices)
        empty = set(summary["empty_slices"])
        return summary, {r: [s["slice"] for s in summary["slices"] if s["region"] == r and s["slice"] not in empty]
                         for r in REGIONS}
    return {"region": region, "forced": True}, {r: list(slices) if r == region else [] for r in REGIONS}
