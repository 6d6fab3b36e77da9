"""The small JSON form fields of a request (``params``, ``info``), read while the body streams.

MONAI Label passes these fields to ``json.loads`` inside its routes (a 500 for bad JSON, and a
crash for JSON that is not an object); ``BodyWatch`` picks them out of a multipart or url-encoded
body chunk by chunk, without buffering uploaded files, and counts the body against the upload
limit. ``check_json_field`` says what is wrong with one field.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from python_multipart.multipart import MultipartParser, parse_options_header

from lib.identifiers import check_identifier

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
