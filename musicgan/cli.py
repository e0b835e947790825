"""The ``musicgan`` command. Each subcommand is parse -> build -> run -> summary.

User mistakes (a missing folder, a bad flag value, no valid file) end with ``error: ...`` and a
non-zero exit, never a traceback. Set ``MUSICGAN_DEBUG=1`` to see tracebacks anyway.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_USER_ERROR = 2


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


def add_data_parser(sub) -> None:
    data = sub.add_parser("data", help="build and inspect training data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    b = dsub.add_parser(
        "build",
        help="turn MIDI or audio into Parquet shards for training",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Turn a music collection into Parquet shards plus manifest.json, in parallel on Ray.\n\n"
            "SOURCE is one of:\n"
            "  bach        the Bach chorales inside music21 (4 tracks: S, A, T, B) [default]\n"
            "  folk        Essen, O'Neill 1850 and Ryan's Mammoth tunes inside music21 (1 track)\n"
            "  bach-audio  the chorales rendered to audio (FluidSynth if installed, else sine tones)\n"
            "  notes       single notes over a pitch x instrument x velocity grid (NSynth-like), rendered\n"
            "              from General MIDI programs; labelled with pitch and instrument, for the\n"
            "              spectrogram GAN (1 s clips, 80 mels; pitches from --pitch-range, default 48:84)\n"
            "  PATH|URI    a folder of .mid/.midi files, or of wav/flac/ogg/mp3 audio; any pyarrow\n"
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
                   help="MIDI pitches kept, high exclusive (default 36:84)")
    b.add_argument("--hop-bars", type=_positive, default=None, help="bars between phrase starts (default 1)")
    b.add_argument("--transpose", type=_transpose, default=None, metavar="SHIFTS",
                   help="augment by transposing, e.g. -2:2 or 0,5 (default: none)")
    b.add_argument("--tracks", default=None, metavar="NAMES",
                   help="comma-separated output track names (default soprano,alto,tenor,bass; folk: melody)")
    b.add_argument("--track-mode", choices=["index", "merge"], default=None,
                   help="index: i-th MIDI track -> track i; merge: all notes into one track")
    b.add_argument("--sample-rate", type=_positive, default=None, help="audio sample rate in Hz (default 16000)")
    b.add_argument("--n-mels", type=_positive, default=None, help="mel bands for audio (default 64)")
    b.add_argument("--hop-length", type=_positive, default=None, help="audio samples between frames (default 256)")
    b.add_argument("--clip-seconds", type=float, default=None, help="audio clip length in seconds (default 2.0)")
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
    from musicgan.config import FeatureConfig

    fc = FeatureConfig()
    if args.source == "folk":
        fc.track_names, fc.track_mode = ["melody"], "merge"
    if args.source == "bach-audio":
        fc.kind = "mel"
    if args.source == "notes":
        fc.kind, fc.clip_seconds, fc.n_mels, fc.pitch_low, fc.pitch_high = "mel", 1.0, 80, 48, 84
    for attr, field in (("bars", "bars"), ("steps_per_bar", "steps_per_bar"), ("hop_bars", "hop_bars"),
                        ("transpose", "transpose"), ("track_mode", "track_mode"), ("sample_rate", "sample_rate_hz"),
                        ("n_mels", "n_mels"), ("hop_length", "hop_length"), ("clip_seconds", "clip_seconds")):
        value = getattr(args, attr)
        if value is not None:
            setattr(fc, field, value)
    if args.pitch_range:
        fc.pitch_low, fc.pitch_high = args.pitch_range
    if args.tracks:
        fc.track_names = [t.strip() for t in args.tracks.split(",") if t.strip()]
        if len(fc.track_names) == 1 and args.track_mode is None:
            fc.track_mode = "merge"
    return fc.validate()


def cmd_data_build(args) -> int:
    from musicgan.data.build import build, summary_text

    fc = feature_config_from_args(args)
    instruments = [t.strip() for t in args.instruments.split(",") if t.strip()] if args.instruments else None
    if (instruments or args.velocities) and args.source != "notes":
        from musicgan.data.build import BuildError

        raise BuildError("--instruments and --velocities shape the notes source; use them with --source notes")
    if args.velocities and not all(1 <= v <= 127 for v in args.velocities):
        from musicgan.data.build import BuildError

        raise BuildError(f"velocities must be MIDI velocities 1..127, not {args.velocities}")
    result = build(args.source, args.out, fc, limit=args.limit, files_per_shard=args.files_per_shard,
                   progress=not args.quiet, force=args.force, instruments=instruments, velocities=args.velocities)
    print(summary_text(result))
    return 0


def add_train_parsers(sub) -> None:
    t = sub.add_parser(
        "train", help="train a GAN on a data build (Ray Train, one or many workers)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("Train a GAN on shards from `musicgan data build`: the multi-track pianoroll GAN on\n"
                     "MIDI data, or the pitch/instrument-conditioned spectrogram GAN on audio (--preset audio-*).\n\n"
                     "Presets: cpu-tiny (seconds, for tests), cpu (default; two-core machines),\n"
                     "gpu (MuseGAN scale, bf16, NCCL); audio-tiny, audio-cpu (about 5 min on the notes\n"
                     "build), audio-gpu. --set changes any config key, e.g.\n"
                     "--set optim.lr_g=5e-4 --set loss.kind=hinge. Re-running the same command resumes\n"
                     "the run from its latest checkpoint."),
        epilog="example:  musicgan train --data data/bach --run-dir runs/bach --workers 2",
    )
    t.add_argument("--data", required=True, help="data build folder (with manifest.json)")
    t.add_argument("--run-dir", required=True, help="run folder: checkpoints, metrics.csv, tensorboard/, samples/")
    t.add_argument("--preset", default="cpu", help="cpu-tiny | cpu | gpu for pianoroll data; audio-tiny | audio-cpu | "
                   "audio-gpu for audio (the spectrogram GAN); default cpu")
    t.add_argument("--workers", type=_positive, default=None, help="Ray Train workers (default: the preset's)")
    t.add_argument("--steps", type=_positive, default=None, help="generator steps (default: the preset's)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    t.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate phrases from a checkpoint: MIDI, WAV and a pianoroll PNG")
    s.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run folder (its latest checkpoint)")
    s.add_argument("--n", type=_positive, default=8, help="phrases to generate (default 8)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    s.add_argument("--temperature", type=float, default=0.0, help="0 = most likely notes; >0 samples")
    s.add_argument("--no-wav", action="store_true", help="skip audio rendering")
    s.add_argument("--pitch", type=int, default=None,
                   help="audio models: MIDI pitch of every clip (default: walk the trained pitches)")
    s.add_argument("--instrument", default=None,
                   help="audio models: instrument name, or 'all' for one set per instrument (default: walk them)")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", help="compare a checkpoint's music with the data (metrics, voice leading, leaps, "
                                        "register, C2ST; each with its target): a table, and JSON")
    e.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run folder (its latest checkpoint)")
    e.add_argument("--data", required=True, help="the data build it was trained on")
    e.add_argument("--n", type=_positive, default=1000, help="phrases to generate (default 1000)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", default=None, help="where to write the table as JSON (default: evaluation-CHECKPOINT.json "
                   "in the run folder, beside the checkpoint; never inside it)")
    e.set_defaults(func=cmd_evaluate)


def resolve_train_config(args):
    from musicgan.presets import load_preset

    overrides = list(args.overrides)
    if args.workers:
        overrides.append(f"train.num_workers={args.workers}")
    if args.steps:
        overrides.append(f"train.total_steps={args.steps}")
    return load_preset(args.preset, overrides)


def cmd_train(args) -> int:
    import json

    from musicgan.config import to_dict
    from musicgan.data.shards import load_manifest

    cfg = resolve_train_config(args)
    manifest = load_manifest(args.data)
    print("resolved config:")
    print(json.dumps(to_dict(cfg), indent=2))
    if args.dry_run:
        from pathlib import Path

        run = Path(args.run_dir)
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.resolved.json").write_text(json.dumps(to_dict(cfg), indent=2))
        print(f"dry run: data {args.data} ({manifest['counts']['train_examples']} training phrases), "
              f"config saved to {run / 'config.resolved.json'}")
        return 0
    from musicgan.train import fit, summary_text

    result = fit(cfg, args.data, args.run_dir)
    print(summary_text(result, args.run_dir))
    return 0 if result.error is None else 1


def cmd_sample(args) -> int:
    from pathlib import Path

    from musicgan.checkpoint import find_latest, load_generator
    from musicgan.gan import generate
    from musicgan.render import write_samples

    path = find_latest(args.checkpoint)
    g, cfg, data, meta = load_generator(path)
    if cfg.model.family == "spectrogram":
        return _sample_audio(args, g, data, meta, path)
    rolls = generate(g, args.n, seed=args.seed, temperature=args.temperature).numpy()
    written = write_samples(rolls, data, args.out, wav=not args.no_wav)
    print(f"sample: {args.n} phrases from {path} (step {meta['step']}, seed {args.seed})")
    print(f"  MIDI  {sum(p.suffix == '.mid' for p in written)} files in {Path(args.out)}")
    if not args.no_wav:
        print(f"  WAV   {sum(p.suffix == '.wav' for p in written)} files")
    print(f"  PNG   {[str(p) for p in written if p.suffix == '.png'][0]}")
    return 0


def _sample_audio(args, g, data, meta, path) -> int:
    """``musicgan sample`` for a spectrogram model: WAVs (Griffin-Lim) and a spectrogram PNG."""
    import torch

    from musicgan.audio_model import NoteRequest, condition_index, generate_mels, label_grid
    from musicgan.render import write_audio_samples

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
    from musicgan.checkpoint import find_latest, read_meta
    from musicgan.evaluate import audio_table_text, evaluate, evaluate_audio, table_text

    if read_meta(find_latest(args.checkpoint))["config"]["model"]["family"] == "spectrogram":
        report = evaluate_audio(args.checkpoint, args.data, n=min(args.n, 256), seed=args.seed, json_path=args.json)
        print(audio_table_text(report))
        return 0
    report = evaluate(args.checkpoint, args.data, n=args.n, seed=args.seed, json_path=args.json)
    print(table_text(report))
    return 0


def cmd_demo(args) -> int:
    from musicgan.demo import run_demo

    return run_demo(args.out, workers=args.workers, steps=args.steps, preset=args.preset, serve=not args.no_serve,
                    port=args.port)


def add_demo_parser(sub) -> None:
    d = sub.add_parser("demo", help="the main job on the embedded Bach chorales: data, train, sample, evaluate, "
                                    "promote, serve")
    d.add_argument("--out", default="demo", help="where everything goes (default ./demo)")
    d.add_argument("--workers", type=_positive, default=2, help="Ray Train workers (default 2)")
    d.add_argument("--steps", type=_positive, default=None, help="generator steps (default: the preset's)")
    d.add_argument("--preset", default="cpu", help="training preset (default cpu)")
    d.add_argument("--port", type=int, default=8000, help="port to serve the result on (default 8000)")
    d.add_argument("--no-serve", action="store_true", help="stop after promoting instead of serving")
    d.set_defaults(func=cmd_demo)


def cmd_tune(args) -> int:
    from tuning.search import command

    return command(args)


def cmd_promote(args) -> int:
    from musicgan.registry import promote, summary_text

    print(summary_text(promote(args.source, args.registry, args.name)))
    return 0


def cmd_serve(args) -> int:
    from serving.app import serve_until_interrupted

    return serve_until_interrupted(args.model, host=args.host, port=args.port, replicas=args.replicas,
                                   threads=args.threads)


def add_serve_parser(sub) -> None:
    s = sub.add_parser(
        "serve", help="serve a generator over HTTP with Ray Serve (API, OpenAPI docs, a listening page)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("Serve a generator: POST /v1/generate (MIDI, WAV, PNG, JSON, zip), GET /v1/model,\n"
                     "GET /healthz, the page at /, OpenAPI docs at /docs. Concurrent requests are batched\n"
                     "into one generator forward. --model takes a registry pointer (models/NAME/latest,\n"
                     "followed when a new version is promoted), a version, a run or a checkpoint folder.\n"
                     "Ctrl-C or SIGTERM lets the requests in flight finish, stops Serve and exits 0."),
        epilog="example:  musicgan serve --model models/bach/latest --port 8000")
    s.add_argument("--model", required=True, help="models/NAME/latest, models/NAME/vN, a run or checkpoint folder")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    s.add_argument("--replicas", type=_positive, default=1, help="model replicas (default 1)")
    s.add_argument("--threads", type=_positive, default=1, help="torch threads per replica (default 1)")
    s.set_defaults(func=cmd_serve)


SUBMIT_HELP = (
    "Run a musicgan command as a Ray job on a cluster (Ray Jobs SDK). Everything after the command\n"
    "name goes to that command, checked here first with its own parser. The cluster's auth token is\n"
    "read from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token. Paths in the arguments are\n"
    "paths on the cluster: use shared storage (a mount all nodes see, or s3:// / gs://).")


def cmd_submit(args) -> int:
    from musicgan.jobs import submit

    return submit(args.kind, args.rest, args.address, working_dir=args.working_dir, follow=args.follow,
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

    j = sub.add_parser("jobs", help="list, inspect, read the logs of, or stop Ray jobs on a cluster")
    j.add_argument("action", choices=["list", "status", "logs", "stop"])
    j.add_argument("job_id", nargs="?", default=None)
    j.add_argument("--address", default=default_address(), help="the head's dashboard, http://HEAD:8265")
    j.add_argument("--follow", action="store_true", help="logs: stream until the job ends")
    j.set_defaults(func=cmd_jobs)


def add_tune_parsers(sub) -> None:
    from tuning.search import DESCRIPTION, EPILOG, add_arguments

    t = sub.add_parser("tune", help="search hyperparameters with Ray Tune (ASHA, PBT), optionally promote the best",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(t)
    t.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "promote", help="copy a checkpoint into the model registry as a new version (what serving loads)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("Copy a checkpoint into REGISTRY/NAME/vN (checkpoint, config, metrics, provenance) and\n"
                     "point REGISTRY/NAME/latest at it. --from takes a search run (its best trial), a training\n"
                     "run (its latest checkpoint) or a checkpoint folder. REGISTRY may be a pyarrow URI."),
        epilog="example:  musicgan promote --from runs/search --registry models --name bach")
    p.add_argument("--from", dest="source", required=True, help="search run, training run or checkpoint folder")
    p.add_argument("--registry", default="models", help="registry folder or URI (default ./models)")
    p.add_argument("--name", required=True, help="model name (letters, digits, . _ -)")
    p.set_defaults(func=cmd_promote)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicgan",
        description="Distributed GAN training for music on Ray: build data, train, tune, sample, serve.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_data_parser(sub)
    add_train_parsers(sub)
    add_tune_parsers(sub)
    add_serve_parser(sub)
    add_cluster_parsers(sub)
    add_demo_parser(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    from musicgan.checkpoint import CheckpointError
    from musicgan.config import ConfigError
    from musicgan.data.build import BuildError
    from musicgan.audio_model import ConditionError
    from musicgan.data.shards import DataError

    return (ConfigError, BuildError, DataError, CheckpointError, ConditionError, FileNotFoundError, PermissionError)



def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "func", None) is cmd_submit:
        args.rest = rest  # everything not submit's own goes to the submitted command
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return run_command(lambda a: a.func(a), args)


def run_command(func, args) -> int:
    """Run a parsed command; user mistakes become one ``error:`` line and exit 2."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except user_errors() as e:
        if os.environ.get("MUSICGAN_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:  # the last line of defence: one readable line, not a traceback
        if os.environ.get("MUSICGAN_DEBUG"):
            raise
        print(f"error: unexpected {type(e).__name__}: {e}\n(set MUSICGAN_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
