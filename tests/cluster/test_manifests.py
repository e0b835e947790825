"""The cluster files agree with the code: every entry point is a real musicgan command with valid
flags, the Serve config names a real builder and real options, and no secret sits in a file."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = sorted((ROOT / "cluster" / "kuberay").glob("*.yaml"))
LAUNCHERS = [ROOT / "cluster" / "aws.yaml", ROOT / "cluster" / "gcp.yaml"]
USER_CONFIG_KEYS = {"model", "watch_seconds", "max_batch_size", "batch_wait_timeout_s"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def check_command(line: str) -> None:
    """``python -m musicgan.cli ...``, ``musicgan ...`` or ``python -m tuning.search ...``: parse it for real."""
    from musicgan.jobs import check_arguments

    argv = shlex.split(line)
    if argv[:3] == ["python", "-m", "musicgan.cli"]:
        check_arguments(argv[3:])
    elif argv[:1] == ["musicgan"]:
        check_arguments(argv[1:])
    elif argv[:3] == ["python", "-m", "tuning.search"]:
        check_arguments(["tune", *argv[3:]])
    else:
        raise AssertionError(f"not a musicgan entry point: {line}")
    for i, a in enumerate(argv[:-1]):  # files inside the project that a command names must exist
        if a == "--space":
            assert (ROOT / argv[i + 1]).exists(), argv[i + 1]


def test_every_rayjob_entrypoint_is_a_valid_musicgan_command():
    jobs = [load(p) for p in KUBERAY if load(p)["kind"] == "RayJob"]
    assert {j["metadata"]["name"] for j in jobs} == {"musicgan-train", "musicgan-tune", "musicgan-audio"}
    commands = [c.strip() for j in jobs for c in j["spec"]["entrypoint"].split("&&")]
    assert len(commands) == 6
    audio = next(j for j in jobs if j["metadata"]["name"] == "musicgan-audio")["spec"]["entrypoint"]
    assert "--source notes" in audio and "--preset audio-gpu" in audio
    for c in commands:
        check_command(c)


def test_a_bad_entrypoint_would_be_caught():
    from musicgan.jobs import SubmitError

    with pytest.raises(SubmitError, match="--run-dir"):
        check_command("python -m musicgan.cli train --data /shared/data")
    with pytest.raises(SubmitError, match="unrecognized"):
        check_command("python -m tuning.search --data d --run-dir r --trails 4")


def serve_apps() -> list[dict]:
    rs = next(load(p) for p in KUBERAY if load(p)["kind"] == "RayService")
    return yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"] + load(ROOT / "serving" / "config.yaml")[
        "applications"]


def test_serve_configs_name_the_real_builder_and_options():
    from serving.app import MusicGAN

    for app in serve_apps():
        module, attr = app["import_path"].split(":")
        builder = getattr(importlib.import_module(module), attr)
        assert callable(builder) and "model" in app["args"]
        for dep in app["deployments"]:
            assert dep["name"] == MusicGAN.name
            assert set(dep.get("user_config", {})) <= USER_CONFIG_KEYS, dep["user_config"]
            assert dep["max_queued_requests"] > 0 and dep["max_ongoing_requests"] >= 16


def containers(doc) -> list[dict]:
    found = []
    if isinstance(doc, dict):
        if "containers" in doc:
            found += doc["containers"]
        for v in doc.values():
            found += containers(v)
    elif isinstance(doc, list):
        for v in doc:
            found += containers(v)
    return found


def test_kuberay_pods_use_token_auth_from_a_secret_and_ask_for_resources():
    for path in KUBERAY:
        for c in containers(load(path)):
            env = {e["name"]: e for e in c.get("env", [])}
            assert env["RAY_AUTH_MODE"]["value"] == "token", (path.name, c["name"])
            assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"], (path.name, c["name"])
            assert "value" not in env["RAY_AUTH_TOKEN"], "a token value in a manifest"
            assert c["resources"]["requests"]["cpu"], (path.name, c["name"])
    gpu = [c for p in KUBERAY for c in containers(load(p)) if "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})]
    assert gpu, "no GPU worker group"


def test_launcher_configs_have_cpu_head_gpu_workers_autoscaling_and_loopback_dashboard():
    for path in LAUNCHERS:
        cfg = load(path)
        types = cfg["available_node_types"]
        assert types[cfg["head_node_type"]]["resources"] == {"CPU": 0}
        assert "gpu_worker" in types and all("max_workers" in t for n, t in types.items() if n != "head")
        head = " ".join(cfg["head_start_ray_commands"])
        assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
        assert any("auth_token" in c for c in cfg["setup_commands"])
        assert any("pip install" in c and "musicgan" in c for c in cfg["setup_commands"])


def test_no_secret_values_in_cluster_files():
    pattern = re.compile(r"(auth_token|RAY_AUTH_TOKEN)\s*[:=]\s*['\"]?[0-9a-f]{16,}", re.I)
    for path in [*KUBERAY, *LAUNCHERS, ROOT / "cluster" / "runtime_env.yaml"]:
        assert not pattern.search(path.read_text()), path


def test_runtime_env_installs_only_project_dependencies():
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in deps}
    env = load(ROOT / "cluster" / "runtime_env.yaml")
    for pkg in env["pip"]["packages"]:
        assert re.split(r"[<>=\[ ]", pkg)[0].lower() in names, pkg
    assert env["working_dir"] == "." and ".venv" in env["excludes"]
