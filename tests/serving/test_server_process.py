"""The real server: ``musicgan serve`` in its own process (its own Ray), as an operator runs it.

One server for the whole module (a start costs 15-30 s here), in this order:

1. schemathesis fuzzes it from its own ``/openapi.json``: every generated request gets 2xx, 4xx
   or 503, none takes longer than the request timeout, and it answers normally afterwards;
2. a chunked body over the limit is refused while it is read (413);
3. the most expensive request the cost limits allow completes; one just over them gets a 422
   before any work;
4. SIGTERM (how systemd and Kubernetes stop a server) lets a request in flight finish, stops
   Serve and exits 0, with no crash dump. This one ends the server, so it runs last.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from serving.schema import MAX_AUDIO_S, MAX_BODY_BYTES, MAX_PHRASES, REQUEST_TIMEOUT_S
from tests.serving.conftest import Http, free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FUZZ_EXAMPLES = 1000  # per operation and phase: about 1,150 requests in all, 30 s here
START_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def server(registry_root, tmp_path_factory):
    """``musicgan serve --model .../models/bach/v1`` on a free loopback port, its output in files."""
    logs = tmp_path_factory.mktemp("serve-process")
    port = free_port()
    # its own Ray instance, not this session's: it is started as a user would start it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MUSICGAN_RAY_ADDRESS")}
    musicgan = Path(sys.executable).with_name("musicgan")
    cmd = [str(musicgan), "serve", "--model", str(registry_root / "models" / "bach" / "v1"), "--port", str(port)]
    out, err = open(logs / "stdout.txt", "w"), open(logs / "stderr.txt", "w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
    http = Http(f"http://127.0.0.1:{port}")
    deadline = time.time() + START_TIMEOUT_S
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                stderr = (logs / "stderr.txt").read_text()[-3000:]
                pytest.fail(f"musicgan serve exited with {proc.returncode}:\n{stderr}")
            if "serving until" in (logs / "stdout.txt").read_text():
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"musicgan serve did not start in {START_TIMEOUT_S} s")
        yield SimpleNamespace(proc=proc, http=http, base=http.base, port=port, logs=logs)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        out.close()
        err.close()


# --- 1. schema-driven fuzzing ---------------------------------------------------------------------


def test_schemathesis_finds_no_server_error_no_slow_answer_and_no_accepted_invalid_body(server, tmp_path):
    """schemathesis' own runner (its CLI, as in CI), from the server's ``/openapi.json``:
    boundary cases (coverage phase) and random positive and negative bodies (fuzzing phase).

    Checks: ``not_a_server_error`` (no 5xx at all: a sequential run never fills the replica, so
    not even a 503), ``max_response_time`` (the request timeout), ``negative_data_rejection``
    (whatever the schema rules out, wrong types included, gets a 4xx). Fixed seed: a failure
    reproduces with the command it prints. (On the code before strict types, this run finds
    ``{"temperature": true, "seed": false}`` accepted with a 200.)
    """
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "run", server.base + "/openapi.json",
           "--checks", "not_a_server_error,negative_data_rejection", "--max-response-time", str(REQUEST_TIMEOUT_S),
           "--max-examples", str(FUZZ_EXAMPLES), "--seed", "11", "--phases", "examples,coverage,fuzzing",
           "--generation-database", "none", "--request-timeout", str(REQUEST_TIMEOUT_S + 30),
           "--continue-on-failure", "--no-color"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)  # (its cache goes there)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # "N generated, N passed": it really sent requests, and every one passed (a warning, such as most
    # generated bodies being refused by the assistant routes of this unmasked model, is not a failure)
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts and int(counts.group(1)) >= 1000 and counts.group(1) == counts.group(2), run.stdout[-3000:]


def test_the_server_answers_normally_after_the_fuzzing(server):
    status, headers, content = server.http.generate(seed=3, n_samples=2, n_bars=8, format="midi")
    assert status == 200 and content.startswith(b"MThd")
    health = server.http.json("/healthz")
    assert health["status"] == "ok" and health["in_flight"] == 0
    assert server.http.generate(seed=3, n_samples=2, n_bars=8, format="midi")[2] == content


# --- 2. the body limit, while reading --------------------------------------------------------------


def post_chunked(port: int, payload: bytes, chunk: int = 4096) -> tuple[int, bytes]:
    """POST ``payload`` with ``Transfer-Encoding: chunked`` (no Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("POST", "/v1/generate")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for i in range(0, len(payload), chunk):
                part = payload[i:i + chunk]
                conn.send(b"%x\r\n%s\r\n" % (len(part), part))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # refused before we finished sending
            pass
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_a_chunked_body_over_the_limit_gets_413_while_it_is_read(server):
    big = json.dumps({"seed": 1, "condition": "x" * (2 * MAX_BODY_BYTES)}).encode()
    status, content = post_chunked(server.port, big)
    assert status == 413 and b"over" in content, (status, content[:300])
    small = json.dumps({"seed": 1, "format": "json"}).encode()  # chunked bodies under it are fine
    status, content = post_chunked(server.port, small, chunk=5)
    assert status == 200 and json.loads(content)["seed"] == 1, (status, content[:300])


# --- 3. the cost of one request ---------------------------------------------------------------------

# 16 samples of 16 bars: 64 phrases; with a bar of rest between samples, 271 bars = 1084 beats,
# which at 216.8 quarter notes a minute is exactly MAX_AUDIO_S (300 s) of WAV
MOST_EXPENSIVE = dict(n_samples=16, n_bars=16, format="wav", tempo_qpm=216.8, seed=5)


def test_the_most_expensive_allowed_request_completes_and_one_just_over_gets_422_before_any_work(server):
    import soundfile as sf

    assert (MAX_PHRASES, MAX_AUDIO_S) == (64, 300.0)  # what MOST_EXPENSIVE is sized for
    status, headers, content = server.http.generate(timeout=REQUEST_TIMEOUT_S, **MOST_EXPENSIVE)
    assert status == 200, content[:300]
    info = sf.info(io.BytesIO(content))
    assert MAX_AUDIO_S <= info.duration <= MAX_AUDIO_S + 5  # (+ the last notes' release)
    before = server.http.json("/healthz")
    for over, limit in ((dict(tempo_qpm=216.7), f"limit is {MAX_AUDIO_S:g} s"),
                        (dict(n_bars=20, format="json"), f"limit is {MAX_PHRASES} phrases")):
        t0 = time.perf_counter()
        status, _, detail = server.http.generate(**{**MOST_EXPENSIVE, **over})
        assert status == 422 and limit in detail.decode(), (over, status, detail[:300])
    after = server.http.json("/healthz")
    assert (after["forwards"], after["served"]) == (before["forwards"], before["served"])


def test_model_info_has_the_limits_and_no_server_paths(server, registry_root):
    info = server.http.json("/v1/model")
    assert info["limits"]["max_phrases"] == MAX_PHRASES and info["limits"]["max_audio_seconds"] == MAX_AUDIO_S
    text = json.dumps(info)
    assert str(registry_root) not in text and '"/' not in text


# --- 4. SIGTERM: drain, stop, exit 0 (ends the server: keep last) ----------------------------------


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(server):
    expected = server.http.generate(timeout=REQUEST_TIMEOUT_S, **MOST_EXPENSIVE)[2]
    result = {}

    def call():
        result["answer"] = server.http.generate(timeout=REQUEST_TIMEOUT_S + 30, **MOST_EXPENSIVE)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.time() + 30
    while time.time() < deadline and server.http.json("/healthz")["in_flight"] < 1:
        time.sleep(0.02)
    assert caller.is_alive(), "the request finished before SIGTERM could catch it in flight"
    server.proc.send_signal(signal.SIGTERM)
    caller.join(REQUEST_TIMEOUT_S + 60)
    status, _, content = result["answer"]
    assert status == 200 and content == expected  # drained: the whole answer, not a cut connection
    assert server.proc.wait(120) == 0
    stdout = (server.logs / "stdout.txt").read_text()
    stderr = (server.logs / "stderr.txt").read_text()
    assert "serve: SIGTERM" in stdout and "serve: stopped" in stdout, stdout[-2000:]
    for crash in ("Traceback", "SIGTERM received", "Fatal Python error", "Aborted"):
        assert crash not in stderr and crash not in stdout, (crash, stderr[-3000:])
