"""Batched fast Griffin-Lim on the CPU: linear magnitudes -> audio.

This is librosa's ``griffinlim`` (momentum, random initial phase), with the framing of
``torch.stft``/``torch.istft`` (Hann window, centred frames, reflect padding, output trimmed to
``length``). Each iteration is

    irfft -> window and overlap-add -> divide by the window envelope, reflect-pad, reframe, window
          -> rfft -> momentum step and projection onto the target magnitudes

The FFTs are torch's. The steps between them are two numba kernels that do in one pass over memory
what ``torch.istft``/``torch.stft`` and the elementwise update do in about ten (the envelope
division, the trim and the reflect padding become one precomputed gather with weights, see
:func:`_plan`). The batch is split over threads, since the kernels release the GIL. Measured on two
cores, 16 one-second clips at 16 kHz with 16 iterations: 54 ms, against 124 ms for the same
algorithm written with ``torch.stft``/``torch.istft`` and tensor arithmetic.

Every output sample depends on its own clip alone, bit for bit, whatever the batch or the split:
FFTs go row by row, and the kernels use only exactly rounded arithmetic (+, *, /, sqrt; numba
contracts nothing into fused multiply-adds without ``fastmath``).
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

MOMENTUM = 0.99  # the "fast Griffin-Lim" of Perraudin et al. (2013), as librosa's default


@numba.njit(cache=True, nogil=True)
def _overlap_add(frames, b, window, hop, out):
    """``out[:] = sum_t window * frames[b, t]`` placed at ``t * hop``."""
    out[:] = 0
    for t in range(frames.shape[1]):
        o = t * hop
        for n in range(frames.shape[2]):
            out[o + n] += frames[b, t, n] * window[n]


@numba.njit(cache=True, nogil=True)
def _reframe(frames, window, hop, src, weight, out, scratch):
    """Overlap-add each clip's ``frames`` and cut the signal back into windowed frames ``out``.

    ``out[b].flat[j] = ola[src[j]] * weight[j]``: ``src``/``weight`` fold the envelope division,
    the trim to the clip and the reflect padding of the next STFT (see :func:`_plan`).
    """
    for b in range(frames.shape[0]):
        _overlap_add(frames, b, window, hop, scratch)
        flat = out[b].reshape(-1)
        for j in range(src.shape[0]):
            flat[j] = scratch[src[j]] * weight[j]


@numba.njit(cache=True, nogil=True)
def _project(rebuilt, previous, magnitude, momentum, out):
    """Interleaved complex arrays: ``a = rebuilt - momentum * previous``; ``out = magnitude * a / |a|``."""
    for i in range(magnitude.shape[0]):
        re = rebuilt[2 * i] - momentum * previous[2 * i]
        im = rebuilt[2 * i + 1] - momentum * previous[2 * i + 1]
        scale = magnitude[i] / (np.sqrt(re * re + im * im) + np.float32(1e-16))
        out[2 * i] = re * scale
        out[2 * i + 1] = im * scale


@functools.lru_cache(maxsize=16)
def _plan(n_fft: int, hop: int, length: int, frames: int):
    """Tables that turn overlap-added frames into the next STFT's windowed frames, and into the output.

    ``torch.istft(..., center=True, length=length)`` divides the overlap-add by the summed squared
    window and keeps samples ``[n_fft // 2, n_fft // 2 + length)`` (zeros past the end of the
    overlap-add); ``torch.stft(..., center=True)`` reflect-pads that by ``n_fft // 2`` on each side
    and cuts frames every ``hop``. Both are fixed index maps, so each next-frame sample is one
    overlap-add sample times one weight.
    """
    pad = n_fft // 2
    if length <= pad:
        raise ValueError(f"a clip of {length} samples is too short to reflect-pad by {pad}")
    if 1 + (length + 2 * pad - n_fft) // hop != frames:
        raise ValueError(f"{frames} frames do not match {length} samples at hop {hop} (n_fft {n_fft})")
    import torch

    window = torch.hann_window(n_fft, dtype=torch.float64).numpy()  # the window torch.stft/istft would take
    ola_len = n_fft + hop * (frames - 1)
    envelope = np.zeros(ola_len)
    for t in range(frames):
        envelope[t * hop : t * hop + n_fft] += window**2

    def source(index):  # output sample -> (overlap-add index, 1/envelope or 0 past its end)
        src = pad + index
        inside = src < ola_len
        src = np.where(inside, src, 0)
        return src, np.where(inside, 1.0 / envelope[src], 0.0)

    i = np.arange(length + 2 * pad) - pad  # reflect padding: -k -> k, length - 1 + k -> length - 1 - k
    i = np.where(i < 0, -i, i)
    i = np.where(i >= length, 2 * (length - 1) - i, i)
    at = (np.arange(frames)[:, None] * hop + np.arange(n_fft)[None]).reshape(-1)
    src, inv = source(i[at])
    out_src, out_inv = source(np.arange(length))
    return (window.astype(np.float32), src, (np.tile(window, frames) * inv).astype(np.float32),
            out_src, out_inv.astype(np.float32), ola_len)


def _griffin_lim(magnitude, seeds, n_fft: int, hop: int, length: int, n_iter: int) -> np.ndarray:
    """One thread's share: ``magnitude`` ``[B, frames, 1 + n_fft / 2]`` (float32 tensor) -> ``[B, length]``."""
    import torch

    window, src, weight, out_src, out_weight, ola_len = _plan(n_fft, hop, length, magnitude.shape[1])
    b, t, f = magnitude.shape
    # each clip's initial phase from its own generator, drawn [F, T] as librosa lays it out, and its
    # cos/sin taken clip by clip (vectorised transcendental functions round the tail of a tensor
    # differently from its body, and where a clip's cells fall would depend on the batch)
    unit = torch.stack([torch.polar(torch.ones(f, t), 2 * np.pi * torch.rand(
        f, t, generator=torch.Generator().manual_seed(int(s)))).T for s in seeds])
    spec = torch.view_as_complex((torch.view_as_real(unit) * magnitude[..., None]).contiguous())
    rebuilt, previous = torch.zeros_like(spec), torch.zeros_like(spec)
    frames = np.empty((b, t, n_fft), np.float32)
    scratch = np.empty(ola_len, np.float32)
    momentum = np.float32(MOMENTUM / (1 + MOMENTUM))
    mag = magnitude.numpy().reshape(-1)

    def flat(c):
        return torch.view_as_real(c).numpy().reshape(-1)

    for _ in range(n_iter):
        _reframe(torch.fft.irfft(spec, n=n_fft, dim=-1).numpy(), window, hop, src, weight, frames, scratch)
        previous, rebuilt = rebuilt, previous
        torch.fft.rfft(torch.from_numpy(frames), dim=-1, out=rebuilt)
        _project(flat(rebuilt), flat(previous), mag, momentum, flat(spec))
    last = torch.fft.irfft(spec, n=n_fft, dim=-1).numpy()
    y = np.empty((b, length), np.float32)
    for k in range(b):
        _overlap_add(last, k, window, hop, scratch)
        y[k] = scratch[out_src] * out_weight
    return y


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def griffin_lim(magnitude, n_fft: int, hop: int, length: int, n_iter: int, seeds) -> np.ndarray:
    """``magnitude`` ``[B, 1 + n_fft / 2, frames]`` -> audio ``[B, length]`` (float32).

    ``seeds`` (one per clip) fix the random initial phases. The batch is cut into
    ``torch.get_num_threads()`` parts that run on threads at once.
    """
    global _POOL
    import torch

    magnitude = torch.as_tensor(magnitude, dtype=torch.float32).transpose(1, 2).contiguous()  # [B, T, F]
    seeds = list(seeds)
    if len(seeds) != len(magnitude):
        raise ValueError(f"{len(seeds)} seeds for {len(magnitude)} clips")
    if not len(magnitude):
        return np.zeros((0, length), np.float32)
    parts = [p for p in np.array_split(np.arange(len(magnitude)), max(1, torch.get_num_threads())) if len(p)]

    def run(part):
        lo, hi = int(part[0]), int(part[-1]) + 1
        return _griffin_lim(magnitude[lo:hi], seeds[lo:hi], n_fft, hop, length, n_iter)

    if len(parts) == 1:
        return run(parts[0])
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="griffin-lim")
    return np.concatenate(list(_POOL.map(run, parts)))
