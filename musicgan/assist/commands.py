"""``musicgan harmonize``, ``continue``, ``inpaint`` and ``sample --bars``: read, fill, write, summarize.

Each assistant command loads a masked model, reads the user's MIDI onto the model's grid
(:mod:`musicgan.assist.midi_in`), makes one :class:`~musicgan.assist.fill.FillJob`, completes it
window by window (:func:`~musicgan.assist.fill.fill_many`) and writes a MIDI (and WAV) per
completion plus one PNG in which the given notes are drawn apart from the generated ones. Output
is written in the user's key and tempo: the transposition that fitted the input to the model's
range is undone (:func:`~musicgan.assist.midi_in.output_feature_config`).

:mod:`musicgan.cli` checks the arguments before this module, and so torch, is imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musicgan.errors import UserError

MAX_OUTPUT_BARS = 128
"""Longest piece a command writes (a 64-bar input plus 64 new bars); about a minute on two CPU cores."""
VOICE_TRACKS = {"soprano": 0, "bass": -1}
"""``harmonize --voice``: the melody is the highest voice (track 0) or the lowest (the last track)."""
TRAIN_MASKED = "musicgan train --data DATA --run-dir RUN --preset cpu-masked"


class AssistError(UserError, ValueError):
    """A request the model or the input cannot serve; the message says why and what is allowed."""


# ---------------------------------------------------------------------------------------------
# shared


def load_masked(ref: str, command: str):
    """``(generator, config, data, meta, path)`` of a masked model; any other model is an :class:`AssistError`
    naming its kind and the preset that trains a masked one."""
    from musicgan.checkpoint import load_generator
    from musicgan.registry import resolve

    path, _ = resolve(ref)
    g, cfg, data, meta = load_generator(path)
    if not getattr(g, "masked", False):
        raise AssistError(
            f"`musicgan {command}` needs a masked model (model.masked=true), which writes around known notes; "
            f"{path} holds an unmasked {cfg.model.family} model (preset {cfg.preset}); train a masked one with "
            f"`{TRAIN_MASKED}`")
    return g, cfg, data, meta, path


def _check_length(n_bars: int, what: str) -> None:
    if n_bars > MAX_OUTPUT_BARS:
        raise AssistError(f"{what} would be {n_bars} bars long; at most {MAX_OUTPUT_BARS} bars are written "
                          "(use a smaller --bars)")


def _transposition(semitones: int, target: str) -> str:
    if semitones == 0:
        return "not transposed"
    return (f"transposed {semitones:+d} semitones to fit {target} (the output is written back in the "
            "original key)")


def _windows(job, g) -> str:
    """The windows a job was written in, as musicians count bars (from 1, inclusive); a piece shorter
    than a phrase was padded, so its window ends with the piece."""
    n_bars = job.known.shape[1] // g.steps_per_bar
    spans = ", ".join(f"{a + 1}-{min(b, n_bars)}" for a, b in job.windows)
    phrase_bars = g.n_bars
    return f"{len(job.windows)} window(s) of {phrase_bars} bars: bars {spans}"


def _write(args, rolls: np.ndarray, data: dict, prefix: str, given=None, tempo_qpm: float = 90.0,
           transpose_semitones: int = 0, title: str | None = None) -> list[Path]:
    """MIDI (+ WAV) per completion and one PNG, in the user's key (``transpose_semitones`` undone) and tempo."""
    from musicgan.assist.midi_in import output_feature_config
    from musicgan.render import write_samples

    fc = output_feature_config(data, transpose_semitones)
    if given is not None:
        given = np.broadcast_to(np.asarray(given, bool)[None], rolls.shape[:3])
    return write_samples(rolls, data, args.out, wav=not args.no_wav, prefix=prefix, given=given,
                         tempo_qpm=tempo_qpm, feature_config=fc, title=title)


def _summary_written(args, written: list[Path], given: bool) -> list[str]:
    lines = [f"  MIDI   {sum(p.suffix == '.mid' for p in written)} files in {Path(args.out)}"]
    if not args.no_wav:
        lines.append(f"  WAV    {sum(p.suffix == '.wav' for p in written)} files")
    png = [str(p) for p in written if p.suffix == ".png"][0]
    lines.append(f"  PNG    {png}" + (" (given notes in near-black, generated ones in the voices' colours)"
                                      if given else ""))
    return lines


def _print(lines: list[str]) -> None:
    print("\n".join(lines))


def _model_line(path, meta, seed: int, temperature: float) -> str:
    how = "most likely notes" if temperature == 0 else f"temperature {temperature:g}"
    return f"  model  {path} (step {meta['step']}); seed {seed} (the same seed gives the same files), {how}"


def _fill(g, job):
    """One job through the window-by-window path; a sampling failure is the user's (its temperature)."""
    from musicgan.assist.fill import fill_many
    from musicgan.gan import SamplingError

    try:
        return fill_many(g, [job])[0]
    except SamplingError as e:
        raise AssistError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# the commands


def harmonize(args) -> int:
    """``musicgan harmonize``: the other voices for the user's melody."""
    from musicgan.assist.fill import harmonize_job
    from musicgan.assist.midi_in import read_melody
    from musicgan.families.pianoroll import voice_ranges

    g, cfg, data, meta, path = load_masked(args.model, "harmonize")
    names = list(data["track_names"])
    track = VOICE_TRACKS[args.voice] % len(names)
    melody = read_melody(args.melody, data, voice_ranges(data)[track], track=args.track, max_bars=MAX_OUTPUT_BARS)
    job = harmonize_job(melody.line, track, len(names), g.n_pitches, g.steps_per_bar, n=args.n, seed=args.seed,
                        temperature=args.temperature)
    rolls = _fill(g, job)
    written = _write(args, rolls, data, "harmonization", given=job.known, tempo_qpm=melody.tempo_qpm,
                     transpose_semitones=melody.transpose_semitones,
                     title=f"{Path(args.melody).name}, seed {args.seed}")
    others = ", ".join(n for i, n in enumerate(names) if i != track)
    lines = [f"harmonize: {args.n} harmonization(s) of {melody.n_bars} bars: the melody as the {names[track]}, "
             f"the model wrote the {others}",
             f"  read   {args.melody}: track {melody.track!r}, {melody.n_bars} bars, "
             f"{melody.time_signature[0]}/{melody.time_signature[1]}, tempo {melody.tempo_qpm:g} qpm, "
             f"{_transposition(melody.transpose_semitones, f'the {names[track]} range')}",
             *(f"  note   {w}" for w in melody.warnings),
             _model_line(path, meta, args.seed, args.temperature),
             f"  wrote  {_windows(job, g)}",
             *_summary_written(args, written, given=True)]
    _print(lines)
    return 0


def continue_(args) -> int:
    """``musicgan continue``: ``--bars`` new bars after the user's prompt."""
    from musicgan.assist.fill import continue_job
    from musicgan.assist.midi_in import read_piece

    g, cfg, data, meta, path = load_masked(args.model, "continue")
    names = list(data["track_names"])
    piece = read_piece(args.prompt, data, max_bars=MAX_OUTPUT_BARS)
    total = piece.n_bars + args.bars
    _check_length(total, f"the prompt ({piece.n_bars} bars) and --bars {args.bars}")
    job = continue_job(piece.roll, args.bars, g.steps_per_bar, n=args.n, seed=args.seed, temperature=args.temperature)
    # a voice the prompt lacks is unknown in the prompt bars too: the model writes it there as well
    job.known[:, : piece.roll.shape[1]] = np.asarray(piece.present)[:, None]
    rolls = _fill(g, job)
    written = _write(args, rolls, data, "continuation", given=job.known, tempo_qpm=piece.tempo_qpm,
                     transpose_semitones=piece.transpose_semitones,
                     title=f"{Path(args.prompt).name} + {args.bars} bars, seed {args.seed}")
    given = ", ".join(n for n, p in zip(names, piece.present) if p)
    absent = [n for n, p in zip(names, piece.present) if not p]
    lines = [f"continue: {args.n} continuation(s) of {total} bars: the {piece.n_bars}-bar prompt and {args.bars} "
             "new bars",
             f"  read   {args.prompt}: {piece.n_bars} bars, voices {given}, "
             f"{piece.time_signature[0]}/{piece.time_signature[1]}, tempo {piece.tempo_qpm:g} qpm, "
             f"{_transposition(piece.transpose_semitones, 'the model range')}",
             *([f"  note   the prompt has no {', '.join(absent)}: the model writes them in the prompt bars too"]
               if absent else []),
             *(f"  note   {w}" for w in piece.warnings),
             _model_line(path, meta, args.seed, args.temperature),
             f"  wrote  {_windows(job, g)}",
             *_summary_written(args, written, given=True)]
    _print(lines)
    return 0


def voice_indices(wanted: list[str] | None, names: list[str], field: str = "--voices") -> list[int]:
    """``--voices`` names (any case) -> track indices, in the model's order; None = every voice. ``field`` is
    what the message calls the list (the HTTP API's is ``voices``)."""
    if not wanted:
        return list(range(len(names)))
    lower = [n.lower() for n in names]
    out = []
    for name in wanted:
        if name.lower() not in lower:
            raise AssistError(f"unknown voice {name!r} in {field}; the model's voices are {', '.join(names)}")
        out.append(lower.index(name.lower()))
    return sorted(set(out))


def inpaint(args) -> int:
    """``musicgan inpaint``: rewrite ``--voices`` in ``--bars`` of the user's piece; every other note stays."""
    from musicgan.assist.fill import inpaint_job
    from musicgan.assist.midi_in import read_piece

    g, cfg, data, meta, path = load_masked(args.model, "inpaint")
    names = list(data["track_names"])
    voices = voice_indices(args.voices, names)
    piece = read_piece(args.midi, data, max_bars=MAX_OUTPUT_BARS)
    first, last = args.bars  # musicians' count: from 1, inclusive
    if last > piece.n_bars:
        raise AssistError(f"--bars {first}:{last} goes past the end of {args.midi}, which has {piece.n_bars} bars "
                          f"(bars count from 1: use bars within 1:{piece.n_bars})")
    job = inpaint_job(piece.roll, first - 1, last, voices, g.steps_per_bar, n=args.n, seed=args.seed,
                      temperature=args.temperature)
    rolls = _fill(g, job)
    region = f"bar {first}" if first == last else f"bars {first}-{last}"
    written = _write(args, rolls, data, "inpainting", given=job.known, tempo_qpm=piece.tempo_qpm,
                     transpose_semitones=piece.transpose_semitones,
                     title=f"{Path(args.midi).name}, {region} rewritten, seed {args.seed}")
    present = ", ".join(n for n, p in zip(names, piece.present) if p)
    lines = [f"inpaint: {args.n} version(s) of {args.midi} with {region} of the "
             f"{', '.join(names[v] for v in voices)} rewritten; every other note is kept",
             f"  read   {args.midi}: {piece.n_bars} bars, voices {present}, "
             f"{piece.time_signature[0]}/{piece.time_signature[1]}, tempo {piece.tempo_qpm:g} qpm, "
             f"{_transposition(piece.transpose_semitones, 'the model range')}",
             *(f"  note   {w}" for w in piece.warnings),
             _model_line(path, meta, args.seed, args.temperature),
             f"  wrote  {_windows(job, g)}",
             *_summary_written(args, written, given=True)]
    _print(lines)
    return 0


def style_label(style: str | None, data: dict) -> int | None:
    """The label index of ``--style`` (any case) among the model's labels; None when not given. A model with
    one label, or a style it does not know, is an :class:`AssistError` naming what it has."""
    if style is None:
        return None
    labels = list(data["labels"])
    if len(labels) <= 1:
        raise AssistError(f"--style {style}: this model knows one style only ({', '.join(labels)}); train on "
                          "musicgan data build --source styles for a model that takes --style")
    lower = [name.lower() for name in labels]
    if style.lower() not in lower:
        raise AssistError(f"--style {style}: not one of this model's styles: {', '.join(labels)}")
    return lower.index(style.lower())


def sample_bars(args, g, data, meta, path, label: int | None = None) -> int:
    """``musicgan sample --bars N`` for N other than the model's phrase: a masked model writes phrase by
    phrase (each phrase takes its first bars from the one before); another model puts N / phrase
    phrases side by side, which share their voices (track latents) but not their seams."""
    from musicgan.assist.fill import long_job
    from musicgan.gan import Request, generate_many

    bars, phrase = args.bars, g.n_bars
    _check_length(bars, "the piece")
    if getattr(g, "masked", False):
        job = long_job(bars, g.n_tracks, g.n_pitches, g.steps_per_bar, n=args.n, seed=args.seed,
                       temperature=args.temperature, label=label)
        rolls = _fill(g, job)
        how = f"phrase by phrase, {_windows(job, g)}"
    elif bars % phrase == 0:
        k = bars // phrase
        out = generate_many(g, [Request(args.n * k, args.seed, args.temperature, label=label,
                                        phrases_per_sample=k)])[0]
        n, t, steps, p = args.n, g.n_tracks, out.shape[2], g.n_pitches
        rolls = out.view(n, k, t, steps, p).permute(0, 2, 1, 3, 4).reshape(n, t, k * steps, p).numpy()
        how = f"{k} phrases of {phrase} bars side by side, sharing their voices"
    else:
        raise AssistError(
            f"this model writes {phrase}-bar phrases: --bars must be a multiple of {phrase} (phrases side by side); "
            f"only masked models take other lengths (train one with `{TRAIN_MASKED}`)")
    written = _write(args, rolls, data, "sample", title=f"{bars} bars, seed {args.seed}")
    _print([f"sample: {args.n} pieces of {bars} bars from {path} (step {meta['step']}, seed {args.seed})",
            f"  wrote  {how}",
            *_summary_written(args, written, given=False)])
    return 0
