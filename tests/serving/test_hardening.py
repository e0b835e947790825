"""Hardening of the serving app, in process: the replica's own class (no Serve deployment), so each
test is fast and can reach what HTTP cannot (a request that validation would stop).

- batch isolation: one poisoned request among 15 good ones in ONE batched forward;
- renders from several threads give the bytes they give one at a time, and no pyplot;
- ASCII-safe header values; no server paths in ``/v1/model``;
- property-based (hypothesis) tests of the request schema through the real FastAPI app.

The real-server tests (schemathesis, chunked bodies, cost limits over HTTP, SIGTERM) are in
``test_server_process.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import subprocess
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi import HTTPException

pytestmark = [pytest.mark.ray]


def replica_class():
    """The user class behind the ``MusicGAN`` deployment (Serve wraps it for ingress)."""
    from serving.app import MusicGAN

    return next(c for c in MusicGAN.func_or_class.__mro__ if "generate" in vars(c))


# What Serve's replica context gives the code under test: the batch queue reads the deployment's
# max_ongoing_requests, the FastAPI class-based view reads the replica object.
CONTEXT = SimpleNamespace(servable_object=None, _deployment_config=SimpleNamespace(max_ongoing_requests=32))
LOOP = asyncio.new_event_loop()  # one loop for the module: a replica's batch queue lives on one loop


@pytest.fixture(scope="module", autouse=True)
def replica_context():
    from ray import serve

    mp = pytest.MonkeyPatch()
    mp.setattr(serve, "get_replica_context", lambda: CONTEXT)
    yield CONTEXT
    mp.undo()
    pending = asyncio.all_tasks(LOOP)  # the batch queue's task
    for task in pending:
        task.cancel()
    if pending:  # (none when a -k selection ran no batched request; gather() of nothing binds another loop)
        LOOP.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    # @serve.batch keeps its queue in the decorator (one per class, built on first call, meant to
    # be built inside a replica process). Drop the one these tests built: with it, the class could
    # not be pickled, and later deployments in this pytest process would fail.
    replica_class().forward.set_max_batch_size.__self__._queue = None


@pytest.fixture(scope="module")
def replica(registry_root, replica_context):
    """One in-process replica of the pianoroll model ``bach/v1``."""
    return replica_class()(model=str(registry_root / "models" / "bach" / "v1"))


def run(coro):
    return LOOP.run_until_complete(coro)


async def answer(replica, body):
    """(status, headers, bytes) of ``replica.generate(body)``, as the route would answer."""
    try:
        r = await replica.generate(body)
        return r.status_code, dict(r.headers), r.body
    except HTTPException as e:
        return e.status_code, {k.lower(): v for k, v in (e.headers or {}).items()}, str(e.detail).encode()


# --- batch isolation ----------------------------------------------------------------------------


def good_bodies():
    from serving.schema import GenerateRequest

    return [GenerateRequest(seed=100 + k, n_samples=1 + k % 2, n_bars=4 * (1 + k % 2), format="json",
                            temperature=[0.0, 0.7, 1.5][k % 3]) for k in range(15)]


def test_a_poisoned_request_fails_alone_and_its_15_batch_mates_get_their_normal_bytes(replica):
    """The issue's repro: temperature 1e-300 makes softmax NaN. Validation now refuses it (422), so
    this request is built past validation (``model_construct``), as if validation had a gap: the
    batched forward itself must still keep it from failing the others."""
    from serving.schema import GenerateRequest

    goods = good_bodies()
    poisoned = GenerateRequest.model_construct(**{**GenerateRequest().model_dump(), "temperature": 1e-300,
                                                  "seed": 7, "format": "json"})

    async def together():
        replica.forward.set_max_batch_size(16)
        before = replica.forwards
        results = await asyncio.gather(*(answer(replica, b) for b in goods[:7] + [poisoned] + goods[7:]))
        return results, replica.forwards - before

    async def alone():
        return [await answer(replica, b) for b in goods]

    results, forwards = run(together())
    assert forwards == 1, f"the 16 requests did not share one forward ({forwards})"
    status, _, detail = results[7]
    assert status == 422 and b"temperature" in detail, (status, detail)
    solo = run(alone())
    for k, ((status, _, content), (_, _, expect)) in enumerate(zip(results[:7] + results[8:], solo)):
        assert status == 200, (k, status, content[:200])
        assert content == expect, f"request {k}: bytes in the poisoned batch differ from alone"


def test_a_forward_that_fails_for_one_request_is_retried_alone_and_logged(replica, monkeypatch, caplog):
    """When the shared forward itself breaks (our bug, not the caller's input), the batch is run
    request by request: only the request that breaks it fails, with a logged 500."""
    import musicgan.gan as gan

    real = gan.generate_many

    def breaks_on_seed_666(g, requests, **kw):
        if any(r.seed == 666 for r in requests):
            raise RuntimeError("simulated bug for seed 666")
        return real(g, requests, **kw)

    monkeypatch.setattr(gan, "generate_many", breaks_on_seed_666)
    from serving.schema import GenerateRequest

    goods = good_bodies()[:5]
    bad = GenerateRequest(seed=666, format="json")

    async def together():
        return await asyncio.gather(*(answer(replica, b) for b in goods[:2] + [bad] + goods[2:]))

    with caplog.at_level(logging.ERROR, logger="ray.serve"):
        results = run(together())
    status, _, detail = results[2]
    assert status == 500 and b"reference" in detail, (status, detail)
    ref = detail.decode().split("reference ")[1].split(")")[0]
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and logged[0].exc_info and "simulated bug" in str(logged[0].exc_info[1])
    monkeypatch.setattr(gan, "generate_many", real)
    async def alone():
        return [await answer(replica, b) for b in goods]

    solo = run(alone())
    assert [r[0] for r in results[:2] + results[3:]] == [200] * 5
    assert [r[2] for r in results[:2] + results[3:]] == [r[2] for r in solo]


# --- cost, checked before any work ---------------------------------------------------------------


def test_cost_limits_are_checked_before_any_work(replica):
    from serving.schema import MAX_AUDIO_S, MAX_PHRASES, GenerateRequest

    before = (replica.forwards, replica.served)
    # 16 samples x 20 bars = 80 phrases; 2 x 32 bars of WAV at 51.9 qpm = 65 bars = 300.6 s of audio
    for body, limit in ((dict(n_samples=16, n_bars=20, format="json"), f"{MAX_PHRASES} phrases"),
                        (dict(n_samples=2, n_bars=32, format="wav", tempo_qpm=51.9), f"{MAX_AUDIO_S:g} s")):
        status, _, detail = run(answer(replica, GenerateRequest(**body)))
        assert status == 422 and limit.encode() in detail, (body, status, detail)
    assert (replica.forwards, replica.served) == before  # nothing was generated or rendered


def test_work_in_flight_is_capped_per_replica_with_a_fast_503(replica):
    from serving.app import InFlight
    from serving.schema import GenerateRequest

    replica.in_flight = InFlight(max_phrases=8, max_audio_s=600)
    try:
        async def three_at_once():  # 4 + 4 phrases fit, the third 4 does not
            body = GenerateRequest(n_samples=2, n_bars=8, format="json", seed=1)
            return await asyncio.gather(*(answer(replica, body) for _ in range(3)))

        statuses = sorted(r[0] for r in run(three_at_once()))
        assert statuses == [200, 200, 503], statuses
        busy = [r for r in run(three_at_once()) if r[0] == 503][0]
        assert busy[1].get("retry-after") == "1" and b"busy" in busy[2]
        assert replica.in_flight.requests == 0 and replica.in_flight.phrases == 0  # all given back
    finally:
        replica.in_flight = InFlight()


# --- renders: no pyplot, same bytes from any thread ----------------------------------------------


def test_renders_from_many_threads_give_the_bytes_they_give_one_at_a_time(bach_data):
    from musicgan import checkpoint as ckpt
    from musicgan.data.shards import load_manifest
    from musicgan.render import mel_png, pianoroll_png

    data = ckpt.data_info(load_manifest(bach_data.out))
    rng = np.random.default_rng(0)
    rolls = [rng.random((1 + k % 4, 4, 64, 48)) > 0.97 for k in range(5)]
    mel_data = {"feature_config": {**data["feature_config"], "kind": "mel", "sample_rate_hz": 16000,
                                   "hop_length": 256}}
    mels = [rng.uniform(-100, 0, (1 + k % 3, 1, 80, 63)).astype(np.float32) for k in range(5)]
    jobs = ([lambda r=r, k=k: pianoroll_png(r, data, title=f"roll {k}") for k, r in enumerate(rolls)]
            + [lambda m=m, k=k: mel_png(m, mel_data, title=f"mel {k}") for k, m in enumerate(mels)])
    sequential = [job() for job in jobs]
    assert len(set(sequential)) == len(jobs)  # every figure differs, so a mix-up would show
    with ThreadPoolExecutor(8) as pool:
        for _ in range(2):
            assert list(pool.map(lambda job: job(), jobs)) == sequential


def test_render_paths_never_import_pyplot():
    """pyplot's figure registry is global state; the render functions must not touch it."""
    code = """
import sys
import numpy as np
from musicgan.config import FeatureConfig
from musicgan.render import mel_png, pianoroll_png
from dataclasses import asdict
fc = asdict(FeatureConfig())
pianoroll_png(np.zeros((2, 4, 64, 48), bool), {"feature_config": fc})
mel_png(np.zeros((2, 1, 80, 63), np.float32), {"feature_config": {**fc, "kind": "mel"}})
print("pyplot" if "matplotlib.pyplot" in sys.modules else "clean")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "clean"


# --- headers and /v1/model ------------------------------------------------------------------------


def test_header_values_are_ascii_and_reversible():
    from serving.http_edge import header_value

    for text in ("bach/v1", "巴赫/v1", "flûte", "Ωmega run", "a\r\nX-Injected: 1", "100%"):
        value = header_value(text)
        value.encode("ascii")  # raises if not ASCII
        assert "\r" not in value and "\n" not in value
        assert urllib.parse.unquote(value) == text


def test_non_latin1_model_and_instrument_names_still_get_an_answer(registry_root, audio_checkpoint):
    """A run folder or a labels.csv instrument with non-latin-1 characters used to fail every
    request after the full render (Starlette encodes header values as latin-1)."""
    from serving.schema import GenerateRequest

    replica = replica_class()(model=str(registry_root / "models" / "bach" / "v1"))
    replica.model.name = "巴赫-合唱"
    status, headers, content = run(answer(replica, GenerateRequest(seed=1, format="midi")))
    assert status == 200 and content.startswith(b"MThd"), (status, content[:200])
    assert urllib.parse.unquote(headers["x-musicgan-model"]) == "巴赫-合唱/v1"

    audio = replica_class()(model=str(audio_checkpoint))
    audio.model.instruments = ["笛子", "piano"]  # as a labels.csv with these names would build it
    audio.model.data = {**audio.model.data, "instruments": audio.model.instruments}
    audio.model.name = "音-notes"
    status, headers, content = run(answer(audio, GenerateRequest(seed=1, instrument="笛子", format="wav")))
    assert status == 200 and content[:4] == b"RIFF", (status, content[:200])
    assert urllib.parse.unquote(headers["x-musicgan-instrument"]) == "笛子"


def test_model_info_shows_no_server_paths(replica, registry_root):
    raw = replica.model.record["provenance"]
    assert str(registry_root) in json.dumps(raw)  # the registry keeps them (for the operator) ...
    info = run(replica.model_info())

    def strings(x):
        if isinstance(x, dict):
            for v in x.values():
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)
        elif isinstance(x, str):
            yield x

    # ... the public answer does not: no absolute path, no URI, no folder of this machine
    leaks = [s for s in strings(info) if s.startswith("/") or "://" in s or str(registry_root) in s]
    assert not leaks, leaks
    assert info["provenance"]["feature_hash"] == raw["feature_hash"]  # what is not a path stays


# --- the request schema, property-based, through the real FastAPI app -----------------------------


class AsgiClient:
    """Requests straight into the real ``serving.app.app`` as ASGI (middleware, strict JSON,
    validation, the route), with an in-process replica standing in for Serve's. (Starlette's
    TestClient would need httpx, which the project does not install.)"""

    def __init__(self, app):
        self.app = app

    def post(self, path: str, content: bytes | None = None, json_body=None, headers: dict | None = None):
        body = content if content is not None else json.dumps(json_body).encode()
        hdrs = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in hdrs.items()],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        inbox = [{"type": "http.request", "body": body, "more_body": False}]
        sent = []

        async def receive():
            return inbox.pop(0) if inbox else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        run(self.app(scope, receive, send))
        start = next(m for m in sent if m["type"] == "http.response.start")
        content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return SimpleNamespace(status_code=start["status"], content=content, text=content.decode("utf-8", "replace"),
                               headers={k.decode(): v.decode() for k, v in start["headers"]})


@pytest.fixture(scope="module")
def client(replica, replica_context):
    from serving.app import app

    replica_context.servable_object = replica
    yield AsgiClient(app)
    replica_context.servable_object = None


FIELDS = ["n_samples", "n_bars", "seed", "temperature", "threshold", "condition", "format", "tempo_qpm",
          "pitch", "instrument"]


def json_values():
    from hypothesis import strategies as st

    scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
               | st.text(max_size=20) | st.sampled_from([0, 1, 4, 8, 16, 17, 32, 0.05, 0.049, 1e-300, 2**31]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def request_bodies():
    """JSON text of objects over the schema's fields (and others), any values, with NaN/Infinity
    tokens spliced in where a number could be, plus raw bytes."""
    from hypothesis import strategies as st

    keys = st.sampled_from(FIELDS) | st.text(max_size=10)
    obj = st.dictionaries(keys, json_values(), max_size=5).map(
        lambda d: {**d, "format": d.get("format", "json") if d.get("format") not in ("wav", "png", "zip") else "json"})
    as_text = obj.map(json.dumps)
    special = st.tuples(st.sampled_from(FIELDS), st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "true",
                                                                  "1.0", '"4"', "[]", "{}", "null"])).map(
        lambda kv: '{"%s": %s, "format": "json"}' % kv)
    return st.one_of(as_text.map(str.encode), special.map(str.encode), st.binary(max_size=300))


def check_answer(raw: bytes, status: int, content: bytes) -> None:
    from serving.http_edge import strict_json
    from serving.schema import MIN_TEMPERATURE, GenerateRequest

    assert status in (200, 413, 422), (raw, status, content[:300])
    if status != 200:
        detail = json.loads(content)["detail"]  # errors are JSON (no NaN echoed back, no 500)
        assert detail
        return
    doc = strict_json(raw)  # accepted: it was strict JSON, and every field has its exact type
    body = GenerateRequest.model_validate(doc)
    assert set(doc) <= set(FIELDS)
    for name in ("n_samples", "n_bars", "seed", "pitch"):
        assert doc.get(name) is None or type(doc[name]) is int
    for name in ("temperature", "threshold", "tempo_qpm"):
        assert doc.get(name) is None or (type(doc[name]) in (int, float) and math.isfinite(doc[name]))
    assert body.temperature in (None, 0) or body.temperature >= MIN_TEMPERATURE


def test_request_schema_property_any_body_gets_200_413_or_422_never_500(client):
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(request_bodies())
    def prop(raw):
        r = client.post("/v1/generate", content=raw, headers={"Content-Type": "application/json"})
        check_answer(raw, r.status_code, r.content)

    prop()


@pytest.mark.parametrize("raw, field", [
    (b'{"n_samples": NaN}', "NaN"),
    (b'{"seed": Infinity}', "Infinity"),
    (b'{"temperature": -Infinity}', "Infinity"),
    (b'{"tempo_qpm": 1e999}', "1e999"),
    (b'{"n_samples": true}', "n_samples"),
    (b'{"seed": "7"}', "seed"),
    (b'{"n_bars": 8.0}', "n_bars"),
    (b'{"temperature": 1e-300}', "temperature"),
    (b'{"temperature": 0.049}', "temperature"),
])
def test_nan_infinity_and_loose_types_get_a_422_naming_them(client, raw, field):
    r = client.post("/v1/generate", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, (raw, r.status_code, r.text[:300])
    assert field in r.text, r.text[:300]


def test_strict_types_still_take_what_the_schema_says(client):
    """Strict is not stricter than the schema: an integer for a float field is fine."""
    r = client.post("/v1/generate", json_body={"temperature": 1, "tempo_qpm": 120, "seed": 3, "format": "json"})
    assert r.status_code == 200, r.text[:300]
    r = client.post("/v1/generate", json_body={"temperature": 0.05, "seed": 3, "format": "json"})
    assert r.status_code == 200, r.text[:300]
