"""Map the product's user errors to HTTP 4xx answers of the MONAI Label FastAPI server.

MONAI Label 0.8.5 lets any exception from a task become "500 Internal Server Error"; a
clinician who uploads a wrong file must instead read what was wrong (4xx with a message).
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from lib.errors import NotFoundError, UserError

logger = logging.getLogger(__name__)


async def _user_error_handler(request: Request, exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, NotFoundError) else 422
    logger.warning(f"{request.method} {request.url.path}: {status} {exc}")
    return JSONResponse(status_code=status, content={"detail": str(exc)})


def install_error_handlers() -> None:
    """Register the handlers on MONAI Label's FastAPI app (idempotent).

    The app object may already have built its middleware stack (the lifespan event that
    creates our MONAILabelApp runs through it), so it is reset to pick the handlers up.
    """
    try:
        from monailabel.app import app
    except Exception:  # not running inside the server (CLI, tests of tasks)
        return
    if app.exception_handlers.get(UserError) is _user_error_handler:
        return
    app.add_exception_handler(UserError, _user_error_handler)
    app.middleware_stack = None
