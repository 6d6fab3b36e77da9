"""MONAI Label scoring method ``slice_uncertainty``: per-slice scores of every image, cached.

The only place slice scores are computed. It runs in MONAI Label's background process (never
inside a request), queued by the server at start-up, after saves, after a publish and by a
strategy that met unscored images (``lib.tasks.background``); ``POST /scoring/slice_uncertainty``
runs it by hand (params: ``images``, a list of ids to score only those). Scores go into each
image's datastore info under ``slice_scores``, tagged with the live weights' version; an image
is scored again only when a network changed. A run scores the images that have no scores
first, then those scored by an earlier model, and looks again when it is done (images uploaded
meanwhile, a model published meanwhile) until nothing is left. It runs at a lower CPU priority
than the server: interactive requests come first.

Each image's share of tissue per slice (``tissue_fractions``: no network, a tenth of a second
for a phantom) is cached next to the scores; the random strategies and unscored images use it.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from monailabel.interfaces.exception import ImageNotFoundException
from monailabel.interfaces.tasks.scoring import ScoringMethod

from lib.errors import UserError
from lib.inference.uncertainty import body_fractions, score_volume
from lib.models.store import live_path, weights_version
from lib.tasks.background import in_background_process

logger = logging.getLogger(__name__)

INFO_KEY = "slice_scores"
TISSUE_KEY = "tissue_fractions"
MAX_PASSES = 3  # look again for new work at most this often in one run
NICENESS = 5  # the scoring process yields the CPU to the server's requests
# What a cached slice holds; bumped when score_volume adds a field (2: per-muscle ``classes``),
# so that scores cached before are stale: still used, and scored again in the background.
SCORES_FORMAT = 2

_versions: dict[tuple, str] = {}
_versions_lock = threading.Lock()


def live_version(paths: dict[str, list[str]]) -> tuple[dict[str, str | None], str]:
    """``lib.models.store.live_weights``, hashing the files again only when one changed on disk
    (a publish renames a new file in: new inode and time). A request must not hash 15 MB."""
    live = {name: live_path(candidates) for name, candidates in paths.items()}
    key = []
    for name, path in sorted(live.items()):
        st = os.stat(path) if path else None
        key.append((name, path, st and (st.st_ino, st.st_size, st.st_mtime_ns)))
    key = tuple(key)
    with _versions_lock:
        version = _versions.get(key)
    if version is None:
        version = weights_version(live)
        with _versions_lock:
            if len(_versions) > 16:
                _versions.clear()
            _versions[key] = version
    return live, version


def cached_scores(datastore, image_id: str, version: str) -> list[dict] | None:
    """The image's slice scores under the model ``version``, None when it has none for it."""
    cached = (datastore.get_image_info(image_id) or {}).get(INFO_KEY) or {}
    return cached.get("slices") if current(cached, version) else None


def current(cached: dict, version: str) -> bool:
    """Whether cached scores are the live model ``version``'s, in the current format."""
    return cached.get("model") == version and cached.get("format") == SCORES_FORMAT


def score_state(datastore, image_id: str, version: str) -> tuple[str, list[dict] | None]:
    """``("live", scores)`` when scored by the model ``version``, ``("stale", scores)`` when by an
    earlier one (still the best guess until the background run gets there), ``("none", None)``."""
    cached = (datastore.get_image_info(image_id) or {}).get(INFO_KEY) or {}
    if not cached.get("slices"):
        return "none", None
    return ("live" if current(cached, version) else "stale"), cached["slices"]


def images_to_score(datastore, version: str, only=None) -> list[str]:
    """Images without scores of the model ``version``: never scored first, then stale ones."""
    states = {i: score_state(datastore, i, version)[0] for i in datastore.list_images() if only is None or i in only}
    return [i for i, s in states.items() if s == "none"] + [i for i, s in states.items() if s == "stale"]


def _file_key(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def tissue_fractions(datastore, image_id: str, store: bool = True) -> list[float]:
    """Share of tissue pixels of every stored slice of the image: cached in its info (keyed by
    the file's size and time), else computed (no network) and, with ``store``, kept."""
    path = datastore.get_image_uri(image_id)
    key = _file_key(path)
    cached = (datastore.get_image_info(image_id) or {}).get(TISSUE_KEY) or {}
    if cached.get("file") == key and cached.get("slices") is not None:
        return cached["slices"]
    fractions = [round(f, 4) for f in body_fractions(path)]
    if store:
        datastore.update_image_info(image_id, {TISSUE_KEY: {"file": key, "slices": fractions}})
    return fractions


def image_scores(datastore, image_id: str, live: dict[str, str], version: str) -> list[dict]:
    """The image's slice scores for the live model: cached, or computed and stored (with its
    tissue fractions). Only the scoring task calls it: it runs the networks."""
    scores = cached_scores(datastore, image_id, version)
    if scores is None:
        scores = score_volume(datastore.get_image_uri(image_id), live)
        tissue = tissue_fractions(datastore, image_id, store=False)
        datastore.update_image_info(image_id, {
            INFO_KEY: {"model": version, "format": SCORES_FORMAT, "time": int(time.time()), "slices": scores},
            TISSUE_KEY: {"file": _file_key(datastore.get_image_uri(image_id)), "slices": tissue}})
    return scores


def _lower_priority() -> None:
    try:
        os.nice(NICENESS)
    except OSError:
        pass


class SliceUncertaintyScoring(ScoringMethod):
    """Score every slice of every image with the live model (MC dropout + classifier confidence).

    Args:
        paths: network name -> ``[shipped, live]`` weight files (the ``muscle`` config's).
    """

    def __init__(self, paths: dict[str, list[str]]):
        super().__init__("Per-slice uncertainty of the live model (Monte-Carlo dropout entropy + classifier "
                         "confidence), cached per model version in each image's info; runs in the background "
                         "at start-up, after saves and after a publish; param images (ids) scores only those")
        self.paths = paths

    def pending(self, datastore) -> list[str]:
        """Images the live model has not scored yet (what a run would do now)."""
        return images_to_score(datastore, live_version(self.paths)[1])

    def __call__(self, request, datastore):
        only = request.get("images")
        if only is not None and (not isinstance(only, list) or not all(isinstance(i, str) for i in only)):
            raise UserError(f"scoring param images must be a list of image ids, got {only!r}")
        if in_background_process():
            _lower_priority()
        scored, failed = [], set()
        for _ in range(MAX_PASSES):
            live, version = live_version(self.paths)
            todo = [i for i in images_to_score(datastore, version, only) if i not in failed]
            if not todo:
                break
            for image_id in todo:
                if live_version(self.paths)[1] != version:
                    break  # a model was published meanwhile: plan again with it
                try:
                    image_scores(datastore, image_id, live, version)
                except (UserError, OSError, ImageNotFoundException) as e:  # unreadable or removed meanwhile: not retried in this run
                    failed.add(image_id)
                    logger.warning(f"slice_uncertainty: {image_id} not scored: {e}")
                    continue
                scored.append(image_id)
                print(f"slice_uncertainty: scored {image_id}", flush=True)
        version = live_version(self.paths)[1]
        left = images_to_score(datastore, version, only)
        logger.info(f"slice_uncertainty: {len(scored)} images scored, {len(left)} left ({version})")
        return {"model": version, "scored": scored, "left": left, "failed": sorted(failed)}
