"""serving/http_edge.py's body limit as plain ASGI (no server): per-path limits hold when the app is
deployed under a route prefix (Serve passes the prefix as ``root_path``, and ``path`` includes it)."""

from __future__ import annotations

import asyncio

from serving.http_edge import BodyLimit


def call(limit: BodyLimit, path: str, body: bytes, root_path: str = "") -> int:
    sent = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    limit.app = app
    scope = {"type": "http", "path": root_path + path, "root_path": root_path,
             "headers": [(b"content-length", str(len(body)).encode())]}
    asyncio.run(limit(scope, receive, send))
    return sent[0]["status"]


def test_a_path_limit_holds_under_a_route_prefix():
    limit = BodyLimit(None, max_bytes=100, path_limits={"/v1/harmonize": 1000})
    body = b"x" * 500
    assert call(limit, "/v1/harmonize", body) == 200
    assert call(limit, "/v1/harmonize", body, root_path="/pfx") == 200  # was a 413: the prefix hid the path
    assert call(limit, "/v1/generate", body, root_path="/pfx") == 413
    assert call(limit, "/v1/harmonize", b"x" * 1001, root_path="/pfx") == 413
