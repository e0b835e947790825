"""Ray Serve application: the generator behind a versioned HTTP API, with dynamic batching.

One deployment, ``MusicGAN``, is both the FastAPI ingress and the model: a request does not pay
for a second hop. Concurrent ``/v1/generate`` requests meet in :meth:`MusicGAN.forward`, which
``@serve.batch`` turns into one generator forward for all of them (each keeps its own seed, so
its output does not depend on its batch-mates).

Routes: ``POST /v1/generate``, ``GET /v1/model``, ``GET /healthz``, ``GET /`` (the listening
page) and ``/docs`` (OpenAPI). The model loads once per replica from the registry
(``models/NAME/latest``) or a checkpoint folder, with ``torch.load(weights_only=True)``. When it
was given as a registry name or ``latest`` pointer, the replica watches the pointer and swaps in
a newly promoted version while it keeps answering; ``user_config`` can also name another model.

No request field names a path, a module or code: the model is chosen at deploy time only.
"""


import asyncio
import io
import json
import logging
import os
import random
import time
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve

logger = logging.getLogger("ray.serve")

MAX_SAMPLES = 16
MAX_BARS = 32  # 8 four-bar phrases per sample: about 21 s at 90 bpm
MAX_BODY_BYTES = 16 * 1024
MEDIA = {"midi": "audio/midi", "wav": "audio/wav", "png": "image/png", "json": "application/json",
         "zip": "application/zip"}
PAGE = Path(__file__).with_name("page.html")


class GenerateRequest(BaseModel):
    """Body of ``POST /v1/generate``. Unknown fields are rejected (422), so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    n_samples: int = Field(1, ge=1, le=MAX_SAMPLES, description="samples to generate (1-16)")
    n_bars: int | None = Field(None, ge=1, le=MAX_BARS,
                               description="bars per sample: a multiple of the model's phrase length "
                                           f"(4 bars for the Bach models), at most {MAX_BARS}; default one phrase")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="same seed + same parameters = same bytes; "
                                                                     "omitted: the server picks one and returns it")
    temperature: float | None = Field(None, ge=0.0, le=3.0,
                                      description="0 = most likely notes; above 0 samples (softer = more varied)")
    threshold: float | None = Field(None, gt=0.0, lt=1.0,
                                    description="binary-output models: a pitch sounds when its probability exceeds this")
    condition: str | None = Field(None, max_length=64, description="label to condition on, where the model has labels")
    format: Literal["midi", "wav", "json", "png", "zip"] = Field("midi", description="what to return")
    tempo_qpm: float = Field(90.0, ge=30.0, le=240.0, description="tempo of the MIDI/WAV, quarter notes a minute")

    @model_validator(mode="after")
    def _one_binarisation(self):
        if self.temperature is not None and self.threshold is not None:
            raise ValueError("give temperature or threshold, not both")
        return self


class LoadedModel:
    """A generator plus what the API needs to know about it; replaced whole when a new version loads."""

    def __init__(self, ref: str):
        from musicgan.checkpoint import load_generator
        from musicgan.registry import resolve

        path, record = resolve(ref)
        self.g, self.cfg, self.data, self.meta = load_generator(path)
        self.ref, self.path, self.record = ref, str(path), record or {}
        self.labels: list[str] = list(self.data["labels"])
        self.phrase_bars = int(self.data["bars"])
        self.version = self.record.get("version") or f"step-{self.meta['step']}"
        self.name = self.record.get("name") or Path(path).parent.name
        self.output = self.g.output

    def info(self) -> dict:
        rec = self.record
        return {"name": self.name, "version": self.version, "step": self.meta["step"],
                "metrics": rec.get("metrics", {}), "provenance": rec.get("provenance", {}),
                "feature_config": self.data["feature_config"], "labels": self.labels,
                "output": self.output, "phrase_bars": self.phrase_bars, "max_bars": MAX_BARS,
                "max_samples": MAX_SAMPLES, "formats": list(MEDIA), "promoted_at": rec.get("promoted_at")}


def _pointer_of(ref: str) -> str | None:
    """The ``latest`` file to watch when ``ref`` names a registry model (not a fixed version)."""
    from musicgan import storage

    loc = storage.resolve(ref)
    if loc.path.endswith("/latest") and loc.exists():
        return loc.uri
    if loc.join("latest").exists() and not loc.join("model.json").exists():
        return loc.join("latest").uri
    return None


def _read_pointer(uri: str) -> str | None:
    from musicgan import storage

    try:
        return storage.resolve(uri).read_json().get("version")
    except (OSError, ValueError, AttributeError):
        return None


app = FastAPI(title="musicgan", version="1",
              description="Generate music from a trained musicgan generator: MIDI, WAV, pianoroll PNG, JSON or zip.")


@app.middleware("http")
async def _limit_body(request: Request, call_next):
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
    return await call_next(request)


def _phrases(body: GenerateRequest, model: LoadedModel) -> int:
    bars = body.n_bars or model.phrase_bars
    if bars % model.phrase_bars:
        raise HTTPException(422, f"n_bars must be a multiple of {model.phrase_bars} (this model's phrase length), "
                                 f"up to {MAX_BARS}; got {bars}")
    return bars // model.phrase_bars


def _label(body: GenerateRequest, model: LoadedModel) -> int | None:
    if body.condition is None:
        return None
    if len(model.labels) <= 1:
        raise HTTPException(422, "condition: this model is unconditional (it has no labels)")
    if body.condition not in model.labels:
        raise HTTPException(422, f"condition: unknown label {body.condition!r}; this model knows {model.labels}")
    return model.labels.index(body.condition)


def _join_phrases(rolls: np.ndarray, n_samples: int, phrases: int) -> np.ndarray:
    """``[n*k, tracks, steps, pitches]`` -> ``[n, tracks, k*steps, pitches]`` (phrases end to end)."""
    n, t, s, p = rolls.shape
    return rolls.reshape(n_samples, phrases, t, s, p).transpose(0, 2, 1, 3, 4).reshape(n_samples, t, phrases * s, p)


def _sequence(samples: np.ndarray, data: dict, gap_steps: int) -> np.ndarray:
    """Several samples one after another, with a rest between, as one roll (one MIDI/WAV file)."""
    t, s, p = samples.shape[1:]
    out = np.zeros((t, len(samples) * (s + gap_steps) - gap_steps, p), dtype=bool)
    for i, roll in enumerate(samples):
        out[:, i * (s + gap_steps): i * (s + gap_steps) + s] = roll
    return out


def notes_of(roll: np.ndarray, data: dict, tempo_qpm: float) -> list[dict]:
    from musicgan.data.pianoroll import roll_notes

    step_s = 60.0 / tempo_qpm / (data["steps_per_bar"] // 4)
    out = []
    for t, name in enumerate(data["track_names"]):
        for p, s, e in sorted(zip(*roll_notes(roll[t])), key=lambda n: (n[1], n[0])):
            out.append({"track": name, "pitch": int(data["pitch_low"] + p), "start_step": int(s), "end_step": int(e),
                        "start_s": round(float(s) * step_s, 4), "end_s": round(float(e) * step_s, 4)})
    return out


def render(samples: np.ndarray, body: GenerateRequest, model: LoadedModel, seed: int) -> bytes:
    """The response body for ``body.format``; pure function of its inputs (same seed, same bytes)."""
    from musicgan.render import midi_bytes, pianoroll_png, wav_bytes

    data, fmt = model.data, body.format
    if fmt == "png":
        return pianoroll_png(samples, data, title=f"{model.name} {model.version}  seed {seed}")
    if fmt == "json":
        low = data["pitch_low"]
        return json.dumps({
            "model": {"name": model.name, "version": model.version}, "seed": seed, "tempo_qpm": body.tempo_qpm,
            "steps_per_bar": data["steps_per_bar"], "pitch_low": low, "tracks": data["track_names"],
            "samples": [{"pianoroll": [[[int(low + p) for p in np.flatnonzero(step)] for step in track]
                                       for track in roll],
                         "notes": notes_of(roll, data, body.tempo_qpm)} for roll in samples],
        }).encode()
    if fmt in ("midi", "wav"):
        mid = midi_bytes(_sequence(samples, data, gap_steps=data["steps_per_bar"]), data, tempo_qpm=body.tempo_qpm)
        return wav_bytes(mid) if fmt == "wav" else mid
    buf = io.BytesIO()  # zip: one MIDI per sample, the pianoroll and the JSON
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, roll in enumerate(samples):
            _zip_write(z, f"sample_{i:03d}.mid", midi_bytes(roll, data, tempo_qpm=body.tempo_qpm))
        _zip_write(z, "pianoroll.png", pianoroll_png(samples, data, title=f"{model.name} {model.version} seed {seed}"))
        _zip_write(z, "samples.json", render(samples, body.model_copy(update={"format": "json"}), model, seed))
    return buf.getvalue()


def _zip_write(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # fixed time: same request, same bytes
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


# Serve pickles the class when it is decorated: everything it calls must be defined above it.
@serve.deployment(
    # User code on the replica's own event loop: it never blocks it (the forward and slow renders
    # run in threads), and a request skips a hop between loops (about 2 ms at p50 here).
    ray_actor_options={"num_cpus": 0.5,
                       "runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}}},
    max_ongoing_requests=32,  # at least the batch size, or batches never fill
    max_queued_requests=64,  # beyond this, callers get a fast 503 instead of waiting forever
    health_check_period_s=5,
)
@serve.ingress(app)
class MusicGAN:
    def __init__(self, model: str, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        self.model = LoadedModel(model)
        self.pointer = _pointer_of(model)
        self.watch_s = 5.0
        self.watch_task = None
        self.started = time.time()
        self.served = 0
        self.forwards = 0  # generator forwards: fewer than requests served means batching worked
        logger.info(f"musicgan: loaded {self.model.name} {self.model.version} from {self.model.path}")

    # --- configuration ----------------------------------------------------------------------

    async def reconfigure(self, user_config: dict) -> None:
        """``user_config``: ``model`` (another model ref), ``watch_seconds``, ``max_batch_size``,
        ``batch_wait_timeout_s``. Applied without restarting the replica."""
        user_config = dict(user_config or {})
        if "max_batch_size" in user_config:
            self.forward.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self.forward.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))
        self.watch_s = float(user_config.get("watch_seconds", self.watch_s))
        ref = user_config.get("model")
        if ref and ref != self.model.ref:
            self.model = await asyncio.to_thread(LoadedModel, ref)  # old model serves until this returns
            self.pointer = _pointer_of(ref)
            logger.info(f"musicgan: now serving {self.model.name} {self.model.version}")
        if self.pointer and self.watch_s > 0 and self.watch_task is None:
            self.watch_task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Follow the registry's ``latest`` pointer: a promoted version replaces the model in place."""
        while True:
            await asyncio.sleep(self.watch_s)
            if not self.pointer:
                continue
            version = await asyncio.to_thread(_read_pointer, self.pointer)
            if version and version != self.model.version:
                try:
                    self.model = await asyncio.to_thread(LoadedModel, self.model.ref)
                    logger.info(f"musicgan: picked up {self.model.name} {self.model.version}")
                except Exception as e:  # keep serving the old version; try again next round
                    logger.warning(f"musicgan: could not load {version}: {e}")

    # --- the batched forward ----------------------------------------------------------------

    # No waiting for a batch to fill: a lone request goes at once, and under load the requests
    # that arrived during the previous forward form the next batch.
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def forward(self, items: list[tuple]) -> list:
        """Many requests, one generator forward. Each item is ``(model, Request)``."""
        from musicgan.gan import generate_many

        groups: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(items):  # a version swap may split a batch in two
            groups.setdefault(id(model), []).append(i)
        out = [None] * len(items)
        self.forwards += len(groups)
        for idx in groups.values():
            model = items[idx[0]][0]
            rolls = await asyncio.to_thread(generate_many, model.g, [items[i][1] for i in idx])
            for i, r in zip(idx, rolls):
                out[i] = r.numpy()
        return out

    # --- routes -----------------------------------------------------------------------------

    @app.post("/v1/generate", responses={200: {"content": {m: {} for m in MEDIA.values()}}})
    async def generate(self, body: GenerateRequest) -> Response:
        from musicgan.gan import Request as GenRequest

        model = self.model
        phrases = _phrases(body, model)
        seed = body.seed if body.seed is not None else random.SystemRandom().randrange(2**31)
        label = _label(body, model)
        if body.threshold is not None and model.output != "binary":
            raise HTTPException(422, "threshold applies to binary-output models; this one is monophonic: "
                                     "use temperature")
        req = GenRequest(n=body.n_samples * phrases, seed=seed, temperature=body.temperature or 0.0,
                         threshold=body.threshold or 0.5, label=label, phrases_per_sample=phrases)
        rolls = await self.forward((model, req))
        samples = _join_phrases(rolls, body.n_samples, phrases)
        if body.format in ("midi", "json"):  # well under a millisecond a phrase: not worth a thread hop
            content = render(samples, body, model, seed)
        else:
            content = await asyncio.to_thread(render, samples, body, model, seed)
        self.served += 1
        headers = {"X-Musicgan-Seed": str(seed), "X-Musicgan-Model": f"{model.name}/{model.version}"}
        if body.format in ("midi", "wav", "zip"):
            ext = {"midi": "mid", "wav": "wav", "zip": "zip"}[body.format]
            headers["Content-Disposition"] = f'attachment; filename="musicgan-{seed}.{ext}"'
        return Response(content, media_type=MEDIA[body.format], headers=headers)

    @app.get("/v1/model")
    async def model_info(self) -> dict:
        return self.model.info()

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok", "model": f"{self.model.name}/{self.model.version}", "pid": os.getpid(),
                "served": self.served, "forwards": self.forwards, "uptime_s": round(time.time() - self.started, 1)}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(self) -> str:
        return PAGE.read_text()


def build_app(model: str, replicas: int = 1, threads: int = 1, user_config: dict | None = None, **options):
    """The Serve application for ``model`` (a registry ref, run or checkpoint folder).

    ``options`` go to ``MusicGAN.options`` (e.g. ``max_queued_requests``)."""
    from musicgan.registry import resolve

    resolve(model)  # fail here, clearly, rather than in a replica
    return MusicGAN.options(num_replicas=replicas, user_config=user_config or {"watch_seconds": 5.0},
                            **options).bind(model=model, threads=threads)


def app_builder(args: dict):
    """For ``serve run serving/config.yaml`` / ``serve deploy``: ``args`` = {model, replicas, threads}."""
    return build_app(str(args["model"]), int(args.get("replicas", 1)), int(args.get("threads", 1)))


def start(model: str, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1, threads: int = 1,
          user_config: dict | None = None, name: str = "musicgan"):
    """Start Serve on ``host:port`` (loopback unless told otherwise) and deploy; returns the handle."""
    from musicgan.ray_utils import ensure_ray

    application = build_app(model, replicas, threads, user_config)
    ensure_ray()
    serve.start(http_options={"host": host, "port": port})
    return serve.run(application, name=name, route_prefix="/", blocking=False)


def serve_until_interrupted(model: str, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1,
                            threads: int = 1, check: bool = False) -> int:
    """Start serving ``model``, print how to call it (``check``: after one real request), and
    keep serving until Ctrl-C. What ``musicgan serve`` and the end of ``musicgan demo`` run."""
    import signal
    import urllib.request

    start(model, host=host, port=port, replicas=replicas, threads=threads)
    url = f"http://{host}:{port}"
    checked = None
    if check:
        req = urllib.request.Request(url + "/v1/generate", data=json.dumps({"seed": 7, "format": "midi"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            checked = f"checked: POST /v1/generate -> {r.status}, {len(r.read())} bytes of {r.headers['content-type']}"
    with urllib.request.urlopen(url + "/v1/model", timeout=60) as r:
        print(summary_text(url, json.loads(r.read())))
    if checked:
        print(f"  {checked}")
    print("  serving until Ctrl-C", flush=True)
    # Ray Train's fit() leaves its own SIGINT handler (it aborts a run that is over): take Ctrl-C back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
        print("serve: stopped")
    return 0


def summary_text(url: str, info: dict) -> str:
    return "\n".join([
        f"serve: {info['name']} {info['version']} (step {info['step']}) at {url}",
        f"  page         {url}/",
        f"  API docs     {url}/docs",
        f"  try          curl -s -X POST {url}/v1/generate -H 'Content-Type: application/json' "
        f"-d '{{\"n_samples\": 2, \"n_bars\": 8, \"seed\": 7, \"format\": \"midi\"}}' -o sample.mid",
        "  Python       from musicgan.client import generate; pms = generate(n_samples=2, seed=7)",
    ])
