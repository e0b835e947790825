"""Serving speed against Ray Serve's own floor on this machine, measured in one run.

A bounded, loopback-only load generator (a fixed number of requests from N threads, each with its
own keep-alive connection) drives two applications behind the same Serve proxy (same
``http_options``):

* the floor: a no-op FastAPI deployment with our actor options. ``/noop/v1/generate`` answers a
  few bytes without reading the body; ``/noop/v1/read_body`` reads it first (Serve's replica
  fetches a body from the proxy actor, a round trip every body-reading route pays);
* ours (``serving.app``), serving an untrained ``--preset`` model (no originality index, as the
  figures before issue 15 were taken), then an untrained ``--masked-preset`` model with the files
  a promoted model ships (originality index, example melodies) for the assistant routes.

The floor and ours alternate for ``--rounds`` rounds, each round with its own in-process timing, so
all see the same neighbours on a shared machine; each figure is computed per round, and the
median over rounds is reported (``per_round`` has them all).

Figures (the last line is one JSON object; each target has its figure and ``<figure>_met``):

* ``http_side_ms``: our ``POST /v1/generate`` p50 (one 4-bar phrase, MIDI, concurrency 1) minus the
  no-op's p50 minus the in-process p50 of the same request (the route's work without HTTP: cost,
  generator forward, originality check where the model has an index, render). Target <= 1 ms.
  ``http_side_ms_vs_body_floor`` is the same against the body-reading floor; ``access_log_off``
  has this and the next figure for ours deployed a third time (``/quiet``) with Serve's per-request
  access log off.
* ``throughput_vs_floor``: our requests/s at concurrency 16 over the no-op's. Target >= 0.8.
* ``batching_gain``: compute-bound requests (``--compute-samples`` x ``--compute-bars``, JSON, or
  the largest that the cost bounds let 16 be in flight at once) at concurrency 16,
  ``max_batch_size`` 16 over 1 (the same app deployed twice through ``user_config``: at ``/`` and
  ``/nobatch``, so on and off alternate in each round). Target >= 2.
* ``mixed_non_200``: generate, harmonize (a shipped example melody) and inpaint interleaved at
  concurrency 16 on the masked model: answers other than 200 (target 0), with requests/s and
  p50/p99 per route; every answer must carry ``X-Musicgan-Max-Overlap``.
* ``originality_cost_ratio``: ``OriginalityIndex.max_overlap`` of one sample over the generator
  forward of that sample (the same one-phrase request in-process, masked model), both medians;
  the index is built from ``--data``'s training phrases (the real Bach build). Target <= 0.25.

Where the time goes: every load at concurrency 16 is metered per process (Serve's proxy, each
replica, Ray's other processes, this load generator, and ``other``: everything else on the
machine) as CPU ms per request. Then (unless ``--no-breakdown``) both apps are redeployed as
subclasses that time each request's sections inside the replica (body in hand, forward wait,
compute, render, response) and count each thread's CPU, at concurrency 1 and 16, and cProfile
runs on each replica's event loop for one load at 16.

    python benchmarks/serve_load.py [--data BACH_BUILD] [--requests 400] [--rounds 3]
        [--preset cpu] [--masked-preset cpu-masked] [--model REF] [--masked-model REF] [--no-breakdown]
"""

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GENERATE = {"n_samples": 1, "n_bars": 4, "format": "midi"}
TARGETS = {"http_side_ms": ("<=", 1.0), "throughput_vs_floor": (">=", 0.8), "batching_gain": (">=", 2.0),
           "mixed_non_200": ("<=", 0), "originality_cost_ratio": ("<=", 0.25)}
NOOP_PREFIX = "/noop"
NOBATCH_PREFIX = "/nobatch"
QUIET_PREFIX = "/quiet"


# --- models ----------------------------------------------------------------------------------------


def make_model(preset: str, out: Path, data_dir: str | None = None, assets: bool = False) -> str:
    """An untrained checkpoint of the preset's architecture (timing does not depend on the weights),
    described by ``data_dir``'s build when given (its voice ranges, for the assistant routes); with
    ``assets``, the originality index and example melodies a promoted model ships beside it."""
    import torch

    from musicgan import checkpoint as ckpt
    from musicgan.config import FeatureConfig, to_dict
    from musicgan.gan import make_gan
    from musicgan.model import build_models
    from musicgan.presets import load_preset

    cfg = load_preset(preset)
    if data_dir:
        from musicgan.data.shards import load_manifest

        data = ckpt.data_info(load_manifest(data_dir))
    else:
        fc = FeatureConfig()
        data = {"kind": "pianoroll", "feature_config": to_dict(fc), "feature_hash": fc.hash(),
                "example_shape": fc.example_shape(), "labels": ["all"], "bars": fc.bars,
                "steps_per_bar": fc.steps_per_bar, "pitch_low": fc.pitch_low, "track_names": fc.track_names}
    torch.manual_seed(0)
    g, d = build_models(cfg.model, data["example_shape"], data["bars"], len(data["labels"]))
    gan = make_gan(g, d, cfg)
    gan.g_ema.load_state_dict(g.state_dict())
    path = ckpt.save(out / preset / "checkpoint_000000", gan, cfg, data)
    if assets:
        from musicgan.assist.assets import write_assets

        write_assets(data_dir, path)
    return str(path)


def copy_with_assets(ref: str, data_dir: str, out: Path) -> str:
    """A given checkpoint copied (never written into), with the files a promoted model ships."""
    from musicgan.assist.assets import write_assets
    from musicgan.registry import resolve

    path, _ = resolve(ref)
    dest = out / "given" / Path(path).name
    shutil.copytree(path, dest)
    write_assets(data_dir, dest)
    return str(dest)


# --- in-process ------------------------------------------------------------------------------------


def in_process_ms(model_ref: str, reps: int) -> list[float]:
    """The replica's own work for one ``GENERATE`` request, as its route does it: cost, request,
    the isolated batched forward, the originality check (a model with an index) and the render;
    ms per request."""
    import torch

    from musicgan.families import get_family
    from serving.model import LoadedModel, generate_isolated
    from serving.render import join_phrases
    from serving.schema import GenerateRequest

    torch.set_num_threads(1)  # as in a replica
    model = LoadedModel(model_ref)
    family = get_family(model.family)
    out = []
    for i in range(reps):
        t0 = time.perf_counter()
        body = GenerateRequest(**GENERATE, seed=i)
        body = body.model_copy(update={"format": family.check_request(body, model)})
        cost = family.request_cost(body, model)
        req, draw, _ = family.make_request(body, model, cost, i, {})
        samples = join_phrases(generate_isolated(model, [req])[0], body.n_samples, cost.phrases // body.n_samples)
        info = None
        if model.index is not None:
            info = [{"max_overlap": model.index.max_overlap(x), "redraws": 0, "copy_threshold": model.index.threshold}
                    for x in samples]
        draw(samples, info)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def originality_cost(model_ref: str, data_dir: str, reps: int) -> dict:
    """Per sample: ``max_overlap`` against the training phrases vs the forward that made the sample
    (one 4-bar phrase, one request, in-process); also the forward per sample in a batch of 16."""
    import numpy as np
    import torch

    from musicgan import metrics as M
    from musicgan.data.shards import ShardReader, load_manifest
    from musicgan.gan import Request, generate_many
    from musicgan.originality import OriginalityIndex
    from serving.model import LoadedModel

    torch.set_num_threads(1)
    model = LoadedModel(model_ref)
    spb = int(load_manifest(data_dir)["feature_config"]["steps_per_bar"])
    train = ShardReader(data_dir, split="train").arrays()["x"] > 0
    t0 = time.perf_counter()
    index = OriginalityIndex.build(train, spb)
    build_s = time.perf_counter() - t0
    forward_ms, check_ms, samples = [], [], []
    for i in range(reps + 1):  # the first of each is a warm-up (the numba kernel loads)
        t0 = time.perf_counter()
        roll = generate_many(model.g, [Request(n=1, seed=i)])[0].numpy()[0]
        t1 = time.perf_counter()
        value = index.max_overlap(roll)
        t2 = time.perf_counter()
        if i:
            forward_ms.append((t1 - t0) * 1000)
            check_ms.append((t2 - t1) * 1000)
            samples.append((roll, value))
    t0 = time.perf_counter()
    for i in range(8):
        generate_many(model.g, [Request(n=1, seed=1000 + 16 * i + k) for k in range(16)])
    batched_ms = (time.perf_counter() - t0) * 1000 / (8 * 16)
    # the index's answer is the copies metric's measure: check a few against the dense computation
    probe = np.stack([r for r, _ in samples[:8]]).reshape(8, -1).astype(np.float32)
    tr = train.reshape(len(train), -1).astype(np.float32)
    dense = ((probe @ tr.T) / np.maximum(np.maximum(probe.sum(1)[:, None], tr.sum(1)[None, :]), 1)).max(1)
    worst = float(np.abs(dense - [v for _, v in samples[:8]]).max())
    overlaps = [v for _, v in samples]
    return {"originality_ms_per_sample": round(statistics.median(check_ms), 4),
            "forward_ms_per_sample": round(statistics.median(forward_ms), 3),
            "forward_ms_per_sample_batched16": round(batched_ms, 3),
            "originality_cost_ratio": round(statistics.median(check_ms) / statistics.median(forward_ms), 4),
            "originality_vs_batched_forward": round(statistics.median(check_ms) / batched_ms, 4),
            "index_phrases": index.n_phrases, "index_build_s": round(build_s, 2),
            "max_overlap_median": round(statistics.median(overlaps), 3), "max_overlap_max": round(max(overlaps), 3),
            "copies_over_threshold": int(sum(v > M.COPY_OVERLAP for v in overlaps)),
            "max_overlap_vs_dense_max_abs_error": worst}


def http_edge_us(n: int = 5000, repeats: int = 7) -> dict:
    """What serving.http_edge adds per request, in-process: the body-limit middleware around an app
    that only reads the body, and strict JSON parsing over ``json.loads``; microseconds, each the
    fastest of ``repeats`` alternating timings of ``n`` calls (neighbours only ever add time)."""
    import asyncio

    from serving.http_edge import BodyLimit, strict_json

    body = json.dumps(dict(GENERATE, seed=7)).encode()
    scope = {"type": "http", "path": "/v1/generate", "method": "POST",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}

    async def app(scope, receive, send):
        await receive()

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        pass

    limited = BodyLimit(app, 16 * 1024, {"/v1/harmonize": 256 * 1024})

    async def calls(handler):
        for _ in range(n):
            await handler(scope, receive, send)

    def parses(parse):
        for _ in range(n):
            parse(body)

    runs = {"bare": lambda: asyncio.run(calls(app)), "limited": lambda: asyncio.run(calls(limited)),
            "json": lambda: parses(json.loads), "strict": lambda: parses(strict_json)}
    best = {k: float("inf") for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[k] = min(best[k], (time.perf_counter() - t0) / n * 1e6)
    return {"body_limit": round(best["limited"] - best["bare"], 2),
            "strict_json_over_json_loads": round(best["strict"] - best["json"], 2)}


# --- the load generator and the CPU meter ----------------------------------------------------------


class CpuMeter:
    """CPU seconds used by each process group between two snapshots: Serve's proxy, each replica,
    Ray's own processes, this process (the load generator) and everything else on the machine."""

    def __init__(self):
        import psutil

        self.psutil = psutil
        self.procs: dict[int, tuple[str, object]] = {}

    def _group(self, proc) -> str | None:
        try:
            cmd = proc.cmdline()
            name = proc.name()
        except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
            return None
        head = cmd[0] if cmd else name
        if proc.pid == os.getpid():
            return "load_generator"
        if head.startswith("ray::ServeReplica:"):
            return "replica_" + head[len("ray::ServeReplica:"):].split(":")[0]  # ray::ServeReplica:<app>:<deployment>
        if head.startswith("ray::ProxyActor"):
            return "proxy"
        if head.startswith("ray::ServeController"):
            return "controller"
        if name in ("raylet", "gcs_server") or head.startswith("ray::") or any("/ray/" in c for c in cmd[:3]):
            return "ray_other"
        return None

    def snapshot(self) -> dict:
        """CPU seconds so far by group. Only this process and its descendants count as ours (Ray's
        processes for this run are: another Ray on the machine counts as ``other``)."""
        totals: Counter = Counter()
        me = self.psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            if proc.pid not in self.procs:
                group = self._group(proc)
                if group is None:
                    continue
                self.procs[proc.pid] = (group, proc)
        for pid, (group, proc) in list(self.procs.items()):
            try:
                t = proc.cpu_times()
                totals[group] += t.user + t.system
            except self.psutil.NoSuchProcess:
                del self.procs[pid]
        m = self.psutil.cpu_times()
        totals["machine"] = sum(getattr(m, f) for f in ("user", "nice", "system", "irq", "softirq", "steal")
                                if hasattr(m, f))
        return dict(totals)

    def background_cores(self, seconds: float) -> float:
        """Cores busy outside this benchmark's processes over ``seconds`` of idle serving."""
        before = self.snapshot()
        time.sleep(seconds)
        used = self.per_request_ms(before, self.snapshot(), 1)
        return round(used.get("other", 0.0) / 1000 / seconds, 3)

    @staticmethod
    def per_request_ms(before: dict, after: dict, requests: int) -> dict:
        used = {g: after.get(g, 0.0) - before.get(g, 0.0) for g in after}
        ours = sum(v for g, v in used.items() if g != "machine")
        used["other"] = max(used.pop("machine") - ours, 0.0)  # the training run, other helpers, the kernel
        return {g: round(v * 1000 / requests, 3) for g, v in sorted(used.items()) if v > 0}


def post(path: str, body: dict, route: str | None = None) -> tuple[str, str, bytes]:
    return route or path.rsplit("/", 1)[-1], path, json.dumps(body).encode()


def load(port: int, concurrency: int, requests: list[tuple[str, str, bytes]], meter: CpuMeter | None = None,
         check=None) -> dict:
    """Send ``requests`` (``(route, path, JSON body)``, in order) from ``concurrency`` threads, each
    on its own keep-alive connection; latency percentiles (overall and per route), requests per
    second, the statuses, and (with ``meter``) CPU ms per request by process group. ``check(route,
    response, body)`` may look at each 200 answer and return a problem (a string) or None."""
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {}
    statuses: Counter = Counter()
    problems: list[str] = []
    cursor = iter(range(len(requests)))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            route, path, payload = requests[i]
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, payload, {"Content-Type": "application/json"})
                r = conn.getresponse()
                content = r.read()
                status = r.status
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status, content, r = type(e).__name__, b"", None
            ms = (time.perf_counter() - t0) * 1000
            problem = check(route, r, content) if (check and status == 200) else None
            with lock:
                statuses[f"{route} {status}"] += 1
                if status == 200:
                    latencies.setdefault(route, []).append(ms)
                if problem:
                    problems.append(problem)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    before = meter.snapshot() if meter else None
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = meter.snapshot() if meter else None
    every = sorted(v for lat in latencies.values() for v in lat)
    out = {"concurrency": concurrency, "requests": len(requests), "ok": len(every),
           "non_200": len(requests) - len(every), "statuses": dict(statuses), **percentiles(every),
           "rps": round(len(every) / wall, 1)}
    if len(latencies) > 1:
        out["routes"] = {route: {"ok": len(lat), **percentiles(sorted(lat))} for route, lat in latencies.items()}
    if meter:
        out["cpu_ms_per_request"] = CpuMeter.per_request_ms(before, after, len(requests))
    if problems:
        out["problems"] = problems[:5]
    return out


def percentiles(lat: list[float]) -> dict:
    if not lat:
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": round(statistics.median(lat), 2), "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 2)}


def line(name: str, result: dict) -> None:
    cpu = result.get("cpu_ms_per_request")
    print(f"{name:38s} c{result['concurrency']:<2d} p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
          f"{result['rps']} req/s  non-200 {result['non_200']}" + (f"  cpu ms/request {cpu}" if cpu else ""),
          flush=True)


# --- the deployments -------------------------------------------------------------------------------


def noop_app(instrumented_: bool = False):
    """The floor: a FastAPI deployment with our actor options whose route answers a few bytes."""
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    from ray import serve

    from serving.app import MusicGAN

    api = FastAPI()

    @api.post("/v1/generate")
    async def generate() -> Response:
        return Response(b"MThd", media_type="audio/midi")

    @api.post("/v1/read_body")
    async def read_body(request: Request) -> Response:  # the floor of a route that reads its body
        await request.body()
        return Response(b"MThd", media_type="audio/midi")

    @serve.deployment(ray_actor_options=MusicGAN.ray_actor_options, max_ongoing_requests=MusicGAN.max_ongoing_requests,
                      max_queued_requests=MusicGAN.max_queued_requests)
    @serve.ingress(api)
    class NoOp:
        pass

    if instrumented_:
        NoOp = NoOp.options(func_or_class=instrumented(NoOp.func_or_class, False))
    return NoOp.bind()


def deploy(model: str, port: int, user_config: dict) -> None:
    """(Re)deploy ours at ``/`` as ``serving.app.build_app`` does (Serve starts a fresh replica)."""
    from ray import serve

    from serving.app import build_app

    serve.run(build_app(model, user_config=user_config), name="musicgan", route_prefix="/", blocking=False)
    wait_healthy(port)


# --- the instrumented replicas (the breakdown phase only) -----------------------------------------


def _thread_cpu() -> dict:
    """This process's CPU seconds so far by thread: Python threads by name (a trailing number
    dropped: the pool's threads together), the others by their OS name."""
    import re
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: Counter = Counter()
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state): utime, stime are fields 14, 15
        name = names.get(int(tid)) or f"native {comm}"
        out[re.sub(r"[_-]?\d+$", "", name)] += (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


def instrumented(base: type, time_compute: bool) -> type:
    """``base`` (a deployment's class) timing each request's sections, for the breakdown: the whole
    ASGI call (``asgi``), when the body was in hand (``body``: Serve fetches it from the proxy
    actor), when the response started (``response_start``), and in ours ``_produce_rolls`` (forward + originality + render),
    ``_forward`` (the batched forward as one request waits for it) and the generator's
    ``generate_many`` (the compute, in its thread); ``bench`` reads them, the threads' CPU, and
    runs cProfile on the event loop (a handle call runs there, as the requests do)."""

    class Instrumented(base):
        async def __init__(self, *args, **kwargs):  # the ingress's __init__ is async
            await super().__init__(*args, **kwargs)
            self._bench = {"asgi": [], "body": [], "response_start": [], "produce": [], "forward": [], "compute": []}
            self._bench_profile = None
            if time_compute:
                import musicgan.gan as gan  # pianoroll's generate_many imports it from here at call time

                original, compute = gan.generate_many, self._bench["compute"]

                def timed(*a, **k):
                    t0 = time.perf_counter()
                    try:
                        return original(*a, **k)
                    finally:
                        compute.append(time.perf_counter() - t0)

                gan.generate_many = timed

        async def __call__(self, scope, receive, send):
            t0, sections = time.perf_counter(), self._bench

            async def timed_receive():  # the body comes from the proxy actor on the first receive
                message = await receive()
                if message.get("type") == "http.request" and not message.get("more_body"):
                    sections["body"].append(time.perf_counter() - t0)
                return message

            async def timed_send(message):
                if message.get("type") == "http.response.start":
                    sections["response_start"].append(time.perf_counter() - t0)
                await send(message)

            try:
                return await super().__call__(scope, timed_receive, timed_send)
            finally:
                sections["asgi"].append(time.perf_counter() - t0)

        async def _forward(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await super()._forward(*args, **kwargs)
            finally:
                self._bench["forward"].append(time.perf_counter() - t0)

        async def _produce_rolls(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await super()._produce_rolls(*args, **kwargs)
            finally:
                self._bench["produce"].append(time.perf_counter() - t0)

        async def bench(self, action: str, path: str | None = None):
            if action == "reset":
                for v in self._bench.values():
                    v.clear()
                return _thread_cpu()
            if action == "read":
                return {k: list(v) for k, v in self._bench.items()}, _thread_cpu()
            if action == "profile":
                self._bench_profile = cProfile.Profile()
                self._bench_profile.enable()
            elif action == "stop" and self._bench_profile is not None:
                self._bench_profile.disable()
                self._bench_profile.dump_stats(path)
                self._bench_profile = None
            return None

    Instrumented.__name__ = Instrumented.__qualname__ = base.__name__
    return Instrumented


def deploy_instrumented(model: str, port: int, user_config: dict) -> None:
    """Both apps again, as :func:`instrumented` subclasses (Serve starts fresh replicas)."""
    from ray import serve

    from serving.app import MusicGAN

    ours = MusicGAN.options(func_or_class=instrumented(MusicGAN.func_or_class, True), num_replicas=1,
                            user_config=user_config)
    serve.run(ours.bind(model=model, threads=1), name="musicgan", route_prefix="/", blocking=False)
    serve.run(noop_app(instrumented_=True), name="noop", route_prefix=NOOP_PREFIX, blocking=False)
    wait_healthy(port)


def bench(app: str, action: str, path: str | None = None):
    from ray import serve

    app = {"ours": "musicgan", "noop_body": "noop"}.get(app, app)
    deployment = {"musicgan": "MusicGAN", "noop": "NoOp"}[app]
    return serve.get_deployment_handle(deployment, app).bench.remote(action, path).result()


def sections_and_threads(app: str, before: dict, requests: int) -> dict:
    """The instrumented replica's section medians (ms) and its threads' CPU ms per request since ``before``."""
    sections, threads = bench(app, "read")
    out = {f"{k}_ms_p50": round(statistics.median(v) * 1000, 3) for k, v in sections.items() if v}
    out["calls"] = {k: len(v) for k, v in sections.items() if v}
    out["thread_cpu_ms_per_request"] = {k: round((v - before.get(k, 0.0)) * 1000 / requests, 3)
                                        for k, v in sorted(threads.items()) if v - before.get(k, 0.0) > 0}
    return out


def wait_healthy(port) -> None:
    for _ in range(240):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the app did not become healthy in 2 minutes")


def get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    r = conn.getresponse()
    return json.loads(r.read()) if r.status == 200 else {}


# --- where the replica's time goes -----------------------------------------------------------------

AREAS = (("serving/", "ours: serving/"), ("/musicgan/", "ours: musicgan/"), ("/torch/", "torch"),
         ("/numpy/", "numpy"), ("symusic", "symusic (MIDI)"), ("/pydantic", "pydantic"),
         ("/fastapi/", "fastapi"), ("/starlette/", "starlette"), ("/ray/serve/", "ray serve (replica)"),
         ("/ray/", "ray core"), ("/asyncio/", "asyncio"), ("/json/", "json"))


def profile_summary(path: str, requests: int, top: int = 25, show: bool = True) -> dict:
    """The replica loop thread's profile: its own time per request by area (file path) and the top
    functions by own time (ms per request, under cProfile, which slows Python code)."""
    stats = pstats.Stats(path)
    areas: Counter = Counter()
    rows = []
    for (file, lineno, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        area = next((name for key, name in AREAS if key in file), "other python / builtins")
        areas[area] += tt
        rows.append((tt, f"{Path(file).name}:{lineno}({func})" if file != "~" else func, nc))
    total = sum(areas.values())
    if show:
        buf = io.StringIO()
        pstats.Stats(path, stream=buf).sort_stats("tottime").print_stats(top)
        print(buf.getvalue(), flush=True)
    rows.sort(reverse=True)
    return {"loop_thread_ms_per_request": round(total * 1000 / requests, 3),
            "by_area_ms_per_request": {a: round(v * 1000 / requests, 3) for a, v in areas.most_common()},
            "top_functions_ms_per_request": [[name, round(tt * 1000 / requests, 4), calls]
                                             for tt, name, calls in rows[:top]]}


def where_it_goes(port: int, model: str, user_config: dict, light, paths: dict, requests: int, tmp: Path) -> dict:
    """Both apps redeployed instrumented: at concurrency 1, each request's sections inside the
    replica beside the client's latency; at 16, ours's threads' CPU, then cProfile on its event loop."""
    deploy_instrumented(model, port, user_config)
    out = {}
    for name, path in paths.items():
        load(port, 4, light(path, 60))
        before = bench(name, "reset")
        result = load(port, 1, light(path, requests))
        out[f"{name}_c1"] = {"client_p50_ms": result["p50_ms"], **sections_and_threads(name, before, requests)}
        print(f"{name} c1 sections: {out[f'{name}_c1']}", flush=True)
    o = out["ours_c1"]
    if all(f"{k}_ms_p50" in o for k in ("asgi", "body", "produce", "forward", "compute")):
        # one request at concurrency 1, ms at p50 (medians of sections, so the parts add up only roughly)
        out["ours_c1_decomposition_ms"] = {
            "outside_replica_app (proxy, Ray transport, client)": round(o["client_p50_ms"] - o["asgi_ms_p50"], 3),
            "body_from_proxy_actor": o["body_ms_p50"],
            "fastapi_validation_handler_response": round(o["asgi_ms_p50"] - o["produce_ms_p50"] - o["body_ms_p50"], 3),
            "batch_queue_and_thread_hop": round(o["forward_ms_p50"] - o["compute_ms_p50"], 3),
            "compute (generate_many)": o["compute_ms_p50"],
            "originality_and_render": round(o["produce_ms_p50"] - o["forward_ms_p50"], 3),
            "noop_outside_replica_app": round(out["noop_c1"]["client_p50_ms"] - out["noop_c1"]["asgi_ms_p50"], 3),
            "noop_body_outside_replica_app": round(out["noop_body_c1"]["client_p50_ms"]
                                                   - out["noop_body_c1"]["asgi_ms_p50"], 3)}
        print(f"ours c1, ms: {out['ours_c1_decomposition_ms']}", flush=True)
    before = bench("musicgan", "reset")
    result = load(port, 16, light(paths["ours"], requests))
    out["ours_c16"] = {"client_p50_ms": result["p50_ms"], "rps": result["rps"],
                       **sections_and_threads("musicgan", before, requests)}
    print(f"ours c16 sections: {out['ours_c16']}", flush=True)
    for name in ("noop", "ours"):  # the same profile of the floor: what ours adds is the difference
        path = str(tmp / f"{name}.prof")
        bench(name, "profile")
        result = load(port, 16, light(paths[name], requests))
        bench(name, "stop", path)
        line(f"{name} under cProfile", result)
        out[f"{name}_c16_profile"] = profile_summary(path, requests, show=name == "ours")
    return out


# --- the assistant routes' bodies ------------------------------------------------------------------


def phrase_notes(roll, data: dict, tracks=None) -> list[dict]:
    """A phrase ``[tracks, steps, pitches]`` as the API's note list (beats; ``track`` names when ``tracks``)."""
    from musicgan.data.pianoroll import roll_notes

    per_beat = data["steps_per_bar"] // 4
    notes = []
    for t in (range(len(roll)) if tracks is None else tracks):
        p, s, e = roll_notes(roll[t])
        for i in sorted(range(len(p)), key=lambda i: (s[i], p[i])):
            note = {"pitch": int(data["pitch_low"] + p[i]), "start_beat": float(s[i]) / per_beat,
                    "duration_beats": float(e[i] - s[i]) / per_beat}
            if tracks is None:
                note["track"] = data["track_names"][t]
            notes.append(note)
    return notes


def mixed_requests(data_dir: str, info: dict, total: int) -> tuple[list, dict]:
    """Generate, harmonize and inpaint bodies, interleaved: harmonize the first shipped example
    melody (as the demo's curl line does; a held-out phrase's soprano without examples), inpaint
    bars 2-3 of alto and tenor in a held-out 4-bar phrase."""
    from musicgan.checkpoint import data_info
    from musicgan.data.shards import ShardReader, load_manifest

    data = data_info(load_manifest(data_dir))
    phrase = ShardReader(data_dir, split="val").arrays(max_rows=1)["x"][0] > 0
    examples = info.get("examples") or []
    harmonize = ({"example": examples[0]["id"]} if examples
                 else {"melody": phrase_notes(phrase, data, tracks=[0])})
    bodies = [post("/v1/generate", dict(GENERATE)),
              post("/v1/harmonize", dict(harmonize, n_samples=1, format="midi")),
              post("/v1/inpaint", {"notes": phrase_notes(phrase, data), "bars": [2, 3], "voices": ["alto", "tenor"],
                                   "n_samples": 1, "format": "midi"})]
    requests = []
    for i in range(total):
        route, path, _ = bodies[i % len(bodies)]
        body = json.loads(bodies[i % len(bodies)][2])
        requests.append((route, path, json.dumps(dict(body, seed=i)).encode()))
    described = {"harmonize": f"example {examples[0]['id']} ({examples[0]['n_bars']} bars)" if examples
                 else "a held-out 4-bar soprano", "inpaint": "bars 2-3, alto and tenor, of a held-out 4-bar phrase",
                 "generate": "one 4-bar phrase"}
    return requests, described


def has_originality(route, response, content) -> str | None:
    if response.getheader("X-Musicgan-Max-Overlap") is None:
        return f"{route}: no X-Musicgan-Max-Overlap header"
    if not content.startswith(b"MThd"):
        return f"{route}: the body is not MIDI"
    return None


def compute_body(args) -> tuple[dict, str | None]:
    """The compute-bound request: ``--compute-samples`` x ``--compute-bars`` as JSON, or, when that
    is over the per-request cost bound or 16 of them would not fit the replica's in-flight bound
    (the rest would get a fast 503), as many bars of as many samples as do fit."""
    from serving.app import MAX_INFLIGHT_PHRASES
    from serving.schema import MAX_PHRASES

    phrase_bars = 4
    fit = min(MAX_PHRASES, MAX_INFLIGHT_PHRASES // 16)
    asked = args.compute_samples * -(-args.compute_bars // phrase_bars)
    if asked <= fit:
        return {"n_samples": args.compute_samples, "n_bars": args.compute_bars, "format": "json"}, None
    samples = min(args.compute_samples, fit)
    body = {"n_samples": samples, "n_bars": phrase_bars * max(1, fit // samples), "format": "json"}
    why = (f"{args.compute_samples} samples x {args.compute_bars} bars is {asked} phrases; a request may have "
           f"{MAX_PHRASES} and 16 in flight {MAX_INFLIGHT_PHRASES} together, so {fit} each: measured {body}")
    print(why, flush=True)
    return body, why


# --- the run ---------------------------------------------------------------------------------------


def verdict(figures: dict) -> dict:
    out = {}
    for key, (op, target) in TARGETS.items():
        value = figures.get(key)
        out[key] = value
        out[f"{key}_target"] = f"{op} {target}"
        out[f"{key}_met"] = value is not None and (value <= target if op == "<=" else value >= target)
    out["all_met"] = all(out[f"{k}_met"] for k in TARGETS)
    out["missed"] = [k for k in TARGETS if not out[f"{k}_met"]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model ref for generate (default: an untrained --preset model)")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--masked-model", default=None,
                    help="a masked model for the mixed load and the originality figure (copied, then given the "
                         "build's index and examples; default: an untrained --masked-preset model)")
    ap.add_argument("--masked-preset", default="cpu-masked")
    ap.add_argument("--data", default=None, help="a Bach build (musicgan data build --source bach; default: "
                                                 "build the embedded chorales into a temporary folder)")
    ap.add_argument("--requests", type=int, default=400, help="requests per light measurement")
    ap.add_argument("--compute-requests", type=int, default=64, help="requests per compute-bound measurement")
    ap.add_argument("--compute-samples", type=int, default=16)
    ap.add_argument("--compute-bars", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="alternating floor/ours rounds (the median is kept)")
    ap.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                    help="skip the instrumented replicas and the profile (where the time goes)")
    args = ap.parse_args()
    if args.data is not None and not Path(args.data, "manifest.json").is_file():
        raise SystemExit(f"--data {args.data}: no build there; make one with "
                         "`musicgan data build --source bach --out DIR`, or leave --data out")

    from ray import serve

    from quality_run import bach_build
    from serving.app import build_app, start

    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    args.data = bach_build(tmp, args.data)
    model = args.model or make_model(args.preset, tmp)
    masked = (copy_with_assets(args.masked_model, args.data, tmp) if args.masked_model
              else make_model(args.masked_preset, tmp, args.data, assets=True))
    print(f"models: {model} (generate), {masked} (masked, with index and examples)", flush=True)

    orig = originality_cost(masked, args.data, 200)
    print(f"originality {orig}", flush=True)
    edge = http_edge_us()
    print(f"serving.http_edge per request, us: {edge}", flush=True)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    batch = {"max_batch_size": 16, "batch_wait_timeout_s": 0.0, "watch_seconds": 0}
    nobatch = dict(batch, max_batch_size=1)
    start(model, port=port, user_config=batch)  # as `musicgan serve` does: Serve's proxy, http_options, the app
    # the same app with batching off (max_batch_size 1) beside it, so on and off alternate without redeploys
    serve.run(build_app(model, user_config=nobatch), name="nobatch", route_prefix=NOBATCH_PREFIX, blocking=False)
    # and with Serve's per-request access log off: what that log costs us
    serve.run(build_app(model, user_config=batch, logging_config={"enable_access_log": False}), name="quiet",
              route_prefix=QUIET_PREFIX, blocking=False)
    serve.run(noop_app(), name="noop", route_prefix=NOOP_PREFIX, blocking=False)
    wait_healthy(port)
    meter = CpuMeter()
    background = [meter.background_cores(3.0)]
    runs, rounds = {}, {}

    def light(path: str, n: int):
        return [post(path, dict(GENERATE, seed=i), "generate") for i in range(n)]

    compute, refused = compute_body(args)

    def heavy(path: str, n: int):
        return [post(path, dict(compute, seed=i), "generate") for i in range(n)]

    paths = {"noop": NOOP_PREFIX + "/v1/generate", "noop_body": NOOP_PREFIX + "/v1/read_body", "ours": "/v1/generate"}
    loads = [(f"{name}_c{c}", c, light, path) for c in (1, 16) for name, path in paths.items()]
    loads += [(f"ours_quiet_c{c}", c, light, QUIET_PREFIX + "/v1/generate") for c in (1, 16)]
    loads += [("ours_nobatch_c16", 16, light, NOBATCH_PREFIX + "/v1/generate"),
              ("compute_batch_c16", 16, heavy, "/v1/generate"),
              ("compute_nobatch_c16", 16, heavy, NOBATCH_PREFIX + "/v1/generate")]
    for key, c, make, path in loads:  # warm-up
        load(port, 4, make(path, 60 if make is light else 8))
    inproc_rounds = []
    for r in range(args.rounds):  # the floor and ours alternate, so both see the same neighbours
        inproc_rounds.append(statistics.median(in_process_ms(model, 70)[10:]))  # and the same request in-process
        print(f"round {r} in-process p50 {inproc_rounds[-1]:.2f} ms", flush=True)
        for key, c, make, path in loads:
            n = args.requests if make is light else args.compute_requests
            result = load(port, c, make(path, n), meter if c == 16 else None)
            rounds.setdefault(key, []).append(result)
            line(f"round {r} {key}", result)
    for key, results in rounds.items():  # the round with the median p50 (c1) or median req/s (c16)
        by = "p50_ms" if key.endswith("c1") else "rps"
        runs[key] = sorted(results, key=lambda x: x[by])[len(results) // 2]
        runs[key]["rounds"] = [x[by] for x in results]
    serve.delete("nobatch")
    serve.delete("quiet")

    deploy(masked, port, batch)  # the masked model, with its index and examples
    info = get_json(port, "/v1/model")
    mixed = None
    if "harmonize" in (info.get("tasks") or []):
        requests, described = mixed_requests(args.data, info, 3 * (args.requests // 3))
        load(port, 4, requests[:30])
        mixed = load(port, 16, requests, meter, check=has_originality)
        mixed["bodies"] = described
        runs["mixed_c16"] = mixed
        line("mixed generate/harmonize/inpaint", mixed)
        for route, r in mixed.get("routes", {}).items():
            print(f"    {route:10s} p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  ({r['ok']} ok)")
    else:
        print(f"the masked model's /v1/model lists tasks {info.get('tasks')}: no assistant routes yet; "
              "mixed load skipped", flush=True)

    breakdown = None
    if args.breakdown:
        breakdown = where_it_goes(port, model, batch, light, paths, args.requests, tmp)
    background.append(meter.background_cores(3.0))
    serve.shutdown()
    R = range(args.rounds)

    def p50(key, r):
        return rounds[key][r]["p50_ms"]

    def rps(key, r):
        return rounds[key][r]["rps"]

    def median(values):  # each figure per round, from that round's loads; the median round's value
        return round(statistics.median(values), 3)

    per_round = {
        "http_side_ms": [p50("ours_c1", r) - p50("noop_c1", r) - inproc_rounds[r] for r in R],
        "throughput_vs_floor": [rps("ours_c16", r) / rps("noop_c16", r) for r in R],
        "batching_gain": [rps("compute_batch_c16", r) / max(rps("compute_nobatch_c16", r), 1e-9) for r in R],
        "http_side_ms_vs_body_floor": [p50("ours_c1", r) - p50("noop_body_c1", r) - inproc_rounds[r] for r in R],
        "throughput_vs_body_floor": [rps("ours_c16", r) / rps("noop_body_c16", r) for r in R],
        "overhead_ms_p50": [p50("ours_c1", r) - inproc_rounds[r] for r in R],  # before issue 15: HTTP - in-process
        "batching_gain_small_midi": [rps("ours_c16", r) / rps("ours_nobatch_c16", r) for r in R],
        "access_log_off_http_side_ms": [p50("ours_quiet_c1", r) - p50("noop_c1", r) - inproc_rounds[r] for r in R],
        "access_log_off_throughput_vs_floor": [rps("ours_quiet_c16", r) / rps("noop_c16", r) for r in R],
    }
    fig = {k: median(v) for k, v in per_round.items()}
    p50_in = statistics.median(inproc_rounds)
    noop1, noop16, ours1, ours16 = runs["noop_c1"], runs["noop_c16"], runs["ours_c1"], runs["ours_c16"]
    body1, body16 = runs["noop_body_c1"], runs["noop_body_c16"]
    cb, cn = runs["compute_batch_c16"], runs["compute_nobatch_c16"]
    figures = {
        "http_side_ms": fig["http_side_ms"],
        "throughput_vs_floor": fig["throughput_vs_floor"],
        "batching_gain": fig["batching_gain"] if cb["ok"] and cn["ok"] else None,
        "mixed_non_200": mixed["non_200"] if mixed else None,
        "originality_cost_ratio": orig["originality_cost_ratio"],
    }
    result = {"benchmark": "serve_load", **verdict(figures), "rounds": args.rounds,
              "per_round": {k: [round(x, 3) for x in v] for k, v in per_round.items()},
              "noop_p50_ms_c1": noop1["p50_ms"], "noop_rps_c16": noop16["rps"],
              # the floor of a route that reads its body (Serve fetches it from the proxy actor)
              "noop_body_p50_ms_c1": body1["p50_ms"], "noop_body_rps_c16": body16["rps"],
              "http_side_ms_vs_body_floor": fig["http_side_ms_vs_body_floor"],
              "throughput_vs_body_floor": fig["throughput_vs_body_floor"],
              "generate_p50_ms_c1": ours1["p50_ms"], "generate_rps_c16": ours16["rps"],
              "in_process_ms_p50": round(p50_in, 3), "in_process_ms_p50_rounds": [round(x, 3) for x in inproc_rounds],
              "overhead_ms_p50": fig["overhead_ms_p50"],
              "batching_gain_small_midi": fig["batching_gain_small_midi"],
              "access_log_off": {"generate_p50_ms_c1": runs["ours_quiet_c1"]["p50_ms"],
                                 "generate_rps_c16": runs["ours_quiet_c16"]["rps"],
                                 "http_side_ms": fig["access_log_off_http_side_ms"],
                                 "throughput_vs_floor": fig["access_log_off_throughput_vs_floor"]},
              "compute_body": compute, "compute_body_refused": refused,
              "background_cpu_cores": background, "compute_rps": {"batching_on": cb["rps"], "batching_off": cn["rps"]},
              "compute_non_200": {"batching_on": cb["non_200"], "batching_off": cn["non_200"]},
              "mixed_rps_c16": mixed["rps"] if mixed else None, "mixed_routes": mixed.get("routes") if mixed else None,
              "originality": orig, "http_edge_us_per_request": edge,
              "cpu_ms_per_request": {"noop_c16": noop16["cpu_ms_per_request"], "ours_c16": ours16["cpu_ms_per_request"],
                                     "compute_batch_c16": cb["cpu_ms_per_request"],
                                     "compute_nobatch_c16": cn["cpu_ms_per_request"],
                                     "mixed_c16": mixed["cpu_ms_per_request"] if mixed else None},
              "breakdown": breakdown, "models": {"generate": args.model or f"untrained {args.preset}",
                                                     "masked": args.masked_model or f"untrained {args.masked_preset}"},
              "runs": runs}
    print(f"http side {figures['http_side_ms']:.2f} ms (median round; ours {ours1['p50_ms']} - no-op "
          f"{noop1['p50_ms']} - in-process {p50_in:.2f}); throughput {figures['throughput_vs_floor']} of the floor; batching gain "
          f"{figures['batching_gain']}; originality check {orig['originality_cost_ratio']} of the forward", flush=True)
    print(json.dumps(result))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
