"""Slice-level active learning: which image, and which slice(s) of it, to correct next.

``uncertain_slices`` asks the engine for the live model's per-slice uncertainty of every image
(cached in the datastore, ``lib.tasks.scoring_slices``) and for the image and slices it ranks
first (``lib.inference.ranking``: spread along the limb, damped near annotated slices, never
adjacent). ``random`` is the slice-level baseline: a random image, random non-adjacent
slices. Both answer MONAI Label's fields (``id``; the app adds ``path``) plus ``slice``,
``slices``, ``score``, ``region``, and record the suggestion in the image's info
(``suggested_slices``) for viewers.
"""

from __future__ import annotations

import random
import time

import numpy as np
from monailabel.interfaces.tasks.strategy import Strategy

from lib.annotations import annotated_slices
from lib.errors import UserError
from lib.inference.ranking import choose_image, pick_spread
from lib.inference.uncertainty import MIN_BODY_FRACTION, body_fractions
from lib.labels import REGIONS
from lib.models.store import live_weights
from lib.tasks.scoring_slices import image_scores
from lib.transforms.geometry import axial_axis
from lib.transforms.loading import load_volume

MAX_N = 20
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
