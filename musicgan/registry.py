"""The model registry: promoted generators, one immutable folder per version.

::

    models/NAME/v1/checkpoint/   the checkpoint, as training wrote it (state_dicts + config.json)
    models/NAME/v1/model.json    name, version, step, metrics, config, data info, provenance
    models/NAME/v2/...
    models/NAME/latest           {"version": "v2"}: the version serving loads

A version is copied under a temporary name and renamed into place, and ``latest`` is rewritten
(atomically) only after that, so a reader following ``latest`` never meets a half-copied
version. The root may be a local folder or any pyarrow filesystem URI (``s3://``, ``gs://``).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import posixpath
import re
import time
from pathlib import Path

import pyarrow.fs as pafs

from musicgan import storage
from musicgan.checkpoint import CheckpointError, find_latest, read_meta

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VERSION = re.compile(r"^v(\d+)$")


class RegistryError(CheckpointError):
    """A registry name, version or pointer that cannot be used."""


def _metrics_at(run_dir: Path, step: int) -> dict:
    """The evaluation row of ``step`` in a run's metrics.csv, as floats (empty if none)."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if int(row["step"]) == step:
                return {k: float(v) for k, v in row.items() if v not in ("", None) and k != "step"}
    return {}


def _manifest_sha256(data_dir: str | None) -> str | None:
    if not data_dir:
        return None
    loc = storage.resolve(data_dir).join("manifest.json")
    try:
        return hashlib.sha256(loc.read_bytes()).hexdigest()
    except (OSError, FileNotFoundError):
        return None


def find_source(source: str | os.PathLike) -> tuple[Path, dict]:
    """The checkpoint to promote from a search run, a training run or a checkpoint; plus its provenance."""
    src = Path(source)
    best_json = src / "best.json"
    if best_json.exists():  # a search run: its best trial's checkpoint
        best = json.loads(best_json.read_text()).get("best")
        if not best or not best.get("checkpoint"):
            raise RegistryError(f"{src} is a search without a usable trial; nothing to promote")
        ckpt = Path(best["checkpoint"])
        search = json.loads((src / "search.json").read_text()) if (src / "search.json").exists() else {}
        prov = {"search_run": str(src.resolve()), "trial_id": best["trial_id"], "params": best.get("params"),
                "data_dir": search.get("data_dir"), "objective": {"FMD": best.get("fmd")}}
    else:
        ckpt = find_latest(src)
        prov = {"search_run": None, "trial_id": None}
        run_cfg = ckpt.parent / "config.json"
        if run_cfg.exists():
            prov["data_dir"] = json.loads(run_cfg.read_text()).get("data_dir")
    if not ckpt.exists():
        raise RegistryError(f"checkpoint {ckpt} no longer exists")
    read_meta(ckpt)  # complete?
    prov["checkpoint"] = str(ckpt.resolve())
    prov["train_run"] = str(ckpt.parent.resolve())
    return ckpt, prov


def _versions(name_loc: storage.Location) -> list[int]:
    if not name_loc.exists():
        return []
    out = []
    for info in name_loc.fs.get_file_info(pafs.FileSelector(name_loc.path)):
        m = VERSION.match(posixpath.basename(info.path))
        if m and info.type == pafs.FileType.Directory:
            out.append(int(m.group(1)))
    return sorted(out)


def promote(source: str | os.PathLike, registry: str, name: str) -> dict:
    """Copy the best/latest checkpoint of ``source`` into ``registry/name/vN`` and point ``latest`` at it."""
    if not NAME.match(name):
        raise RegistryError(f"model name {name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    ckpt, prov = find_source(source)
    meta = read_meta(ckpt)
    data = meta["data"]
    prov.update(feature_hash=data.get("feature_hash"), manifest_sha256=_manifest_sha256(prov.get("data_dir")))
    root = storage.resolve(registry)
    name_loc = root.join(name)
    name_loc.mkdirs()
    local = pafs.LocalFileSystem()
    for _ in range(5):  # another promoter may take the same number: take the next one
        version = f"v{(_versions(name_loc) or [0])[-1] + 1}"
        final = name_loc.join(version)
        tmp = storage.Location(root.fs, final.temp_sibling(), final.uri + ".tmp")
        record = {"name": name, "version": version, "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "step": meta["step"], "metrics": _metrics_at(ckpt.parent, meta["step"]), "config": meta["config"],
                  "data": data, "provenance": prov}
        root.fs.create_dir(posixpath.join(tmp.path, "checkpoint"), recursive=True)
        try:
            pafs.copy_files(str(ckpt.resolve()), posixpath.join(tmp.path, "checkpoint"), source_filesystem=local,
                            destination_filesystem=root.fs)
            with root.fs.open_output_stream(posixpath.join(tmp.path, "model.json")) as f:
                f.write(json.dumps(record, indent=2).encode())
            if final.exists():
                raise FileExistsError(final.path)
            if root.is_local:
                os.rename(tmp.path, final.path)  # fails if another promoter made it meanwhile
            else:
                root.fs.move(tmp.path, final.path)
        except OSError as e:
            if storage.Location(root.fs, tmp.path, "").exists():
                root.fs.delete_dir(tmp.path)
            if isinstance(e, FileExistsError) or e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue
            raise
        name_loc.join("latest").write_json_atomic({"version": version})
        record["uri"] = final.uri
        return record
    raise RegistryError(f"could not claim a new version under {name_loc.uri} after 5 tries")


def resolve(ref: str | os.PathLike) -> tuple[Path, dict | None]:
    """A local checkpoint directory for ``ref`` plus its registry record (None outside the registry).

    ``ref`` may be ``REG/NAME/latest``, ``REG/NAME`` (its latest), ``REG/NAME/vN``, a training
    or search run, or a checkpoint folder. Remote versions are downloaded once into the cache.
    """
    loc = storage.resolve(ref)
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.NotFound:
        raise RegistryError(f"{ref} does not exist")
    if info.type == pafs.FileType.File and posixpath.basename(loc.path) == "latest":
        loc = _follow_latest(loc)
    elif info.type == pafs.FileType.Directory and not loc.join("model.json").exists() and loc.join("latest").exists():
        loc = _follow_latest(loc.join("latest"))
    if loc.join("model.json").exists():
        record = loc.join("model.json").read_json()
        ckpt = loc.join("checkpoint")
        if loc.is_local:
            return Path(ckpt.path), record
        return _download(ckpt, record), record
    if not loc.is_local:
        raise RegistryError(f"{ref} is not a registry version (no model.json)")
    return find_latest(loc.path), None


def _follow_latest(latest: storage.Location) -> storage.Location:
    try:
        version = latest.read_json()["version"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{latest.uri} is not a valid 'latest' pointer") from None
    if not VERSION.match(str(version)):
        raise RegistryError(f"{latest.uri} points at {version!r}, not a version like v3")
    parent = storage.Location(latest.fs, posixpath.dirname(latest.path), latest.uri.rsplit("/", 1)[0])
    target = parent.join(version)
    if not target.exists():
        raise RegistryError(f"{latest.uri} points at {version}, which does not exist")
    return target


def _download(ckpt: storage.Location, record: dict) -> Path:
    from musicgan.data.corpus import cache_root

    key = hashlib.sha256(ckpt.uri.encode()).hexdigest()[:16]
    dest = cache_root() / "registry" / f"{record['name']}-{record['version']}-{key}"
    if (dest / "config.json").exists():
        return dest
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(ckpt.path, str(tmp), source_filesystem=ckpt.fs, destination_filesystem=pafs.LocalFileSystem())
    os.replace(tmp, dest)
    return dest


def summary_text(record: dict) -> str:
    m = record.get("metrics", {})
    p = record.get("provenance", {})

    def f(k):
        return f"{m[k]:.4g}" if k in m else "-"

    lines = [f"promote: {record['name']} {record['version']} -> {record.get('uri', '')}  (latest now points here)",
             f"  step         {record['step']}",
             f"  metrics      FMD {f('FMD')}  diversity {f('diversity')}  copies {f('copies')}  "
             f"QN {f('gen/QN')}  UPC {f('gen/UPC')}",
             f"  from         {p.get('checkpoint')}"]
    if p.get("trial_id"):
        lines.append(f"  search       {p.get('search_run')} (trial {p['trial_id']})")
    lines.append(f"  data         feature hash {p.get('feature_hash')}, manifest sha256 "
                 f"{(p.get('manifest_sha256') or '-')[:16]}")
    return "\n".join(lines)
