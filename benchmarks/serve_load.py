"""Serving latency and throughput: HTTP through Ray Serve vs the same work in-process, and what
dynamic batching buys under concurrency.

A bounded, loopback-only load generator (a fixed number of requests from N threads, each with its
own keep-alive connection) sends ``POST /v1/generate`` for one 4-bar phrase as MIDI:

* in-process: the replica's own work for that request (one generator forward + MIDI render), p50;
* HTTP at concurrency 1 and 16, with batching on (``max_batch_size`` 16) and off (1; switched by
  ``user_config``, the same replica): p50/p99 latency and requests per second.

Last line: JSON with ``overhead_ms_p50`` (HTTP p50 at concurrency 1, batching on, minus in-process
p50; target <= 10 ms) and ``batching_gain`` (throughput at concurrency 16, batching on over off;
target >= 3).

    python benchmarks/serve_load.py [--model models/bach/latest] [--requests 400] [--preset cpu]
"""

import argparse
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BODY = {"n_samples": 1, "n_bars": 4, "format": "midi"}


def make_model(preset: str, out: Path) -> str:
    """An untrained checkpoint of the preset's architecture (timing does not depend on the weights)."""
    import torch

    from musicgan import checkpoint as ckpt
    from musicgan.config import FeatureConfig, to_dict
    from musicgan.gan import make_gan
    from musicgan.model import build_models
    from musicgan.presets import load_preset

    cfg, fc = load_preset(preset), FeatureConfig()
    data = {"feature_config": to_dict(fc), "feature_hash": fc.hash(), "example_shape": fc.example_shape(),
            "labels": ["all"], "bars": fc.bars, "steps_per_bar": fc.steps_per_bar, "pitch_low": fc.pitch_low,
            "track_names": fc.track_names}
    torch.manual_seed(0)
    g, d = build_models(cfg.model, data["example_shape"], data["bars"], 1)
    return str(ckpt.save(out / "checkpoint_000000", make_gan(g, d, cfg), cfg, data))


def in_process_ms(model_ref: str, reps: int) -> list[float]:
    import torch

    from musicgan.gan import Request, generate_many
    from serving.app import GenerateRequest, LoadedModel, render

    torch.set_num_threads(1)  # as in a replica
    model = LoadedModel(model_ref)
    body = GenerateRequest(**BODY)
    out = []
    for i in range(reps):
        t0 = time.perf_counter()
        rolls = generate_many(model.g, [Request(n=1, seed=i)])[0].numpy()
        render(rolls, body, model, i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def load(port: int, concurrency: int, total: int) -> dict:
    """``total`` requests from ``concurrency`` threads; latency percentiles and throughput."""
    latencies, errors, lock = [], [], threading.Lock()
    per_thread = [total // concurrency + (i < total % concurrency) for i in range(concurrency)]
    payloads = [json.dumps(dict(BODY, seed=i)).encode() for i in range(total)]

    def worker(n: int, offset: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(n):
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/generate", payloads[offset + i], {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException) as e:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                errors.append(repr(e))
            with lock:
                (latencies if ok else errors).append((time.perf_counter() - t0) * 1000 if ok else "status")
        conn.close()

    threads, offset = [], 0
    for n in per_thread:
        threads.append(threading.Thread(target=worker, args=(n, offset)))
        offset += n
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"concurrency": concurrency, "requests": total, "errors": len(errors),
            "p50_ms": round(statistics.median(lat), 2), "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 2),
            "rps": round(len(lat) / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model ref (default: an untrained model of --preset)")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--requests", type=int, default=400, help="requests per measurement")
    args = ap.parse_args()

    from ray import serve

    from serving.app import start

    model = args.model or make_model(args.preset, Path(tempfile.mkdtemp(prefix="serve-bench-")))
    inproc = in_process_ms(model, 200)[20:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = {}
    for batching in (True, False):
        user_config = {"max_batch_size": 16 if batching else 1, "batch_wait_timeout_s": 0.0, "watch_seconds": 0}
        start(model, port=port, user_config=user_config)  # a second call reconfigures the same replica
        load(port, 4, 40)  # warm-up
        for c in (1, 16):
            results[(batching, c)] = load(port, c, args.requests)
            print(f"batching {'on ' if batching else 'off'} concurrency {c:2d}: {results[(batching, c)]}")
    serve.shutdown()
    p50_in = statistics.median(inproc)
    overhead = results[(True, 1)]["p50_ms"] - p50_in
    gain = results[(True, 16)]["rps"] / results[(False, 16)]["rps"]
    print(f"in-process p50 {p50_in:.2f} ms; HTTP overhead at p50 {overhead:.2f} ms; batching gain x{gain:.2f}")
    print(json.dumps({"benchmark": "serve_load", "in_process_ms_p50": round(p50_in, 2),
                      "overhead_ms_p50": round(overhead, 2), "batching_gain": round(gain, 2),
                      "runs": {f"{'batch' if b else 'nobatch'}_c{c}": r for (b, c), r in results.items()},
                      "target_overhead_ms_p50": 10, "target_batching_gain": 3}))


if __name__ == "__main__":
    main()
