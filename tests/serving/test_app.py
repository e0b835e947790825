"""The served generator over real HTTP: formats, determinism, validation, batching, client, security."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pretty_midi
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_every_format_has_its_content_type_and_is_deterministic(served):
    expect = {"midi": ("audio/midi", b"MThd"), "wav": ("audio/wav", b"RIFF"), "png": ("image/png", b"\x89PNG"),
              "json": ("application/json", b"{"), "zip": ("application/zip", b"PK")}
    for fmt, (ctype, magic) in expect.items():
        status, headers, a = served.generate(n_samples=2, n_bars=8, seed=11, format=fmt)
        assert status == 200, (fmt, a[:300])
        assert headers["content-type"] == ctype and a.startswith(magic), fmt
        assert headers["x-musicgan-seed"] == "11" and headers["x-musicgan-model"] == "bach/v1"
        _, _, b = served.generate(n_samples=2, n_bars=8, seed=11, format=fmt)
        assert a == b, f"{fmt}: same seed, different bytes"
    _, _, other = served.generate(n_samples=2, n_bars=8, seed=12, format="midi")
    _, _, first = served.generate(n_samples=2, n_bars=8, seed=11, format="midi")
    assert other != first


def test_midi_json_and_zip_hold_what_was_asked(served):
    _, _, mid = served.generate(n_samples=2, n_bars=8, seed=3, format="midi", tempo_qpm=120)
    pm = pretty_midi.PrettyMIDI(io.BytesIO(mid))
    names = [i.name for i in pm.instruments]  # (the untrained test model may leave a voice silent)
    assert names and set(names) <= {"soprano", "alto", "tenor", "bass"}
    bar_s = 4 * 60 / 120
    assert pm.get_end_time() <= (2 * 8 + 1) * bar_s + 1e-6  # two 8-bar samples and a bar of rest between
    _, _, body = served.generate(n_samples=3, n_bars=8, seed=3, format="json")
    doc = json.loads(body)
    assert doc["seed"] == 3 and len(doc["samples"]) == 3 and doc["tracks"] == ["soprano", "alto", "tenor", "bass"]
    roll = doc["samples"][0]["pianoroll"]
    assert len(roll) == 4 and len(roll[0]) == 8 * 16  # tracks x steps; each step lists sounding pitches
    notes = doc["samples"][0]["notes"]
    assert notes and all(36 <= n["pitch"] < 84 and 0 <= n["start_step"] < n["end_step"] <= 128 for n in notes)
    _, _, z = served.generate(n_samples=3, seed=3, format="zip")
    names = zipfile.ZipFile(io.BytesIO(z)).namelist()
    assert names == ["sample_000.mid", "sample_001.mid", "sample_002.mid", "pianoroll.png", "samples.json"]


def test_without_a_seed_the_server_picks_one_and_says_which(served):
    status, headers, a = served.generate(format="midi")
    seed = int(headers["x-musicgan-seed"])
    assert status == 200 and served.generate(format="midi", seed=seed)[2] == a


@pytest.mark.parametrize("body, field", [
    ({"n_samples": 0}, "n_samples"),
    ({"n_samples": 17}, "n_samples"),
    ({"n_samples": "many"}, "n_samples"),
    ({"n_bars": 64}, "n_bars"),
    ({"seed": -1}, "seed"),
    ({"temperature": 9}, "temperature"),
    ({"format": "mp3"}, "format"),
    ({"tempo_qpm": 500}, "tempo_qpm"),
    ({"path": "/etc/passwd"}, "path"),  # unknown fields are refused: nothing names a file
    ({"temperature": 1.0, "threshold": 0.5}, "not both"),
    ({"n_bars": 6}, "multiple of 4"),
    ({"condition": "../../etc"}, "unconditional"),
    ({"threshold": 0.3}, "binary-output models"),
])
def test_bad_bodies_get_422_naming_the_field(served, body, field):
    status, headers, content = served.generate(**body)
    assert status == 422, content[:300]
    assert field in content.decode(), content[:300]


def test_malformed_and_oversize_bodies(served):
    status, _, content = served.call("POST", "/v1/generate", raw=b"{not json")
    assert status == 422 and b"json" in content.lower()
    status, _, content = served.call("POST", "/v1/generate", raw=json.dumps({"x": "a" * 20000}).encode())
    assert status == 413 and b"over" in content


def test_model_info_health_docs_and_page(served):
    info = served.json("/v1/model")
    assert info["name"] == "bach" and info["version"] == "v1" and info["phrase_bars"] == 4
    assert info["provenance"]["feature_hash"] and info["formats"] == ["midi", "wav", "png", "json", "zip"]
    health = served.json("/healthz")
    assert health["status"] == "ok" and health["model"] == "bach/v1"
    spec = served.json("/openapi.json")
    assert "/v1/generate" in spec["paths"] and "GenerateRequest" in json.dumps(spec)
    status, headers, page = served.call("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b'id="generate"' in page


def test_concurrent_requests_share_generator_forwards(served):
    before = served.json("/healthz")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda s: served.generate(seed=s, format="json"), range(32)))
    assert all(r[0] == 200 for r in results)
    after = served.json("/healthz")
    served_n = after["served"] - before["served"]
    forwards = after["forwards"] - before["forwards"]
    assert served_n == 32 and forwards < served_n, (served_n, forwards)
    # batching does not change anyone's music: same seed alone gives the same bytes
    assert served.generate(seed=5, format="json")[2] == results[5][2]


def test_python_client_returns_pretty_midi(served):
    from musicgan.client import ClientError, generate

    pms = generate(served.base, n_samples=2, n_bars=8, seed=4)
    assert len(pms) == 2 and all(isinstance(p, pretty_midi.PrettyMIDI) for p in pms)
    assert pms[0].instruments and {i.name for i in pms[0].instruments} <= {"soprano", "alto", "tenor", "bass"}
    with pytest.raises(ClientError) as info:
        generate(served.base, n_samples=99)
    assert info.value.status == 422 and "n_samples" in str(info.value.detail)


def test_server_listens_on_loopback_only(served, serve_port):
    import psutil

    listening = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == serve_port]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}


def test_overload_gets_a_fast_503_not_a_hang(serve_port, registry_root):
    import time

    from ray import serve

    from serving.app import build_app
    from tests.serving.conftest import Http

    ref = str(registry_root / "models" / "bach" / "v1")
    serve.run(build_app(ref, max_ongoing_requests=1, max_queued_requests=1), name="tiny-queue",
              route_prefix="/small")
    http = Http(f"http://127.0.0.1:{serve_port}/small")
    try:
        def call(i):
            t0 = time.perf_counter()
            status = http.generate(n_samples=4, n_bars=8, seed=i, format="wav", timeout=120)[0]
            return status, time.perf_counter() - t0

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(call, range(12)))
        statuses = [s for s, _ in results]
        assert 200 in statuses and 503 in statuses, statuses
        assert set(statuses) <= {200, 503}
        assert max(t for s, t in results if s == 503) < 5.0  # refused at once, not after waiting
    finally:
        serve.delete("tiny-queue")


def test_killed_replica_is_replaced(served):
    import time

    import ray

    old_pid = served.json("/healthz")["pid"]
    replicas = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA::musicgan#MusicGAN#")]
    assert len(replicas) == 1, replicas
    ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
    deadline, ok = time.time() + 90, None
    while time.time() < deadline:
        try:  # while no replica is up, the proxy holds a request: on a loaded machine past 10 s
            status, _, content = served.call("GET", "/healthz", timeout=10)
        except TimeoutError:
            continue
        if status == 200 and json.loads(content)["pid"] != old_pid:
            ok = True
            break
        time.sleep(0.5)
    assert ok, "no new replica answered within 90 s"
    assert served.generate(seed=1, format="midi")[0] == 200


def test_promoted_version_is_picked_up_without_failed_requests(served, registry_root, bach_data):
    import time

    from musicgan.registry import promote
    from tests.serving.conftest import make_checkpoint

    before = served.generate(seed=21, format="json")[2]
    stop, statuses = threading.Event(), []

    def traffic():
        while not stop.is_set():
            statuses.append(served.generate(seed=21, format="json", timeout=30)[0])

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        promote(make_checkpoint(bach_data, registry_root / "src2" / "checkpoint_000006", seed=2),
                str(registry_root / "models"), "bach")
        deadline = time.time() + 60
        while time.time() < deadline and served.json("/v1/model")["version"] != "v2":
            time.sleep(0.3)
        time.sleep(1.0)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert served.json("/v1/model")["version"] == "v2"
    assert len(statuses) > 10 and set(statuses) == {200}, statuses
    assert served.generate(seed=21, format="json")[2] != before  # new weights, new music
