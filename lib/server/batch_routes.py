"""``POST /batch/infer/{model}``: parameters checked before anything starts, and off the event loop.

MONAI Label 0.8.5 starts a batch run without looking at its parameters: an unknown model or
image, or a wrong option, was a background task "SUBMITTED" with HTTP 200 that failed later
(or, with ``run_sync``, a 500). The route is rebuilt with the same path, parameters and
dependencies; it first calls the app's ``check(model, request)`` (a ``UserError`` is a 422, a
``NotFoundError`` a 404: ``lib.server.errors``), then MONAI Label's own endpoint. That endpoint
is ``async def`` but, with ``run_sync=true``, runs the whole batch synchronously: it runs in
its own worker thread, so the server keeps answering other clients meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

logger = logging.getLogger(__name__)

BATCH_ROUTE = ("POST", "/batch/infer/{model}")
_batch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")  # a synchronous batch runs here


def _checked(endpoint, check: Callable[[str, dict], None]):
    """``endpoint`` that first checks its request, then runs in the batch worker thread."""

    @functools.wraps(endpoint)  # FastAPI reads the original signature through __wrapped__
    async def wrapper(*args, **kwargs):
        images = kwargs.get("images")
        request = {"images": getattr(images, "value", images), **(kwargs.get("params") or {})}
        check(kwargs.get("model"), request)
        return await asyncio.get_running_loop().run_in_executor(_batch, asyncio.run, endpoint(*args, **kwargs))

    wrapper.batch_checked = True
    return wrapper


def _replace_in(router, check) -> int:
    from fastapi.routing import APIRoute

    replaced = 0
    for index, route in enumerate(router.routes):
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x wraps included routers
        if included is not None:
            replaced += _replace_in(included, check)
            continue
        if not isinstance(route, APIRoute) or getattr(route.endpoint, "batch_checked", False):
            continue
        if BATCH_ROUTE[0] not in route.methods or BATCH_ROUTE[1] not in (route.path, route.path_format):
            continue
        router.routes[index] = APIRoute(
            route.path, _checked(route.endpoint, check), methods=list(route.methods), name=route.name,
            summary=route.summary, tags=route.tags, dependencies=route.dependencies,
            response_model=route.response_model, response_class=route.response_class,
            responses=route.responses, include_in_schema=route.include_in_schema,
            dependency_overrides_provider=route.dependency_overrides_provider)
        replaced += 1
    if replaced and hasattr(router, "_mark_routes_changed"):
        router._mark_routes_changed()
    return replaced


def install_batch_infer_check(check: Callable[[str, dict], None]) -> int:
    """Rebuild the batch infer route of MONAI Label's FastAPI app around ``check`` (idempotent;
    a no-op outside the server). ``check(model, request)`` raises to refuse the request."""
    try:
        from monailabel.app import app
    except Exception:  # not running inside the server
        return 0
    replaced = _replace_in(app.router, check)
    app.middleware_stack = None
    return replaced
