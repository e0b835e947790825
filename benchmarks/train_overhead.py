"""Ray Train's overhead on the GAN loop: the same steps under Ray Train (2 workers) and under plain
``torch.distributed`` (2 processes, gloo), on the same in-memory phrases, with the same model.

Each side times its steady state: the wall time of ``--steps`` generator steps after ``--warmup``
steps, on rank 0. Start-up (process group, model build, Ray's worker group) is reported apart.
Last line: JSON with ``ratio`` (Ray seconds per step over plain seconds per step; target <= 1.10).

    python benchmarks/train_overhead.py [--steps 40] [--warmup 5] [--preset cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

SHAPE, BARS = [4, 64, 48], 4


def loop(cfg_dict: dict, warmup: int, steps: int, rank: int, wrap) -> dict:
    """Build G and D, wrap them for DDP, run warmup + steps generator steps; time the latter on every rank."""
    from musicgan.config import Config, from_dict
    from musicgan.gan import make_gan, train
    from musicgan.model import build_models

    torch.set_num_threads(1)
    cfg = from_dict(Config, cfg_dict)
    cfg.train.total_steps = warmup + steps
    torch.manual_seed(0)
    g, d = build_models(cfg.model, SHAPE, BARS, 1)
    g, d = wrap(g), wrap(d)
    gan = make_gan(g, d, cfg)
    gen = torch.Generator().manual_seed(rank)
    data = (torch.rand(512, *SHAPE, generator=gen) > 0.97).float()
    bs = cfg.train.batch_size_per_worker

    def batches():
        i = 0
        while True:
            yield data[(i * bs) % 512 : (i * bs) % 512 + bs], None
            i += 1

    marks = {}

    def on_step(step, _):
        if step == warmup:
            marks["t0"] = time.perf_counter()
        if step == warmup + steps:
            marks["t1"] = time.perf_counter()

    train(gan, batches(), cfg, on_step)
    return {"seconds_per_step": (marks["t1"] - marks["t0"]) / steps}


# --- plain torch.distributed ------------------------------------------------------------------


def _plain_worker(rank: int, world: int, port: int, cfg_dict: dict, warmup: int, steps: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    res = loop(cfg_dict, warmup, steps, rank, lambda m: DDP(m, broadcast_buffers=False))
    if rank == 0:
        Path(out).write_text(json.dumps(res))
    dist.barrier()
    dist.destroy_process_group()


def plain(cfg_dict: dict, warmup: int, steps: int) -> dict:
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "res.json")
        t0 = time.perf_counter()
        mp.spawn(_plain_worker, args=(2, port, cfg_dict, warmup, steps, out), nprocs=2, join=True)
        total = time.perf_counter() - t0
        res = json.loads(Path(out).read_text())
    res["total_s"] = total
    return res


# --- Ray Train ----------------------------------------------------------------------------------


def _ray_train_func(config: dict) -> None:
    import ray.train
    import ray.train.torch

    rank = ray.train.get_context().get_world_rank()
    res = loop(config["cfg"], config["warmup"], config["steps"], rank,
               lambda m: ray.train.torch.prepare_model(m, parallel_strategy_kwargs={"broadcast_buffers": False}))
    if rank == 0:  # Result.metrics only carries metrics reported with a checkpoint: use a file
        Path(config["out"]).write_text(json.dumps(res))


def ray_train(cfg_dict: dict, warmup: int, steps: int) -> dict:
    import tempfile

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from musicgan.ray_utils import ensure_ray

    ensure_ray()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = os.path.join(tmp, "res.json")
        trainer = TorchTrainer(_ray_train_func,
                               train_loop_config={"cfg": cfg_dict, "warmup": warmup, "steps": steps, "out": out},
                               scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                               run_config=RunConfig(name="overhead", storage_path=tmp))
        trainer.fit()
        total = time.perf_counter() - t0
        res = json.loads(Path(out).read_text())
    res["total_s"] = total
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--preset", default="cpu")
    args = ap.parse_args()
    from musicgan.config import to_dict
    from musicgan.presets import load_preset

    cfg = to_dict(load_preset(args.preset, ["train.batch_size_per_worker=32"]))
    # plain first, then Ray, then plain again: the median plain figure absorbs drift on a shared machine
    p1 = plain(cfg, args.warmup, args.steps)
    r = ray_train(cfg, args.warmup, args.steps)
    p2 = plain(cfg, args.warmup, args.steps)
    plain_s = (p1["seconds_per_step"] + p2["seconds_per_step"]) / 2
    ratio = r["seconds_per_step"] / plain_s
    steady = lambda res: res["seconds_per_step"] * (args.warmup + args.steps)  # noqa: E731
    print(f"GAN steps, 2 workers x 1 thread, batch 32 per worker, preset {args.preset}:")
    print(f"  plain torch.distributed (gloo)  {p1['seconds_per_step'] * 1000:7.1f} / {p2['seconds_per_step'] * 1000:7.1f} ms/step"
          f"  (whole run {p1['total_s']:.1f} s / {p2['total_s']:.1f} s)")
    print(f"  Ray Train                       {r['seconds_per_step'] * 1000:7.1f} ms/step  (whole run {r['total_s']:.1f} s)")
    print(f"  ratio Ray / plain               {ratio:7.3f}  (target <= 1.10)")
    print(json.dumps({"ratio": round(ratio, 3), "ray_ms_per_step": round(r["seconds_per_step"] * 1000, 1),
                      "plain_ms_per_step": round(plain_s * 1000, 1),
                      "ray_startup_s": round(r["total_s"] - steady(r), 1),
                      "plain_startup_s": round((p1["total_s"] + p2["total_s"]) / 2 - steady(p1), 1)}))


if __name__ == "__main__":
    main()
