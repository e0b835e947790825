"""The ``musicgan`` command. Each subcommand is parse -> check -> build -> run -> summary.

User mistakes (a missing folder, a bad flag value, no valid file) end with one ``error: ...`` line
and exit status 2, never a traceback. They are checked before torch, Ray or the data pipeline is
imported, so a mistake is reported in well under a second. Set ``MUSICGAN_DEBUG=1`` to see
tracebacks anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from musicgan.data import sources
from musicgan.errors import EXIT_USER_ERROR, MissingError, UserError, one_line

SOURCES = tuple(sources.SOURCES)  # the embedded sources, as musicgan.data.build.EMBEDDED
# ``musicgan.data.shards`` MANIFEST and FORMAT (a test keeps them equal); read here without pyarrow.
MANIFEST, SHARDS_FORMAT = "manifest.json", "musicgan-shards/1"
_CHECKPOINT_DIR = re.compile(r"checkpoint_\d+")
_REGISTRY_REF = re.compile(r"latest|v\d+")
MAKE_DATA = "musicgan data build --source bach|folk|notes|PATH --out {path}"
MAKE_RUN = "musicgan train --data DATA --run-dir {path}"
MODEL_HELP = "a run folder (its latest checkpoint), a checkpoint folder, or a registry version (models/NAME/latest)"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit status 2) that points at --help."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def version() -> str:
    """The installed distribution's version, else the package's own."""
    from importlib import metadata

    try:
        return metadata.version("musicgan")
    except metadata.PackageNotFoundError:
        import musicgan

        return musicgan.__version__


class _VersionAction(argparse.Action):
    """``--version``: looked up only when asked for (importlib.metadata scans the installed packages)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"musicgan {version()}")
        parser.exit()


def _command(sub, name: str, help: str, description: str, example: str) -> Parser:
    """A subcommand whose --help has a description and one example."""
    return sub.add_parser(name, help=help, description=description, epilog=f"example:  {example}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


class _OldName(argparse.Action):
    """A flag's old spelling: it still works for this release, with a one-line note on stderr."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated and goes in the next release; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _model_option(parser, old: str | None, help: str) -> None:
    """``--model``: one name for a run, a checkpoint or a registry version, required; ``old`` still works."""
    if old is None:
        parser.add_argument("--model", required=True, help=help)
        return
    parser.add_argument("--model", default=None, help=help + " (required)")
    parser.add_argument(old, dest="model", action=_OldName, new="--model")
    parser.set_defaults(required_model=parser)


def _is_uri(path: str) -> bool:
    return "://" in str(path)


def require_data(data_dir: str) -> dict | None:
    """The manifest of a local data build, read without pyarrow; None for a URI (read where it is used).

    A missing folder or manifest is a :class:`MissingError` that says how to build it.
    """
    if _is_uri(data_dir):
        return None
    make = MAKE_DATA.format(path=data_dir)
    if not os.path.isdir(data_dir):
        raise MissingError(f"data folder {data_dir} does not exist; build it with `{make}`")
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.isfile(path):
        raise MissingError(f"{data_dir} has no {MANIFEST}: not a musicgan data build, or its build was "
                           f"interrupted; build it with `{make}`")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path} ({e}); build it again with `{make} --force`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SHARDS_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise UserError(f"{data_dir}: unsupported data format {found!r} (expected {SHARDS_FORMAT}); build it "
                        f"again with `{make} --force`")
    return manifest


def require_model(ref: str) -> None:
    """A local model reference that holds a checkpoint: a registry pointer (``REG/NAME/latest``), name
    or version, a run folder or a checkpoint folder. Else a :class:`MissingError` that says which
    command makes it. URIs are left to the registry."""
    if _is_uri(ref):
        return
    leaf = os.path.basename(ref.rstrip("/"))
    if not os.path.exists(ref):
        if _REGISTRY_REF.fullmatch(leaf):
            name_dir = os.path.dirname(ref.rstrip("/"))
            registry, name = os.path.dirname(name_dir) or ".", os.path.basename(name_dir) or "NAME"
            raise MissingError(f"model {ref} does not exist; promote a trained run with `musicgan promote --model "
                               f"RUN --registry {registry} --name {name}` (train one with "
                               f"`{MAKE_RUN.format(path='RUN')}`)")
        raise MissingError(f"model {ref} does not exist; train one with `{MAKE_RUN.format(path=ref)}` (a registry "
                           "version, models/NAME/latest, is made by `musicgan promote`)")
    names = set(os.listdir(ref)) if os.path.isdir(ref) else set()
    if not (leaf == "latest" and os.path.isfile(ref)) and not names & {"model.json", "latest"} and \
            not {"config.json", "generator_ema.pt"} <= names and not any(_CHECKPOINT_DIR.fullmatch(n) for n in names):
        raise MissingError(f"{ref} holds no checkpoint; train a model with `{MAKE_RUN.format(path=ref)}`")


def require_source(source: str) -> None:
    """An embedded source name, a URI, or a local folder/file that exists."""
    if source in SOURCES or _is_uri(source) or os.path.exists(source):
        return
    raise MissingError(f"source {source} does not exist: use one of {', '.join(SOURCES)}, or a folder or URI of "
                       "MIDI or audio files (e.g. `musicgan data build --source ~/midi --out data/mine`)")


def _pitch_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH MIDI pitches such as 36:84, got {text!r}") from None
    return low, high


def _transpose(text: str) -> list[int]:
    """``-2:2`` (a range, inclusive) or ``0,5,-3`` (a list)."""
    try:
        if ":" in text:
            a, b = (int(v) for v in text.split(":"))
            return list(range(min(a, b), max(a, b) + 1))
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a range like -2:2 or a list like 0,5,-3, got {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (0 = most likely notes), got {text!r}")
    return value


def _bar_range(text: str) -> tuple[int, int]:
    """``3:4`` (the third and fourth bars, counted from 1, inclusive) or ``3`` (one bar)."""
    try:
        first, last = (int(v) for v in text.split(":")) if ":" in text else (int(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bars like 3:4 (the third and fourth, counted from 1) or 3, "
                                         f"got {text!r}") from None
    if not 1 <= first <= last:
        raise argparse.ArgumentTypeError(f"bars are counted from 1, the first no later than the last "
                                         f"(like 3:4 or 3), got {text!r}")
    return first, last


def _names(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected voice names like alto,tenor, got {text!r}")
    return names


def require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise MissingError(f"{what} {path} does not exist (give a MIDI file)" if not os.path.exists(path)
                           else f"{what} {path} is not a file (give a MIDI file)")


def add_data_parser(sub) -> None:
    data = _command(sub, "data", help="build training data",
                    description="Build training data: Parquet shards plus manifest.json (`musicgan data build`).",
                    example="musicgan data build --source bach --out data/bach")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    pitch_defaults = "".join(f"; {s.name}: {s.features.get('pitch_low', 36)}:{s.features.get('pitch_high', 84)}"
                             for s in sources.SOURCES.values() if {"pitch_low", "pitch_high"} & set(s.features))
    b = dsub.add_parser(
        "build",
        help="turn MIDI or audio into Parquet shards for training",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Turn a music collection into Parquet shards plus manifest.json, in parallel on Ray.\n\n"
            "SOURCE is one of:\n"
            + "".join(f"  {s.name:<11} " + s.summary.replace("\n", "\n" + " " * 14) + "\n"
                      for s in sources.SOURCES.values())
            + "  PATH|URI    a folder of .mid/.midi files, or of wav/flac/ogg/mp3 audio; any pyarrow\n"
            "              filesystem URI works (s3://bucket/prefix, gs://...). An audio folder may hold\n"
            "              labels.csv (columns file,pitch,instrument) to label single-note clips\n\n"
            "Bad files are skipped and listed in the manifest with their reason. Running the same\n"
            "build again on the same inputs does nothing. The build is written beside --out and\n"
            "replaces it only once complete: a failed build leaves the previous one as it was."),
        epilog="example:  musicgan data build --source bach --out data/bach --transpose -2:2",
    )
    b.add_argument("--source", default="bach", help="what to build from (see above); default: bach")
    b.add_argument("--out", required=True, help="output folder or URI for the shards and manifest.json")
    b.add_argument("--bars", type=_positive, default=None, help="bars per phrase (default 4)")
    b.add_argument("--steps-per-bar", type=_positive, default=None, help="time steps per 4/4 bar (default 16)")
    b.add_argument("--pitch-range", type=_pitch_range, default=None, metavar="LOW:HIGH",
                   help="MIDI pitches kept, high exclusive (default 36:84" + pitch_defaults + ")")
    b.add_argument("--hop-bars", type=_positive, default=None, help="bars between phrase starts (default 1)")
    b.add_argument("--transpose", type=_transpose, default=None, metavar="SHIFTS",
                   help="augment by transposing, e.g. -2:2 or 0,5 (default: none)")
    b.add_argument("--tracks", default=None, metavar="NAMES",
                   help="comma-separated output track names (default soprano,alto,tenor,bass"
                        + sources.defaults_text("track_names", ",".join) + ")")
    b.add_argument("--track-mode", choices=["index", "merge", "program"], default=None,
                   help="index: i-th MIDI track -> track i; merge: all notes into one track; program: a band "
                        "(drums,piano,guitar,bass,strings) by General MIDI program, drums kept")
    b.add_argument("--sample-rate", type=_positive, default=None, help="audio sample rate in Hz (default 16000)")
    b.add_argument("--n-mels", type=_positive, default=None,
                   help="mel bands for audio (default 64" + sources.defaults_text("n_mels") + ")")
    b.add_argument("--hop-length", type=_positive, default=None, help="audio samples between frames (default 256)")
    b.add_argument("--clip-seconds", type=float, default=None,
                   help="audio clip length in seconds (default 2.0" + sources.defaults_text("clip_seconds") + ")")
    b.add_argument("--instruments", default=None, metavar="NAMES",
                   help="notes: comma-separated instruments (default piano,guitar,violin,trumpet,flute,organ; "
                        "also bass, clarinet)")
    b.add_argument("--velocities", type=_transpose, default=None, metavar="LIST",
                   help="notes: MIDI velocities, e.g. 70,110 (the default)")
    b.add_argument("--limit", type=_positive, default=None, help="use at most this many input files")
    b.add_argument("--files-per-shard", type=_positive, default=32, help="input files per shard (default 32)")
    b.add_argument("--force", action="store_true",
                   help="rebuild even if the output is up to date, and replace a build in --out made from another "
                        "source or feature config (refused without it, naming what differs)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_data_build)


def feature_config_from_args(args):
    from musicgan.config import BAND_TRACKS, FeatureConfig

    fc = sources.with_source_defaults(args.source, FeatureConfig())
    for attr, field in (("bars", "bars"), ("steps_per_bar", "steps_per_bar"), ("hop_bars", "hop_bars"),
                        ("transpose", "transpose"), ("track_mode", "track_mode"), ("sample_rate", "sample_rate_hz"),
                        ("n_mels", "n_mels"), ("hop_length", "hop_length"), ("clip_seconds", "clip_seconds")):
        value = getattr(args, attr)
        if value is not None:
            setattr(fc, field, value)
    if fc.track_mode == "program":  # a band: LPD-5's tracks, and MuseGAN's 84 pitches (bass guitars go to E1 = 28)
        fc.track_names, (fc.pitch_low, fc.pitch_high) = list(BAND_TRACKS), (24, 108)
    if args.pitch_range:
        fc.pitch_low, fc.pitch_high = args.pitch_range
    if args.tracks:
        fc.track_names = [t.strip() for t in args.tracks.split(",") if t.strip()]
        if len(fc.track_names) == 1 and args.track_mode is None:
            fc.track_mode = "merge"
    return fc.validate()


def cmd_data_build(args) -> int:
    require_source(args.source)
    fc = feature_config_from_args(args)
    instruments = [t.strip() for t in args.instruments.split(",") if t.strip()] if args.instruments else None
    if (instruments or args.velocities) and args.source != "notes":
        raise UserError("--instruments and --velocities shape the notes source; use them with --source notes")
    if args.velocities and not all(1 <= v <= 127 for v in args.velocities):
        raise UserError(f"velocities must be MIDI velocities 1..127, not {args.velocities}")
    from musicgan.data.build import build, summary_text

    result = build(args.source, args.out, fc, limit=args.limit, files_per_shard=args.files_per_shard,
                   progress=not args.quiet, force=args.force, instruments=instruments, velocities=args.velocities)
    print(summary_text(result))
    return 0


def _preset(text: str) -> str:
    from musicgan.presets import PRESETS

    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; choose one of {', '.join(PRESETS)}")
    return text


def _preset_option(parser, default: str, what: str) -> None:
    from musicgan.presets import PRESETS

    parser.add_argument("--preset", type=_preset, choices=list(PRESETS), default=default, metavar="PRESET",
                        help=f"{what}: {', '.join(PRESETS)} (default {default})")


def add_train_parsers(sub) -> None:
    t = _command(
        sub, "train", help="train a GAN on a data build (Ray Train, one or many workers)",
        description=("Train a GAN on shards from `musicgan data build`: the multi-track pianoroll GAN on\n"
                     "MIDI data, or the pitch/instrument-conditioned spectrogram GAN on audio (--preset audio-*).\n\n"
                     "Presets: cpu-tiny (seconds, for tests), cpu (default; two-core machines), cpu-long,\n"
                     "gpu (MuseGAN scale, bf16, NCCL); cpu-masked, cpu-masked-long (the creation assistant's\n"
                     "masked model: harmonize, continue, inpaint; 15 and 30 min on two workers);\n"
                     "audio-tiny, audio-cpu (about 5 min on the notes build), audio-gpu.\n"
                     "--set changes any config key, e.g.\n"
                     "--set optim.lr_g=5e-4 --set loss.kind=hinge. Re-running the same command resumes\n"
                     "the run from its latest checkpoint. --dry-run makes every check a real run makes\n"
                     "before starting Ray, prints the resolved config and writes nothing."),
        example="musicgan train --data data/bach --run-dir runs/bach --workers 2")
    t.add_argument("--data", required=True, help="data build folder (with manifest.json)")
    t.add_argument("--run-dir", required=True, help="run folder: checkpoints, metrics.csv, tensorboard/, samples/")
    _preset_option(t, "cpu", "pianoroll presets cpu*, gpu; audio-* for audio data (the spectrogram GAN)")
    t.add_argument("--workers", type=_positive, default=None, help="Ray Train workers (default: the preset's)")
    t.add_argument("--steps", type=_positive, default=None, help="generator steps (default: the preset's)")
    t.add_argument("--seed", type=int, default=None, help="random seed, train.seed (default: the config's, 0)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    t.add_argument("--dry-run", action="store_true",
                   help="make every check, print the resolved config and stop; writes nothing")
    t.set_defaults(func=cmd_train)

    s = _command(sub, "sample", help="generate phrases from a checkpoint: MIDI, WAV and a pianoroll PNG",
                 description=("Generate from a trained generator (its EMA copy). Pianoroll models write MIDI, WAV and\n"
                              "a pianoroll PNG per phrase (--bars N: pieces of N bars); audio models write WAV\n"
                              "clips (Griffin-Lim) and a spectrogram PNG. The same --seed gives the same files."),
                 example="musicgan sample --model runs/bach --n 8 --out samples --seed 3")
    _model_option(s, "--checkpoint", MODEL_HELP)
    s.add_argument("--n", type=_positive, default=8, help="phrases to generate (default 8)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    s.add_argument("--temperature", type=float, default=0.0, help="0 = most likely notes; >0 samples")
    s.add_argument("--no-wav", action="store_true", help="skip audio rendering")
    s.add_argument("--style", default=None,
                   help="pianoroll models trained on several styles (data build --source styles): the style to "
                        "write in, one of the model's labels (musicgan sample lists them when it is wrong)")
    s.add_argument("--bars", type=_positive, default=None,
                   help="pianoroll models: bars per piece (default: one phrase, as trained). A masked model writes "
                        "longer pieces phrase by phrase; another takes multiples of its phrase (phrases side by side)")
    s.add_argument("--pitch", type=int, default=None,
                   help="audio models: MIDI pitch of every clip (default: walk the trained pitches)")
    s.add_argument("--instrument", default=None,
                   help="audio models: instrument name, or 'all' for one set per instrument (default: walk them)")
    s.set_defaults(func=cmd_sample)

    e = _command(sub, "evaluate", help="compare a checkpoint's music with the data (metrics, voice leading, leaps, "
                                       "register, C2ST; each with its target): a table, and JSON",
                 description=("Generate --n phrases and compare them with the held-out phrases of the data build:\n"
                              "the music metrics, voice measures and C2ST, each against its target (audio models:\n"
                              "pitch accuracy, Frechet mel-statistics distance, diversity). Prints a table and\n"
                              "writes it as JSON."),
                 example="musicgan evaluate --model runs/bach --data data/bach --n 1000")
    _model_option(e, "--checkpoint", MODEL_HELP)
    e.add_argument("--data", required=True, help="the data build it was trained on")
    e.add_argument("--n", type=_positive, default=None,
                   help="phrases to generate (default 1000; with --task, held-out phrases to complete, default 512)")
    e.add_argument("--task", choices=["harmonize", "continue", "long", "all"], default=None,
                   help="masked (assistant) models: judge a task on held-out chorales instead, beside Bach's own "
                        "figures and the clamp and random baselines; 'all' adds the unconditional table")
    e.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    e.add_argument("--json", default=None, help="where to write the table as JSON (default: evaluation-CHECKPOINT.json "
                   "in the run folder, beside the checkpoint; never inside it; needed for a registry version)")
    e.set_defaults(func=cmd_evaluate)


def resolve_train_config(args):
    from musicgan.presets import load_preset

    overrides = list(args.overrides)
    if args.workers:
        overrides.append(f"train.num_workers={args.workers}")
    if args.steps:
        overrides.append(f"train.total_steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    return load_preset(args.preset, overrides)


def check_train(cfg, data_dir: str, run_dir: str) -> dict:
    """Every check ``musicgan train`` makes before it starts Ray; returns the data's manifest.

    The data build exists and has a manifest, its feature kind is the one the model family trains
    on, it has a batch for every worker, and a run already in ``run_dir`` used the same data and
    model (a resumed run). Reads files only: writes nothing, imports no torch or Ray.
    """
    from musicgan.config import ConfigError, to_dict
    from musicgan.families import check_feature_kind

    manifest = require_data(data_dir)
    if manifest is None:  # a URI: through pyarrow
        from musicgan.data.shards import load_manifest

        manifest = load_manifest(data_dir)
    check_feature_kind(cfg, manifest, data_dir)
    if manifest.get("feature_config", {}).get("track_mode") == "program" and cfg.model.output != "binary":
        raise ConfigError(f"{data_dir} is a band build (--track-mode program): its piano and guitar play chords, "
                          f"which a {cfg.model.output} model cannot write; train with --set model.output=binary")
    train_examples = manifest["counts"]["train_examples"]
    if train_examples // cfg.train.num_workers < cfg.train.batch_size_per_worker:
        raise ConfigError(f"{train_examples} training phrases are too few for "
                          f"{cfg.train.num_workers} workers x batch {cfg.train.batch_size_per_worker}")
    saved = os.path.join(run_dir, "config.json")
    if not _is_uri(run_dir) and os.path.isfile(saved):
        with open(saved) as f:
            old = json.load(f)
        if old["data"]["feature_hash"] != manifest["feature_hash"]:
            raise ConfigError(f"{run_dir} was trained on data with feature hash {old['data']['feature_hash']}, "
                              f"not {manifest['feature_hash']}; use another --run-dir")
        if old["config"]["model"] != to_dict(cfg)["model"]:
            raise ConfigError(f"{run_dir} holds a run with another model config; use another --run-dir")
    return manifest


def cmd_train(args) -> int:
    from musicgan.config import to_dict

    cfg = resolve_train_config(args)
    manifest = check_train(cfg, args.data, args.run_dir)
    print("resolved config:")
    print(json.dumps(to_dict(cfg), indent=2))
    if args.dry_run:
        what = "resume the run in" if os.path.isfile(os.path.join(args.run_dir, "config.json")) else "start a run in"
        print(f"dry run: checks passed; data {args.data} ({manifest['counts']['train_examples']} training phrases, "
              f"{manifest['kind']}); would {what} {args.run_dir}. Nothing was written.")
        return 0
    from musicgan.train import fit, summary_text

    result = fit(cfg, args.data, args.run_dir)
    print(summary_text(result, args.run_dir))
    return 0 if result.error is None else 1


def cmd_sample(args) -> int:
    require_model(args.model)
    from musicgan.checkpoint import load_generator
    from musicgan.families import get_family
    from musicgan.registry import resolve

    path, _ = resolve(args.model)
    g, cfg, data, meta = load_generator(path)
    return get_family(cfg.model.family).sample(args, g, data, meta, path)


def sample_pianoroll(args, g, data, meta, path) -> int:
    """``musicgan sample`` for a pianoroll model: MIDI, WAV and a pianoroll PNG."""
    from pathlib import Path

    from musicgan.gan import generate
    from musicgan.render import write_samples

    import torch

    from musicgan.assist.commands import style_label

    label = style_label(getattr(args, "style", None), data)
    if getattr(args, "bars", None) not in (None, g.n_bars):
        from musicgan.assist.commands import sample_bars

        return sample_bars(args, g, data, meta, path, label=label)
    labels = None if label is None else torch.full((args.n,), label, dtype=torch.long)
    rolls = generate(g, args.n, seed=args.seed, labels=labels, temperature=args.temperature).numpy()
    written = write_samples(rolls, data, args.out, wav=not args.no_wav)
    style = "" if label is None else f", style {data['labels'][label]}"
    print(f"sample: {args.n} phrases from {path} (step {meta['step']}, seed {args.seed}{style})")
    print(f"  MIDI  {sum(p.suffix == '.mid' for p in written)} files in {Path(args.out)}")
    if not args.no_wav:
        print(f"  WAV   {sum(p.suffix == '.wav' for p in written)} files")
    print(f"  PNG   {[str(p) for p in written if p.suffix == '.png'][0]}")
    return 0


def sample_audio(args, g, data, meta, path) -> int:
    """``musicgan sample`` for a spectrogram model: WAVs (Griffin-Lim) and a spectrogram PNG."""
    import torch

    from musicgan.audio_model import NoteRequest, condition_index, generate_mels, label_grid
    from musicgan.render import write_audio_samples

    if getattr(args, "bars", None) is not None:
        raise UserError(f"--bars is for pianoroll models; {path} is an audio model, whose clips have a fixed length")
    if args.instrument == "all" or (args.pitch is not None and args.instrument is None):
        instruments = data.get("instruments") or [None]
    else:
        instruments = [args.instrument]
    if args.pitch is None and args.instrument is None:
        cond = label_grid(data, args.n).tolist()
    else:
        cond = []
        for name in instruments:
            p, i = condition_index(data, args.pitch, name)
            if args.pitch is None:  # walk the pitches for this instrument
                cond += [[k % max(len(data.get("pitches") or []), 1), i] for k in range(args.n)]
            else:
                cond += [[p, i]] * args.n
    mels = generate_mels(g, [NoteRequest(1, args.seed + k, p, i) for k, (p, i) in enumerate(cond)])
    mels = torch.cat(mels).numpy()
    written = write_audio_samples(mels, data, args.out, cond=cond, title=f"step {meta['step']}, seed {args.seed}")
    print(f"sample: {len(mels)} clips from {path} (step {meta['step']}, seed {args.seed})")
    print(f"  WAV   {sum(p.suffix == '.wav' for p in written)} files in {args.out} (Griffin-Lim from the mel)")
    print(f"  PNG   {[str(p) for p in written if p.suffix == '.png'][0]}")
    return 0


def cmd_evaluate(args) -> int:
    require_model(args.model)
    require_data(args.data)
    from musicgan.checkpoint import read_meta
    from musicgan.families import get_family
    from musicgan.registry import resolve

    path, _ = resolve(args.model)
    if args.task:
        from musicgan.assist.evaluate import evaluate_tasks, table_text

        report = evaluate_tasks(str(path), args.data, task=args.task, n=args.n or 512, seed=args.seed,
                                json_path=args.json)
        print(table_text(report))
        return 0
    family = get_family(read_meta(path)["config"]["model"]["family"])
    report = family.evaluate(str(path), args.data, n=args.n or 1000, seed=args.seed, json_path=args.json)
    print(family.table_text(report))
    return 0


def cmd_demo(args) -> int:
    from musicgan.demo import run_demo

    return run_demo(args.out, workers=args.workers, steps=args.steps, preset=args.preset, serve=not args.no_serve,
                    port=args.port)


def add_demo_parser(sub) -> None:
    d = _command(sub, "demo", help="the main job on the embedded Bach chorales: data, train, sample, evaluate, "
                                   "promote, serve",
                 description=("The whole pipeline on the Bach chorales inside music21: build the data, train\n"
                              "the masked model (cpu-masked: it generates, harmonizes, continues and fills in),\n"
                              "sample, evaluate, promote into OUT/models, then serve it on http://127.0.0.1:PORT\n"
                              "until Ctrl-C (about 16 min to the server on two cores). Everything goes under --out."),
                 example="musicgan demo --out demo --no-serve")
    d.add_argument("--out", default="demo", help="where everything goes (default ./demo)")
    d.add_argument("--workers", type=_positive, default=2, help="Ray Train workers (default 2)")
    d.add_argument("--steps", type=_positive, default=None, help="generator steps (default: the preset's)")
    _preset_option(d, "cpu-masked", "training preset")
    d.add_argument("--port", type=int, default=8000, help="port to serve the result on (default 8000)")
    d.add_argument("--no-serve", action="store_true", help="stop after promoting instead of serving")
    d.set_defaults(func=cmd_demo)


def cmd_tune(args) -> int:
    require_data(args.data)
    from tuning.search import command

    return command(args)


def cmd_promote(args) -> int:
    if not _is_uri(args.model) and not os.path.exists(args.model):
        raise MissingError(f"{args.model} does not exist; make a run to promote with "
                           f"`{MAKE_RUN.format(path=args.model)}` or `musicgan tune --data DATA --run-dir "
                           f"{args.model}`")
    from musicgan.registry import promote, summary_text

    print(summary_text(promote(args.model, args.registry, args.name)))
    return 0


def cmd_serve(args) -> int:
    require_model(args.model)
    from musicgan.serve_cli import serve_until_interrupted

    return serve_until_interrupted(args.model, host=args.host, port=args.port, replicas=args.replicas,
                                   threads=args.threads)


def add_serve_parser(sub) -> None:
    s = _command(
        sub, "serve", help="serve a generator over HTTP with Ray Serve (API, OpenAPI docs, a listening page)",
        description=("Serve a generator: POST /v1/generate (MIDI, WAV, PNG, JSON, zip), GET /v1/model,\n"
                     "GET /healthz, the page at /, OpenAPI docs at /docs. Concurrent requests are batched\n"
                     "into one generator forward. --model takes a registry pointer (models/NAME/latest,\n"
                     "followed when a new version is promoted), a version, a run or a checkpoint folder.\n"
                     "Ctrl-C or SIGTERM lets the requests in flight finish, stops Serve and exits 0."),
        example="musicgan serve --model models/bach/latest --port 8000")
    s.add_argument("--model", required=True, help="models/NAME/latest, models/NAME/vN, a run or checkpoint folder")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    s.add_argument("--replicas", type=_positive, default=1, help="model replicas (default 1)")
    s.add_argument("--threads", type=_positive, default=1, help="torch threads per replica (default 1)")
    s.set_defaults(func=cmd_serve)


SUBMIT_HELP = (
    "Run a musicgan command as a Ray job on a cluster (Ray Jobs SDK). Everything after the command\n"
    "name goes to that command, checked here first with its own parser (`submit data` and\n"
    "`submit data build` are the same). The cluster's auth token is read from RAY_AUTH_TOKEN,\n"
    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token. Paths in the arguments are paths on the cluster:\n"
    "use shared storage (a mount all nodes see, or s3:// / gs://).")


def cmd_submit(args) -> int:
    from musicgan.jobs import submit

    rest = list(args.rest)
    if args.kind == "data" and rest[:1] == ["build"]:  # `submit data build ...` as typed locally
        rest = rest[1:]
    return submit(args.kind, rest, args.address, working_dir=args.working_dir, follow=args.follow,
                  wait=not args.no_wait)


def cmd_jobs(args) -> int:
    from musicgan.jobs import jobs_command

    return jobs_command(args.action, args.job_id, args.address, follow=args.follow)


def add_cluster_parsers(sub) -> None:
    from musicgan.jobs import default_address

    s = sub.add_parser("submit", help="run data|train|tune|serve as a Ray job on a cluster",
                       description=SUBMIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                       allow_abbrev=False,
                       epilog="example:  musicgan submit train --data /shared/data/bach --run-dir /shared/runs/a "
                              "--workers 4 --address http://HEAD:8265 --follow")
    s.add_argument("kind", choices=["data", "train", "tune", "serve"], help="which musicgan command to run")
    s.add_argument("--address", default=default_address(), help="the head's dashboard, http://HEAD:8265 "
                   "(default: RAY_API_SERVER_ADDRESS, else http://127.0.0.1:8265)")
    s.add_argument("--follow", action="store_true", help="stream the job's log until it ends")
    s.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    s.add_argument("--working-dir", default=None, help="upload this folder as the job's working_dir "
                   "(default: use the musicgan installed on the cluster)")
    s.set_defaults(func=cmd_submit)

    j = _command(sub, "jobs", help="list, inspect, read the logs of, or stop Ray jobs on a cluster",
                 description=("List the cluster's Ray jobs, or show the status of, print the log of (--follow:\n"
                              "stream it) or stop one job by its id (as `musicgan submit` and `jobs list` print\n"
                              "it). The auth token is found as for `musicgan submit`."),
                 example="musicgan jobs logs raysubmit_a1B2c3D4e5F6g7H8 --address http://HEAD:8265 --follow")
    j.add_argument("action", choices=["list", "status", "logs", "stop"])
    j.add_argument("job_id", nargs="?", default=None, help="the job's id (status, logs, stop)")
    j.add_argument("--address", default=default_address(), help="the head's dashboard, http://HEAD:8265")
    j.add_argument("--follow", action="store_true", help="logs: stream until the job ends")
    j.set_defaults(func=cmd_jobs)


def add_tune_parsers(sub) -> None:
    from musicgan.presets import PRESETS
    from tuning.search import DESCRIPTION, EPILOG, add_arguments

    t = sub.add_parser("tune", help="search hyperparameters with Ray Tune (ASHA, PBT), optionally promote the best",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(t)
    for action in t._actions:  # tuning.search defines --preset; the same names and check as train's
        if action.dest == "preset":
            action.type, action.choices, action.metavar = _preset, list(PRESETS), "PRESET"
    t.set_defaults(func=cmd_tune)

    p = _command(
        sub, "promote", help="copy a checkpoint into the model registry as a new version (what serving loads)",
        description=("Copy a checkpoint into REGISTRY/NAME/vN (checkpoint, config, metrics, provenance) and\n"
                     "point REGISTRY/NAME/latest at it. --model takes a search run (its best trial), a training\n"
                     "run (its latest checkpoint) or a checkpoint folder. REGISTRY may be a pyarrow URI."),
        example="musicgan promote --model runs/search --registry models --name bach")
    _model_option(p, "--from", "what to promote: a search run (its best trial), a training run (its latest "
                  "checkpoint) or a checkpoint folder")
    p.add_argument("--registry", default="models", help="registry folder or URI (default ./models)")
    p.add_argument("--name", required=True, help="model name (letters, digits, . _ -)")
    p.set_defaults(func=cmd_promote)


def _assist_options(parser, n_default: int = 4) -> None:
    """What every assistant command takes besides its input: the model, the output and the draw."""
    _model_option(parser, "--checkpoint", MODEL_HELP + ", of a masked model (preset cpu-masked)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=_positive, default=n_default, help=f"versions to write (default {n_default})")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--temperature", type=_temperature, default=0.0, help="0 = most likely notes; >0 samples")
    parser.add_argument("--no-wav", action="store_true", help="skip audio rendering")


def add_assist_parsers(sub) -> None:
    h = _command(sub, "harmonize", help="write the other voices for a melody (MIDI) with a masked model",
                 description=("Read a melody from a MIDI file and let a masked model (preset cpu-masked) write the\n"
                              "other voices, window by window for melodies longer than a phrase. The melody is\n"
                              "the soprano (or --voice bass), transposed into that voice's range if it must be;\n"
                              "the output is in the melody's own key and tempo: a MIDI (and WAV) per version\n"
                              "and harmonizations.png, with the melody's notes drawn in near-black."),
                 example="musicgan harmonize --model runs/masked --melody tune.mid --out harmonized --n 4")
    h.add_argument("--melody", required=True, help="MIDI file with the melody")
    h.add_argument("--voice", choices=VOICE_CHOICES, default="soprano",
                   help="the voice that sings the melody: soprano (the top voice, default) or bass (the lowest)")
    h.add_argument("--track", default=None,
                   help="the file's track with the melody: its index among the tracks with notes, or its name "
                        "(default: the first)")
    _assist_options(h)
    h.set_defaults(func=cmd_harmonize)

    c = _command(sub, "continue", help="write bars after a prompt (MIDI) with a masked model",
                 description=("Read a prompt from a MIDI file (its tracks are the voices, highest first) and write\n"
                              "--bars new bars after it, phrase by phrase. The prompt is kept as given; voices it\n"
                              "lacks are written in its bars too. Output in the prompt's key and tempo."),
                 example="musicgan continue --model runs/masked --prompt opening.mid --bars 16 --out continued")
    c.add_argument("--prompt", required=True, help="MIDI file with the opening bars")
    c.add_argument("--bars", type=_positive, required=True, help="new bars to write after the prompt")
    _assist_options(c)
    c.set_defaults(func=cmd_continue)

    i = _command(sub, "inpaint", help="rewrite some voices in some bars of a piece (MIDI) with a masked model",
                 description=("Read a piece from a MIDI file (its tracks are the voices, highest first) and let a\n"
                              "masked model rewrite --voices in --bars; every other note is kept exactly. Bars\n"
                              "count from 1 and include both ends: 3:4 is the third and fourth bars, 3 the third."),
                 example="musicgan inpaint --model runs/masked --midi chorale.mid --bars 3:4 --voices alto,tenor "
                         "--out filled")
    i.add_argument("--midi", required=True, help="MIDI file with the piece")
    i.add_argument("--bars", type=_bar_range, required=True,
                   help="the bars to rewrite: FIRST:LAST counted from 1, inclusive (3:4), or one bar (3)")
    i.add_argument("--voices", type=_names, default=None,
                   help="the voices to rewrite, by the model's track names (alto,tenor; default: all)")
    _assist_options(i)
    i.set_defaults(func=cmd_inpaint)


VOICE_CHOICES = ("soprano", "bass")  # musicgan.assist.commands.VOICE_TRACKS (a test keeps them equal)


def cmd_harmonize(args) -> int:
    require_model(args.model)
    require_file(args.melody, "melody")
    from musicgan.assist.commands import harmonize

    return harmonize(args)


def cmd_continue(args) -> int:
    require_model(args.model)
    require_file(args.prompt, "prompt")
    from musicgan.assist.commands import continue_

    return continue_(args)


def cmd_inpaint(args) -> int:
    require_model(args.model)
    require_file(args.midi, "piece")
    from musicgan.assist.commands import inpaint

    return inpaint(args)


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="musicgan",
        description="Distributed GAN training for music on Ray: build data, train, tune, sample, serve.",
        epilog="example:  musicgan data build --source bach --out data/bach && "
               "musicgan train --data data/bach --run-dir runs/bach",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_data_parser(sub)
    add_train_parsers(sub)
    add_assist_parsers(sub)
    add_tune_parsers(sub)
    add_serve_parser(sub)
    add_cluster_parsers(sub)
    add_demo_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "func", None) is cmd_submit:
        args.rest = rest  # everything not submit's own goes to the submitted command
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if getattr(args, "required_model", None) and args.model is None:
        args.required_model.error("the following arguments are required: --model")
    return run_command(lambda a: a.func(a), args)


def run_command(func, args) -> int:
    """Run a parsed command; a user mistake becomes one ``error:`` line and exit status 2.

    :class:`UserError` is caught as the base class, so the error path imports nothing: whatever
    raised it was imported already.
    """
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, PermissionError) as e:
        if os.environ.get("MUSICGAN_DEBUG"):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:  # the last line of defence: one readable line, not a traceback
        if os.environ.get("MUSICGAN_DEBUG"):
            raise
        print(f"error: unexpected {type(e).__name__}: {one_line(e)} (set MUSICGAN_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
