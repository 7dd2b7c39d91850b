"""Where runs and artifacts live: a local directory, NFS, or an object store (`s3://…`, `gs://…`,
with `?endpoint_override=` for S3-compatible stores), through `pyarrow.fs` — the same URIs Ray's
own `storage_path` takes.

A `Location` is a directory there. Every write of a file is atomic for readers: on a local
disk it goes to a temporary name and is renamed into place; on an object store a file appears
only when its upload completes. Nothing here assumes that a path on the driver's disk is
visible to another node: on a cluster without a shared filesystem, use an object store.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

_REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "az")


class StorageError(OSError):
    """A storage location that cannot be read or written (the message says which and why)."""


def is_uri(text: str | os.PathLike) -> bool:
    return urlsplit(str(text)).scheme in _REMOTE_SCHEMES


@dataclass(frozen=True)
class Location:
    """A directory on a filesystem pyarrow can reach. `uri` is what it was made from (kept with
    its query, e.g. `endpoint_override`, so that Ray can be given the same string)."""

    uri: str

    @classmethod
    def of(cls, where: str | os.PathLike | Location) -> Location:
        if isinstance(where, Location):
            return where
        text = str(where)
        if is_uri(text):
            return cls(text.rstrip("/"))
        if "://" in text and not text.startswith("file://"):
            raise StorageError(f"unsupported storage URI {text!r}; allowed: a local path, file://, "
                               f"{', '.join(s + '://' for s in _REMOTE_SCHEMES)}")
        return cls(str(Path(text.removeprefix("file://")).expanduser().resolve()))

    # ------------------------------------------------------------------ naming

    @property
    def is_local(self) -> bool:
        return not is_uri(self.uri)

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise StorageError(f"{self.uri} is not on a local filesystem")
        return Path(self.uri)

    def join(self, *parts: str) -> Location:
        rel = "/".join(p.strip("/") for p in parts if p)
        if not rel:
            return self
        if self.is_local:
            return Location(str(Path(self.uri, rel)))
        head = urlsplit(self.uri)
        path = f"{head.path.rstrip('/')}/{rel}"
        return Location(head._replace(path=path).geturl())

    @property
    def name(self) -> str:
        return (Path(self.uri) if self.is_local else Path(urlsplit(self.uri).path)).name

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, part: str) -> Location:
        return self.join(part)

    # ------------------------------------------------------------------ the filesystem

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        if self.is_local:
            return pafs.LocalFileSystem(), self.uri
        try:
            return _remote(self.uri)
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError with little context
            raise StorageError(f"cannot open storage {self.uri}: {err}") from None

    def exists(self) -> bool:
        fs, path = self._fs()
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_bytes(self) -> bytes:
        fs, path = self._fs()
        try:
            with fs.open_input_stream(path) as fh:
                return fh.read()
        except FileNotFoundError:
            raise
        except OSError as err:
            if fs.get_file_info(path).type == pafs.FileType.NotFound:
                raise FileNotFoundError(self.uri) from None
            raise StorageError(f"cannot read {self.uri}: {err}") from None

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def read_json(self) -> Any:
        return json.loads(self.read_text())

    def read_json_object(self) -> dict[str, Any]:
        """The JSON object stored here, or {} when the file is missing, unreadable or not an
        object (records a crashed writer may have left behind or never written)."""
        try:
            data = self.read_json()
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file at once: readers see the old file or the new one, never half."""
        fs, path = self._fs()
        try:
            if self.is_local:
                target = Path(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
                return
            with fs.open_output_stream(path) as fh:  # an object appears when its upload completes
                fh.write(data)
        except OSError as err:
            raise StorageError(f"cannot write {self.uri}: {err}") from None

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_json(self, data: Any, indent: int | None = None) -> None:
        self.write_text(json.dumps(data, ensure_ascii=False, default=str, indent=indent))

    def files(self, suffix: str = "") -> list[Location]:
        """The files directly inside this directory (sorted by name), [] when it does not exist."""
        fs, path = self._fs()
        try:
            infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError as err:
            raise StorageError(f"cannot list {self.uri}: {err}") from None
        names = sorted(Path(i.path).name for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix))
        return [self.join(n) for n in names]

    def dirs(self) -> list[Location]:
        """The directories directly inside this one (sorted by name), [] when it does not exist."""
        fs, path = self._fs()
        try:
            infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError as err:
            raise StorageError(f"cannot list {self.uri}: {err}") from None
        return [self.join(n) for n in sorted(Path(i.path).name for i in infos if i.type == pafs.FileType.Directory)]

    def read_many(self, locations: list[Location], threads: int = 16) -> list[bytes | None]:
        """Read files concurrently (object stores answer one request at a time per file); None
        for a file that vanished."""
        def read(loc: Location) -> bytes | None:
            try:
                return loc.read_bytes()
            except FileNotFoundError:
                return None
        if self.is_local or len(locations) < 8:
            return [read(x) for x in locations]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(read, locations))

    def delete(self) -> None:
        fs, path = self._fs()
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            fs.delete_file(path)

    def upload_dir(self, local: Path, marker: str | None = None) -> None:
        """Copy a local directory's files here, each file atomically. `marker` (a file name in
        `local`) is uploaded last: readers that wait for it see the whole set or nothing."""
        last = Path(local, marker) if marker else None
        if last is not None and not last.is_file():  # readers waiting for it would wait forever
            raise FileNotFoundError(f"upload_dir: the marker {marker} is not in {local}")
        for f in sorted((f for f in Path(local).rglob("*") if f.is_file()), key=lambda f: (f == last, f)):
            self.join(str(f.relative_to(local))).write_bytes(f.read_bytes())

    def download_dir(self, local: Path) -> None:
        """Copy this directory's files (recursively) into a local directory."""
        if self.is_local:
            shutil.copytree(self.local_path, local, dirs_exist_ok=True)
            return
        fs, path = self._fs()
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        for info in infos:
            if info.type == pafs.FileType.File:
                rel = info.path[len(path.rstrip("/")) + 1:]
                target = Path(local, rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                with fs.open_input_stream(info.path) as fh:
                    target.write_bytes(fh.read())


_FILESYSTEMS: dict[str, tuple[pafs.FileSystem, str]] = {}


def _remote(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for a URI (one per bucket and query, reused: opening one costs a
    round trip)."""
    head = urlsplit(uri)
    root = head._replace(path="/").geturl()
    if root not in _FILESYSTEMS:
        fs, _ = pafs.FileSystem.from_uri(root)
        _FILESYSTEMS[root] = (fs, "")
    fs = _FILESYSTEMS[root][0]
    return fs, f"{head.netloc}{head.path}".rstrip("/")


def writable(location: Location) -> str | None:
    """None when `location` can be written now, else why not (one line)."""
    probe = location.join(f".kdbench-write-probe-{uuid.uuid4().hex[:8]}")
    try:
        probe.write_bytes(b"ok")
        probe.delete()
        return None
    except (StorageError, OSError) as err:
        return str(err).splitlines()[0]
