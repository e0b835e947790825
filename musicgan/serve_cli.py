"""``musicgan serve`` (and the end of ``musicgan demo``): start the Serve application, print how to
call it, and serve until Ctrl-C or SIGTERM, then drain and stop. Ray is imported only when serving
starts (through ``serving.app``)."""

from __future__ import annotations

import json
import signal
import time
import urllib.request


class _Terminate(Exception):
    """Raised in the main thread by the SIGTERM handler of :func:`serve_until_interrupted`."""


def _on_sigterm(signum, frame):
    raise _Terminate()


def serve_until_interrupted(model: str, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1,
                            threads: int = 1, check: bool = False) -> int:
    """Start serving ``model``, print how to call it (``check``: after one real request), and
    keep serving until Ctrl-C or SIGTERM (how systemd and Kubernetes stop a server); either one
    drains the requests in flight, stops Serve and returns 0. What ``musicgan serve`` and the end
    of ``musicgan demo`` run."""
    from serving.app import GRACEFUL_SHUTDOWN_S, start, stop

    start(model, host=host, port=port, replicas=replicas, threads=threads)
    # ray.init installed its own SIGTERM handler (it exits with status 15 mid-whatever): take it back
    signal.signal(signal.SIGTERM, _on_sigterm)
    url = f"http://{host}:{port}"
    checked = None
    if check:
        # no format: each family's default (midi, or wav for a spectrogram model)
        req = urllib.request.Request(url + "/v1/generate", data=json.dumps({"seed": 7}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            checked = [f"checked: POST /v1/generate -> {r.status}, {len(r.read())} bytes of {r.headers['content-type']}"]
    with urllib.request.urlopen(url + "/v1/model", timeout=60) as r:
        info = json.loads(r.read())
    if check and "harmonize" in info.get("tasks", []) and info.get("examples"):
        body = {"example": info["examples"][0]["id"], "seed": 7, "format": "midi"}
        req = urllib.request.Request(url + "/v1/harmonize", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            checked.append(f"checked: POST /v1/harmonize ({body['example']}) -> {r.status}, {len(r.read())} bytes, "
                           f"max overlap with training {r.headers.get('X-Musicgan-Max-Overlap', '-')}")
    print(summary_text(url, info))
    for line in checked or []:
        print(f"  {line}")
    print("  serving until Ctrl-C or SIGTERM", flush=True)
    # Ray Train's fit() leaves its own SIGINT handler (it aborts a run that is over): take Ctrl-C back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _Terminate) as e:
        # a second signal while draining would cut the requests we are waiting for: ignore it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        why = "SIGTERM" if isinstance(e, _Terminate) else "Ctrl-C"
        print(f"serve: {why}: finishing the requests in flight (up to {GRACEFUL_SHUTDOWN_S:g} s), then stopping",
              flush=True)
        stop()
        print("serve: stopped", flush=True)
    return 0


def summary_text(url: str, info: dict) -> str:
    """What ``musicgan serve`` prints once the model answers: where it is and how to call it."""
    head = [f"serve: {info['name']} {info['version']} (step {info['step']}) at {url}",
            f"  page         {url}/",
            f"  API docs     {url}/docs"]
    from musicgan.families import get_family

    return "\n".join(head + get_family(info["family"]).serve_summary(url, info))


def audio_summary(url: str, info: dict) -> list[str]:
    """The spectrogram family's lines of :func:`summary_text`: its notes and a call for one."""
    pitch = (info.get("pitches") or [None])[len(info.get("pitches") or [None]) // 2]
    instrument = (info.get("instruments") or [None])[0]
    note = {k: v for k, v in (("pitch", pitch), ("instrument", instrument)) if v is not None}
    args = ", ".join(f"{k}={v!r}" for k, v in note.items())
    return [
        f"  notes        {len(info.get('pitches') or [])} pitches "
        f"{', '.join(map(str, info.get('pitches') or [])) or '-'}; instruments: "
        f"{', '.join(info.get('instruments') or []) or '-'}",
        f"  try          curl -s -X POST {url}/v1/generate -H 'Content-Type: application/json' "
        f"-d '{json.dumps({**note, 'n_samples': 2, 'seed': 7})}' -o notes.wav",
        f"  Python       from musicgan.client import generate_audio; wav = generate_audio({url!r}"
        + (f", {args}" if args else "") + ", seed=7)",
    ]


def pianoroll_summary(url: str, info: dict) -> list[str]:
    """The pianoroll family's lines of :func:`summary_text`: a call for two phrases as MIDI and, for a
    masked model, the assistant's calls (a shipped example melody harmonized, an upload, a region rewritten)."""
    json_post = f"curl -s -X POST {url}/v1/%s -H 'Content-Type: application/json' -d '%s' -o %s"
    lines = [f"  try          {json_post % ('generate', json.dumps({'n_samples': 2, 'n_bars': 8, 'seed': 7, 'format': 'midi'}), 'sample.mid')}",
             "  Python       from musicgan.client import generate; pms = generate(n_samples=2, seed=7)"]
    if "harmonize" not in info.get("tasks", []):
        return lines + ["  assistant    not this model (unmasked); train with --preset cpu-masked to harmonize, "
                        "continue and inpaint"]
    examples = [e["id"] for e in info.get("examples") or []]
    if examples:
        body = json.dumps({"example": examples[0], "seed": 7, "format": "midi"})
        lines.append(f"  harmonize    {json_post % ('harmonize', body, 'harmonized.mid')}")
        lines.append(f"  examples     {', '.join(examples)} (held-out chorale melodies; GET /v1/model has their notes)")
    lines += [f"  your melody  curl -s -X POST {url}/v1/harmonize -F file=@melody.mid -F seed=7 -o harmonized.mid",
              f"  inpaint      curl -s -X POST {url}/v1/inpaint -F file=@piece.mid -F bars=3,4 -F voices=alto,tenor "
              "-o inpainted.mid",
              f"  continue     curl -s -X POST {url}/v1/continue -F file=@piece.mid -F n_bars=4 -o continued.mid"]
    return lines
