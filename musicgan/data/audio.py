"""Audio -> log-mel clips (librosa), and MIDI -> audio rendering for the embedded audio source.

Rendering uses FluidSynth with a General MIDI soundfont where the machine has them (Debian:
``fluidsynth`` plus ``timgm6mb-soundfont`` or ``fluid-soundfont-gm``) and pretty_midi's additive
sine synthesis otherwise, so ``bach-audio`` works after a plain ``pip install``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from musicgan.config import FeatureConfig
from musicgan.data.griffin_lim import griffin_lim
from musicgan.data.pianoroll import BadInput

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
DB_FLOOR = -100.0  # log-mel values are clipped here (dB re. full scale power)
MAX_AUDIO_SECONDS = 20 * 60.0
"""Longer audio files are skipped with a reason, judged from the header before anything is decoded."""
MAX_AUDIO_SAMPLES = int(MAX_AUDIO_SECONDS * 48_000 * 2)
"""Frames x channels a file may decode to (20 min of 48 kHz stereo: 0.46 GB of float32)."""


def _check_length(frames: int, sample_rate_hz: int, channels: int, max_seconds: float) -> None:
    if sample_rate_hz <= 0 or channels <= 0:
        raise BadInput(f"unreadable audio: header gives {sample_rate_hz} Hz, {channels} channels")
    seconds = frames / sample_rate_hz
    if seconds > max_seconds:
        raise BadInput(f"too long ({seconds:.0f} s of audio > the {max_seconds:.0f} s limit), not decoded")
    if frames * channels > MAX_AUDIO_SAMPLES:
        raise BadInput(f"too large ({channels} channels x {frames} frames > {MAX_AUDIO_SAMPLES} samples), "
                       "not decoded")


def audio_header_check(file, max_seconds: float = MAX_AUDIO_SECONDS) -> int | None:
    """Length checks from an audio file's header alone (``soundfile.info``; nothing is decoded).

    ``file`` is a path or a seekable binary file. Over a limit is :class:`BadInput`. Returns the
    most bytes the file may sensibly hold for that audio (the caller reads no more), or ``None``
    where soundfile cannot read the header (an mp3 on an older libsndfile: the decoder decides).
    """
    import soundfile as sf

    try:
        info = sf.info(file)
    except Exception:
        return None
    _check_length(int(info.frames), int(info.samplerate), int(info.channels), max_seconds)
    return int(info.frames) * int(info.channels) * 8 + (1 << 20)  # float64 PCM plus headroom for metadata


def decode_audio(data: bytes, name: str, sample_rate_hz: int, max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Bytes of a wav/flac/ogg/mp3 file -> mono float32 at ``sample_rate_hz``; bad audio is :class:`BadInput`.

    Audio longer than ``max_seconds`` (read from the header before decoding) is :class:`BadInput` too.
    """
    import librosa
    import soundfile as sf

    if len(data) == 0:
        raise BadInput("empty file (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as snd:
            _check_length(int(snd.frames), int(snd.samplerate), int(snd.channels), max_seconds)
            y, sr = snd.read(dtype="float32", always_2d=True), snd.samplerate
    except BadInput:
        raise
    except Exception as e:
        if not name.lower().endswith(".mp3"):
            raise BadInput(f"unreadable audio: {str(e).splitlines()[0][:200]}") from None
        # older libsndfile builds lack mp3: let librosa's audioread fallback try a temp file
        with tempfile.NamedTemporaryFile(suffix=".mp3") as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                y, sr = librosa.load(tmp.name, sr=None, mono=False, duration=max_seconds + 1.0)
            except Exception as e2:
                raise BadInput(f"unreadable audio: {str(e2).splitlines()[0][:200]}") from None
            y = np.atleast_2d(y).T
            if len(y) > max_seconds * sr:
                raise BadInput(f"too long (more than the {max_seconds:.0f} s limit of audio), not decoded in full")
    y = y.mean(axis=1)
    if y.size == 0:
        raise BadInput("no audio samples")
    if not np.isfinite(y).all():
        raise BadInput("audio contains NaN or infinite samples")
    if sr != sample_rate_hz:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate_hz)
    return y.astype(np.float32)


def log_mel(y: np.ndarray, fc: FeatureConfig) -> np.ndarray:
    """``[n_mels, frames]`` log-mel power in dB, clipped at :data:`DB_FLOOR`."""
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=fc.sample_rate_hz, n_fft=fc.n_fft,
                                         hop_length=fc.hop_length, n_mels=fc.n_mels, power=2.0)
    return np.maximum(librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None), DB_FLOOR).astype(np.float32)


def audio_to_clips(y: np.ndarray, fc: FeatureConfig, min_rms: float = 1e-3):
    """Cut audio into back-to-back clips of ``clip_seconds`` and return ``(mels [N, n_mels, frames], start_s)``.

    Silent clips (RMS below ``min_rms``) are dropped; a tail shorter than a clip is dropped.
    """
    clip = int(round(fc.clip_seconds * fc.sample_rate_hz))
    n = len(y) // clip
    if n == 0:
        raise BadInput(f"shorter than one clip ({len(y) / fc.sample_rate_hz:.2f} s < {fc.clip_seconds} s)")
    mels, starts = [], []
    for i in range(n):
        seg = y[i * clip : (i + 1) * clip]
        if float(np.sqrt(np.mean(seg**2))) < min_rms:
            continue
        mels.append(log_mel(seg, fc))
        starts.append(i * fc.clip_seconds)
    if not mels:
        raise BadInput("silent (every clip below the RMS floor)")
    return np.stack(mels), np.asarray(starts, np.float32)


# ---------------------------------------------------------------------------------------------
# MIDI -> audio


def find_soundfont() -> str | None:
    env = os.environ.get("MUSICGAN_SOUNDFONT")
    for path in ((env,) if env else ()) + SOUNDFONT_CANDIDATES:
        if path and Path(path).is_file():
            return path
    return None


def synth_backend() -> str:
    """``fluidsynth`` when the binary and a GM soundfont exist, else ``sine``."""
    if os.environ.get("MUSICGAN_SYNTH") == "sine":
        return "sine"
    return "fluidsynth" if shutil.which("fluidsynth") and find_soundfont() else "sine"


def render_midi(midi_path: str | Path, sample_rate_hz: int, backend: str | None = None) -> np.ndarray:
    """Render a MIDI file to mono float32 audio."""
    backend = backend or synth_backend()
    if backend == "fluidsynth":
        import soundfile as sf

        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "out.wav"
            subprocess.run(
                ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(sample_rate_hz), "-F", str(wav),
                 find_soundfont(), str(midi_path)],
                check=True, capture_output=True, timeout=300,
            )
            y, _ = sf.read(wav, dtype="float32", always_2d=True)
        return y.mean(axis=1)
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(midi_path))
    y = pm.synthesize(fs=sample_rate_hz)
    peak = float(np.abs(y).max()) if y.size else 0.0
    return (0.5 * y / peak if peak > 0 else y).astype(np.float32)


def render_cached(midi_paths: list[Path], cache_dir: Path, sample_rate_hz: int, progress: bool = True) -> list[Path]:
    """Render each MIDI file once into ``cache_dir`` as WAV (in parallel Ray tasks); returns WAV paths."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    wavs = [cache_dir / (p.stem + ".wav") for p in midi_paths]
    todo = [(m, w) for m, w in zip(midi_paths, wavs) if not w.exists()]
    if todo:
        import ray

        from musicgan.data.corpus import _progress
        from musicgan.ray_utils import ensure_ray

        ensure_ray()
        task = ray.remote(num_cpus=1)(_render_to_wav)
        pending = [task.remote(str(m), str(w), sample_rate_hz) for m, w in todo]
        with _progress(len(todo), f"rendering audio ({synth_backend()})", progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                ray.get(done)
                bar.update(1)
    return [w for w in wavs if w.exists()]


def _render_to_wav(midi_path: str, wav_path: str, sample_rate_hz: int) -> None:
    import soundfile as sf

    y = render_midi(midi_path, sample_rate_hz)
    tmp = Path(wav_path).with_name(f".{Path(wav_path).name}.tmp-{os.getpid()}.wav")
    sf.write(tmp, y, sample_rate_hz, subtype="PCM_16")
    os.replace(tmp, wav_path)


# ---------------------------------------------------------------------------------------------
# log-mel -> audio (for generated spectrograms)

GRIFFIN_LIM_ITERS = 16
"""Griffin-Lim iterations used when turning generated mels into audio. 16 keeps pitch and most of
the timbre; 32 sounds a little cleaner at about half the speed. The speed is measured by
``benchmarks/audio_quality.py`` (a batch of 16 one-second clips, generator included)."""


def _mel_pinv(fc: FeatureConfig):
    import librosa
    import torch

    key = (fc.sample_rate_hz, fc.n_fft, fc.n_mels)
    if key not in _PINV:
        basis = librosa.filters.mel(sr=fc.sample_rate_hz, n_fft=fc.n_fft, n_mels=fc.n_mels)
        _PINV[key] = torch.from_numpy(np.linalg.pinv(basis).astype(np.float32))
    return _PINV[key]


_PINV: dict = {}


def mel_to_audio(mel_db, fc: FeatureConfig, n_iter: int = GRIFFIN_LIM_ITERS, seed=0) -> np.ndarray:
    """Log-mel clips ``[..., n_mels, frames]`` (dB, as :func:`log_mel` makes them) -> audio ``[..., samples]``.

    The mel power is mapped back to a linear-frequency magnitude with the pseudo-inverse of
    librosa's mel filter bank (one matrix product; librosa's ``mel_to_stft`` solves a non-negative
    least squares per clip, about 0.1 s each here), then the phase comes from fast Griffin-Lim run
    on the whole batch at once (:mod:`musicgan.data.griffin_lim`: librosa's algorithm, batched,
    with torch's FFTs and numba kernels; librosa loops clip by clip in numpy, 1-8x real time here,
    slower on trained output, whose NNLS takes longer). ``seed`` fixes the random initial phase (one int for every clip, or one per clip), so
    the same mels always give the same audio, alone or in any batch, bit for bit.
    """
    import torch

    mel = np.asarray(mel_db, np.float32)
    lead = mel.shape[:-2]
    mel = mel.reshape(-1, *mel.shape[-2:])
    # dB -> power in float64 numpy: torch's vectorised float32 pow rounds a tensor's tail differently
    # from its body, which made a clip's audio depend on its place in the batch
    power = np.where(mel <= DB_FLOOR, 0.0, np.power(10.0, mel.astype(np.float64) / 10.0)).astype(np.float32)
    mag = (_mel_pinv(fc) @ torch.from_numpy(power)).clamp_min(0).sqrt()  # [B, 1 + n_fft/2, frames]
    length = int(round(fc.clip_seconds * fc.sample_rate_hz))
    seeds = [seed] * len(mag) if np.isscalar(seed) else list(seed)
    y = griffin_lim(mag, fc.n_fft, fc.hop_length, length, n_iter, seeds)
    return y.reshape(*lead, length)


def wav_bytes(y: np.ndarray, sample_rate_hz: int) -> bytes:
    """Mono float audio -> 16-bit PCM WAV bytes (peak-normalised to -1 dBFS when louder)."""
    import soundfile as sf

    y = np.asarray(y, np.float32)
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 0.89:
        y = y * (0.89 / peak)
    buf = io.BytesIO()
    sf.write(buf, y, sample_rate_hz, format="WAV", subtype="PCM_16")
    return buf.getvalue()
