"""Which names a request may use: plain identifiers, and models / strategies / scorers that exist.

MONAI Label builds file paths from image ids (``<studies>/<id><ext>``) and label tags
(``<studies>/labels/<tag>/``), and ``MONAILabelApp.infer`` reads any existing path given as an
image. An identifier is therefore a *plain name*: no path separator, no ``..``, not absolute,
no control characters. Percent-encoding is undone by the web framework before these checks
(``%2e%2e%2f`` arrives as ``../``), and a double-encoded ``%252e`` stays a literal name that
matches nothing.
"""

from __future__ import annotations

import os
import re

MAX_ID_LENGTH = 255  # a file name's limit on Linux file systems
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ROUTES = {  # first path segment -> (which tasks, MONAILabelApp attribute, noun)
    "infer": ("_infers", "model"),
    "train": ("_trainers", "trainer"),
    "activelearning": ("_strategies", "strategy"),
    "scoring": ("_scoring_methods", "scoring method"),
}


def check_identifier(key: str, value) -> str | None:
    """Why ``value`` cannot be an image id / label tag / session id, or None when it can."""
    if not isinstance(value, str):
        return f"{key} must be a string id, got {type(value).__name__}"
    if value == "":
        return None  # MONAI Label's "not given" (e.g. infer on an uploaded file)
    if len(value) > MAX_ID_LENGTH:
        return f"{key} is longer than {MAX_ID_LENGTH} characters"
    if CONTROL.search(value):
        return f"{key} {value!r} holds control characters"
    if "/" in value or "\\" in value or value in (".", "..") or value.startswith("~"):
        return f"{key} {value!r} is a path; only a datastore id (a plain name) is accepted"
    return None


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
