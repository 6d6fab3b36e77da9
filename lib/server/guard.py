"""An ASGI guard in front of MONAI Label's routes: refuse bad requests before they reach a task.

MONAI Label 0.8.5 trusts its clients. Measured on this server before the guard:

- ``POST /infer/<model>?image=/any/path`` (or ``../..`` or ``"image"`` inside ``params``) read
  any image file on the machine, because ``MONAILabelApp.infer`` uses an existing path as is;
- ``PUT /datastore/image?image=../../x`` wrote outside the studies folder;
- malformed ``params`` JSON, or JSON that is not an object, was a 500;
- unknown train or scoring names were "SUBMITTED" (200) and failed later in the background;
- an upload of any size was spooled to disk;
- ``PUT /session/?uncompress=true`` unpacked a tar whose members named ``../../x`` anywhere.

Each is answered here with a 4xx and ``{"detail": message}``: 404 for an unknown model,
strategy or scoring method, 400 for an identifier that is a path, 422 for ``params`` / ``info``
that is not a JSON object, 413 for a body over ``max_upload_mb`` (``--conf max_upload_mb N``).
The guard sits inside MONAI Label's CORS middleware, so a browser viewer (OHIF) can read the
message. The datastore checks identifiers again (``lib.data.datastore.local``): defence in depth.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from lib.identifiers import check_identifier
from lib.server.forms import BodyWatch, Rejected
from lib.server.names import check_route_name

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 1024  # a float32 NIfTI at the loader's own limit (2**28 voxels) is 1 GiB
ID_QUERY_KEYS = ("image", "label", "id", "tag", "session_id")  # query values naming stored things


async def reply(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware; ``max_upload_mb`` bounds every request body (uploads, forms)."""

    def __init__(self, app, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB):
        self.app = app
        self.limit = int(float(max_upload_mb) * 2**20)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        try:
            self._check_target(scope)
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                raise Rejected(413, f"upload of {int(length) / 2**20:.1f} MB is larger than the server's "
                                    f"limit of {self.limit // 2**20} MB (max_upload_mb)")
        except Rejected as exc:
            logger.warning(f"{scope['method']} {scope['path']}: {exc.status} {exc.message}")
            return await reply(send, exc.status, exc.message)
        watch = BodyWatch(headers.get(b"content-type", b""), self.limit)
        state = {"rejected": None, "started": False}

        async def guarded_receive():
            message = await receive()
            if message["type"] == "http.request" and state["rejected"] is None:
                try:
                    watch.feed(message.get("body", b""))
                    if not message.get("more_body", False):
                        watch.finish()
                except Rejected as exc:
                    state["rejected"] = exc
                    raise
            return message

        async def guarded_send(message):
            if state["rejected"] is not None:
                return  # the app's own answer to the aborted body is replaced by ours
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if state["rejected"] is None:
                raise
        exc = state["rejected"]
        if exc is not None and not state["started"]:
            logger.warning(f"{scope['method']} {scope['path']}: {exc.status} {exc.message}")
            await reply(send, exc.status, exc.message)

    @staticmethod
    def _check_target(scope) -> None:
        """Route names (model, strategy, scoring method) exist; query ids are plain names."""
        problem = check_route_name(scope["path"])
        if problem:
            raise Rejected(*problem)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if scope["path"].startswith("/session") and any(v.strip().lower() in ("true", "1", "yes")
                                                         for v in query.get("uncompress", [])):
            raise Rejected(400, "uncompress=true is refused: MONAI Label unpacks archives without checking "
                                "member paths (a tar could write anywhere); upload the image files themselves")
        for key in ID_QUERY_KEYS:
            for value in query.get(key, []):
                problem = check_identifier(key, value)
                if problem:
                    raise Rejected(400, problem)


def install_request_guard(conf: dict | None) -> float:
    """Put the guard on MONAI Label's FastAPI app, innermost (inside CORS); returns the limit in MB.

    conf: the app's ``--conf`` values; ``max_upload_mb`` (default 1024) bounds request bodies.
    Idempotent: a guard installed earlier is replaced.
    """
    from lib.errors import UserError

    text = (conf or {}).get("max_upload_mb", DEFAULT_MAX_UPLOAD_MB)
    try:
        limit = float(text)
        assert limit > 0
    except (TypeError, ValueError, AssertionError):
        raise UserError(f"--conf max_upload_mb must be a positive number of megabytes, got {text!r}") from None
    try:
        from monailabel.app import app
        from starlette.middleware import Middleware
    except Exception:  # not running inside the server (CLI, tests of tasks)
        return limit
    app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestGuard]
    app.user_middleware.append(Middleware(RequestGuard, max_upload_mb=limit))
    app.middleware_stack = None  # rebuilt on the next request, with the guard
    return limit
