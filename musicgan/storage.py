"""Paths and URIs through pyarrow filesystems, and writes that never leave half a file.

Every place that reads or writes shards, runs or the registry goes through here, so a local
path, a shared mount and ``s3://`` / ``gs://`` / ``mock://`` URIs behave the same.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import BinaryIO, Callable

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Location:
    """A filesystem plus a path inside it (what ``FileSystem.from_uri`` returns)."""

    fs: pafs.FileSystem
    path: str
    uri: str

    def join(self, *parts: str) -> "Location":
        path = posixpath.join(self.path, *parts)
        uri = self.uri.rstrip("/") + "/" + "/".join(parts)
        return Location(self.fs, path, uri)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_json(self):
        return json.loads(self.read_bytes().decode("utf-8"))

    def mkdirs(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def write_atomic(self, write: Callable[[BinaryIO], object]) -> None:
        """Call ``write`` on a stream to a temporary sibling, then rename it over the target.

        A reader sees the old file or the new one, never a part. If ``write`` raises, the
        temporary is removed and the target stays as it was. (On object stores the rename is a
        copy; the upload of the temporary object is still all-or-nothing.)
        """
        tmp = self.temp_sibling()
        try:
            with self.fs.open_output_stream(tmp) as f:
                write(f)
            self.fs.move(tmp, self.path)
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:  # never created, or already moved
                pass
            raise

    def write_bytes_atomic(self, data: bytes) -> None:
        self.write_atomic(lambda f: f.write(data))

    def write_text_atomic(self, text: str) -> None:
        self.write_bytes_atomic(text.encode("utf-8"))

    def write_json_atomic(self, obj, **dumps_kwargs) -> None:
        self.write_text_atomic(json.dumps(obj, **{"indent": 2, **dumps_kwargs}) + "\n")

    def temp_sibling(self) -> str:
        parent, name = posixpath.split(self.path)
        return posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")


def filesystem_from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's URI -> (filesystem, path); the one place that maps schemes (tests swap in a shared mock)."""
    return pafs.FileSystem.from_uri(uri)


def resolve(uri_or_path: str | os.PathLike) -> Location:
    """Turn a local path or a filesystem URI into a :class:`Location`."""
    text = os.fspath(uri_or_path)
    if "://" in text and not text.startswith("file://"):
        fs, path = filesystem_from_uri(text)
        return Location(fs, path.rstrip("/") or path, text.rstrip("/"))
    if text.startswith("file://"):
        text = text[len("file://"):]
    path = os.path.abspath(os.path.expanduser(text))
    return Location(pafs.LocalFileSystem(), path, path)


def list_files(loc: Location, suffixes: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """Every file under ``loc`` (recursive) whose name ends with one of ``suffixes``.

    Returns sorted ``(path, size_bytes, mtime_ns)`` so a build can fingerprint its inputs.
    """
    selector = pafs.FileSelector(loc.path, recursive=True)
    out = []
    for info in loc.fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        base = posixpath.basename(info.path)
        if base.startswith("."):
            continue
        if base.lower().endswith(suffixes):
            mtime_ns = info.mtime_ns if info.mtime_ns is not None else 0
            out.append((info.path, int(info.size or 0), int(mtime_ns)))
    out.sort()
    return out
