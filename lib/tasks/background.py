"""MONAI Label's background processes: which process this is, and queueing scoring in one.

Slice scores are kept fresh by the background scoring task alone (``slice_uncertainty``): the
next-sample request only reads them. The server queues that task at start-up, after an image
or label is saved and after a publish; a strategy that finds images not scored by the live
model queues it too, when none is queued or running (the running one looks for new work
until none is left, see ``lib.tasks.scoring_slices``). ``--conf auto_score_slices false``
turns the automatic queueing off (``POST /scoring/slice_uncertainty`` still works).
"""

from __future__ import annotations

import logging
import sys
import threading

logger = logging.getLogger(__name__)

_lock = threading.Lock()  # strategy threads and the event loop may queue at once
_auto = True


def in_background_process() -> bool:
    """Whether this process is one of MONAI Label's background tasks (train, scoring)."""
    main = sys.modules.get("__main__")
    return getattr(getattr(main, "__spec__", None), "name", "") == "monailabel.interfaces.utils.app"


def set_auto_scoring(on: bool) -> None:
    """Whether the server queues slice scoring by itself (``--conf auto_score_slices``)."""
    global _auto
    _auto = bool(on)


def auto_scoring() -> bool:
    return _auto


def _server_app():
    """The app of this process when it serves (MONAI Label's server), else None."""
    try:
        from monailabel.interfaces.utils.app import apps
    except ImportError:
        return None
    return next((a for a in apps.values() if getattr(a, "_server_mode", False)), None)


def queue_scoring(method: str, why: str, behind_running: bool = True) -> bool:
    """Queue the scoring ``method`` in MONAI Label's background process; True when queued.

    Nothing is queued outside the server, with automatic scoring off, while a run of ``method``
    waits to start, or (``behind_running=False``) while one runs. Never waits for the run.
    """
    if not _auto or _server_app() is None:
        return False
    from monailabel.utils.async_tasks.task import AsyncTask
    from monailabel.utils.async_tasks.utils import tasks

    with _lock:
        states = {t["status"] for t in tasks("scoring") if (t.get("request") or {}).get("method") == method}
        if "SUBMITTED" in states or ("RUNNING" in states and not behind_running):
            return False
        AsyncTask.run("scoring", request={"method": method}, enqueue=True)
    logger.info(f"{method} queued: {why}")
    return True
