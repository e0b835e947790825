"""The HTTP edge of the API, Ray-free: a byte limit on request bodies, strict JSON parsing (no NaN
or Infinity), JSON-safe validation errors and ASCII-safe header values. ``serving.app`` wires
these into its FastAPI app. (Not ``serving/http.py``: that name would shadow the standard
``http`` wherever ``serving/`` itself is on ``sys.path``.)"""

from __future__ import annotations

import json
import math
import urllib.parse

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


def header_value(text: str) -> str:
    """An HTTP header value that is always ASCII: anything else (a non-latin-1 instrument or run
    name, a control character) is percent-encoded as UTF-8, so ``urllib.parse.unquote`` gives it back."""
    return urllib.parse.quote(str(text), safe=" !#$&'()*+,/:;<=>?@[]^`{|}~")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets a 413, counted while it is read.

    ``path_limits`` gives some paths a limit of their own (the routes that take MIDI uploads or a
    whole piece as notes); every other path has ``max_bytes``.

    ``Content-Length`` over the limit is refused before reading; a chunked body (no length) is
    read chunk by chunk and refused as soon as it passes the limit. Under the limit, the body read
    is handed to the app as one message, so nothing downstream reads the socket again.
    """

    def __init__(self, app, max_bytes: int, path_limits: dict[str, int] | None = None):
        self.app, self.max_bytes, self.path_limits = app, max_bytes, dict(path_limits or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # an app deployed under a route prefix sees it in its paths
            path = path[len(root):]
        limit = self.path_limits.get(path, self.max_bytes)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").strip()
        if length and (not length.isdigit() or int(length) > limit):
            return await self._refuse(scope, receive, send, limit)
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            total += len(body)
            if total > limit:
                return await self._refuse(scope, receive, send, limit)
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send, limit: int):
        response = JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413,
                                headers={"Connection": "close"})
        await response(scope, receive, send)


class JSONRejected(json.JSONDecodeError):
    pass


def strict_json(raw: bytes | str):
    """``json.loads`` that refuses what JSON does not have: NaN, Infinity, and numbers too large
    for a float (``1e999``), which Python's parser would turn into inf."""
    text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw

    def constant(name: str):
        raise JSONRejected(f"{name} is not a JSON number (numbers must be finite)", text, max(text.find(name), 0))

    def finite(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            raise JSONRejected(f"{number} is too large for a number", text, max(text.find(number), 0))
        return value

    return json.loads(text, parse_constant=constant, parse_float=finite)


class _StrictJSONRequest(Request):
    async def json(self):
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = strict_json(body)
            except UnicodeDecodeError as e:
                raise json.JSONDecodeError(f"body is not UTF-8: {e.reason}", "", e.start) from None
        return self._json


class StrictJSONRoute(APIRoute):
    """Routes whose JSON bodies go through :func:`strict_json` (FastAPI turns its errors into 422s)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def strict_handler(request: Request):
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def json_safe(value):
    """A validation error made JSON-serialisable whatever the input was (bytes, inf, objects)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:200]).decode("utf-8", "replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """The 422 for a body that fails validation, whatever it held (see :func:`json_safe`)."""
    return JSONResponse({"detail": json_safe(exc.errors())}, status_code=422)
