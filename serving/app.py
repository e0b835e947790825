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

Hardening (what one caller can and cannot do to the others):

- Every request has a cost (:class:`Cost`: phrases or clips, and seconds of audio to render),
  capped per request (422 naming the limit, before any work) and per replica in flight (a fast 503
  with ``Retry-After`` when full). Renders (WAV, PNG, zip) run in their own bounded thread pool.
  Serve's proxy ends a request after :data:`REQUEST_TIMEOUT_S`.
- The batched forward samples per request and catches per request: a request that fails gets its
  own error (4xx when its input caused it, a logged 500 otherwise) and never fails its batch-mates.
- Bodies are read with a byte limit (chunked ones too) and parsed as strict JSON (no NaN or
  Infinity) into strictly typed fields (``true`` is not 1).
- Header values are ASCII; ``/v1/model`` shows no server paths.
"""


import asyncio
import functools
import io
import json
import logging
import math
import os
import random
import threading
import time
import urllib.parse
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ray import serve

logger = logging.getLogger("ray.serve")

MAX_SAMPLES = 16
MAX_BARS = 32  # 8 four-bar phrases per sample: about 21 s at 90 bpm
MAX_BODY_BYTES = 16 * 1024
MIN_TEMPERATURE = 0.05  # below this (and above 0) the softened distribution under/overflows
# What one request may cost (checked before any work; over it is a 422 naming the limit):
MAX_PHRASES = 64  # generated phrases (pianoroll: samples x phrases each) or clips (spectrogram)
MAX_AUDIO_S = 300.0  # seconds of audio the server renders for it (WAV; a 16 kHz WAV is 32 kB a second)
# What one replica works on at once, all requests together; beyond it a fast 503 with Retry-After:
MAX_INFLIGHT_PHRASES = 4 * MAX_PHRASES
MAX_INFLIGHT_AUDIO_S = 2 * MAX_AUDIO_S
RENDER_THREADS = 2  # WAV/PNG/zip renders run in a pool of their own: cheap requests never queue behind them
REQUEST_TIMEOUT_S = 60.0  # Serve's proxy ends a request after this (http_options.request_timeout_s)
GRACEFUL_SHUTDOWN_S = REQUEST_TIMEOUT_S  # on SIGTERM/Ctrl-C, in-flight requests get this long to finish
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

    # strict: a JSON true is not the integer 1, "3" is not 3; numbers must be finite
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    n_samples: int = Field(1, ge=1, le=MAX_SAMPLES, description="samples to generate (1-16)")
    n_bars: int | None = Field(None, ge=1, le=MAX_BARS,
                               description="bars per sample: a multiple of the model's phrase length "
                                           f"(4 bars for the Bach models), at most {MAX_BARS}; default one phrase")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="same seed + same parameters = same bytes; "
                                                                     "omitted: the server picks one and returns it")
    temperature: float | None = Field(None, ge=0.0, le=3.0,
                                      description=f"0 = most likely notes; from {MIN_TEMPERATURE} to 3 samples "
                                                  "(higher = more varied)")
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

    @field_validator("temperature")
    @classmethod
    def _temperature_floor(cls, value: float | None) -> float | None:
        if value is not None and 0.0 < value < MIN_TEMPERATURE:
            raise ValueError(f"temperature must be 0 (most likely notes) or at least {MIN_TEMPERATURE}; "
                             f"got {value:g}")
        return value

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
               "metrics": rec.get("metrics", {}), "provenance": public_provenance(rec.get("provenance", {})),
               "feature_config": self.data["feature_config"], "max_samples": MAX_SAMPLES,
               "limits": {"max_phrases": MAX_PHRASES, "max_audio_seconds": MAX_AUDIO_S,
                          "max_body_bytes": MAX_BODY_BYTES, "request_timeout_s": REQUEST_TIMEOUT_S},
               "default_format": DEFAULT_FORMAT[self.family], "promoted_at": rec.get("promoted_at")}
        if self.family == "spectrogram":
            out.update(pitches=self.pitches, instruments=self.instruments, sample_rate_hz=self.fc.sample_rate_hz,
                       clip_seconds=self.fc.clip_seconds, gap_seconds=AUDIO_GAP_S, formats=list(AUDIO_FORMATS))
        else:
            out.update(labels=self.labels, output=self.output, phrase_bars=self.phrase_bars, max_bars=MAX_BARS,
                       formats=list(MEDIA))
        return out


def _is_location(value: str) -> bool:
    """Whether a provenance string names a place on some machine (a path or a URI)."""
    return (value.startswith(("/", "~", "\\")) or "://" in value or "/" in value or "\\" in value
            or (len(value) > 1 and value[1] == ":" and value[0].isalpha()))


def public_provenance(prov):
    """``provenance`` for the public ``/v1/model`` answer: every path or URI dropped (they tell a
    caller where the server keeps its files); hashes, trial ids and parameters stay."""
    if isinstance(prov, dict):
        return {k: public_provenance(v) for k, v in prov.items()
                if not (isinstance(v, str) and _is_location(v))}
    if isinstance(prov, list):
        return [public_provenance(v) for v in prov if not (isinstance(v, str) and _is_location(v))]
    return prov


def header_value(text: str) -> str:
    """An HTTP header value that is always ASCII: anything else (a non-latin-1 instrument or run
    name, a control character) is percent-encoded as UTF-8, so ``urllib.parse.unquote`` gives it back."""
    return urllib.parse.quote(str(text), safe=" !#$&'()*+,/:;<=>?@[]^`{|}~")


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


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets a 413, counted while it is read.

    ``Content-Length`` over the limit is refused before reading; a chunked body (no length) is
    read chunk by chunk and refused as soon as it passes the limit. Under the limit, the body read
    is handed to the app as one message, so nothing downstream reads the socket again.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").strip()
        if length and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                return await self._refuse(scope, receive, send)
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413,
                                headers={"Connection": "close"})
        await response(scope, receive, send)


class JSONRejected(json.JSONDecodeError):
    pass


def strict_json(raw: bytes | str):
    """``json.loads`` that refuses what JSON does not have: NaN, Infinity, and numbers too large
    for a float (``1e999``), which Python's parser would turn into inf."""
    text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw

    def constant(name: str):
        raise JSONRejected(f"{name} is not a JSON number (numbers must be finite)", text, max(text.find(name), 0))

    def finite(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            raise JSONRejected(f"{number} is too large for a number", text, max(text.find(number), 0))
        return value

    return json.loads(text, parse_constant=constant, parse_float=finite)


class _StrictJSONRequest(Request):
    async def json(self):
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = strict_json(body)
            except UnicodeDecodeError as e:
                raise json.JSONDecodeError(f"body is not UTF-8: {e.reason}", "", e.start) from None
        return self._json


class StrictJSONRoute(APIRoute):
    """Routes whose JSON bodies go through :func:`strict_json` (FastAPI turns its errors into 422s)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def strict_handler(request: Request):
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def _json_safe(value):
    """A validation error made JSON-serialisable whatever the input was (bytes, inf, objects)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:200]).decode("utf-8", "replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


app = FastAPI(title="musicgan", version="1",
              description="Generate music from a trained musicgan generator: MIDI, WAV, pianoroll PNG, JSON or zip.")
app.router.route_class = StrictJSONRoute
app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError):
    return JSONResponse({"detail": _json_safe(exc.errors())}, status_code=422)


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


@dataclass(frozen=True)
class Cost:
    """What a request makes this replica do: phrases (or clips) generated, and seconds of audio
    rendered to WAV (0 for formats that render none: MIDI, JSON, PNG, a pianoroll zip of MIDIs)."""

    phrases: int
    audio_s: float
    what: str  # the request in words, for the messages


def request_cost(body: GenerateRequest, model: LoadedModel) -> Cost:
    """The cost of ``body`` (format already resolved); a 422 for an invalid ``n_bars``."""
    n = body.n_samples
    if model.family == "spectrogram":
        audio_s = n * model.fc.clip_seconds + (n - 1) * AUDIO_GAP_S if body.format in ("wav", "zip") else 0.0
        return Cost(n, audio_s, f"{n} notes of {model.fc.clip_seconds:g} s")
    phrases = _phrases(body, model)
    bars = phrases * model.phrase_bars
    # samples one after another with a bar of rest between (see _sequence); 4/4 bars
    audio_s = (n * bars + n - 1) * 4 * 60.0 / body.tempo_qpm if body.format == "wav" else 0.0
    return Cost(n * phrases, audio_s, f"{n} samples of {bars} bars at {body.tempo_qpm:g} qpm")


def check_cost(cost: Cost) -> None:
    """422, naming the limit, for a request over :data:`MAX_PHRASES` or :data:`MAX_AUDIO_S`."""
    if cost.phrases > MAX_PHRASES:
        raise HTTPException(422, f"this request asks for {cost.phrases} phrases ({cost.what}); the limit is "
                                 f"{MAX_PHRASES} phrases a request: ask for fewer samples or bars")
    if cost.audio_s > MAX_AUDIO_S + 1e-6:
        raise HTTPException(422, f"this request asks for {cost.audio_s:.1f} s of WAV audio ({cost.what}); the "
                                 f"limit is {MAX_AUDIO_S:g} s of audio a request: ask for fewer samples or bars, "
                                 "a faster tempo, or MIDI")


class InFlight:
    """The work one replica has accepted and not finished, against :data:`MAX_INFLIGHT_PHRASES`
    and :data:`MAX_INFLIGHT_AUDIO_S`. ``take`` refuses (False) instead of waiting."""

    def __init__(self, max_phrases: int = MAX_INFLIGHT_PHRASES, max_audio_s: float = MAX_INFLIGHT_AUDIO_S):
        self.max_phrases, self.max_audio_s = max_phrases, max_audio_s
        self.phrases, self.audio_s, self.requests = 0, 0.0, 0
        self._lock = threading.Lock()

    def take(self, cost: Cost) -> bool:
        with self._lock:
            if (self.phrases + cost.phrases > self.max_phrases
                    or self.audio_s + cost.audio_s > self.max_audio_s + 1e-6):
                return False
            self.phrases += cost.phrases
            self.audio_s += cost.audio_s
            self.requests += 1
            return True

    def give_back(self, cost: Cost) -> None:
        with self._lock:
            self.phrases -= cost.phrases
            self.audio_s -= cost.audio_s
            self.requests -= 1

    def busy(self) -> HTTPException:
        return HTTPException(503, f"busy: this replica is already working on {self.phrases} phrases and "
                                  f"{self.audio_s:.0f} s of audio (its limits: {self.max_phrases} phrases, "
                                  f"{self.max_audio_s:g} s); retry in a moment", headers={"Retry-After": "1"})


def generate_isolated(model: LoadedModel, requests: list) -> list:
    """One generator forward for ``requests``; returns, per request, its array or its exception.

    Sampling is per request (a request that fails there gets its exception, the others their
    output). If the shared forward itself fails, each request runs alone, so only the one that
    breaks it fails. Outputs do not depend on batch-mates, so a request run alone gets the bytes
    it would have got in the batch.
    """
    from musicgan.audio_model import generate_mels
    from musicgan.gan import generate_many

    many = generate_mels if model.family == "spectrogram" else functools.partial(generate_many, return_exceptions=True)
    try:
        return [r if isinstance(r, BaseException) else r.numpy() for r in many(model.g, requests)]
    except Exception as e:
        if len(requests) == 1:
            return [e]
        logger.warning(f"musicgan: a batched forward of {len(requests)} requests failed ({e!r}); "
                       "running them one by one")
        return [generate_isolated(model, [r])[0] for r in requests]


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


def render_audio(mels: np.ndarray, fmt: str, model: LoadedModel, seed: int, cond: tuple[int, int]) -> bytes:
    """The response body for a spectrogram model's ``mels`` ``[n, 1, n_mels, frames]`` (dB); pure
    function of its inputs (Griffin-Lim starts from a fixed phase), so same seed, same bytes."""
    from musicgan.data.audio import mel_to_audio, wav_bytes
    from musicgan.render import condition_names, mel_png, note_name

    data, fc = model.data, model.fc
    pitch = model.pitches[cond[0]] if model.pitches else None
    instrument = model.instruments[cond[1]] if model.instruments else None
    names = condition_names(data, [cond] * len(mels))
    if fmt in ("png", "zip"):
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
    # stopping (SIGTERM, Ctrl-C, a redeploy): requests in flight get this long to finish
    graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_S,
    graceful_shutdown_wait_loop_s=0.5,
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
        self.in_flight = InFlight()
        self.render_pool = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="musicgan-render")
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
        spectrogram model. Returns, per item, its rolls or dB mels, or the exception that item
        alone raised (:func:`generate_isolated`): one item's failure never fails the others."""
        groups: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(items):  # a version swap may split a batch in two
            groups.setdefault(id(model), []).append(i)
        out: list = [None] * len(items)
        self.forwards += len(groups)
        for idx in groups.values():
            model = items[idx[0]][0]
            try:
                results = await asyncio.to_thread(generate_isolated, model, [items[i][1] for i in idx])
            except Exception as e:  # (generate_isolated catches per request; this is belt and braces)
                results = [e] * len(idx)
            for i, r in zip(idx, results):
                out[i] = r
        return out

    # --- routes -----------------------------------------------------------------------------

    @app.post("/v1/generate", responses={200: {"content": {m: {} for m in MEDIA.values()}}})
    async def generate(self, body: GenerateRequest) -> Response:
        from musicgan.gan import Request as GenRequest

        model = self.model
        fmt = check_family_fields(body, model)
        body = body.model_copy(update={"format": fmt})
        cost = request_cost(body, model)
        check_cost(cost)  # 422 before any work
        seed = body.seed if body.seed is not None else random.SystemRandom().randrange(2**31)
        headers = {"X-Musicgan-Seed": str(seed), "X-Musicgan-Model": header_value(f"{model.name}/{model.version}")}
        if model.family == "spectrogram":
            from musicgan.audio_model import NoteRequest

            cond = note_condition(body, model)
            # one request for all its clips, from its seed; generate_mels makes them bit-identical
            # whatever else shares the batched forward (its docstring says how)
            req = NoteRequest(n=body.n_samples, seed=seed, pitch=cond[0], instrument=cond[1])
            draw = functools.partial(render_audio, fmt=body.format, model=model, seed=seed, cond=cond)
            if model.pitches:
                headers["X-Musicgan-Pitch"] = str(model.pitches[cond[0]])
            if model.instruments:
                headers["X-Musicgan-Instrument"] = header_value(model.instruments[cond[1]])
            inline = False  # every audio format runs Griffin-Lim or matplotlib, or summarises mels
        else:
            phrases = cost.phrases // body.n_samples
            label = _label(body, model)
            if body.threshold is not None and model.output != "binary":
                raise HTTPException(422, "threshold applies to binary-output models; this one is monophonic: "
                                         "use temperature")
            req = GenRequest(n=body.n_samples * phrases, seed=seed, temperature=body.temperature or 0.0,
                             threshold=body.threshold or 0.5, label=label, phrases_per_sample=phrases)

            def draw(rolls):
                return render(_join_phrases(rolls, body.n_samples, phrases), body, model, seed)

            inline = body.format in ("midi", "json")  # well under a millisecond a phrase: no thread hop
        content = await self._produce(model, req, cost, draw, inline)
        if body.format in ("midi", "wav", "zip"):
            ext = {"midi": "mid", "wav": "wav", "zip": "zip"}[body.format]
            headers["Content-Disposition"] = f'attachment; filename="musicgan-{seed}.{ext}"'
        return Response(content, media_type=MEDIA[body.format], headers=headers)

    async def _produce(self, model: LoadedModel, req, cost: Cost, draw, inline: bool) -> bytes:
        """Generate (batched) and render one request within the replica's in-flight budget."""
        if not self.in_flight.take(cost):
            raise self.in_flight.busy()
        try:
            out = await self.forward((model, req))
            if isinstance(out, BaseException):
                raise self._failure(out, "generation")
            try:
                if inline:
                    content = draw(out)
                else:
                    content = await asyncio.get_running_loop().run_in_executor(self.render_pool, draw, out)
            except Exception as e:
                raise self._failure(e, "rendering") from None
            self.served += 1
            return content
        finally:
            self.in_flight.give_back(cost)

    @staticmethod
    def _failure(error: BaseException, stage: str) -> HTTPException:
        """The HTTP answer for one request's failure: 422 when its own input caused it, else a 500
        that is logged (with its traceback) under a reference the caller sees."""
        from musicgan.gan import SamplingError

        if isinstance(error, SamplingError):
            return HTTPException(422, str(error))
        ref = uuid.uuid4().hex[:12]
        logger.error(f"musicgan: internal error {ref} in {stage}: {error!r}",
                     exc_info=(type(error), error, error.__traceback__))
        return HTTPException(500, f"internal error in {stage} (reference {ref}); it is logged on the server")

    @app.get("/v1/model")
    async def model_info(self) -> dict:
        return self.model.info()

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok", "model": f"{self.model.name}/{self.model.version}", "pid": os.getpid(),
                "served": self.served, "forwards": self.forwards, "in_flight": self.in_flight.requests,
                "uptime_s": round(time.time() - self.started, 1)}

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
    serve.start(http_options={"host": host, "port": port, "request_timeout_s": REQUEST_TIMEOUT_S})
    return serve.run(application, name=name, route_prefix="/", blocking=False)


class _Terminate(Exception):
    """Raised in the main thread by the SIGTERM handler of :func:`serve_until_interrupted`."""


def _on_sigterm(signum, frame):
    raise _Terminate()


def stop(name: str = "musicgan") -> None:
    """Drain and stop: delete the application first, so its replicas finish the requests they
    have (up to :data:`GRACEFUL_SHUTDOWN_S`) while the proxy still carries the answers back;
    then stop Serve and Ray."""
    import ray

    try:
        serve.delete(name, _blocking=True)
    finally:
        serve.shutdown()
        ray.shutdown()


def serve_until_interrupted(model: str, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1,
                            threads: int = 1, check: bool = False) -> int:
    """Start serving ``model``, print how to call it (``check``: after one real request), and
    keep serving until Ctrl-C or SIGTERM (how systemd and Kubernetes stop a server); either one
    drains the requests in flight, stops Serve and returns 0. What ``musicgan serve`` and the end
    of ``musicgan demo`` run."""
    import signal
    import urllib.request

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
            checked = f"checked: POST /v1/generate -> {r.status}, {len(r.read())} bytes of {r.headers['content-type']}"
    with urllib.request.urlopen(url + "/v1/model", timeout=60) as r:
        print(summary_text(url, json.loads(r.read())))
    if checked:
        print(f"  {checked}")
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
