"""``musicgan submit`` and ``musicgan jobs``: the same commands as Ray jobs on a cluster.

Goes through the Ray Jobs SDK (``JobSubmissionClient``) to the head's dashboard address
(``http://HEAD:8265``). Ray 2.60 clusters started with ``ray start --head`` require token
authentication; the client finds the token in ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token`` and sets ``RAY_AUTH_MODE=token`` for this process. Without one it stops with
what to do. It never turns authentication off.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from pathlib import Path

from musicgan.config import ConfigError

COMMANDS = {"data": ["data", "build"], "train": ["train"], "tune": ["tune"], "serve": ["serve"]}
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# Ray's submission ids ("raysubmit_" then 16 letters and digits), driver job ids (hex) and custom ids;
# they go into URLs.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# What a working_dir upload leaves out: environments, outputs and data are big and node-local.
EXCLUDES = [".venv", ".git", "demo", "runs", "models", "data", "**/__pycache__", "*.parquet", "*.egg-info"]


class SubmitError(ConfigError):
    """A submission that cannot be made; the message says what to do."""


def default_address() -> str:
    env = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or ""
    return env if env.startswith("http") else DEFAULT_ADDRESS


def find_token() -> str:
    """The cluster's auth token, or a clear error. Never disables authentication."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    candidates = [Path(os.environ["RAY_AUTH_TOKEN_PATH"])] if os.environ.get("RAY_AUTH_TOKEN_PATH") else []
    candidates.append(Path.home() / ".ray" / "auth_token")
    for path in candidates:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
    raise SubmitError(
        "no Ray auth token found. Ray 2.60 clusters require one: `ray start --head` wrote it to "
        "~/.ray/auth_token on the head node. Copy that file to ~/.ray/auth_token here, or set "
        "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH). On Kubernetes, read it from the cluster's Secret.")


def client(address: str):
    token = find_token()
    # before Ray is imported: it reads the auth mode once
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", token)
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except ConnectionError as e:
        raise SubmitError(f"cannot reach the Ray dashboard at {address}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # the SDK raises plain RuntimeError/Exception for auth and HTTP problems
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "auth" in text.lower() or "401" in text or "403" in text:
            raise SubmitError(f"the cluster at {address} refused the token: {text}. Is ~/.ray/auth_token the "
                              "head's token?") from None
        raise SubmitError(f"cannot use the Ray jobs API at {address}: {text}") from None


def entrypoint(kind: str, args: list[str]) -> str:
    """The ``musicgan ...`` command line a job runs; its arguments are checked here first."""
    if kind not in COMMANDS:
        raise SubmitError(f"cannot submit {kind!r}; choose one of {', '.join(COMMANDS)}")
    check_arguments(COMMANDS[kind] + list(args))
    return shlex.join(["musicgan", *COMMANDS[kind], *args])


def check_arguments(argv: list[str]) -> None:
    """Parse ``argv`` with the real ``musicgan`` parser: a typo fails here, not on the cluster."""
    import contextlib
    import io

    from musicgan.cli import make_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            make_parser().parse_args(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            last = err.getvalue().strip().splitlines()[-1:] or ["invalid arguments"]
            raise SubmitError(last[0].replace(": error: ", ": ", 1)) from None


def runtime_env(working_dir: str | None) -> dict:
    if not working_dir:
        return {}
    path = Path(working_dir)
    if not path.is_dir():
        raise SubmitError(f"--working-dir {working_dir} is not a folder")
    return {"working_dir": str(path.resolve()), "excludes": EXCLUDES}


def submit(kind: str, args: list[str], address: str, working_dir: str | None = None, follow: bool = False,
           wait: bool = True, out=sys.stdout) -> int:
    ep = entrypoint(kind, args)
    c = client(address)  # first: it sets up authentication before Ray is imported
    from ray.job_submission import JobStatus

    job_id = c.submit_job(entrypoint=ep, runtime_env=runtime_env(working_dir) or None,
                          metadata={"musicgan": kind})
    print(f"submit: job {job_id} -> {address}\n  entrypoint   {ep}", file=out, flush=True)
    if not wait:
        print(f"  follow       musicgan jobs logs {job_id} --address {address} --follow", file=out)
        return 0
    if follow:
        _tail(c, job_id, out)
    status = _wait(c, job_id, out, quiet=follow)
    print(summary_text(c, job_id, status, address, show_logs=not follow), file=out)
    return 0 if status == JobStatus.SUCCEEDED else 1


def _tail(c, job_id: str, out) -> None:
    """Stream a job's log to ``out`` until the job ends."""
    import asyncio

    async def tail():
        async for lines in c.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    asyncio.run(tail())


def _wait(c, job_id: str, out, quiet: bool, poll_s: float = 2.0):
    terminal = {"SUCCEEDED", "FAILED", "STOPPED"}
    last, t0 = None, time.time()
    while True:
        status = c.get_job_status(job_id)
        if str(status.value) in terminal:
            return status
        if not quiet and status != last:
            print(f"  {time.time() - t0:6.0f} s  {status.value}", file=out, flush=True)
            last = status
        time.sleep(poll_s)


def summary_text(c, job_id: str, status, address: str, show_logs: bool) -> str:
    info = c.get_job_info(job_id)
    took = ""
    if info.start_time and info.end_time:
        took = f" in {(info.end_time - info.start_time) / 1000:.0f} s"
    lines = [f"job {job_id}: {status.value}{took}"]
    if show_logs:
        tail = c.get_job_logs(job_id).strip().splitlines()[-15:]
        lines += ["  last lines of its log:"] + [f"    {t}" for t in tail]
    if info.message and status.value != "SUCCEEDED":
        lines.append(f"  message      {info.message.strip().splitlines()[-1][:300]}")
    lines.append(f"  logs         musicgan jobs logs {job_id} --address {address}")
    return "\n".join(lines)


def check_job_id(action: str, job_id: str | None) -> None:
    """A job id is given and looks like one, checked before connecting to anything."""
    if not job_id:
        raise SubmitError(f"musicgan jobs {action} needs a job id (see musicgan jobs list)")
    if not JOB_ID.fullmatch(job_id):
        raise SubmitError(f"{job_id!r} is not a Ray job id: letters, digits, '_', '-' and '.', like "
                          "raysubmit_a1B2c3D4e5F6g7H8 (see musicgan jobs list)")


def jobs_command(action: str, job_id: str | None, address: str, follow: bool = False, out=sys.stdout) -> int:
    if action != "list":
        check_job_id(action, job_id)
    c = client(address)
    if action == "list":
        jobs = sorted(c.list_jobs(), key=lambda j: j.start_time or 0)
        print(f"{'job':28s} {'status':10s} {'started':20s} entrypoint", file=out)
        for j in jobs:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((j.start_time or 0) / 1000))
            print(f"{(j.submission_id or j.job_id or '-'):28s} {j.status.value:10s} {started:20s} {j.entrypoint}",
                  file=out)
        return 0
    try:
        if action == "status":
            info = c.get_job_info(job_id)
            print(f"job {job_id}: {info.status.value}\n  entrypoint   {info.entrypoint}", file=out)
            if info.message:
                print(f"  message      {info.message.strip().splitlines()[-1][:300]}", file=out)
        elif action == "logs":
            if follow:
                _tail(c, job_id, out)
            else:
                out.write(c.get_job_logs(job_id))
        elif action == "stop":
            stopped = c.stop_job(job_id)
            print(f"job {job_id}: {'stop requested' if stopped else 'was not running'}", file=out)
    except RuntimeError as e:
        raise SubmitError(f"job {job_id}: {str(e).splitlines()[0]}") from None
    return 0
