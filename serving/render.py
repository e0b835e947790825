"""What a served request gets back, Ray-free: the MIDI, WAV, PNG, JSON and zip bodies of generated
samples, each a pure function of its inputs (same seed, same bytes).

:func:`render` writes a pianoroll model's rolls, :func:`render_audio` a spectrogram model's dB
mels. ``model`` is a :class:`serving.model.LoadedModel` or anything with the attributes read here:
``name``, ``version`` and ``data`` (the checkpoint's data info); for audio also ``family``, ``fc``
(its ``FeatureConfig``), ``pitches`` and ``instruments``. The file writers underneath are
:mod:`musicgan.render` and :mod:`musicgan.data.audio`.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from musicgan.families.pianoroll import PIANOROLL
from serving.schema import AUDIO_GAP_S, GenerateRequest

# --- pianoroll models ------------------------------------------------------------------------


def join_phrases(rolls: np.ndarray, n_samples: int, phrases: int) -> np.ndarray:
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


def notes_of(roll: np.ndarray, data: dict, tempo_qpm: float, given: np.ndarray | None = None) -> list[dict]:
    """The notes of one sample ``[tracks, steps, pitches]``, track by track in time order, with
    steps and seconds at ``tempo_qpm``. With ``given`` (bool ``[tracks, steps]``, the cells the user
    gave), each note says whether it was given, and a run of one pitch is cut where given cells meet
    generated ones."""
    from musicgan.data.pianoroll import roll_notes

    step_s = 60.0 / tempo_qpm / (data["steps_per_bar"] // 4)
    out = []
    for t, name in enumerate(data["track_names"]):
        for p, s, e in sorted(zip(*roll_notes(roll[t])), key=lambda n: (n[1], n[0])):
            # the roll has no onsets: a given note and a new one of the same pitch right after it are one run
            # of cells; split it where given turns to generated, so every given note comes back as it was
            cuts = [s, *(s + 1 + np.flatnonzero(given[t, s + 1:e] != given[t, s:e - 1])), e] \
                if given is not None else [s, e]
            for a, b in zip(cuts[:-1], cuts[1:]):
                note = {"track": name, "pitch": int(data["pitch_low"] + p), "start_step": int(a),
                        "end_step": int(b), "start_s": round(float(a) * step_s, 4), "end_s": round(float(b) * step_s, 4)}
                if given is not None:
                    note["given"] = bool(given[t, a])
                out.append(note)
    return out


def shifted_data(data: dict, transpose_semitones: int) -> dict:
    """``data`` with its pitch axis moved by ``-transpose_semitones``: rolls rendered with it sound in the
    user's own key (the input was moved by ``+transpose_semitones`` to fit the model)."""
    if not transpose_semitones:
        return data
    from musicgan.assist.midi_in import output_feature_config
    from musicgan.config import to_dict

    fc = output_feature_config(data, transpose_semitones)
    return {**data, "feature_config": to_dict(fc), "pitch_low": fc.pitch_low}


def render(samples: np.ndarray, body, model, seed: int, given: np.ndarray | None = None,
           transpose_semitones: int = 0, extra: dict | None = None, originality: list | None = None) -> bytes:
    """The response body for ``body.format``; pure function of its inputs (same seed, same bytes).

    The assistant's routes add: ``given`` (bool ``[tracks, steps]``: the user's cells, drawn apart in the
    PNG and flagged per note in the JSON), ``transpose_semitones`` (undone on the way out), ``extra``
    (top-level JSON fields: the task, its bars) and ``originality`` (per sample, for the JSON)."""
    from musicgan.render import midi_bytes, pianoroll_png, wav_bytes

    data, fmt = shifted_data(model.data, transpose_semitones), body.format or PIANOROLL.default_format
    given_png = None if given is None else np.broadcast_to(np.asarray(given, bool)[None], samples.shape[:3])
    title = f"{model.name} {model.version}  seed {seed}"
    if fmt == "png":
        return pianoroll_png(samples, data, title=title, given=given_png)
    if fmt == "json":
        low = data["pitch_low"]
        nothing_given = np.zeros(samples.shape[1:3], bool)  # every note says whether it was given: here none
        out = {"model": {"name": model.name, "version": model.version}, "seed": seed, "tempo_qpm": body.tempo_qpm,
               "steps_per_bar": data["steps_per_bar"], "pitch_low": low, "tracks": data["track_names"]}
        out.update(extra or {})
        out["samples"] = [{"pianoroll": [[[int(low + p) for p in np.flatnonzero(step)] for step in track]
                                         for track in roll],
                           "notes": notes_of(roll, data, body.tempo_qpm, nothing_given if given is None else given)}
                          for roll in samples]
        if originality is not None:
            for sample, orig in zip(out["samples"], originality):
                sample["originality"] = orig
        return json.dumps(out).encode()
    if fmt in ("midi", "wav"):
        mid = midi_bytes(_sequence(samples, data, gap_steps=data["steps_per_bar"]), data, tempo_qpm=body.tempo_qpm)
        return wav_bytes(mid) if fmt == "wav" else mid
    buf = io.BytesIO()  # zip: one MIDI per sample, the pianoroll and the JSON
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, roll in enumerate(samples):
            _zip_write(z, f"sample_{i:03d}.mid", midi_bytes(roll, data, tempo_qpm=body.tempo_qpm))
        _zip_write(z, "pianoroll.png", pianoroll_png(samples, data, title=title.replace("  ", " "), given=given_png))
        _zip_write(z, "samples.json", render(samples, body.model_copy(update={"format": "json"}), model, seed, given,
                                             transpose_semitones, extra, originality))
    return buf.getvalue()


def _zip_write(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # fixed time: same request, same bytes
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


# --- spectrogram (audio) models -------------------------------------------------------------


def _join_clips(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """``[n, samples]`` -> one track: the clips in order with :data:`AUDIO_GAP_S` of silence between."""
    gap = np.zeros(int(round(AUDIO_GAP_S * sample_rate_hz)), np.float32)
    parts = []
    for i, y in enumerate(audio):
        parts += [gap, y] if i else [y]
    return np.concatenate(parts).astype(np.float32)


def render_audio(mels: np.ndarray, fmt: str, model, seed: int, cond: tuple[int, int]) -> bytes:
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

