"""Which slices of which image to correct next, from per-slice uncertainty scores.

Every unannotated, non-empty slice is ranked by the live model's uncertainty
(``lib.inference.uncertainty``), damped near slices already annotated (their neighbours look
alike: the damping grows back over ``SPREAD`` slices) and in images that already have many
annotated slices (spreads work over images). For ``n`` slices the image's candidate slices are
cut into ``n`` equal stretches along the limb and the most uncertain slice of each is taken
(``pick_stratified``): muscle shapes change from hip to knee, and the top-``n`` slices by
uncertainty alone bunch at the atypical ends, which made fine-tuning on them *worse* than on
random slices. The image whose picks score best wins; no two picks are adjacent.

Without scores, no network: ``tissue_scores`` stands in for an image no model has scored yet
(its largest cross-sections), ``draw_foreground`` draws slices in proportion to their tissue
area (the foreground-aware random baseline). ``choose_by_class`` stratifies over muscles
instead of along the limb: one slice per randomly drawn muscle, by that muscle's uncertainty.
"""

from __future__ import annotations

import numpy as np

SPREAD = 3  # slices over which an annotated slice damps its neighbours' scores
IMAGE_DAMPING = 0.5  # each annotated slice of an image divides its scores by (1 + this)
TYPICALITY_POWER = 1.0  # uncertainty x typicality^this, where scores carry a typicality
# Power acquisition draws in proportion to score^this. Kirsch et al.'s default of 1 suits scores
# spanning orders of magnitude; our mean entropies span less than a factor of 2 across a pool
# (0.45-0.79 for the shipped thigh segmenter on 48 fat-dark slices), where 1 is almost uniform
# random. With 8, a slice 1.7 times as uncertain is drawn about 70 times as often.
POWER_BETA = 8.0


def pick_spread(ranked: list[tuple[float, int]], n: int) -> list[int]:
    """Up to ``n`` slices from ``(score, slice)`` best first, no two adjacent."""
    chosen: list[int] = []
    for _, k in ranked:
        if all(abs(k - c) > 1 for c in chosen):
            chosen.append(k)
        if len(chosen) == n:
            break
    return chosen


def pick_stratified(ranked: list[tuple[float, int]], n: int) -> list[int]:
    """Up to ``n`` slices from ``(score, slice)`` best first: the span of the candidates cut into
    ``n`` equal stretches, the best slice of each, no two adjacent; a stretch with no usable
    candidate leaves its place to the best remaining slice anywhere. Best first."""
    if not ranked:
        return []
    ks = [k for _, k in ranked]
    edges = np.linspace(min(ks), max(ks) + 1, n + 1)
    chosen: list[int] = []
    taken: set[int] = set()
    for _, k in ranked:
        stretch = int(np.searchsorted(edges, k, side="right")) - 1
        if stretch not in taken and all(abs(k - c) > 1 for c in chosen):
            chosen.append(k)
            taken.add(stretch)
    for k in ks:  # top up from the best remaining slices
        if len(chosen) == n:
            break
        if all(abs(k - c) > 1 for c in chosen):
            chosen.append(k)
    order = {k: i for i, k in enumerate(ks)}
    return sorted(chosen, key=order.get)


def power_noised(ranked: list[tuple[float, int]], rng, beta: float = POWER_BETA) -> list[tuple[float, int]]:
    """``ranked`` with each score times ``exp(G / beta)``, ``G`` ~ Gumbel(0, 1), best first again:
    the top of it is a draw in proportion to ``score ** beta`` (see module doc)."""
    if not ranked:
        return ranked
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, len(ranked))))
    return sorted(((v * float(np.exp(g / beta)), k) for (v, k), g in zip(ranked, gumbel)), reverse=True)


def choose_image(candidates, n: int, region: str | None = None, rng=None):
    """The image to annotate next among ``candidates`` = ``(key, slice scores, annotated set)``.

    Returns ``(key, slices, value)`` for the image whose stratified picks have the
    highest summed adjusted score (divided by ``n``: an image that can offer fewer slices
    counts its missing ones as zero), or None when no image has a candidate slice. With a
    numpy ``rng`` the scores are power-noised first (``power_noised``), images and slices alike.
    """
    best = None
    for key, scores, done in candidates:
        ranked = rank_slices(scores, done, region)
        if rng is not None:
            ranked = power_noised(ranked, rng)
        slices = pick_stratified(ranked, n)
        if not slices:
            continue
        adjusted = dict((k, v) for v, k in ranked)
        value = sum(adjusted[k] for k in slices) / n
        if best is None or value > best[2]:
            best = (key, slices, value)
    return best


def choose_by_class(candidates, n: int, rng, region: str | None = None):
    """Class-stratified choice with power noising (ClaSP PE, 2026, at slice level): ``n`` muscles
    drawn at random without replacement (all of them in turn when ``n`` exceeds their number),
    one slice per drawn muscle, ranked by that muscle's share of the uncertainty (the slice
    scores' ``classes``), damped as ``rank_slices`` and power-noised. Each muscle gets an equal
    share of the budget on average, so the small ones are asked for as often as the large.
    A drawn muscle an image does not show leaves its place to the image's best remaining slice
    by plain score, and adds nothing to the image's value.

    ``candidates`` as ``choose_image``. Returns ``(key, slices, value, muscles)`` for the image
    with the highest summed adjusted class score over ``n``, ``muscles`` naming what each slice
    was picked for (None: topped up); None when no image has a candidate slice. Images whose
    scores carry no ``classes`` (scored before these were kept) come only when no image with
    them has a candidate, ranked as ``choose_image`` with power noising."""
    with_classes, without = [], []
    for candidate in candidates:
        (with_classes if any(s.get("classes") for s in candidate[1]) else without).append(candidate)
    muscles = sorted({m for _, scores, _ in with_classes for s in scores
                      if region is None or s["region"] == region for m in s.get("classes") or {}})
    drawn = [str(m) for m in rng.permutation(muscles)] * (n // max(1, len(muscles)) + 1)
    best = None
    for key, scores, done in with_classes:
        chosen, picked_for, value = [], [], 0.0
        for muscle in drawn[:n]:
            per_class = [{**s, "score": s["classes"][muscle]} for s in scores if muscle in (s.get("classes") or {})]
            for v, k in power_noised(rank_slices(per_class, done, region), rng):
                if v > 0 and all(abs(k - c) > 1 for c in chosen):
                    chosen.append(k)
                    picked_for.append(muscle)
                    value += v
                    break
        for _, k in power_noised(rank_slices(scores, done, region), rng):  # top up by plain score
            if len(chosen) >= n:
                break
            if all(abs(k - c) > 1 for c in chosen):
                chosen.append(k)
                picked_for.append(None)
        if chosen and (best is None or value / n > best[2]):
            best = (key, chosen, value / n, picked_for)
    if best is None:
        plain = choose_image(without, n, region, rng)
        best = None if plain is None else (*plain, [None] * len(plain[1]))
    return best


def rank_slices(scores: list[dict], done: set[int], region: str | None = None) -> list[tuple[float, int]]:
    """``(adjusted score, slice)`` of an image's candidate slices, best first (see module doc)."""
    damping = 1.0 / (1.0 + IMAGE_DAMPING * len(done))
    ranked = []
    for s in scores:
        if s["empty"] or s["slice"] in done or (region and s["region"] != region):
            continue
        distance = min((abs(s["slice"] - k) for k in done), default=SPREAD)
        value = s["score"] * s.get("typicality", 1.0) ** TYPICALITY_POWER
        ranked.append((value * damping * min(1.0, distance / SPREAD), s["slice"]))
    return sorted(ranked, reverse=True)


def tissue_scores(fractions: list[float], min_fraction: float) -> list[dict]:
    """Stand-in slice scores for an image no model has scored yet: each slice's share of tissue.

    Ranked like real scores (``choose_image``), they give the largest cross-section of each
    stretch of the limb; ``region`` is unknown (no classifier ran), so a request for one region
    never gets such an image.
    """
    return [{"slice": k, "score": round(float(f), 5), "region": None, "empty": bool(f < min_fraction)}
            for k, f in enumerate(fractions)]


def draw_foreground(fractions: list[float], done: set[int], n: int, rng, min_fraction: float) -> list[int]:
    """Up to ``n`` slices drawn at random in proportion to their tissue (foreground) area, as if
    each were picked by a random foreground voxel (nnActive's foreground-aware random, at slice
    level): never an empty or annotated slice, no two adjacent. In the order drawn."""
    candidates = {k: float(f) for k, f in enumerate(fractions) if f >= min_fraction and k not in done}
    chosen: list[int] = []
    while candidates and len(chosen) < n:
        keys = list(candidates)
        k = rng.choices(keys, weights=[candidates[j] for j in keys])[0]
        chosen.append(k)
        for j in (k - 1, k, k + 1):
            candidates.pop(j, None)
    return chosen
