"""Checkpoints: a directory of state_dicts plus the config, loadable with ``weights_only=True``.

::

    checkpoint_000200/
      generator.pt  critic.pt  generator_ema.pt  optim_g.pt  optim_d.pt   state_dicts
      state.pt       {"step": int, "torch_rng": ByteTensor} (rank 0's RNG)
      config.json    {"config": <Config as dict>, "data": {feature_config, feature_hash,
                      example_shape, labels, bars, steps_per_bar, pitch_low, track_names}}

It is written into a temporary sibling directory and renamed into place, so a crash while saving
leaves the previous checkpoint as it was and never a half-written one under the real name.
Serving and sampling rebuild the architecture from ``config.json`` alone.

Ray Train copies a reported checkpoint into the run folder in place, so a crash mid-copy can leave
a folder with every file present and one of them cut short. :func:`find_latest` therefore takes the
newest checkpoint whose files all *load* (``torch.load(weights_only=True)``), not merely exist.
A registry version carries the sha256 of each file (``model.json``: ``files_sha256``);
:func:`load_generator` checks the bytes it loads against them and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import uuid
import warnings
from pathlib import Path

import torch

from musicgan.config import Config, from_dict, to_dict
from musicgan.errors import UserError
from musicgan.families import family_for_kind
from musicgan.gan import GAN, unwrap

FILES = ("generator.pt", "critic.pt", "generator_ema.pt", "optim_g.pt", "optim_d.pt", "state.pt", "config.json")


class CheckpointError(UserError):
    """A checkpoint that is missing, incomplete or of another data/feature set."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint that :func:`find_latest` passed over for an older one."""


def data_info(manifest: dict) -> dict:
    """What a checkpoint needs to know about its data to rebuild the model and decode its output."""
    fc = manifest["feature_config"]
    info = {
        "kind": manifest["kind"],
        "feature_config": fc, "feature_hash": manifest["feature_hash"], "example_shape": manifest["example_shape"],
        "labels": manifest["labels"], "bars": fc["bars"], "steps_per_bar": fc["steps_per_bar"],
        "pitch_low": fc["pitch_low"], "track_names": fc["track_names"],
    }
    info.update(family_for_kind(manifest["kind"]).data_info(manifest))
    return info


def save(path: str | Path, gan: GAN, cfg: Config, data: dict, extra: dict | None = None) -> Path:
    """Write a checkpoint directory atomically; returns its path."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        torch.save(unwrap(gan.g).state_dict(), tmp / "generator.pt")
        torch.save(unwrap(gan.d).state_dict(), tmp / "critic.pt")
        torch.save(gan.g_ema.state_dict(), tmp / "generator_ema.pt")
        torch.save(gan.opt_g.state_dict(), tmp / "optim_g.pt")
        torch.save(gan.opt_d.state_dict(), tmp / "optim_d.pt")
        torch.save({"step": gan.step, "torch_rng": torch.get_rng_state()}, tmp / "state.pt")
        meta = {"config": to_dict(cfg), "data": data, "step": gan.step, **(extra or {})}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        if final.exists():  # replace: move the old one aside first, then drop it
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_meta(path: str | Path) -> dict:
    path = Path(path)
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise CheckpointError(f"{path} is not a complete musicgan checkpoint (missing {', '.join(missing)})")
    try:
        return json.loads((path / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path / 'config.json'} is not valid JSON ({e}); the checkpoint is damaged") from None


def load_state(path: str | Path, name: str):
    return torch.load(Path(path) / name, map_location="cpu", weights_only=True)


def _load_bytes(raw: bytes, where: Path):
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle error, not a torch file
        raise CheckpointError(f"{where} does not load ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "the file is damaged or incomplete") from None


def sha256_bytes(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def file_hashes(path: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file in a checkpoint folder."""
    root = Path(path)
    return {p.relative_to(root).as_posix(): sha256_bytes(p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def safe_relative(name: str) -> str:
    """A file name from a registry record: relative, inside the folder, no ``..``."""
    if (not isinstance(name, str) or not name or name.startswith("/") or "\\" in name
            or any(p in ("", ".", "..") for p in name.split("/"))):
        raise CheckpointError(f"registry record names the file {name!r}, which is not a plain relative path")
    return name


def _read_verified(root: Path, name: str, sha256: str) -> bytes:
    target = root / safe_relative(name)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{target} is missing: the registry recorded it when the version was promoted") from None
    got = sha256_bytes(raw)
    if got != sha256:
        raise CheckpointError(f"{target} has sha256 {got[:16]}..., but the registry recorded {str(sha256)[:16]}... "
                              "when it was promoted: the version is damaged or was changed since; refusing to load it")
    return raw


def verify_files(path: str | Path, hashes: dict[str, str]) -> None:
    """Every file a registry record lists must be present with its recorded sha256, or CheckpointError."""
    if not isinstance(hashes, dict) or not hashes:
        raise CheckpointError(f"{path}: the registry record's files_sha256 is not a file -> sha256 table")
    missing = [f for f in FILES if f not in hashes]
    if missing:
        raise CheckpointError(f"{path}: the registry record has no sha256 for {', '.join(missing)}")
    for name, digest in hashes.items():
        _read_verified(Path(path), name, digest)


def registry_hashes(path: str | Path) -> dict[str, str] | None:
    """The ``files_sha256`` of the registry version a checkpoint folder belongs to (``vN/checkpoint``)."""
    record = Path(path).parent / "model.json"
    if Path(path).name != "checkpoint" or not record.is_file():
        return None
    try:
        hashes = json.loads(record.read_text()).get("files_sha256")
    except (OSError, ValueError, AttributeError):
        raise CheckpointError(f"{record} is not a readable registry record") from None
    if hashes is not None and not isinstance(hashes, dict):
        raise CheckpointError(f"{record}: files_sha256 is not a file -> sha256 table")
    return hashes


def check_files(files: dict[str, bytes], where: str | Path) -> dict:
    """Test-load a checkpoint held in memory (``{file name: bytes}``): config.json parses, every state
    file loads with ``weights_only=True``, and both generators fit the architecture config.json
    describes. Returns the metadata; anything else is a CheckpointError naming the file."""
    from musicgan.model import build_for_data

    where = Path(where)
    missing = [f for f in FILES if f not in files]
    if missing:
        raise CheckpointError(f"{where} is not a complete musicgan checkpoint (missing {', '.join(missing)})")
    try:
        meta = json.loads(files["config.json"])
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where / 'config.json'} is not valid JSON ({e}); the checkpoint is damaged") from None
    states = {name: _load_bytes(files[name], where / name) for name in FILES if name.endswith(".pt")}
    g, _ = build_for_data(from_dict(Config, meta["config"]).model, meta["data"])
    for name in ("generator.pt", "generator_ema.pt"):
        try:
            g.load_state_dict(states[name])
        except RuntimeError as e:
            raise CheckpointError(f"{where / name} does not fit the generator config.json describes "
                                  f"({str(e).splitlines()[0][:200]})") from None
    return meta


def check_loads(path: str | Path) -> dict:
    """Every state file of a checkpoint loads and config.json parses; returns the metadata, else CheckpointError."""
    meta = read_meta(path)
    for name in FILES:
        if name.endswith(".pt"):
            _load_bytes((Path(path) / name).read_bytes(), Path(path) / name)
    return meta


def restore(path: str | Path, gan: GAN) -> None:
    """Load every state_dict and the step into an already-built :class:`GAN`."""
    read_meta(path)
    unwrap(gan.g).load_state_dict(load_state(path, "generator.pt"))
    unwrap(gan.d).load_state_dict(load_state(path, "critic.pt"))
    gan.g_ema.load_state_dict(load_state(path, "generator_ema.pt"))
    gan.opt_g.load_state_dict(load_state(path, "optim_g.pt"))
    gan.opt_d.load_state_dict(load_state(path, "optim_d.pt"))
    state = load_state(path, "state.pt")
    gan.step = int(state["step"])
    torch.set_rng_state(state["torch_rng"])


def load_generator(path: str | Path, ema: bool = True, hashes: dict[str, str] | None = None):
    """Rebuild the generator from the checkpoint alone. Returns ``(generator, config, data_info, meta)``.

    ``hashes`` (a registry record's ``files_sha256``; found by itself for a ``vN/checkpoint``
    folder) makes it load only bytes whose sha256 matches: a damaged version is refused.
    """
    from musicgan.model import build_for_data

    path = Path(path)
    weights = "generator_ema.pt" if ema else "generator.pt"
    meta = read_meta(path)  # complete?
    hashes = hashes if hashes is not None else registry_hashes(path)
    if hashes is not None:  # load exactly the bytes whose sha256 the registry recorded
        if not isinstance(hashes, dict) or not {"config.json", weights} <= set(hashes):
            raise CheckpointError(f"{path}: the registry record has no sha256 for config.json and {weights}")
        meta = json.loads(_read_verified(path, "config.json", hashes["config.json"]))
        state = _load_bytes(_read_verified(path, weights, hashes[weights]), path / weights)
    else:
        state = _load_bytes((path / weights).read_bytes(), path / weights)
    cfg = from_dict(Config, meta["config"])
    data = meta["data"]
    g, _ = build_for_data(cfg.model, data)
    try:
        g.load_state_dict(state)
    except RuntimeError as e:  # shapes or keys that do not fit the architecture config.json describes
        raise CheckpointError(f"{path}: the generator weights do not fit its config.json "
                              f"({str(e).splitlines()[0][:200]})") from None
    return g.eval(), cfg, data, meta


_STEP_DIR = re.compile(r"checkpoint_(\d+)")


def find_latest(run_or_checkpoint: str | Path) -> Path:
    """A checkpoint directory itself, or the highest-step checkpoint inside a run directory that loads.

    A run's newer checkpoint that is incomplete or does not load (a copy cut short) is passed over
    with a :class:`CheckpointWarning` for the next older one that does.
    """
    p = Path(run_or_checkpoint)
    if (p / "config.json").exists() and (p / "generator_ema.pt").exists():
        return p
    if not p.exists():
        raise CheckpointError(f"{p} does not exist")
    found = []
    for child in p.iterdir():
        m = _STEP_DIR.fullmatch(child.name)
        if m and child.is_dir():
            found.append((int(m.group(1)), child))
    skipped = []
    for _, child in sorted(found, reverse=True):
        try:
            check_loads(child)
        except (CheckpointError, OSError, ValueError) as e:
            skipped.append(f"{child.name}: {e}")
            continue
        if skipped:
            warnings.warn(f"passed over damaged checkpoint(s) in {p} for {child.name}: " + "; ".join(skipped),
                          CheckpointWarning, stacklevel=2)
        return child
    if skipped:
        raise CheckpointError(f"no checkpoint in {p} loads: " + "; ".join(skipped))
    raise CheckpointError(f"no complete checkpoint in {p}")
