"""Which names a request may use: models / strategies / scorers that exist, images it may read.

``MONAILabelApp.infer`` reads any existing path given as an image, so an infer's image must be
a datastore id (a plain name, ``lib.identifiers``), an upload of this request or a session's
file. A route naming a model, strategy or scoring method the app does not serve is a 404.
"""

from __future__ import annotations

import os
import re

from lib.identifiers import check_identifier

ROUTES = {  # first path segment -> (which tasks, MONAILabelApp attribute, noun)
    "infer": ("_infers", "model"),
    "train": ("_trainers", "trainer"),
    "activelearning": ("_strategies", "strategy"),
    "scoring": ("_scoring_methods", "scoring method"),
}


def _app_tasks(attribute: str):
    """The running app's task dict, or None outside a server (or before the app exists)."""
    try:
        from monailabel.interfaces.utils.app import app_instance

        return getattr(app_instance(), attribute, None)
    except Exception:  # no app configured: leave the answer to MONAI Label
        return None


def check_route_name(path: str) -> tuple[int, str] | None:
    """(404, message) for ``/infer/<m>``, ``/train/<m>``, ``/activelearning/<s>``, ``/scoring/<s>``
    naming nothing the app serves; None otherwise (the route's own checks apply)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) != 2 or parts[0] not in ROUTES:
        return None
    attribute, noun = ROUTES[parts[0]]
    tasks = _app_tasks(attribute)
    if tasks is None or parts[1] in tasks:
        return None
    from monailabel.config import settings

    if settings.MONAI_LABEL_AUTH_ENABLE:  # answered before the token check: list nothing to strangers
        return 404, f"unknown {noun} {parts[1]!r} (GET /info/ lists them)"
    available = ", ".join(sorted(tasks)) or "none"
    return 404, f"unknown {noun} {parts[1]!r} (available: {available})"


UPLOAD_NAME = re.compile(r"tmp[a-z0-9_]{8}")  # tempfile.NamedTemporaryFile, where MONAI Label puts an upload


def check_infer_image(image, uploads_dir: str, sessions_dir: str | None) -> str | None:
    """Why ``image`` may not be read by an infer (None when it may): a datastore id (a plain
    name), an upload MONAI Label wrote for this request (``<uploads_dir>/tmpXXXXXXXX<ext>``) or a
    file of a session (under ``sessions_dir``).

    The guard already refuses paths sent by clients to ``/infer``; this covers every other way
    into ``MONAILabelApp.infer`` (batch inference takes image lists in its JSON ``params``).
    """
    if not isinstance(image, str) or check_identifier("image", image) is None:
        return None
    real = os.path.realpath(image)
    if os.path.dirname(real) == os.path.realpath(uploads_dir) and UPLOAD_NAME.match(os.path.basename(real)):
        return None
    if sessions_dir and real.startswith(os.path.realpath(sessions_dir) + os.sep):
        return None
    return f"image {image!r} is a path outside the datastore, uploads and sessions; use a datastore id"
