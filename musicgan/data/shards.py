"""The shard format, and the two readers over it.

A data build is a directory (or URI) holding ``shard-NNNNN.parquet`` files plus
``manifest.json``. The manifest is written last, so a directory without one is an unfinished
build and readers refuse it. Rows:

=============  =========  ==============================================================
column         type       meaning
=============  =========  ==============================================================
``x``          binary     pianoroll: ``np.packbits`` of bool ``[steps, tracks, pitches]`` (time-major,
                          as the ingest builds it; decoding gives ``[tracks, steps, pitches]``);
                          mel: float16 bytes of ``[1, n_mels, frames]`` (dB)
``label``      string     source corpus or folder name (for conditioning)
``source``     string     the file the example came from
``split``      string     ``train`` or ``val``, decided per source file (no leakage)
``start``      float32    start of the example in bars (pianoroll) or seconds (mel)
``transpose``  int8       semitones of augmentation (0 = as written)
``pitch``      int16      MIDI pitch label for single-note audio, -1 otherwise
``instrument`` int16      instrument label for single-note audio, -1 otherwise
=============  =========  ==============================================================

Readers: :func:`ray_dataset` (Ray Data, streaming, for Train workers) and
:class:`ShardReader` (plain numpy/PyTorch, for unit tests and benchmarks).
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from musicgan.errors import UserError
from musicgan.storage import Location, resolve

FORMAT = "musicgan-shards/1"
MANIFEST = "manifest.json"

SCHEMA = pa.schema([
    ("x", pa.binary()),
    ("label", pa.string()),
    ("source", pa.string()),
    ("split", pa.string()),
    ("start", pa.float32()),
    ("transpose", pa.int8()),
    ("pitch", pa.int16()),
    ("instrument", pa.int16()),
])


class DataError(UserError):
    """A data directory that cannot be read; the message says what to do."""


def split_of(source: str, val_fraction: float) -> str:
    """Deterministic split by source file, so no phrase of a held-out piece is trained on."""
    bucket = zlib.crc32(source.encode()) % 10_000
    return "val" if bucket < val_fraction * 10_000 else "train"


def encode_pianoroll(phrases: np.ndarray) -> list[bytes]:
    """Time-major phrases ``[N, steps, tracks, pitches]`` -> one packed-bits blob each."""
    flat = np.packbits(phrases.reshape(len(phrases), -1), axis=1)
    return [row.tobytes() for row in flat]


def encode_mel(mels: np.ndarray) -> list[bytes]:
    return [m.astype(np.float16).tobytes() for m in mels]


def decode_x(column, kind: str, shape: list[int], dtype=np.float32) -> np.ndarray:
    """The ``x`` column (list/array of bytes) -> ``[N, *shape]`` (``shape`` as in the manifest).

    Pianorolls may decode to ``uint8`` (0/1): a quarter of float32's bytes to move through Ray Data's
    shuffle buffer; the training loop casts to float on its side.
    """
    n_values = int(np.prod(shape))
    if len(column) == 0:
        return np.zeros((0, *shape), dtype)
    raw = b"".join(bytes(v) for v in column)
    if kind == "mel":
        return np.frombuffer(raw, np.float16).astype(np.float32).reshape(-1, *shape)
    packed = np.frombuffer(raw, np.uint8).reshape(len(column), -1)
    bits = np.unpackbits(packed, axis=1, count=n_values)
    tracks, steps, pitches = shape
    return np.ascontiguousarray(bits.reshape(-1, steps, tracks, pitches).transpose(0, 2, 1, 3), dtype=dtype)


def write_shard(loc: Location, columns: dict, row_group_rows: int) -> int:
    """Write one Parquet shard atomically (temporary name, then rename); returns its size in bytes."""
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    loc.write_atomic(lambda f: pq.write_table(table, f, row_group_size=row_group_rows, compression="zstd"))
    return loc.fs.get_file_info(loc.path).size


# ---------------------------------------------------------------------------------------------
# readers


def load_manifest(data_dir: str) -> dict:
    loc = resolve(data_dir)
    m = loc.join(MANIFEST)
    if not m.exists():
        if not loc.exists():
            raise DataError(f"data directory {data_dir} does not exist; build it with `musicgan data build`")
        raise DataError(f"{data_dir} has no {MANIFEST}: not a musicgan data build, or its build was "
                        "interrupted; run `musicgan data build` again")
    manifest = m.read_json()
    if manifest.get("format") != FORMAT:
        raise DataError(f"{data_dir}: unsupported data format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


def shard_locations(data_dir: str, manifest: dict) -> list[Location]:
    loc = resolve(data_dir)
    return [loc.join(s["path"]) for s in manifest["shards"]]


def _split_filter(split: str | None):
    import pyarrow.compute as pc

    return None if split is None else pc.field("split") == split


class ShardReader:
    """Plain reader: the whole split (or its first ``max_rows``) as numpy, or a torch Dataset."""

    def __init__(self, data_dir: str, split: str | None = "train"):
        self.manifest = load_manifest(data_dir)
        self.kind = self.manifest["feature_config"]["kind"]
        self.shape = self.manifest["example_shape"]
        self.labels = self.manifest["labels"]
        self._locs = shard_locations(data_dir, self.manifest)
        self._filter = _split_filter(split)

    def tables(self):
        for loc in self._locs:
            yield pq.read_table(loc.path, filesystem=loc.fs, filters=self._filter)

    def arrays(self, max_rows: int | None = None) -> dict[str, np.ndarray]:
        xs, labels, pitches, instruments, sources = [], [], [], [], []
        n = 0
        for table in self.tables():
            if max_rows is not None and n >= max_rows:
                break
            if max_rows is not None:
                table = table.slice(0, max_rows - n)
            xs.append(decode_x(table.column("x").to_pylist(), self.kind, self.shape))
            labels.extend(table.column("label").to_pylist())
            pitches.append(table.column("pitch").to_numpy())
            instruments.append(table.column("instrument").to_numpy())
            sources.extend(table.column("source").to_pylist())
            n += table.num_rows
        label_index = {name: i for i, name in enumerate(self.labels)}
        return {
            "x": np.concatenate(xs) if xs else np.zeros((0, *self.shape), np.float32),
            "label": np.asarray([label_index[v] for v in labels], np.int64),
            "pitch": np.concatenate(pitches).astype(np.int64) if pitches else np.zeros(0, np.int64),
            "instrument": np.concatenate(instruments).astype(np.int64) if instruments else np.zeros(0, np.int64),
            "source": np.asarray(sources, dtype=object),
        }

    def torch_dataset(self, max_rows: int | None = None):
        import torch

        a = self.arrays(max_rows)
        return torch.utils.data.TensorDataset(torch.from_numpy(a["x"]), torch.from_numpy(a["label"]))


def decoded_dtype(kind: str) -> type:
    """The dtype an example of this feature kind decodes to for training: pianorolls uint8, mels float32."""
    return np.uint8 if kind == "pianoroll" else np.float32


def _decode_batch(batch: dict, kind: str, shape: list[int], labels: list[str]) -> dict:
    """Ray Data ``map_batches`` UDF: Parquet columns -> training tensors (numpy)."""
    label_index = {name: i for i, name in enumerate(labels)}
    return {
        "x": decode_x(batch["x"], kind, shape, dtype=decoded_dtype(kind)),
        "label": np.asarray([label_index[v] for v in batch["label"]], np.int64),
        "pitch": batch["pitch"].astype(np.int64),
        "instrument": batch["instrument"].astype(np.int64),
    }


def ray_dataset(data_dir: str, split: str | None = "train", decode_batch_rows: int = 256, shuffle_files: bool = True,
                cpus_per_task: float | None = None):
    """A streaming Ray Dataset of decoded examples.

    Feed it to ``iter_torch_batches(batch_size=..., local_shuffle_buffer_size=...)`` on a Train
    worker: blocks stream from the shards, nothing is materialised as a whole. Pianorolls arrive as
    ``uint8`` 0/1 (cast with ``.float()``), audio features as float32. ``cpus_per_task`` (for
    trials sharing a cluster) switches to small read tasks: see :func:`_small_task_dataset`.
    """
    import ray.data
    from ray.data.expressions import col

    manifest = load_manifest(data_dir)
    locs = shard_locations(data_dir, manifest)
    fc = manifest["feature_config"]
    if cpus_per_task is not None:
        return _small_task_dataset(data_dir, manifest, split, cpus_per_task, shuffle_files)
    # Shard order is shuffled every epoch; the consumer's local shuffle buffer mixes rows within reach.
    ds = ray.data.read_parquet([loc.path for loc in locs], filesystem=locs[0].fs,
                               shuffle="files" if shuffle_files else None).select_columns(
        ["x", "label", "split", "pitch", "instrument"])
    if split is not None:
        ds = ds.filter(expr=col("split") == split)  # pushed down into the Parquet read
    return ds.map_batches(
        _decode_batch, fn_kwargs=dict(kind=fc["kind"], shape=manifest["example_shape"], labels=manifest["labels"]),
        batch_size=decode_batch_rows, batch_format="numpy",
    )


def _read_shards(batch: dict, data_dir: str, split: str | None, kind: str, shape: list[int],
                 labels: list[str]) -> dict:
    """Ray Data UDF: shard names -> their decoded rows of ``split``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = resolve(data_dir)
    tables = [pq.read_table(root.join(name).path, filesystem=root.fs, filters=_split_filter(split),
                            columns=["x", "label", "pitch", "instrument"]) for name in batch["shard"]]
    table = pa.concat_tables(tables)
    return _decode_batch({c: table[c].to_numpy(zero_copy_only=False) for c in table.column_names}, kind, shape,
                         labels)


def _small_task_dataset(data_dir: str, manifest: dict, split: str | None, cpus_per_task: float, shuffle: bool):
    """The same rows as :func:`ray_dataset`, read by tasks that ask ``cpus_per_task`` CPUs each.

    ``read_parquet`` plans its reads with tasks that ask a whole CPU (file listing in the V2 path,
    size sampling in V1). Trials that share a cluster hold fractions of every node's CPUs, so no
    node may have a whole CPU free, and those tasks would wait forever. Here one task reads one
    shard with pyarrow; the shard order is shuffled when the dataset is made.
    """
    import random

    import ray.data

    names = [s["path"] for s in manifest["shards"]]
    if shuffle:
        random.shuffle(names)
    ds = ray.data.from_items([{"shard": n} for n in names], override_num_blocks=len(names))
    return ds.map_batches(_read_shards, batch_size=1, batch_format="numpy", num_cpus=cpus_per_task,
                          fn_kwargs=dict(data_dir=data_dir, split=split, kind=manifest["feature_config"]["kind"],
                                         shape=manifest["example_shape"], labels=manifest["labels"]))
