"""Slice-level active learning: which image, and which slice(s) of it, to correct next.

``uncertain_slices`` ranks every unannotated, non-empty slice by the live model's
uncertainty (``lib.tasks.slice_uncertainty``), damped near slices already annotated (their
neighbours look alike: the damping grows back over ``SPREAD`` slices) and in images that
already have many annotated slices (spreads work over images). For ``n`` slices it cuts the
image's candidate slices into ``n`` equal stretches along the limb and takes the most
uncertain slice of each (``pick_stratified``): muscle shapes change from hip to knee, and the
top-``n`` slices by uncertainty alone bunch at the atypical ends, which made fine-tuning on
them *worse* than on random slices. The image whose picks score best wins; no two picks are
adjacent. ``random`` is the slice-level baseline: a random image, random non-adjacent
slices. Both answer MONAI Label's fields (``id``; the app adds ``path``) plus ``slice``,
``slices``, ``score``, ``region``, and record the suggestion in the image's info
(``suggested_slices``) for viewers.
"""

from __future__ import annotations

import random
import time

import numpy as np
from monailabel.interfaces.tasks.strategy import Strategy

from lib.data.annotations import annotated_slices
from lib.errors import UserError
from lib.labels import REGIONS
from lib.models.store import live_weights
from lib.tasks.scoring_slices import image_scores
from lib.tasks.slice_uncertainty import MIN_BODY_FRACTION, body_fractions
from lib.transforms.geometry import axial_axis
from lib.transforms.loading import load_volume

SPREAD = 3  # slices over which an annotated slice damps its neighbours' scores
IMAGE_DAMPING = 0.5  # each annotated slice of an image divides its scores by (1 + this)
MAX_N = 20
TYPICALITY_POWER = 1.0  # uncertainty x typicality^this, where scores carry a typicality
KNOWN_PARAMS = {"n", "region", "strategy", "client_id", "label_tag", "labels", "model", "device", "result_extension",
                "result_dtype", "result_compress"}


def parse_params(request: dict) -> tuple[int, str | None]:
    """(n, region) from the request; a 4xx-worthy ``UserError`` for wrong values or unknown keys."""
    unknown = sorted(k for k in request if k not in KNOWN_PARAMS and not k.startswith("_"))
    if unknown:
        raise UserError(f"unknown strategy params {unknown}: expected n (1-{MAX_N}) and region (thigh or leg)")
    try:
        n = int(request.get("n", 1))
    except (TypeError, ValueError):
        raise UserError(f"strategy param n must be an integer, got {request.get('n')!r}") from None
    if not 1 <= n <= MAX_N:
        raise UserError(f"strategy param n must be 1 to {MAX_N}, got {n}")
    region = request.get("region") or None
    if region not in (None, *REGIONS):
        raise UserError(f"strategy param region must be thigh or leg, got {region!r}")
    return n, region


def annotated(datastore, image_id: str) -> set[int]:
    """Slices of the image already corrected (its ``final`` label), none if it has no label."""
    if "final" not in datastore.get_labels_by_image_id(image_id):
        return set()
    listed = (datastore.get_label_info(image_id, "final") or {}).get("annotated_slices")
    if listed is not None:
        return {int(k) for k in listed}
    label = load_volume(datastore.get_label_uri(image_id, "final"), dtype=np.uint8)
    return set(annotated_slices(None, label[0].numpy(), axial_axis(label.affine.numpy())))


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


def choose_image(candidates, n: int, region: str | None = None):
    """The image to annotate next among ``candidates`` = ``(key, slice scores, annotated set)``.

    Returns ``(key, slices, value)`` for the image whose stratified picks have the
    highest summed adjusted score (divided by ``n``: an image that can offer fewer slices
    counts its missing ones as zero), or None when no image has a candidate slice.
    """
    best = None
    for key, scores, done in candidates:
        ranked = rank_slices(scores, done, region)
        slices = pick_stratified(ranked, n)
        if not slices:
            continue
        adjusted = dict((k, v) for v, k in ranked)
        value = sum(adjusted[k] for k in slices) / n
        if best is None or value > best[2]:
            best = (key, slices, value)
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


def _answer(datastore, image_id: str, slices: list[int], strategy: str, **extra) -> dict:
    datastore.update_image_info(image_id, {"suggested_slices": {"slices": slices, "strategy": strategy,
                                                                "ts": int(time.time())}})
    return {"id": image_id, "name": image_id, "slice": slices[0], "slices": slices, "strategy": strategy, **extra}


class UncertainSlices(Strategy):
    """The most uncertain unannotated slices of the live model, spread out (see module doc).

    Args:
        paths: network name -> ``[shipped, live]`` weight files (the ``muscle`` config's).
    """

    def __init__(self, paths: dict[str, list[str]]):
        super().__init__("Slice-level: the live model's most uncertain unannotated slices (MC dropout), "
                         "spread over the volume and over images; params n, region")
        self.paths = paths

    def __call__(self, request, datastore):
        n, region = parse_params(request)
        live, version = live_weights(self.paths)  # hashed once per request, not per image
        scores = {image_id: image_scores(datastore, image_id, live, version) for image_id in datastore.list_images()}
        best = choose_image(((i, scores[i], annotated(datastore, i)) for i in scores), n, region)
        if best is None:
            return {}
        image_id, slices, value = best
        by_slice = {s["slice"]: s for s in scores[image_id]}
        return _answer(datastore, image_id, slices, "uncertain_slices", score=round(value, 5),
                       region=by_slice[slices[0]]["region"],
                       scores={str(k): by_slice[k]["score"] for k in slices})


class RandomSlices(Strategy):
    """Slice-level random baseline: a random image with unannotated tissue slices, random slices."""

    def __init__(self, seed: int | None = None):
        super().__init__("Slice-level random: a random image and random unannotated, non-empty slices; param n")
        self.rng = random.Random(seed)

    def __call__(self, request, datastore):
        n, region = parse_params(request)
        if region is not None:
            raise UserError("random does not route by region; use uncertain_slices for region")
        images = list(datastore.list_images())
        self.rng.shuffle(images)
        for image_id in images:
            done = annotated(datastore, image_id)
            fractions = body_fractions(datastore.get_image_uri(image_id))
            free = [k for k, f in enumerate(fractions) if f >= MIN_BODY_FRACTION and k not in done]
            if free:
                self.rng.shuffle(free)
                return _answer(datastore, image_id, pick_spread([(0.0, k) for k in free], n), "random")
        return {}
