"""Slice-level active learning: which image, and which slice(s) of it, to correct next.

No strategy runs a network inside the request; each answers from what is cached in the
datastore, so *Next Sample* never waits for scoring.

- ``uncertain_slices`` ranks the images by the live model's per-slice uncertainty, computed
  beforehand by the background scoring task (``lib.tasks.scoring_slices``), and asks the engine
  for the image and slices it ranks first (``lib.inference.ranking``: spread along the limb,
  damped near annotated slices, never adjacent). Images scored by the live model come first
  (``"scored": true``); then images scored by an earlier model (``"scored": false, "stale":
  true``: a publish made their scores old, the background run is on it); then images no model
  has scored (``"scored": false``, their largest cross-sections spread along the limb, no
  region). Finding images of the last two kinds queues the background scoring.
- ``power_uncertain``: the same ranking with power noising (``choose_image`` with an rng):
  images and slices drawn in proportion to score^8 instead of taken best first (Kirsch et al.,
  TMLR 2023; ClaSP PE), so that requests in a row do not all land on the same outlying image.
- ``class_stratified``: class-stratified querying with power noising (ClaSP PE): one slice per
  randomly drawn muscle, where that muscle's share of the uncertainty is highest
  (``choose_by_class``), so that small muscles get their share of the corrections.
- ``random``: a random image, random unannotated slices through the limb (each equally likely).
- ``foreground_random``: a random image, slices drawn in proportion to their tissue
  (foreground) area, nnActive's foreground-aware random baseline (``draw_foreground``).

All answer MONAI Label's fields (``id``; the app adds ``path``) plus ``slice``, ``slices``,
``strategy`` and record the suggestion in the image's info (``suggested_slices``) for viewers.
"""

from __future__ import annotations

import random
import time

import numpy as np
from monailabel.interfaces.tasks.strategy import Strategy

from lib.annotations import annotated_slices
from lib.errors import UserError
from lib.inference.ranking import choose_by_class, choose_image, draw_foreground, pick_spread, tissue_scores
from lib.inference.uncertainty import MIN_BODY_FRACTION
from lib.labels import REGIONS
from lib.tasks.background import queue_scoring
from lib.tasks.scoring_slices import live_version, score_state, tissue_fractions
from lib.transforms.geometry import axial_axis
from lib.transforms.loading import load_volume

MAX_N = 20
# What the viewers preselect (the first strategy /info lists). foreground_random had the highest
# held-out Dice averaged over every budget of `bench active_learning` (new site, 3 seeds) and was
# never below random by more than one sd; no model-driven strategy beat it by more than the noise
# (README, "Which slices to correct next").
DEFAULT_STRATEGY = "foreground_random"
SCORING_METHOD = "slice_uncertainty"
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


def _answer(datastore, image_id: str, slices: list[int], strategy: str, **extra) -> dict:
    datastore.update_image_info(image_id, {"suggested_slices": {
        "slices": slices, "strategy": strategy, "ts": int(time.time()),
        **{k: extra[k] for k in ("scored", "stale") if k in extra}}})
    return {"id": image_id, "name": image_id, "slice": slices[0], "slices": slices, "strategy": strategy, **extra}


class UncertainSlices(Strategy):
    """The most uncertain unannotated slices of the live model, spread out (see module doc).

    Args:
        paths: network name -> ``[shipped, live]`` weight files (the ``muscle`` config's).
    """

    name = "uncertain_slices"

    def __init__(self, paths: dict[str, list[str]], description: str | None = None):
        super().__init__(description or (
            "Slice-level: the image and slices the live model is least sure of (Monte-Carlo dropout entropy of the "
            "segmenter + the classifier's doubt), spread along the limb, never next to annotated slices. Answers from "
            "scores the background task slice_uncertainty cached per model version; never runs a network in the "
            "request. Images not scored by the live model come after scored ones, marked scored=false (stale=true: "
            "ranked by an earlier model's scores; else their largest cross-sections, no region). Params n (1-20), "
            "region (thigh or leg)"))
        self.paths = paths
        self.noise = None  # a numpy Generator: power-noised draws (PowerUncertainSlices)

    def choose(self, candidates, n: int, region: str | None) -> tuple[str, list[int], float, dict] | None:
        """(image, slices, value, extra answer fields) among ``(id, scores, annotated)``."""
        best = choose_image(candidates, n, region, self.noise)
        return None if best is None else (*best, {})

    def __call__(self, request, datastore):
        n, region = parse_params(request)
        _, version = live_version(self.paths)  # hashed only when a weight file changed
        tiers: dict[str, list] = {"live": [], "stale": [], "none": []}
        for image_id in datastore.list_images():
            state, scores = score_state(datastore, image_id, version)
            tiers[state].append((image_id, scores))
        waiting = len(tiers["stale"]) + len(tiers["none"])
        if waiting:  # the background run picks them up; none queued twice (see lib.tasks.background)
            queue_scoring(SCORING_METHOD, f"{waiting} images not scored by the live model", behind_running=False)
        for state in ("live", "stale"):
            scores = dict(tiers[state])
            best = self.choose([(i, s, annotated(datastore, i)) for i, s in tiers[state]], n, region)
            if best is not None:
                image_id, slices, value, extra = best
                by_slice = {s["slice"]: s for s in scores[image_id]}
                return _answer(datastore, image_id, slices, self.name, score=round(value, 5),
                               region=by_slice[slices[0]]["region"], scored=state == "live", stale=state == "stale",
                               scores={str(k): by_slice[k]["score"] for k in slices}, unscored_images=waiting, **extra)
        if region is not None:
            return {}  # an unscored image has no region yet
        unscored = sorted((len(annotated(datastore, i)), i) for i, _ in tiers["none"])
        for _, image_id in unscored:  # the least annotated first
            done = annotated(datastore, image_id)
            fractions = tissue_fractions(datastore, image_id)
            best = choose_image([(image_id, tissue_scores(fractions, MIN_BODY_FRACTION), done)], n)
            if best is not None:
                return _answer(datastore, image_id, best[1], self.name, score=None, region=None,
                               scored=False, stale=False, unscored_images=waiting)
        return {}


class PowerUncertainSlices(UncertainSlices):
    """``uncertain_slices`` with power noising: the image and slices are drawn in proportion to
    their score^8 (``lib.inference.ranking.power_noised``) rather than taken best first.

    Args:
        paths: as ``UncertainSlices``; seed: of the draws (None: a different sequence each start);
        description: for ``/info`` (subclasses).
    """

    name = "power_uncertain"

    def __init__(self, paths: dict[str, list[str]], seed: int | None = None, description: str | None = None):
        super().__init__(paths, description or (
            "Slice-level, uncertainty with power noising (ClaSP PE; Kirsch et al. 2023): as uncertain_slices (cached "
            "MC-dropout scores, stratified along the limb, damped near annotated slices, never runs a network in the "
            "request), but the image and slices are drawn in proportion to score^8 instead of taken best first, so "
            "that successive requests spread over the uncertain images rather than all landing on one outlier. "
            "Params n (1-20), region (thigh or leg)"))
        self.noise = np.random.default_rng(seed)


class ClassStratifiedSlices(PowerUncertainSlices):
    """Class-stratified uncertainty with power noising (ClaSP PE): for ``n`` slices, ``n`` muscles
    drawn at random, and for each the slice where that muscle's share of the live model's
    uncertainty is highest, power-noised (``lib.inference.ranking.choose_by_class``). The answer
    names the muscle each slice stands for (``muscles``).

    Args:
        paths: as ``UncertainSlices``; seed: of the draws (None: a different sequence each start).
    """

    name = "class_stratified"

    def __init__(self, paths: dict[str, list[str]], seed: int | None = None):
        super().__init__(paths, seed, (
            "Slice-level, class-stratified uncertainty with power noising (ClaSP PE): for n slices, n muscles drawn at "
            "random (the region's, or both regions'), and for each the slice where the live model's MC-dropout "
            "entropy weighted by that muscle's probability is highest, drawn in proportion to score^8; so small "
            "muscles are asked for as often as large ones. Answers name the muscle of each slice (muscles). Cached "
            "scores only, never runs a network in the request; images not scored by the live model as "
            "uncertain_slices. Params n (1-20), region (thigh or leg)"))

    def choose(self, candidates, n: int, region: str | None):
        best = choose_by_class(candidates, n, self.noise, region)
        return None if best is None else (*best[:3], {"muscles": best[3]})


class RandomSlices(Strategy):
    """Slice-level random baseline: a random image with unannotated tissue slices, random slices.

    Args:
        seed: of the draws (None: a different sequence each start).
    """

    name = "random"

    def __init__(self, seed: int | None = None, description: str | None = None):
        super().__init__(description or (
            "Slice-level random baseline: a random image, then random unannotated slices through the limb (each "
            "slice with any tissue equally likely, no two adjacent); no model involved. Param n"))
        self.rng = random.Random(seed)

    def pick(self, fractions: list[float], done: set[int], n: int) -> list[int]:
        free = [k for k, f in enumerate(fractions) if f >= MIN_BODY_FRACTION and k not in done]
        self.rng.shuffle(free)
        return pick_spread([(0.0, k) for k in free], n)

    def __call__(self, request, datastore):
        n, region = parse_params(request)
        if region is not None:
            raise UserError(f"{self.name} does not route by region; use uncertain_slices for region")
        images = list(datastore.list_images())
        self.rng.shuffle(images)
        for image_id in images:
            slices = self.pick(tissue_fractions(datastore, image_id), annotated(datastore, image_id), n)
            if slices:
                return _answer(datastore, image_id, slices, self.name)
        return {}


class ForegroundRandomSlices(RandomSlices):
    """nnActive's foreground-aware random baseline at slice level: a random image, then slices
    drawn in proportion to their tissue area (Lüth et al., nnActive, 2025: no active learning
    method beat it reliably on 3D segmentation)."""

    name = "foreground_random"

    def __init__(self, seed: int | None = None):
        super().__init__(seed, (
            "Foreground-aware random (nnActive's baseline): a random image, then unannotated slices drawn in "
            "proportion to their tissue (foreground) area, as if a random foreground voxel picked each slice; "
            "never an empty slice, no two adjacent; no model involved. Param n"))

    def pick(self, fractions: list[float], done: set[int], n: int) -> list[int]:
        return draw_foreground(fractions, done, n, self.rng, MIN_BODY_FRACTION)
