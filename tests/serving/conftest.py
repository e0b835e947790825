"""A served model for the serving tests: one Serve instance on a free loopback port.

Module-scoped: Serve and its replica (0.5 CPU) go away after each test module, so later tests get
the shared Ray instance's CPUs back (a 2-worker training run needs them). ("package" scope would
not end here: tests/ has no __init__.py files.)
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.checkpoints import save_untrained


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_checkpoint(bach_data, path, seed: int):
    """A cpu-tiny generator (untrained: the API does not care) saved as training saves it."""
    from musicgan import checkpoint as ckpt
    from musicgan.data.shards import load_manifest

    return save_untrained(path, "cpu-tiny", ckpt.data_info(load_manifest(bach_data.out)), seed=seed)


class Http:
    """Tiny HTTP helper around urllib: (status, headers, body bytes)."""

    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, body=None, raw: bytes | None = None, timeout: float = 60):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def generate(self, timeout: float = 60, **body):
        return self.call("POST", "/v1/generate", body, timeout=timeout)

    def json(self, path: str):
        status, _, content = self.call("GET", path)
        assert status == 200, (path, status, content[:300])
        return json.loads(content)


@pytest.fixture(scope="module")
def serve_port(ray_instance):
    from ray import serve

    from serving.schema import REQUEST_TIMEOUT_S

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": REQUEST_TIMEOUT_S})
    yield port
    serve.shutdown()


@pytest.fixture(scope="session")
def registry_root(bach_data, tmp_path_factory):
    """models/bach/v1 promoted from a checkpoint; tests may promote v2."""
    from musicgan.registry import promote

    root = tmp_path_factory.mktemp("registry")
    promote(make_checkpoint(bach_data, root / "src" / "checkpoint_000006", seed=1), str(root / "models"), "bach")
    return root


@pytest.fixture(scope="module")
def served(serve_port, registry_root):
    """The main app, deployed once: ``Http`` on its base URL."""

    from serving.app import build_app

    ref = str(registry_root / "models" / "bach" / "latest")
    return deploy(build_app(ref, user_config={"watch_seconds": 0.5}), "musicgan", serve_port)


def deploy(app, name: str, port: int) -> Http:
    """``serve.run`` the app at ``/`` and wait (up to 60 s) until it answers ``/healthz``."""
    from ray import serve

    serve.run(app, name=name, route_prefix="/")
    http = Http(f"http://127.0.0.1:{port}")
    deadline = time.time() + 60
    while time.time() < deadline:
        if http.call("GET", "/healthz")[0] == 200:
            break
        time.sleep(0.5)
    return http


@pytest.fixture(scope="session")
def masked_checkpoint(bach_data, tmp_path_factory):
    """An untrained cpu-masked-tiny generator (it takes known notes: the assistant routes) with the
    files a promoted model ships beside its weights: the originality index of the build's training
    phrases and the held-out example melodies."""
    from musicgan import checkpoint as ckpt
    from musicgan.assist.assets import write_assets
    from musicgan.data.shards import load_manifest

    root = tmp_path_factory.mktemp("masked")
    path = save_untrained(root / "run" / "checkpoint_000004", "cpu-masked-tiny",
                          ckpt.data_info(load_manifest(bach_data.out)), seed=2)
    write_assets(bach_data.out, path)
    return path


@pytest.fixture(scope="module")
def served_masked(serve_port, masked_checkpoint):
    """The app serving the masked model (a test module uses this or ``served``, not both: both sit at ``/``)."""
    from serving.app import build_app

    return deploy(build_app(str(masked_checkpoint)), "musicgan", serve_port)
