"""The model registry: promoted generators, one immutable folder per version.

::

    models/NAME/v1/checkpoint/   the checkpoint, as training wrote it (state_dicts + config.json)
    models/NAME/v1/model.json    name, version, step, metrics, config, data info, provenance,
                                 files_sha256 (the sha256 of every checkpoint file)
    models/NAME/v2/...
    models/NAME/latest           {"version": "v2"}: the version serving loads
    models/NAME/.lock            promoters of NAME take turns on it (flock)

A checkpoint is test-loaded before it is promoted. A version is copied under a temporary name and
renamed into place, and ``latest`` is rewritten (atomically) only after that, so a reader following
``latest`` never meets a half-copied version; ``latest`` only ever moves to a higher version.
Loading a version checks every file against ``files_sha256``. The root may be a local folder or
any pyarrow filesystem URI (``s3://``, ``gs://``).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import json
import os
import posixpath
import re
import shutil
import time
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from musicgan import storage
from musicgan.checkpoint import (CheckpointError, check_files, find_latest, read_meta, safe_relative, sha256_bytes,
                                 verify_files)

# Always used with fullmatch: `$` would also accept a trailing newline.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VERSION = re.compile(r"v(\d+)")
LOCK_FILE = ".lock"  # NAME/.lock: promoters of one name take turns on it (flock)


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
        record = json.loads(best_json.read_text())
        best = record.get("best")
        if not best or not best.get("checkpoint"):
            raise RegistryError(f"{src} is a search without a usable trial; nothing to promote")
        ckpt = Path(best["checkpoint"])
        search = json.loads((src / "search.json").read_text()) if (src / "search.json").exists() else {}
        prov = {"search_run": str(src.resolve()), "trial_id": best["trial_id"], "params": best.get("params"),
                "data_dir": search.get("data_dir"),
                "objective": {record.get("metric") or "FMD": best.get("objective", best.get("fmd")),
                              "FMD": best.get("fmd")}}
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
        m = VERSION.fullmatch(posixpath.basename(info.path))
        if m and info.type == pafs.FileType.Directory:
            out.append(int(m.group(1)))
    return sorted(out)


def _read_checkpoint(ckpt: Path) -> dict[str, bytes]:
    """Every file of a checkpoint folder, in memory: the bytes hashed, test-loaded and copied are the same."""
    return {p.relative_to(ckpt).as_posix(): p.read_bytes() for p in sorted(ckpt.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def _promote_lock(name_loc: storage.Location):
    """Serialise promoters of one model name: claiming a version and moving ``latest`` happen under it.

    Local roots (and shared mounts): an exclusive ``flock`` on ``NAME/.lock``, released by the
    kernel even if the promoter dies. Object stores have no such lock; there a version taken twice
    at the same moment is caught by the sha256 table when it is loaded, not prevented.
    """
    if not name_loc.is_local:
        yield
        return
    fd = os.open(os.path.join(name_loc.path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _pointer_number(latest: storage.Location) -> int | None:
    """The version number ``latest`` points at, or None when there is no valid pointer."""
    try:
        m = VERSION.fullmatch(str(latest.read_json()["version"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(m.group(1)) if m else None


def _advance_latest(name_loc: storage.Location, number: int) -> int:
    """Point ``latest`` at ``v{number}`` only if that is higher than where it points; returns where it points.

    Called under :func:`_promote_lock`, this is a compare-and-set: ``latest`` never moves back.
    """
    latest = name_loc.join("latest")
    current = _pointer_number(latest)
    if current is not None and current >= number:
        return current
    latest.write_json_atomic({"version": f"v{number}"})
    if not name_loc.is_local:  # no lock: a racing promoter may have written an older number last
        top = (_versions(name_loc) or [number])[-1]
        if top > number and (_pointer_number(latest) or 0) < top:
            latest.write_json_atomic({"version": f"v{top}"})
            return top
    return number


def promote(source: str | os.PathLike, registry: str, name: str) -> dict:
    """Copy the best/latest checkpoint of ``source`` into ``registry/name/vN`` and point ``latest`` at it.

    The checkpoint is test-loaded first (every state file with ``weights_only=True``, both
    generators into the architecture its config describes), so a damaged one is never promoted.
    ``model.json`` records the sha256 of every file (``files_sha256``); loading checks them.
    Concurrent promoters of one name each get their own version, and ``latest`` only moves forward.

    Beside the checkpoint, the version gets what serving needs from the training data
    (:mod:`musicgan.assist.assets`): the originality index of the training phrases and a few held-out
    example melodies. Without the data (moved, or never recorded) the record says why they are missing.
    """
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RegistryError(f"model name {name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    ckpt, prov = find_source(source)
    files = _read_checkpoint(ckpt)
    meta = check_files(files, ckpt)  # CheckpointError: a damaged checkpoint goes no further
    hashes = {rel: sha256_bytes(raw) for rel, raw in files.items()}
    data = meta["data"]
    prov.update(feature_hash=data.get("feature_hash"), manifest_sha256=_manifest_sha256(prov.get("data_dir")))
    root = storage.resolve(registry)
    name_loc = root.join(name)
    name_loc.mkdirs()
    tmp = storage.Location(root.fs, posixpath.join(name_loc.path, f".promote.tmp-{uuid.uuid4().hex[:8]}"),
                           name_loc.uri + "/.promote.tmp")
    try:
        for rel, raw in files.items():  # the slow part, outside the lock, under a name no reader follows
            target = posixpath.join(tmp.path, "checkpoint", rel)
            root.fs.create_dir(posixpath.dirname(target), recursive=True)
            with root.fs.open_output_stream(target) as f:
                f.write(raw)
        assets = _write_assets(prov.get("data_dir"), root.fs, tmp.path)
        with _promote_lock(name_loc):
            for _ in range(5):  # a promoter outside the lock (an object store) may take a number: the next one
                number = (_versions(name_loc) or [0])[-1] + 1
                version = f"v{number}"
                final = name_loc.join(version)
                record = {"name": name, "version": version,
                          "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "step": meta["step"], "metrics": _metrics_at(ckpt.parent, meta["step"]),
                          "config": meta["config"], "data": data, "provenance": prov, "files_sha256": hashes,
                          "assets": assets}
                with root.fs.open_output_stream(posixpath.join(tmp.path, "model.json")) as f:
                    f.write(json.dumps(record, indent=2).encode())
                if final.exists():
                    continue
                try:
                    if root.is_local:
                        os.rename(tmp.path, final.path)  # fails if another promoter made it meanwhile
                    else:
                        root.fs.move(tmp.path, final.path)
                except OSError as e:
                    if isinstance(e, FileExistsError) or e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        continue
                    raise
                break
            else:
                raise RegistryError(f"could not claim a new version under {name_loc.uri} after 5 tries")
            latest = _advance_latest(name_loc, number)
    finally:
        if tmp.exists():
            root.fs.delete_dir(tmp.path)
    record["uri"] = final.uri
    record["latest"] = f"v{latest}"
    return record


def _write_assets(data_dir: str | None, fs, dest: str) -> dict:
    """The serving assets of ``data_dir`` (:func:`musicgan.assist.assets.write_assets`) into ``dest`` on ``fs``;
    returns what the record says about them."""
    import tempfile

    from musicgan.assist.assets import write_assets
    from musicgan.data.shards import DataError

    if not data_dir:
        return {"missing": "the run does not record its data folder"}
    try:
        with tempfile.TemporaryDirectory(prefix="musicgan-assets-") as local:
            written = write_assets(data_dir, local)
            for name in sorted(os.listdir(local)):
                with open(os.path.join(local, name), "rb") as src, \
                        fs.open_output_stream(posixpath.join(dest, name)) as out:
                    out.write(src.read())
    except (OSError, DataError, ValueError, KeyError) as e:
        return {"missing": f"could not read the training data at {data_dir}: {e}"}
    return written


def _read_record(loc: storage.Location) -> dict:
    """A version's model.json, its name and version checked (they become local path parts)."""
    try:
        record = loc.join("model.json").read_json()
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{loc.uri}/model.json is not valid JSON") from None
    if not isinstance(record, dict):
        raise RegistryError(f"{loc.uri}/model.json is not a registry record")
    name, version = record.get("name"), record.get("version")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RegistryError(f"{loc.uri}/model.json names the model {name!r}, which is not a valid model name")
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise RegistryError(f"{loc.uri}/model.json has version {version!r}, not a version like v3")
    hashes = record.get("files_sha256")
    if hashes is not None:
        if not isinstance(hashes, dict):
            raise RegistryError(f"{loc.uri}/model.json: files_sha256 is not a file -> sha256 table")
        for rel in hashes:
            safe_relative(rel)
    return record


def resolve(ref: str | os.PathLike) -> tuple[Path, dict | None]:
    """A local checkpoint directory for ``ref`` plus its registry record (None outside the registry).

    ``ref`` may be ``REG/NAME/latest``, ``REG/NAME`` (its latest), ``REG/NAME/vN``, a training
    or search run, or a checkpoint folder. Remote versions are downloaded once into the cache.
    A registry version's files are checked against the sha256 table promote recorded; a mismatch
    is a CheckpointError (a serving replica that gets one keeps the model it has).
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
        record = _read_record(loc)
        ckpt = loc.join("checkpoint")
        path = Path(ckpt.path) if loc.is_local else _download(ckpt, record)
        if record.get("files_sha256") is not None:
            verify_files(path, record["files_sha256"])
        return path, record
    if not loc.is_local:
        raise RegistryError(f"{ref} is not a registry version (no model.json)")
    return find_latest(loc.path), None


def _follow_latest(latest: storage.Location) -> storage.Location:
    try:
        version = latest.read_json()["version"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"{latest.uri} is not a valid 'latest' pointer") from None
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise RegistryError(f"{latest.uri} points at {version!r}, not a version like v3")
    parent = storage.Location(latest.fs, posixpath.dirname(latest.path), latest.uri.rsplit("/", 1)[0])
    target = parent.join(version)
    if not target.exists():
        raise RegistryError(f"{latest.uri} points at {version}, which does not exist")
    return target


def _download(ckpt: storage.Location, record: dict) -> Path:
    """A remote version's checkpoint in the local cache (``record`` checked by :func:`_read_record`).

    With a sha256 table, exactly the files it lists are fetched (each a plain relative path) and
    checked before the folder is renamed into the cache; a cached copy that no longer matches is
    fetched again.
    """
    from musicgan.data.corpus import cache_root

    base = (cache_root() / "registry").resolve()
    key = hashlib.sha256(ckpt.uri.encode()).hexdigest()[:16]
    dest = base / f"{record['name']}-{record['version']}-{key}"
    if dest.parent != base:  # record was checked; this is the last line of defence
        raise RegistryError(f"registry record {record['name']!r} {record['version']!r} makes a path outside the cache")
    hashes = record.get("files_sha256")
    if (dest / "config.json").exists():
        try:
            if hashes is not None:
                verify_files(dest, hashes)
            return dest
        except CheckpointError:
            shutil.rmtree(dest, ignore_errors=True)  # a damaged cached copy: fetch it again
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        if hashes is None:  # promoted before files_sha256 existed
            pafs.copy_files(ckpt.path, str(tmp), source_filesystem=ckpt.fs,
                            destination_filesystem=pafs.LocalFileSystem())
        else:
            for rel in hashes:
                target = tmp / safe_relative(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                with ckpt.fs.open_input_stream(posixpath.join(ckpt.path, rel)) as f:
                    target.write_bytes(f.read())
            verify_files(tmp, hashes)
        _fetch_assets(ckpt, tmp)
        try:
            os.rename(tmp, dest)
        except OSError as e:  # another process cached it meanwhile
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _fetch_assets(ckpt: storage.Location, dest: Path) -> None:
    """Copy a remote version's serving assets (beside its checkpoint) into the cached checkpoint folder."""
    from musicgan.assist.assets import EXAMPLES_FILE
    from musicgan.originality import INDEX_FILE

    version = posixpath.dirname(ckpt.path)
    for name in (INDEX_FILE, EXAMPLES_FILE):
        src = posixpath.join(version, name)
        if ckpt.fs.get_file_info(src).type == pafs.FileType.File:
            with ckpt.fs.open_input_stream(src) as f:
                (dest / name).write_bytes(f.read())


def summary_text(record: dict) -> str:
    m = record.get("metrics", {})
    p = record.get("provenance", {})

    def f(k):
        return f"{m[k]:.4g}" if k in m else "-"

    moved = record.get("latest", record["version"]) == record["version"]
    where = "latest now points here" if moved else f"latest stays at the newer {record['latest']}"
    lines = [f"promote: {record['name']} {record['version']} -> {record.get('uri', '')}  ({where})",
             f"  step         {record['step']}",
             f"  metrics      FMD {f('FMD')}  diversity {f('diversity')}  copies {f('copies')}  "
             f"QN {f('gen/QN')}  UPC {f('gen/UPC')}",
             f"  from         {p.get('checkpoint')}"]
    if p.get("trial_id"):
        lines.append(f"  search       {p.get('search_run')} (trial {p['trial_id']})")
    lines.append(f"  data         feature hash {p.get('feature_hash')}, manifest sha256 "
                 f"{(p.get('manifest_sha256') or '-')[:16]}")
    assets = record.get("assets") or {}
    if assets.get("missing"):
        lines.append(f"  serving      no originality index or examples: {assets['missing']}")
    elif assets.get("index_phrases"):
        lines.append(f"  serving      originality index of {assets['index_phrases']} training phrases; example "
                     f"melodies {', '.join(assets.get('examples') or []) or '(none)'}")
    return "\n".join(lines)
