"""Ray Serve application: the generator behind a versioned HTTP API, with dynamic batching.

Two model families are served: ``pianoroll`` (multi-track phrases: MIDI, WAV, pianoroll PNG, JSON,
zip) and ``spectrogram`` (one-second log-mel notes conditioned on ``pitch`` and ``instrument``:
WAV through Griffin-Lim, spectrogram PNG, JSON summary, zip). ``GET /v1/model`` says which.

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
import threading
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
AUDIO_FORMATS = ["wav", "png", "json", "zip"]  # a spectrogram model has no notes to write as MIDI
DEFAULT_FORMAT = {"pianoroll": "midi", "spectrogram": "wav"}
AUDIO_GAP_S = 0.25  # silence between the clips of one WAV, so several notes are heard as several
# Fields that only mean something to a pianoroll model. Sent to a spectrogram model they are
# refused (422) rather than ignored: a caller who asks for 8 bars or a tempo should learn that
# they do not get them, as with unknown fields.
PIANOROLL_ONLY = ("n_bars", "temperature", "threshold", "condition", "tempo_qpm")
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
    format: Literal["midi", "wav", "json", "png", "zip"] | None = Field(
        None, description="what to return; omitted: midi for pianoroll models, wav for spectrogram (audio) models, "
                          "which cannot write midi")
    tempo_qpm: float = Field(90.0, ge=30.0, le=240.0, description="tempo of the MIDI/WAV, quarter notes a minute")
    pitch: int | None = Field(None, ge=0, le=127,
                              description="spectrogram (audio) models: MIDI pitch of the notes (60 = C4), one of "
                                          "the model's pitches (GET /v1/model); omitted: its first. "
                                          "All n_samples notes share it; they differ by seed")
    instrument: str | None = Field(None, max_length=64,
                                   description="spectrogram (audio) models: instrument name, one of the model's "
                                               "instruments (GET /v1/model); omitted: its first")

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
        self.family = self.cfg.model.family
        self.output = getattr(self.g, "output", None)  # pianoroll only: "binary" or "monophonic"
        if self.family == "spectrogram":
            from musicgan.render import feature_config

            self.fc = feature_config(self.data)
            self.pitches: list[int] = [int(p) for p in self.data.get("pitches") or []]
            self.instruments: list[str] = list(self.data.get("instruments") or [])

    def info(self) -> dict:
        rec = self.record
        out = {"name": self.name, "version": self.version, "step": self.meta["step"], "family": self.family,
               "metrics": rec.get("metrics", {}), "provenance": rec.get("provenance", {}),
               "feature_config": self.data["feature_config"], "max_samples": MAX_SAMPLES,
               "default_format": DEFAULT_FORMAT[self.family], "promoted_at": rec.get("promoted_at")}
        if self.family == "spectrogram":
            out.update(pitches=self.pitches, instruments=self.instruments, sample_rate_hz=self.fc.sample_rate_hz,
                       clip_seconds=self.fc.clip_seconds, gap_seconds=AUDIO_GAP_S, formats=list(AUDIO_FORMATS))
        else:
            out.update(labels=self.labels, output=self.output, phrase_bars=self.phrase_bars, max_bars=MAX_BARS,
                       formats=list(MEDIA))
        return out


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

    data, fmt = model.data, body.format or DEFAULT_FORMAT["pianoroll"]
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


# --- spectrogram (audio) models -------------------------------------------------------------


def check_family_fields(body: GenerateRequest, model: LoadedModel) -> str:
    """422 for fields the model's family cannot honour; returns the format to render."""
    fmt = body.format or DEFAULT_FORMAT[model.family]
    if model.family == "spectrogram":
        given = [f for f in PIANOROLL_ONLY if f in body.model_fields_set and getattr(body, f) is not None]
        if given:
            raise HTTPException(422, f"{', '.join(given)}: not for this model, a spectrogram (audio) model that "
                                     f"makes one {model.fc.clip_seconds:g} s note per sample; choose the note "
                                     "with pitch and instrument")
        if fmt not in AUDIO_FORMATS:
            raise HTTPException(422, f"format {fmt}: a spectrogram (audio) model makes audio, not notes, so it has no MIDI; "
                                     f"ask for one of {', '.join(AUDIO_FORMATS)}")
        return fmt
    given = [f for f in ("pitch", "instrument") if getattr(body, f) is not None]
    if given:
        raise HTTPException(422, f"{' and '.join(given)}: this is a pianoroll model (it writes whole phrases); "
                                 "pitch and instrument apply to spectrogram (audio) models only")
    return fmt


def note_condition(body: GenerateRequest, model: LoadedModel) -> tuple[int, int]:
    """``(pitch index, instrument index)`` of the request; an unknown one is a 422 naming what the model knows."""
    from musicgan.audio_model import ConditionError, condition_index

    try:
        return condition_index(model.data, body.pitch, body.instrument)
    except ConditionError as e:
        raise HTTPException(422, str(e)) from None


def _join_clips(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """``[n, samples]`` -> one track: the clips in order with :data:`AUDIO_GAP_S` of silence between."""
    gap = np.zeros(int(round(AUDIO_GAP_S * sample_rate_hz)), np.float32)
    parts = []
    for i, y in enumerate(audio):
        parts += [gap, y] if i else [y]
    return np.concatenate(parts).astype(np.float32)


def render_audio(mels: np.ndarray, fmt: str, model: LoadedModel, seed: int, cond: tuple[int, int],
                 plot_lock=None) -> bytes:
    """The response body for a spectrogram model's ``mels`` ``[n, 1, n_mels, frames]`` (dB); pure
    function of its inputs (Griffin-Lim starts from a fixed phase), so same seed, same bytes."""
    import contextlib

    from musicgan.data.audio import mel_to_audio, wav_bytes
    from musicgan.render import condition_names, mel_png, note_name

    data, fc = model.data, model.fc
    pitch = model.pitches[cond[0]] if model.pitches else None
    instrument = model.instruments[cond[1]] if model.instruments else None
    names = condition_names(data, [cond] * len(mels))
    if fmt in ("png", "zip"):
        with plot_lock or contextlib.nullcontext():  # pyplot keeps global state: one figure at a time
            png = mel_png(mels, data, titles=[f"{name}  #{k}" for k, name in enumerate(names)],
                          title=f"{model.name} {model.version}  seed {seed}")
        if fmt == "png":
            return png
    if fmt == "json":
        return json.dumps({
            "model": {"name": model.name, "version": model.version}, "family": model.family, "seed": seed,
            "pitch": pitch, "pitch_name": note_name(pitch) if pitch is not None else None, "instrument": instrument,
            "sample_rate_hz": fc.sample_rate_hz, "clip_seconds": fc.clip_seconds, "gap_seconds": AUDIO_GAP_S,
            "n_mels": int(mels.shape[-2]), "frames": int(mels.shape[-1]), "hop_length": fc.hop_length,
            # a summary, not the mel itself (80 x 63 numbers a clip); the zip has it whole as mels.npy
            "samples": [{"index": k, "peak_db": round(float(m.max()), 2), "mean_db": round(float(m.mean()), 2),
                         "band_mean_db": [round(float(v), 1) for v in m[0].mean(axis=1)]}
                        for k, m in enumerate(mels)],
        }).encode()
    audio = mel_to_audio(mels[:, 0], fc)
    if fmt == "wav":
        return wav_bytes(_join_clips(audio, fc.sample_rate_hz), fc.sample_rate_hz)
    buf = io.BytesIO()  # zip: one WAV per clip, the spectrograms, the JSON summary and the mels
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, (y, name) in enumerate(zip(audio, names)):
            _zip_write(z, f"sample_{k:03d}_{name.split(' (')[0].replace(' ', '_')}.wav", wav_bytes(y, fc.sample_rate_hz))
        _zip_write(z, "spectrogram.png", png)
        _zip_write(z, "samples.json", render_audio(mels, "json", model, seed, cond))
        npy = io.BytesIO()
        np.save(npy, np.ascontiguousarray(mels, np.float32))
        _zip_write(z, "mels.npy", npy.getvalue())
    return buf.getvalue()


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
        self.plot_lock = threading.Lock()
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
        """Many requests, one generator forward. Each item is ``(model, request)``: a
        ``musicgan.gan.Request`` for a pianoroll model, an ``audio_model.NoteRequest`` for a
        spectrogram model. Returns rolls or dB mels, one array per item."""
        from musicgan.audio_model import generate_mels
        from musicgan.gan import generate_many

        groups: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(items):  # a version swap may split a batch in two
            groups.setdefault(id(model), []).append(i)
        out = [None] * len(items)
        self.forwards += len(groups)
        for idx in groups.values():
            model = items[idx[0]][0]
            many = generate_mels if model.family == "spectrogram" else generate_many
            rolls = await asyncio.to_thread(many, model.g, [items[i][1] for i in idx])
            for i, r in zip(idx, rolls):
                out[i] = r.numpy()
        return out

    # --- routes -----------------------------------------------------------------------------

    @app.post("/v1/generate", responses={200: {"content": {m: {} for m in MEDIA.values()}}})
    async def generate(self, body: GenerateRequest) -> Response:
        from musicgan.gan import Request as GenRequest

        model = self.model
        fmt = check_family_fields(body, model)
        body = body.model_copy(update={"format": fmt})
        if model.family == "spectrogram":
            return await self._generate_audio(body, model)
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

    async def _generate_audio(self, body: GenerateRequest, model: LoadedModel) -> Response:
        from musicgan.audio_model import NoteRequest

        cond = note_condition(body, model)
        seed = body.seed if body.seed is not None else random.SystemRandom().randrange(2**31)
        # one request for all its clips, from its seed; generate_mels makes them bit-identical
        # whatever else shares the batched forward (its docstring says how)
        req = NoteRequest(n=body.n_samples, seed=seed, pitch=cond[0], instrument=cond[1])
        mels = await self.forward((model, req))
        content = await asyncio.to_thread(render_audio, mels, body.format, model, seed, cond, self.plot_lock)
        self.served += 1
        headers = {"X-Musicgan-Seed": str(seed), "X-Musicgan-Model": f"{model.name}/{model.version}"}
        if model.pitches:
            headers["X-Musicgan-Pitch"] = str(model.pitches[cond[0]])
        if model.instruments:
            headers["X-Musicgan-Instrument"] = model.instruments[cond[1]]
        if body.format in ("wav", "zip"):
            headers["Content-Disposition"] = f'attachment; filename="musicgan-{seed}.{body.format}"'
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
        # no format: each family's default (midi, or wav for a spectrogram model)
        req = urllib.request.Request(url + "/v1/generate", data=json.dumps({"seed": 7}).encode(),
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
    head = [f"serve: {info['name']} {info['version']} (step {info['step']}) at {url}",
            f"  page         {url}/",
            f"  API docs     {url}/docs"]
    if info.get("family") == "spectrogram":
        pitch = (info.get("pitches") or [None])[len(info.get("pitches") or [None]) // 2]
        instrument = (info.get("instruments") or [None])[0]
        note = {k: v for k, v in (("pitch", pitch), ("instrument", instrument)) if v is not None}
        args = ", ".join(f"{k}={v!r}" for k, v in note.items())
        return "\n".join(head + [
            f"  notes        {len(info.get('pitches') or [])} pitches "
            f"{', '.join(map(str, info.get('pitches') or [])) or '-'}; instruments: "
            f"{', '.join(info.get('instruments') or []) or '-'}",
            f"  try          curl -s -X POST {url}/v1/generate -H 'Content-Type: application/json' "
            f"-d '{json.dumps({**note, 'n_samples': 2, 'seed': 7})}' -o notes.wav",
            f"  Python       from musicgan.client import generate_audio; wav = generate_audio({url!r}"
            + (f", {args}" if args else "") + ", seed=7)",
        ])
    return "\n".join(head + [
        f"  try          curl -s -X POST {url}/v1/generate -H 'Content-Type: application/json' "
        f"-d '{{\"n_samples\": 2, \"n_bars\": 8, \"seed\": 7, \"format\": \"midi\"}}' -o sample.mid",
        "  Python       from musicgan.client import generate; pms = generate(n_samples=2, seed=7)",
    ])
