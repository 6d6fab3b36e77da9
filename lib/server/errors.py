"""Map the product's user errors to HTTP 4xx answers of the MONAI Label FastAPI server.

MONAI Label 0.8.5 lets any exception from a task become "500 Internal Server Error"; a
clinician who uploads a wrong file must instead read what was wrong (4xx with a message).
Also mapped: MONAI Label's own "not found" exceptions (404, e.g. info of an unknown image) and a
full disk during a save (507 Insufficient Storage: nothing was stored, the server keeps serving).
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException

from lib.errors import StorageFullError
from lib.errors import NotFoundError, UserError

logger = logging.getLogger(__name__)


async def _user_error_handler(request: Request, exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, (NotFoundError, ImageNotFoundException, LabelNotFoundException)) else 422
    message = getattr(exc, "msg", None) or str(exc)
    logger.warning(f"{request.method} {request.url.path}: {status} {message}")
    return JSONResponse(status_code=status, content={"detail": message})


async def _storage_full_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error(f"{request.method} {request.url.path}: 507 {exc.strerror}")
    return JSONResponse(status_code=507, content={"detail": exc.strerror})


HANDLERS = {UserError: _user_error_handler, ImageNotFoundException: _user_error_handler,
            LabelNotFoundException: _user_error_handler, StorageFullError: _storage_full_handler}


def install_error_handlers() -> None:
    """Register the handlers on MONAI Label's FastAPI app (idempotent).

    The app object may already have built its middleware stack (the lifespan event that
    creates our MONAILabelApp runs through it), so it is reset to pick the handlers up.
    """
    try:
        from monailabel.app import app
    except Exception:  # not running inside the server (CLI, tests of tasks)
        return
    if all(app.exception_handlers.get(cls) is handler for cls, handler in HANDLERS.items()):
        return
    for cls, handler in HANDLERS.items():
        app.add_exception_handler(cls, handler)
    app.middleware_stack = None
