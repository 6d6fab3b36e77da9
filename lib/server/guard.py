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
message. The datastore checks identifiers again (``lib.data.datastore``): defence in depth.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from python_multipart.multipart import MultipartParser, parse_options_header

from lib.server.names import check_identifier, check_route_name

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 1024  # a float32 NIfTI at the loader's own limit (2**28 voxels) is 1 GiB
ID_QUERY_KEYS = ("image", "label", "id", "tag", "session_id")  # query values naming stored things
JSON_FIELDS = (b"params", b"info")  # form fields MONAI Label passes to json.loads
PARAMS_ID_KEYS = ("image", "label_tag")  # infer params that MONAI Label uses as id / folder name


class Rejected(Exception):
    """A request refused by the guard: its HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def check_json_field(name: str, text: str) -> None:
    """``params`` / ``info`` must be a JSON object; infer ids inside it must be plain names."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise Rejected(422, f"form field {name!r} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Rejected(422, f"form field {name!r} must be a JSON object, got {type(value).__name__}")
    for key in PARAMS_ID_KEYS:
        if key in value:
            problem = check_identifier(key, value[key])
            if problem:
                raise Rejected(400, f"{name}: {problem}")


class BodyWatch:
    """Counts body bytes and keeps the small JSON form fields, streaming (no buffering of files)."""

    def __init__(self, content_type: bytes, limit: int):
        self.limit, self.size, self.fields = limit, 0, {}
        kind, options = parse_options_header(content_type)
        self.urlencoded = kind == b"application/x-www-form-urlencoded"
        self.raw = bytearray()  # url-encoded forms carry no files: small, kept whole
        self.parser = None
        if kind == b"multipart/form-data" and options.get(b"boundary"):
            self._name, self._header, self._value = None, b"", b""
            callbacks = {"on_header_field": self._on_header_field, "on_header_value": self._on_header_value,
                         "on_headers_finished": self._on_headers_finished, "on_part_data": self._on_part_data,
                         "on_part_end": self._on_part_end}
            self.parser = MultipartParser(options[b"boundary"], callbacks)

    def _on_header_field(self, data, start, end):
        self._header = data[start:end].lower()

    def _on_header_value(self, data, start, end):
        if self._header == b"content-disposition":
            self._name = parse_options_header(data[start:end])[1].get(b"name")
            self._value = b""

    def _on_headers_finished(self):
        self._header = b""

    def _on_part_data(self, data, start, end):
        if self._name in JSON_FIELDS and len(self._value) < 1 << 20:  # keep only the small JSON fields
            self._value += data[start:end]

    def _on_part_end(self):
        if self._name in JSON_FIELDS:
            self.fields[self._name.decode()] = self._value.decode("utf-8", "replace")
        self._name = None

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise Rejected(413, f"upload larger than the server's limit of {self.limit // 2**20} MB "
                                f"(max_upload_mb)")
        if self.parser is not None:
            try:
                self.parser.write(chunk)
            except Exception:  # a broken multipart body: FastAPI answers it itself (400)
                self.parser = None
        elif self.urlencoded:
            self.raw += chunk

    def finish(self) -> None:
        """At the end of the body: check the JSON form fields that were sent."""
        if self.urlencoded:
            query = parse_qs(self.raw.decode("latin-1"), keep_blank_values=True)
            self.fields = {k: v[-1] for k, v in query.items() if k.encode() in JSON_FIELDS}
        for name, text in self.fields.items():
            check_json_field(name, text)


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
