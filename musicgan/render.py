"""Generated rolls -> things people use: MIDI (pretty_midi), pianoroll PNGs, WAV, and metric plots.

Figures use matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never pyplot: pyplot keeps
global state (its figure registry, the current figure), so renders from several threads (the
serving app's render pool) could mix. Each function here builds, draws and drops its own figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicgan.config import FeatureConfig, from_dict

TRACK_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
GIVEN_COLOUR = "#222222"
"""Notes the user gave (near-black), apart from the generated ones in the track colours."""
PANEL_WIDTH_IN = 3.2
"""A phrase's panel; longer pieces get wider panels, up to a row of four phrases."""


_FEATURE_CONFIGS: dict[int, tuple[dict, FeatureConfig]] = {}


def feature_config(data: dict) -> FeatureConfig:
    """The data's FeatureConfig (do not modify it: it is shared). Built once per feature-config dict:
    ``from_dict`` reads the type hints each time, about a third of a served phrase's MIDI render."""
    raw = data["feature_config"]
    hit = _FEATURE_CONFIGS.get(id(raw))
    if hit is not None and hit[0] is raw:  # the same dict object, still alive (held in the entry)
        return hit[1]
    fc = from_dict(FeatureConfig, raw)
    if len(_FEATURE_CONFIGS) >= 64:  # per-request dicts (a transposed answer's) must not pile up
        _FEATURE_CONFIGS.clear()
    _FEATURE_CONFIGS[id(raw)] = (raw, fc)
    return fc


def to_midi(roll: np.ndarray, data: dict, tempo_qpm: float = 90.0):
    """A roll as ``pretty_midi``. The data's feature config picks the instruments
    (:func:`musicgan.data.pianoroll.track_instruments`): a band build's tracks get their General MIDI
    programs and drums play on channel 10, one hit per cell; voices sing Choir Aahs."""
    from musicgan.data.pianoroll import roll_to_pretty_midi

    return roll_to_pretty_midi(roll, feature_config(data), tempo_qpm=tempo_qpm)


def midi_bytes(roll: np.ndarray, data: dict, tempo_qpm: float = 90.0) -> bytes:
    """The MIDI of :func:`to_midi` as file bytes (what the server sends)."""
    from musicgan.data.pianoroll import roll_to_midi_bytes

    return roll_to_midi_bytes(roll, feature_config(data), tempo_qpm=tempo_qpm)


def pianoroll_png(rolls: np.ndarray, data: dict, path: str | Path | None = None, title: str | None = None,
                  columns: int = 4, given: np.ndarray | None = None, feature_config: FeatureConfig | None = None,
                  panel_width_in: float = PANEL_WIDTH_IN) -> bytes:
    """A grid of phrases, one colour per track, barlines drawn; returns PNG bytes (and writes ``path``).

    ``given``: bool ``[N, tracks, steps]`` (or ``[N, tracks, steps, pitches]``), the cells the user
    gave (a melody, a prompt, the notes around a filled-in region). Their notes are drawn in
    :data:`GIVEN_COLOUR` and the generated ones in the track colours, so the two read apart.
    ``feature_config`` (default: the data's) places the octave lines, e.g. in a user's key.
    """

    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    rolls = np.asarray(rolls) > 0
    n = len(rolls)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fc = feature_config if feature_config is not None else from_dict(FeatureConfig, data["feature_config"])
    steps, pitches = rolls.shape[2], rolls.shape[3]
    if given is not None:
        given = np.asarray(given, bool)
        if given.shape not in (rolls.shape, rolls.shape[:3]):
            raise ValueError(f"given must be shaped {rolls.shape[:3]} or {rolls.shape}, not {given.shape}")
        if given.ndim == 3:
            given = given[..., None]
        given = np.broadcast_to(given, rolls.shape)
    fig = _figure((panel_width_in * cols, 2.4 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        img = np.ones((pitches, steps, 3))
        for t in range(rolls.shape[1]):
            colour = to_rgb(TRACK_COLOURS[t % len(TRACK_COLOURS)])
            if given is None:
                img[rolls[i, t].T] = colour
            else:
                img[(rolls[i, t] & ~given[i, t]).T] = colour
                img[(rolls[i, t] & given[i, t]).T] = to_rgb(GIVEN_COLOUR)
        ax.imshow(img, origin="lower", aspect="auto", interpolation="nearest")
        for b in range(1, steps // fc.steps_per_bar):
            ax.axvline(b * fc.steps_per_bar - 0.5, color="0.6", lw=0.6)
        for c in range(-fc.pitch_low % 12, pitches, 12):  # a line under each C
            ax.axhline(c - 0.5, color="0.85", lw=0.4)
    handles = [Patch(color=TRACK_COLOURS[t % len(TRACK_COLOURS)], label=name) for t, name in enumerate(fc.track_names)]
    if given is not None:
        handles.append(Patch(color=GIVEN_COLOUR, label="given"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, fontsize=8)
    return _finish_png(fig, path, title, top=0.94)


def _figure(figsize: tuple[float, float]):
    """A figure with its own Agg canvas: no pyplot, no global figure registry, nothing to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _finish_png(fig, path: str | Path | None, title: str | None, top: float) -> bytes:
    """Caption, lay out, render to PNG bytes; also write ``path`` when given."""
    import io

    if title:
        fig.suptitle(title, y=0.02, fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, top))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    png = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(png)
    return png


def wav_bytes(midi, sample_rate_hz: int = 16_000) -> bytes:
    """Audio of MIDI (a PrettyMIDI object or MIDI file bytes) as 16-bit WAV bytes.

    FluidSynth with a General MIDI soundfont when installed, else sine tones.
    """
    import io
    import tempfile

    import soundfile as sf

    from musicgan.data.audio import render_midi

    with tempfile.NamedTemporaryFile(suffix=".mid") as f:
        if isinstance(midi, (bytes, bytearray)):
            f.write(midi)
            f.flush()
        else:
            midi.write(f.name)
        y = render_midi(f.name, sample_rate_hz)
    buf = io.BytesIO()
    sf.write(buf, y, sample_rate_hz, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_samples(rolls: np.ndarray, data: dict, out_dir: str | Path, wav: bool = True, prefix: str = "sample",
                  given: np.ndarray | None = None, tempo_qpm: float = 90.0,
                  feature_config: FeatureConfig | None = None, title: str | None = None) -> list[Path]:
    """One MIDI (and WAV) per phrase plus one PNG of them all. Returns the paths written.

    ``feature_config`` (default: the data's) writes the MIDI on another pitch axis: the one of
    :func:`musicgan.assist.midi_in.output_feature_config` puts a user's piece back in its own key.
    ``given`` marks the user's cells in the PNG (see :func:`pianoroll_png`). Pieces longer than a
    phrase get wider panels, fewer to a row.
    """
    from musicgan.data.pianoroll import roll_to_pretty_midi

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fc = feature_config if feature_config is not None else from_dict(FeatureConfig, data["feature_config"])
    written = []
    for i, roll in enumerate(rolls):
        pm = roll_to_pretty_midi(roll, fc, tempo_qpm=tempo_qpm)
        path = out / f"{prefix}_{i:03d}.mid"
        pm.write(str(path))
        written.append(path)
        if wav:
            wpath = out / f"{prefix}_{i:03d}.wav"
            wpath.write_bytes(wav_bytes(pm))
            written.append(wpath)
    png = out / f"{prefix}s.png"
    phrases = rolls.shape[2] / (fc.bars * fc.steps_per_bar)
    width_in = min(PANEL_WIDTH_IN * max(phrases, 1.0), 4 * PANEL_WIDTH_IN)
    pianoroll_png(rolls[:16], data, png, title=title, columns=max(1, int(4 * PANEL_WIDTH_IN // width_in)),
                  given=None if given is None else np.asarray(given)[:16], feature_config=fc,
                  panel_width_in=width_in)
    written.append(png)
    return written


def metric_plot(rows: list[dict], keys: list[str], path: str | Path, title: str = "") -> None:
    """Lines of ``keys`` against ``step`` from a list of metric rows (the run's CSV)."""
    keys = [k for k in keys if any(k in r for r in rows)]
    fig = _figure((6, 1.8 * max(len(keys), 1)))
    axes = fig.subplots(max(len(keys), 1), 1, sharex=True, squeeze=False)
    for ax, k in zip(axes[:, 0], keys):
        pts = [(r["step"], r[k]) for r in rows if r.get(k) not in (None, "")]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, [float(y) for y in ys], marker=".", lw=1)
        ax.set_ylabel(k, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("generator step")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


# ---------------------------------------------------------------------------------------------
# audio (spectrogram GAN)


def note_name(midi_pitch: int) -> str:
    import pretty_midi

    return pretty_midi.note_number_to_name(int(midi_pitch))


def condition_names(data: dict, cond) -> list[str]:
    """``[n, 2]`` (pitch index, instrument index) -> names like ``violin C4 (60)``."""
    pitches, instruments = data.get("pitches") or [], data.get("instruments") or []
    out = []
    for p, i in np.asarray(cond).tolist():
        name = instruments[i] if i < len(instruments) else "audio"
        out.append(f"{name} {note_name(pitches[p])} ({pitches[p]})" if p < len(pitches) else name)
    return out


def mel_png(mels: np.ndarray, data: dict, path: str | Path | None = None, titles: list[str] | None = None,
            title: str | None = None, columns: int = 4) -> bytes:
    """A grid of log-mel spectrograms (dB, time across, mel bands up); returns PNG bytes (and writes ``path``)."""

    mels = np.asarray(mels, np.float32).reshape(len(mels), *np.asarray(mels).shape[-2:])
    fc = feature_config(data)
    n = len(mels)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig = _figure((3.0 * cols, 2.2 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    seconds = mels.shape[-1] * fc.hop_length / fc.sample_rate_hz
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(mels[i], origin="lower", aspect="auto", cmap="magma", vmin=-100, vmax=max(float(mels.max()), -20),
                  extent=(0, seconds, 0, mels.shape[1]))
        ax.set_yticks([])
        ax.tick_params(labelsize=6)
        if titles:
            ax.set_title(titles[i], fontsize=7)
    return _finish_png(fig, path, title, top=1.0)


def write_audio_samples(mels: np.ndarray, data: dict, out_dir: str | Path, cond=None, title: str | None = None,
                        prefix: str = "sample") -> list[Path]:
    """One WAV per clip (Griffin-Lim, :func:`musicgan.data.audio.mel_to_audio`) plus one spectrogram PNG.

    ``cond`` names each clip's (pitch, instrument); by default the clips walk the grid as
    :func:`musicgan.audio_model.label_grid` does, which is how evaluation generates them.
    """
    from musicgan.audio_model import label_grid
    from musicgan.data.audio import mel_to_audio, wav_bytes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cond = label_grid(data, len(mels)).numpy() if cond is None else np.asarray(cond)
    names = condition_names(data, cond)
    fc = feature_config(data)
    audio = mel_to_audio(np.asarray(mels)[:, 0], fc)
    written = []
    for i, (y, name) in enumerate(zip(audio, names)):
        path = out / f"{prefix}_{i:03d}_{name.split(' (')[0].replace(' ', '_')}.wav"
        path.write_bytes(wav_bytes(y, fc.sample_rate_hz))
        written.append(path)
    png = out / f"{prefix}s.png"
    mel_png(mels[:16], data, png, titles=names[:16], title=title)
    written.append(png)
    return written
