"""End to end on a real multi-node Ray cluster (head + 3 worker nodes on this machine), through
``musicgan submit``: a data job, a training job, a training job that loses a worker node mid-run,
a search that promotes into the shared registry, and serving that model from the cluster.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "cluster" / "local.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MUSICGAN_DEBUG", "RAY_AUTH_MODE")}
    e["PATH"] = f"{Path(sys.executable).parent}:{e.get('PATH', '')}"
    return e


def musicgan(*args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicgan.cli", *args], capture_output=True, text=True,
                          env=env(), timeout=timeout)


def registered_steps(run: Path) -> list[int]:
    snap = run / "checkpoint_manager_snapshot.json"
    try:
        return [int(c["checkpoint_dir_name"].split("_")[1])
                for c in json.loads(snap.read_text()).get("checkpoint_results", [])]
    except (OSError, ValueError, KeyError):
        return []


@pytest.fixture(scope="module")
def cluster():
    d = Path(tempfile.mkdtemp(prefix="mgc-", dir="/tmp"))  # short: Ray's socket paths live under it
    port, dport = free_port(), free_port()
    up = subprocess.run(["bash", str(LOCAL), "up", "--workers", "3", "--dir", str(d), "--port", str(port),
                         "--dashboard-port", str(dport)], capture_output=True, text=True, env=env(), timeout=300)
    info = {"dir": d, "shared": d / "shared", "port": port, "address": f"http://127.0.0.1:{dport}"}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield info
    finally:
        down = subprocess.run(["bash", str(LOCAL), "down", "--dir", str(d)], capture_output=True, text=True,
                              env=env(), timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
        time.sleep(2)
        stray = subprocess.run(["pgrep", "-af", f"{d}/t/"], capture_output=True, text=True).stdout.strip()
        assert not stray, f"processes left behind:\n{stray}"
        assert "stray" not in down.stdout, down.stdout  # down had to kill leftovers itself


def test_submit_without_a_token_says_what_to_do(cluster, tmp_path):
    out = subprocess.run([sys.executable, "-m", "musicgan.cli", "jobs", "list", "--address", cluster["address"]],
                         capture_output=True, text=True, timeout=120,
                         env={**env(), "HOME": str(tmp_path), "RAY_AUTH_TOKEN": ""})
    assert out.returncode == 2 and "no Ray auth token found" in out.stderr and "~/.ray/auth_token" in out.stderr


def test_data_and_training_jobs_write_to_shared_storage(cluster):
    shared, address = cluster["shared"], cluster["address"]
    data = musicgan("submit", "data", "--source", "bach", "--limit", "24", "--out", f"{shared}/data", "--quiet",
                    "--address", address, "--follow")
    assert data.returncode == 0, data.stdout[-3000:] + data.stderr[-2000:]
    assert (shared / "data" / "manifest.json").exists()
    train = musicgan("submit", "train", "--data", f"{shared}/data", "--run-dir", f"{shared}/runs/first",
                     "--preset", "cpu-tiny", "--workers", "2", "--address", address, "--follow")
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-2000:]
    assert "SUCCEEDED" in train.stdout
    assert registered_steps(shared / "runs" / "first") == [3, 6]
    assert (shared / "runs" / "first" / "checkpoint_000006" / "generator_ema.pt").exists()
    listed = musicgan("jobs", "list", "--address", address)
    assert listed.returncode == 0 and listed.stdout.count("SUCCEEDED") >= 2


def train_worker_node(cluster) -> str:
    """The worker node (w1, w2, w3) that hosts a Ray Train worker right now."""
    e = {**env(), "RAY_AUTH_MODE": "token"}
    ray = str(Path(sys.executable).parent / "ray")
    actors = json.loads(subprocess.run([ray, "list", "actors", "--address", cluster["address"], "--format", "json",
                                        "--filter", "class_name=RayTrainWorker", "--filter", "state=ALIVE"],
                                       capture_output=True, text=True, env=e, timeout=60).stdout)
    nodes = json.loads(subprocess.run([ray, "list", "nodes", "--address", cluster["address"], "--format", "json"],
                                      capture_output=True, text=True, env=e, timeout=60).stdout)
    name_of = {n["node_id"]: next((k[5:] for k in n["resources_total"] if k.startswith("node_w")), None)
               for n in nodes}
    hosts = [name_of.get(a["node_id"]) for a in actors]
    assert hosts and all(hosts), (actors, nodes)
    return hosts[0]


def test_training_survives_losing_a_worker_node(cluster):
    shared, address = cluster["shared"], cluster["address"]
    run = shared / "runs" / "second"
    sub = musicgan("submit", "train", "--data", f"{shared}/data", "--run-dir", str(run), "--preset", "cpu-tiny",
                   "--workers", "2", "--steps", "30", "--address", address, "--no-wait")
    assert sub.returncode == 0, sub.stdout + sub.stderr
    job_id = sub.stdout.split("job ", 1)[1].split()[0]
    deadline = time.time() + 300
    while time.time() < deadline and not registered_steps(run):
        time.sleep(0.5)
    assert registered_steps(run), "no checkpoint before the deadline"
    node = train_worker_node(cluster)
    stop = subprocess.run(["bash", str(LOCAL), "stop-worker", node[1:], "--dir", str(cluster["dir"])],
                          capture_output=True, text=True, env=env(), timeout=120)
    assert stop.returncode == 0, stop.stderr
    status = ""
    while time.time() < deadline + 300:
        status = musicgan("jobs", "status", job_id, "--address", address).stdout
        if any(s in status for s in ("SUCCEEDED", "FAILED", "STOPPED")):
            break
        time.sleep(3)
    assert "SUCCEEDED" in status, status + musicgan("jobs", "logs", job_id, "--address", address).stdout[-3000:]
    starts = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert len(starts) >= 2 and starts[-1]["restored"] and starts[-1]["step"] >= 3, starts
    assert registered_steps(run)[-1] == 30


def test_search_promotes_and_the_cluster_serves_it(cluster):
    shared, address = cluster["shared"], cluster["address"]
    tune = musicgan("submit", "tune", "--data", f"{shared}/data", "--run-dir", f"{shared}/search", "--trials", "2",
                    "--space", str(ROOT / "tuning" / "spaces" / "learning-rates.yaml"), "--preset", "cpu-tiny",
                    "--quiet", "--promote", "bach", "--registry", f"{shared}/models", "--address", address, "--follow")
    assert tune.returncode == 0, tune.stdout[-3000:] + tune.stderr[-2000:]
    assert "promote: bach v1" in tune.stdout
    assert json.loads((shared / "models" / "bach" / "latest").read_text()) == {"version": "v1"}
    port = free_port()
    serve = musicgan("submit", "serve", "--model", f"{shared}/models/bach/latest", "--port", str(port),
                     "--address", address, "--no-wait")
    assert serve.returncode == 0, serve.stdout + serve.stderr
    job_id = serve.stdout.split("job ", 1)[1].split()[0]
    try:
        deadline, info = time.time() + 240, None
        while time.time() < deadline and info is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=5) as r:
                    info = json.loads(r.read())
            except OSError:
                time.sleep(1)
        assert info and info["name"] == "bach" and info["version"] == "v1", info
        record = json.loads((shared / "models" / "bach" / "v1" / "model.json").read_text())
        assert record["provenance"]["search_run"] == f"{shared}/search"  # the registry keeps the path
        # the public answer keeps the trial id, not where the server keeps its files
        assert info["provenance"]["trial_id"] == record["provenance"]["trial_id"]
        assert "search_run" not in info["provenance"] and str(shared) not in json.dumps(info)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/generate", method="POST",
                                     data=json.dumps({"seed": 1, "format": "midi"}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200 and r.read().startswith(b"MThd")
    finally:
        musicgan("jobs", "stop", job_id, "--address", address)
