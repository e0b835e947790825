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

Layout: the request model and its checks are in :mod:`serving.schema`; strict JSON, the body limit
and header values in :mod:`serving.http_edge`; the renders in :mod:`serving.render`; the loaded
model, its hot swap and the isolated batched forward in :mod:`serving.model` (none of them imports
Ray). This module holds the deployment, what only it needs (cost and in-flight accounting) and the
app builder. The serve-until-Ctrl-C loop is :mod:`musicgan.serve_cli`.
"""


import asyncio
import dataclasses
import functools
import logging
import os
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from ray import serve

from musicgan.families import get_family
from serving import assist
from serving.http_edge import BodyLimit, StrictJSONRoute, header_value, validation_error
from serving.model import LoadedModel, generate_isolated, pointer_of, read_pointer
from serving.render import join_phrases
from serving.schema import (AUDIO_GAP_S, MAX_AUDIO_S, MAX_BODY_BYTES, MAX_PHRASES, MEDIA, REQUEST_TIMEOUT_S,
                            GenerateRequest, label_index, note_condition, phrases_of)

logger = logging.getLogger("ray.serve")

# What one replica works on at once, all requests together; beyond it a fast 503 with Retry-After:
MAX_INFLIGHT_PHRASES = 4 * MAX_PHRASES
MAX_INFLIGHT_AUDIO_S = 2 * MAX_AUDIO_S
RENDER_THREADS = 2  # WAV/PNG/zip renders run in a pool of their own: cheap requests never queue behind them
GRACEFUL_SHUTDOWN_S = REQUEST_TIMEOUT_S  # on SIGTERM/Ctrl-C, in-flight requests get this long to finish
PAGE = Path(__file__).with_name("page.html")

app = FastAPI(title="musicgan", version="1",
              description="Generate music from a trained musicgan generator: MIDI, WAV, pianoroll PNG, JSON or zip.")
app.router.route_class = StrictJSONRoute
app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES,
                   path_limits={route: assist.MAX_JSON_BYTES for route in assist.ROUTES})


def _openapi() -> dict:
    """The OpenAPI document, with the assistant's request models (their routes read JSON or a form
    themselves, so FastAPI does not see the models on its own)."""
    from fastapi.openapi.utils import get_openapi

    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {}).update(assist.openapi_schemas())
        app.openapi_schema = schema
    return app.openapi_schema


app.openapi = _openapi
MAX_REDRAWS = 3  # avoid_copies: a sample over the copy threshold is drawn again from a derived seed, this often at most
app.add_exception_handler(RequestValidationError, validation_error)


@dataclass(frozen=True)
class Cost:
    """What a request makes this replica do: phrases (or clips) generated, and seconds of audio
    rendered to WAV (0 for formats that render none: MIDI, JSON, PNG, a pianoroll zip of MIDIs)."""

    phrases: int
    audio_s: float
    what: str  # the request in words, for the messages


def audio_cost(body: GenerateRequest, model: LoadedModel) -> Cost:
    """The cost of ``body`` (format already resolved) for a spectrogram (audio) model: clips, and
    the WAV's seconds."""
    n = body.n_samples
    audio_s = n * model.fc.clip_seconds + (n - 1) * AUDIO_GAP_S if body.format in ("wav", "zip") else 0.0
    return Cost(n, audio_s, f"{n} notes of {model.fc.clip_seconds:g} s")


def pianoroll_cost(body: GenerateRequest, model: LoadedModel) -> Cost:
    """The cost of ``body`` (format already resolved) for a pianoroll model: phrases, and the WAV's
    seconds at the request's tempo; a 422 for an invalid ``n_bars``."""
    n = body.n_samples
    phrases = phrases_of(body, model)
    bars = body.n_bars or model.phrase_bars
    # samples one after another with a bar of rest between (see serving.render); 4/4 bars
    audio_s = (n * bars + n - 1) * 4 * 60.0 / body.tempo_qpm if body.format == "wav" else 0.0
    return Cost(n * phrases, audio_s, f"{n} samples of {bars} bars at {body.tempo_qpm:g} qpm")


def audio_request(body: GenerateRequest, model: LoadedModel, cost: Cost, seed: int, headers: dict):
    """``(request, draw, inline)`` for a spectrogram (audio) model; adds the note's headers."""
    from musicgan.audio_model import NoteRequest

    cond = note_condition(body, model)
    # one request for all its clips, from its seed; generate_mels makes them bit-identical
    # whatever else shares the batched forward (its docstring says how)
    req = NoteRequest(n=body.n_samples, seed=seed, pitch=cond[0], instrument=cond[1])
    draw = functools.partial(get_family(model.family).render, fmt=body.format, model=model, seed=seed, cond=cond)
    if model.pitches:
        headers["X-Musicgan-Pitch"] = str(model.pitches[cond[0]])
    if model.instruments:
        headers["X-Musicgan-Instrument"] = header_value(model.instruments[cond[1]])
    return req, draw, False  # every audio format runs Griffin-Lim or matplotlib, or summarises mels


def pianoroll_request(body: GenerateRequest, model: LoadedModel, cost: Cost, seed: int, headers: dict):
    """``(request, draw, inline)`` for a pianoroll model."""
    from musicgan.gan import Request as GenRequest

    render_rolls = get_family(model.family).render
    phrases = cost.phrases // body.n_samples
    label = label_index(body, model)
    if body.threshold is not None and model.output != "binary":
        raise HTTPException(422, "threshold applies to binary-output models; this one is monophonic: "
                                 "use temperature")
    req = GenRequest(n=body.n_samples * phrases, seed=seed, temperature=body.temperature or 0.0,
                     threshold=body.threshold or 0.5, label=label, phrases_per_sample=phrases)

    def draw(samples, originality=None):
        return render_rolls(samples, body, model, seed, extra={"task": "generate", "n_bars": phrases *
                                                               model.phrase_bars}, originality=originality)

    return req, draw, body.format in ("midi", "json")  # well under a millisecond a phrase: no thread hop


def redraw_seed(seed: int, sample: int, attempt: int) -> int:
    """The seed of re-draw ``attempt`` (from 1) of sample ``sample`` of a request seeded ``seed``."""
    import numpy as np

    return int(np.random.SeedSequence([seed, sample, attempt]).generate_state(1)[0] % 2**31)


def originality_headers(info: list, headers: dict) -> None:
    """``X-Musicgan-Max-Overlap`` and ``X-Musicgan-Redraws``, one comma-separated value per sample."""
    if info and info[0] is not None:
        headers["X-Musicgan-Max-Overlap"] = ",".join(f"{o['max_overlap']:.3f}" for o in info)
        headers["X-Musicgan-Redraws"] = ",".join(str(o["redraws"]) for o in info)


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
        self.pointer = pointer_of(model)
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
            self.pointer = pointer_of(ref)
            logger.info(f"musicgan: now serving {self.model.name} {self.model.version}")
        if self.pointer and self.watch_s > 0 and self.watch_task is None:
            self.watch_task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Follow the registry's ``latest`` pointer: a promoted version replaces the model in place."""
        while True:
            await asyncio.sleep(self.watch_s)
            if not self.pointer:
                continue
            version = await asyncio.to_thread(read_pointer, self.pointer)
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
        model = self.model
        family = get_family(model.family)
        fmt = family.check_request(body, model)
        body = body.model_copy(update={"format": fmt})
        cost = family.request_cost(body, model)
        check_cost(cost)  # 422 before any work
        seed = body.seed if body.seed is not None else random.SystemRandom().randrange(2**31)
        headers = {"X-Musicgan-Seed": str(seed), "X-Musicgan-Model": header_value(f"{model.name}/{model.version}")}
        bars = body.n_bars or model.phrase_bars
        if model.masked and bars != model.phrase_bars:  # phrase by phrase (only pianoroll models are masked)
            from musicgan.assist.fill import long_job

            g = model.g
            job = long_job(bars, len(model.data["track_names"]), g.n_pitches, g.steps_per_bar, n=body.n_samples,
                           seed=seed, temperature=body.temperature or 0.0, label=label_index(body, model))
            task = assist.Task("generate", body, job, 0, body.tempo_qpm, bars)
            return await self._answer_task(model, task, cost, seed, headers, given=False)
        req, draw, inline = family.make_request(body, model, cost, seed, headers)
        if family.assistant:  # rolls: each sample's originality is checked (and a copy re-drawn)
            n, phrases = body.n_samples, cost.phrases // body.n_samples

            async def make():
                return join_phrases(await self._forward(model, req), n, phrases)

            async def redraw(i: int, attempt: int):
                one = dataclasses.replace(req, n=phrases, seed=redraw_seed(seed, i, attempt))
                return join_phrases(await self._forward(model, one), 1, phrases)[0]

            content = await self._produce_rolls(model, cost, make, redraw, draw, inline,
                                                body.avoid_copies is not False, headers)
        else:
            content = await self._produce(model, req, cost, draw, inline)
        return self._response(content, body.format, seed, headers)

    @staticmethod
    def _response(content: bytes, fmt: str, seed: int, headers: dict, stem: str = "musicgan") -> Response:
        if fmt in ("midi", "wav", "zip"):
            ext = {"midi": "mid", "wav": "wav", "zip": "zip"}[fmt]
            headers["Content-Disposition"] = f'attachment; filename="{stem}-{seed}.{ext}"'
        return Response(content, media_type=MEDIA[fmt], headers=headers)

    # --- the assistant: harmonize, continue, inpaint --------------------------------------------

    @app.post("/v1/harmonize", responses={200: {"content": {m: {} for m in MEDIA.values()}}},
              openapi_extra={"requestBody": assist.openapi_body("harmonize")})
    async def harmonize(self, request: Request) -> Response:
        """The other voices for a melody: a MIDI upload (form field ``file``), a note list, or a shipped example."""
        return await self._assist("harmonize", request)

    @app.post("/v1/continue", responses={200: {"content": {m: {} for m in MEDIA.values()}}},
              openapi_extra={"requestBody": assist.openapi_body("continue")})
    async def continue_(self, request: Request) -> Response:
        """``n_bars`` new bars after a prompt (MIDI upload or notes); the prompt comes back unchanged."""
        return await self._assist("continue", request)

    @app.post("/v1/inpaint", responses={200: {"content": {m: {} for m in MEDIA.values()}}},
              openapi_extra={"requestBody": assist.openapi_body("inpaint")})
    async def inpaint(self, request: Request) -> Response:
        """Rewrite some voices in some bars (``bars``: [first, last], from 1); every other note stays."""
        return await self._assist("inpaint", request)

    async def _assist(self, name: str, request: Request) -> Response:
        model = self.model
        assist.check_masked(model, name)
        body, upload = await assist.read_body(request, name)
        seed = body.seed if body.seed is not None else random.SystemRandom().randrange(2**31)
        task = await asyncio.to_thread(assist.make_task, name, body, upload, model, seed)  # MIDI parsing: off the loop
        fmt = body.format or "midi"
        task.body = body.model_copy(update={"format": fmt, "tempo_qpm": task.tempo_qpm})
        cost = self._task_cost(model, task)
        check_cost(cost)
        headers = {"X-Musicgan-Seed": str(seed), "X-Musicgan-Model": header_value(f"{model.name}/{model.version}"),
                   "X-Musicgan-Transpose": str(task.transpose_semitones)}
        if task.warnings:
            headers["X-Musicgan-Warnings"] = header_value("; ".join(task.warnings))
        return await self._answer_task(model, task, cost, seed, headers, given=True)

    @staticmethod
    def _task_cost(model: LoadedModel, task: assist.Task) -> Cost:
        from musicgan.assist.fill import count_windows

        g, n = model.g, task.job.n
        windows = count_windows(task.job.known, g.steps_per_bar, g.n_bars)
        fmt = task.body.format
        audio_s = (n * task.n_bars + n - 1) * 4 * 60.0 / task.tempo_qpm if fmt == "wav" else 0.0
        return Cost(n * windows, audio_s, f"{task.name}: {n} versions of {task.n_bars} bars "
                                          f"({windows} windows of {g.n_bars} bars each)")

    async def _answer_task(self, model: LoadedModel, task: assist.Task, cost: Cost, seed: int, headers: dict,
                           given: bool) -> Response:
        """Run a fill job through the batched forward, check originality, render."""
        from musicgan.assist.fill import FillJob

        job, render_rolls = task.job, get_family(model.family).render
        extra = {"task": task.name, "n_bars": task.n_bars, "transpose_semitones": task.transpose_semitones}

        async def redraw(i: int, attempt: int):
            one = FillJob(job.roll, job.known, 1, redraw_seed(seed, i, attempt), job.temperature, job.label)
            return (await self._fill(model, one))[0]

        def draw(samples, originality=None):
            return render_rolls(samples, task.body, model, seed, given=job.known if given else None,
                                transpose_semitones=task.transpose_semitones, extra=extra, originality=originality)

        content = await self._produce_rolls(model, cost, lambda: self._fill(model, job), redraw, draw,
                                            task.body.format in ("midi", "json"), task.body.avoid_copies is not False,
                                            headers)
        return self._response(content, task.body.format, seed, headers, stem=f"musicgan-{task.name}")

    # --- producing an answer ------------------------------------------------------------------

    async def _forward(self, model: LoadedModel, req):
        """One request through the batched forward; its own failure as an HTTP error."""
        out = await self.forward((model, req))
        if isinstance(out, BaseException):
            raise self._failure(out, "generation")
        return out

    async def _fill(self, model: LoadedModel, job):
        """A fill job window by window, each window one request in the batched forward (so it shares
        forwards with whatever else is in flight)."""
        from musicgan.assist.fill import FillRun

        run = FillRun(model.g, job)
        while (req := run.next_request()) is not None:
            run.take(await self._forward(model, req))
        return run.result()

    async def _originality(self, model: LoadedModel, samples, redraw, avoid: bool):
        """Each sample's largest overlap with a training phrase; with ``avoid``, a sample over the copy
        threshold is drawn again (``redraw(i, attempt)``) up to :data:`MAX_REDRAWS` times. Returns the
        samples and, per sample, ``{"max_overlap", "redraws", "copy_threshold"}`` (None without an index)."""
        index = model.index
        if index is None:
            return samples, [None] * len(samples)
        samples = samples.copy()
        info = []
        for i in range(len(samples)):
            overlap, attempts = index.max_overlap(samples[i]), 0
            while avoid and index.is_copy(overlap) and attempts < MAX_REDRAWS:
                attempts += 1
                samples[i] = await redraw(i, attempts)
                overlap = index.max_overlap(samples[i])
            info.append({"max_overlap": round(overlap, 4), "redraws": attempts, "copy_threshold": index.threshold,
                         "copy": index.is_copy(overlap)})
        return samples, info

    async def _produce_rolls(self, model: LoadedModel, cost: Cost, make, redraw, draw, inline: bool, avoid: bool,
                             headers: dict) -> bytes:
        """A pianoroll answer within the replica's in-flight budget: ``make()`` the samples (batched
        forwards), check their originality (re-drawing copies), then ``draw(samples, originality)``."""
        if not self.in_flight.take(cost):
            raise self.in_flight.busy()
        try:
            samples, info = await self._originality(model, await make(), redraw, avoid)
            originality_headers(info, headers)
            return await self._render(draw, inline, samples, info)
        finally:
            self.in_flight.give_back(cost)

    async def _render(self, draw, inline: bool, *arrays) -> bytes:
        """``draw(*arrays)`` inline (cheap formats) or in the render pool; its failure a logged 500."""
        try:
            if inline:
                content = draw(*arrays)
            else:
                content = await asyncio.get_running_loop().run_in_executor(self.render_pool, draw, *arrays)
        except Exception as e:
            raise self._failure(e, "rendering") from None
        self.served += 1
        return content

    async def _produce(self, model: LoadedModel, req, cost: Cost, draw, inline: bool) -> bytes:
        """Generate (batched) and render one request within the replica's in-flight budget."""
        if not self.in_flight.take(cost):
            raise self.in_flight.busy()
        try:
            return await self._render(draw, inline, await self._forward(model, req))
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
