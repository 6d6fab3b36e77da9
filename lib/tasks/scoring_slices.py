"""MONAI Label scoring method ``slice_uncertainty``: per-slice scores of every image, cached.

``POST /scoring/slice_uncertainty`` runs it in MONAI Label's background process (inference
is not blocked); a train round that publishes a model asks for it again. Scores go into
each image's datastore info under ``slice_scores``, tagged with the live weights' version,
so an image is scored again only when a network changed.
"""

from __future__ import annotations

import logging
import time

from monailabel.interfaces.tasks.scoring import ScoringMethod

from lib.inference.uncertainty import score_volume
from lib.models.store import live_weights

logger = logging.getLogger(__name__)

INFO_KEY = "slice_scores"


def cached_scores(datastore, image_id: str, version: str) -> list[dict] | None:
    cached = (datastore.get_image_info(image_id) or {}).get(INFO_KEY) or {}
    return cached.get("slices") if cached.get("model") == version else None


def image_scores(datastore, image_id: str, live: dict[str, str], version: str) -> list[dict]:
    """The image's slice scores for the live model (``live_weights``): cached, or computed and stored."""
    scores = cached_scores(datastore, image_id, version)
    if scores is None:
        scores = score_volume(datastore.get_image_uri(image_id), live)
        datastore.update_image_info(image_id, {INFO_KEY: {"model": version, "time": int(time.time()),
                                                          "slices": scores}})
    return scores


class SliceUncertaintyScoring(ScoringMethod):
    """Score every slice of every image with the live model (MC dropout + classifier confidence).

    Args:
        paths: network name -> ``[shipped, live]`` weight files (the ``muscle`` config's).
    """

    def __init__(self, paths: dict[str, list[str]]):
        super().__init__("Per-slice uncertainty of the live model (Monte-Carlo dropout entropy + classifier "
                         "confidence), cached per model version in each image's info")
        self.paths = paths

    def __call__(self, request, datastore):
        live, version = live_weights(self.paths)
        scored, cached = [], 0
        for image_id in datastore.list_images():
            if cached_scores(datastore, image_id, version) is not None:
                cached += 1
                continue
            image_scores(datastore, image_id, live, version)
            scored.append(image_id)
            print(f"slice_uncertainty: scored {image_id}", flush=True)
        logger.info(f"slice_uncertainty: {len(scored)} images scored, {cached} up to date ({version})")
        return {"model": version, "scored": scored, "cached": cached}
