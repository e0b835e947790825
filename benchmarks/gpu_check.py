"""GPU check of the GAN loop: the `gpu` preset's model, DDP over NCCL, fp32 against bf16 autocast.

Pure PyTorch (no Ray, no data build), so it runs on a lent GPU machine that has torch alone. It
trains the pianoroll GAN on Bach-shaped random voice lines (4 tracks x 64 steps x 48 pitches, one
pitch per step and voice, each voice in its own register) in a one-rank NCCL process group with G and
D wrapped in separate DDP modules (``broadcast_buffers=False``), as ``musicgan.train`` does under
Ray Train. It reports seconds per generator step for fp32 and bf16, and whether every loss stayed
finite and every parameter moved. Ends with one JSON line.

    python benchmarks/gpu_check.py [--presets gpu,cpu] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicgan.gan import make_gan, train  # noqa: E402
from musicgan.model import build_models  # noqa: E402
from musicgan.presets import load_preset  # noqa: E402

SHAPE = [4, 64, 48]  # the Bach build's example shape: tracks, steps (4 bars x 16), pitches 36..83
BARS = 4


def voice_lines(batch: int, device: torch.device, gen: torch.Generator) -> torch.Tensor:
    """``[batch, 4, 64, 48]`` rolls: each voice a random walk in its own register, one pitch a step."""
    tracks, steps, pitches = SHAPE
    centre = torch.tensor([36, 28, 20, 10])  # soprano .. bass, as pitch indices
    walk = torch.randint(-2, 3, (batch, tracks, steps), generator=gen).cumsum(-1)
    idx = (centre[None, :, None] + walk).clamp(0, pitches - 1)
    roll = torch.zeros(batch, tracks, steps, pitches)
    roll.scatter_(-1, idx[..., None], 1.0)
    return roll.to(device)


def run(preset: str, precision: str, steps: int, device: torch.device) -> dict:
    cfg = load_preset(preset, [f"train.precision={precision}", f"train.total_steps={steps + 3}"])
    torch.manual_seed(0)
    g, d = build_models(cfg.model, SHAPE, BARS, 1)
    g, d = g.to(device), d.to(device)
    if torch.distributed.is_initialized():
        ids = [device.index] if device.type == "cuda" else None
        g = torch.nn.parallel.DistributedDataParallel(g, device_ids=ids, broadcast_buffers=False)
        d = torch.nn.parallel.DistributedDataParallel(d, device_ids=ids, broadcast_buffers=False)
    gan = make_gan(g, d, cfg)
    named = [("G." + n, p) for n, p in g.named_parameters()] + [("D." + n, p) for n, p in d.named_parameters()]
    before = [p.detach().clone() for _, p in named]
    gen = torch.Generator().manual_seed(1)
    bs = cfg.train.batch_size_per_worker

    def batches():
        while True:
            yield voice_lines(bs, device, gen), None

    losses, times = [], []

    def on_step(step, metrics):
        losses.append(metrics)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    train(gan, batches(), cfg, on_step, device)
    finite = all(math.isfinite(v) for m in losses for v in m.values())
    still = [n for a, (n, p) in zip(before, named) if torch.equal(a, p.detach())]
    moved = len(before) - len(still)
    step_s = (times[-1] - times[2]) / max(len(times) - 3, 1)  # the first 3 steps warm up
    out = {"preset": preset, "precision": precision, "batch": bs, "critic_steps": cfg.loss.critic_steps,
           "g_params_M": round(sum(p.numel() for p in g.parameters()) / 1e6, 2),
           "d_params_M": round(sum(p.numel() for p in d.parameters()) / 1e6, 2),
           "step_s": round(step_s, 4), "losses_finite": finite, "params_moved": f"{moved}/{len(before)}",
           "params_unmoved": still,
           "last": {k: round(v, 4) for k, v in losses[-1].items()}}
    print(json.dumps(out), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="gpu,cpu")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    backend = "nccl" if cuda else "gloo"
    torch.distributed.init_process_group(backend, rank=0, world_size=1)
    print(f"device {torch.cuda.get_device_name(0) if cuda else 'cpu'}, torch {torch.__version__}, backend {backend}")
    results = {}
    for preset in args.presets.split(","):
        for precision in ("fp32", "bf16"):
            results[f"{preset}/{precision}"] = run(preset, precision, args.steps, device)
    torch.distributed.destroy_process_group()
    summary = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "backend": backend,
               "torch": torch.__version__, "steps": args.steps,
               "all_finite": all(r["losses_finite"] for r in results.values()),
               **{f"{k}_step_s": r["step_s"] for k, r in results.items()},
               **{f"{p}_bf16_speedup": round(results[f"{p}/fp32"]["step_s"] / results[f"{p}/bf16"]["step_s"], 2)
                  for p in args.presets.split(",")}}
    print(json.dumps(summary))
    return 0 if summary["all_finite"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
