"""The shell tools end or remove only what is theirs. ``cluster/local.sh down`` kills a process only
when its pid file names it by pid *and* start time, or when it carries the cluster's marker in its
environment; ``make clean`` removes only the fixed ``demo`` folder. Cheap: no Ray cluster starts."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "cluster" / "local.sh"


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (after the command name, which may hold spaces)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def spawn(marker: str | None = None) -> subprocess.Popen:
    """A ``sleep`` in its own session (its process group id is its pid, as a node's is), reaped when it ends."""
    env = {k: v for k, v in os.environ.items() if k != "MUSICGAN_CLUSTER_ID"}
    if marker:
        env["MUSICGAN_CLUSTER_ID"] = marker
    p = subprocess.Popen(["sleep", "300"], start_new_session=True, env=env)
    threading.Thread(target=p.wait, daemon=True).start()  # no zombie for local.sh to wait on
    return p


def down(d: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LOCAL), "down", "--dir", str(d)], capture_output=True, text=True, timeout=120)


def test_down_never_kills_a_process_a_stale_pid_file_names(tmp_path):
    stranger = spawn()
    try:
        (tmp_path / "head.pid").write_text(f"{stranger.pid}\n")  # a bare pid: cannot say it is the same process
        (tmp_path / "w1.pid").write_text(f"{stranger.pid} {start_time(stranger.pid) + 1}\n")  # same pid, other start
        r = down(tmp_path)
        assert r.returncode == 0, r.stderr
        assert stranger.poll() is None, "local.sh down killed a process it did not start"
        assert r.stderr.count("killing nothing by it") == 2 and "cluster down" in r.stdout
        assert not (tmp_path / "head.pid").exists() and not (tmp_path / "w1.pid").exists()
    finally:
        stranger.kill()


def test_down_ends_its_nodes_and_its_strays_and_nothing_else(tmp_path):
    (tmp_path / "cluster-id").write_text("test-cluster-1\n")
    node = spawn("test-cluster-1")
    stray = spawn("test-cluster-1")  # left its node's process group: known by the marker alone
    other = spawn("test-cluster-2")  # another cluster's process
    try:
        (tmp_path / "head.pid").write_text(f"{node.pid} {start_time(node.pid)}\n")
        r = down(tmp_path)
        assert r.returncode == 0, r.stderr
        assert node.wait(timeout=30) == -signal.SIGTERM
        assert stray.wait(timeout=30) == -signal.SIGKILL and f"ending stray processes {stray.pid}" in r.stdout
        assert other.poll() is None
    finally:
        for p in (node, stray, other):
            p.kill()


def test_make_clean_removes_only_the_fixed_demo_folder(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    env = {**os.environ, "DEMO": str(precious)}
    for target, expected in (("clean", "rm -rf demo .pytest_cache"), ("demo", "musicgan demo --out demo")):
        r = subprocess.run(["make", "-n", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert expected in r.stdout and str(precious) not in r.stdout, r.stdout
