"""Plain names: what an image id, a label tag or a session id may be.

MONAI Label builds file paths from image ids (``<studies>/<id><ext>``) and label tags
(``<studies>/labels/<tag>/``). An identifier is therefore a *plain name*: no path separator, no
``..``, not absolute, no control characters. Percent-encoding is undone by the web framework
before these checks (``%2e%2e%2f`` arrives as ``../``), and a double-encoded ``%252e`` stays a
literal name that matches nothing. The request guard checks names on the way in and the
datastore checks them again on the way to the disk: one rule for both.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 255  # a file name's limit on Linux file systems
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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

