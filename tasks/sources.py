"""Where a dataset task's rows come from — a Hugging Face Hub dataset or local files — and how
they are read with `datasets.load_dataset`, offline included.

A Hub dataset is read from the network when the Hub answers, else from the local cache; when
neither works the error names the dataset and says how to point kdbench at a local copy.
Nothing waits on a dead network: offline mode (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) is
honoured even when set after `datasets` was imported, and otherwise a short TCP probe of the
Hub decides between the network and the cache before `datasets` starts its own retries.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tasks.base import DataUnavailableError, SettingError, TaskDataError

ORIGINAL_SPLITS = ("train", "validation", "test")  # the split names a source may provide
FORMATS = {"parquet": "parquet", "jsonl": "json", "json": "json", "csv": "csv"}  # format -> datasets builder
EXTENSIONS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "json", ".csv": "csv"}
HUB_PROBE_SECONDS = 3.0  # TCP connect timeout when checking that the Hub answers at all
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class DataSource:
    """A Hub dataset (`path` = "org/name", optional `config`, `revision`), a local directory or
    file (`path`), or local files per split (`files` = {"train": [...], "validation": [...],
    "test": [...]}). `format` (parquet, jsonl, json, csv) is inferred from file extensions when
    left out. `columns` renames columns of this data to the names the task reads
    ({task column: column here})."""

    path: str | None = None
    files: dict[str, tuple[str, ...]] | None = None
    format: str | None = None
    config: str | None = None
    revision: str | None = None
    columns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSource:
        d = {k: v for k, v in d.items() if v is not None}
        if "files" in d:
            d["files"] = normalize_files(d["files"])
        src = cls(**d)
        src.check()
        return src

    def check(self) -> None:
        """SettingError naming the field if this source cannot be read as given."""
        if (self.path is None) == (self.files is None):
            raise SettingError("path", "give exactly one of `path` (a Hub dataset id or a local directory/file) "
                                       "and `files` (local files per split)")
        if self.format is not None and self.format not in FORMATS:
            raise SettingError("format", f"format {self.format!r} is not supported; allowed: {', '.join(FORMATS)}")
        if self.files is not None:
            self.builder()  # formats must be known and consistent
            for paths in self.files.values():
                for p in paths:
                    if not os.path.isfile(p):
                        raise SettingError("files", f"{p!r} does not exist (relative paths are read from the "
                                                    f"current directory, {os.getcwd()})")
        elif not self.is_local and not _HUB_ID.match(self.path):
            raise SettingError("path", f"{self.path!r} does not exist and is not a Hub dataset id ('org/name')")

    @property
    def is_local(self) -> bool:
        return self.files is not None or os.path.exists(self.path)

    def builder(self) -> str:
        """The `datasets` packaged builder for local files (parquet, json or csv)."""
        if self.format:
            return FORMATS[self.format]
        paths = [p for ps in (self.files or {"train": (self.path,)}).values() for p in ps]
        formats = {EXTENSIONS.get(Path(p).suffix.lower()) for p in paths}
        if None in formats or len(formats) != 1:
            raise SettingError("format", f"cannot tell the format of {', '.join(paths)} from their extensions; "
                                         f"set `format` (allowed: {', '.join(FORMATS)})")
        return FORMATS[formats.pop()]

    def describe(self) -> str:
        if self.files is not None:
            return "local files " + "; ".join(f"{split}: {', '.join(ps)}" for split, ps in self.files.items())
        if self.is_local:
            return f"local {'directory' if os.path.isdir(self.path) else 'file'} {self.path}"
        extra = "".join(f", {k} {v!r}" for k, v in (("config", self.config), ("revision", self.revision)) if v)
        return f"Hugging Face dataset {self.path!r}{extra}"

    def fingerprint(self) -> dict[str, Any]:
        """Identity of the data: Hub id/config/revision, or the content hashes of local files per split."""
        base: dict[str, Any] = {"columns": dict(sorted(self.columns.items()))}
        if not self.is_local:
            return {**base, "hub": self.path, "config": self.config, "revision": self.revision}
        if self.files is not None:
            files = {split: [_sha256(p) for p in ps] for split, ps in sorted(self.files.items())}
        else:  # a directory: file names decide the splits, so they count too
            root = Path(self.path)
            files = {"*": [f"{p.relative_to(root) if root.is_dir() else p.name}:{_sha256(p)}"
                           for p in _data_files(root)]}
        return {**base, "format": self.format, "config": self.config, "files": files}


def normalize_files(files: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """{split: file or [files]} -> {split: (absolute paths,)}; only train/validation/test allowed."""
    out = {}
    for split, paths in files.items():
        if split not in ORIGINAL_SPLITS:
            raise SettingError("files", f"unknown split {split!r}; allowed: {', '.join(ORIGINAL_SPLITS)}")
        paths = (paths,) if isinstance(paths, str) else tuple(paths)
        if not paths:
            raise SettingError("files", f"no files given for split {split!r}")
        out[split] = tuple(os.path.abspath(p) for p in paths)
    if "train" not in out:
        raise SettingError("files", "a `train` split is required (labeled and unlabeled inputs come from it)")
    return out


@dataclass
class RawData:
    """Rows per original split, with where each split came from (for error messages)."""

    rows: dict[str, list[dict[str, Any]]]
    origin: dict[str, str]


def load_rows(source: DataSource, columns_for: Callable[[str], tuple[str, ...]], task: str) -> RawData:
    """Read every original split of `source` with `datasets.load_dataset`; keep the columns the
    task reads (`columns_for(split)`), renamed per `source.columns`."""
    import datasets

    if source.is_local:
        with tempfile.TemporaryDirectory(prefix="kdbench-datasets-") as cache:  # no stale copies of local files
            dd = _load_local(source, task, cache)
            return _select(dd, source, columns_for, task)
    dd = _load_hub(source, task)
    if isinstance(dd, datasets.Dataset):  # pragma: no cover - load_dataset without `split` returns a dict
        dd = datasets.DatasetDict({"train": dd})
    return _select(dd, source, columns_for, task)


def _select(dd, source: DataSource, columns_for, task: str) -> RawData:
    rows: dict[str, list[dict[str, Any]]] = {}
    origin: dict[str, str] = {}
    for split in ORIGINAL_SPLITS:
        if split not in dd:
            continue
        ds = dd[split]
        where = _origin(source, split)
        rename = {theirs: ours for ours, theirs in source.columns.items() if theirs in ds.column_names}
        if rename:
            ds = ds.rename_columns(rename)
        missing = [c for c in columns_for(split) if c not in ds.column_names]
        if missing:
            hint = ("rename columns with data.columns: {task column: column here}, or for a custom task name "
                    "them with custom.source_field / target_field / references_field")
            raise TaskDataError(f"task {task!r}: split {split!r} ({where}) has no column "
                                f"{', '.join(repr(c) for c in missing)}; its columns are "
                                f"{', '.join(ds.column_names) or '(none)'} ({hint})")
        rows[split] = ds.select_columns(list(columns_for(split))).to_list()
        origin[split] = where
    if "train" not in rows:
        raise TaskDataError(f"task {task!r}: {source.describe()} has no train split (found: "
                            f"{', '.join(dd) or 'none'}); labeled and unlabeled inputs come from it")
    return RawData(rows, origin)


def _origin(source: DataSource, split: str) -> str:
    if source.files is not None:
        return ", ".join(source.files[split])
    return f"{source.describe()}, split {split!r}"


def _load_local(source: DataSource, task: str, cache: str):
    import datasets

    if source.files is None and os.path.isdir(source.path):  # a dataset directory: `datasets` finds the splits
        for p in _data_files(Path(source.path)):
            _check_not_empty(p, task)
            if p.suffix.lower() != ".parquet":
                _check_utf8(p, None, task)
        return _read(lambda: datasets.load_dataset(source.path, source.config, cache_dir=cache),
                     source.describe(), task)
    # files per split, read one split at a time: each may have its own columns, and an error names its files
    files = source.files if source.files is not None else {"train": (source.path,)}
    out = {}
    for split, paths in files.items():
        for p in paths:
            _check_not_empty(Path(p), task)
            if source.builder() != "parquet":
                _check_utf8(Path(p), split, task)
        out[split] = _read(lambda split=split, paths=paths: datasets.load_dataset(
            source.builder(), data_files={split: list(paths)}, split=split, cache_dir=cache), ", ".join(paths), task)
    return out


def _read(load: Callable[[], Any], what: str, task: str):
    try:
        return load()
    except Exception as err:  # datasets raises many types; the file and the root cause are what matter
        cause = err
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        detail = f"{type(err).__name__}: {err}" + (f" (cause: {type(cause).__name__}: {cause})" if cause is not err
                                                    else "")
        raise TaskDataError(f"task {task!r}: could not read {what}: {detail}") from err


def _check_not_empty(path: Path, task: str) -> None:
    # `datasets` fails on an empty file with a bare StopIteration (text) or an Arrow batch-size
    # error (Parquet without rows); say what is wrong instead.
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        empty = pq.ParquetFile(path).metadata.num_rows == 0
    else:
        with open(path, "rb") as fh:
            empty = not any(line.strip() for line in fh)
    if empty:
        raise TaskDataError(f"task {task!r}: {path} is empty (no rows)")


def _check_utf8(path: Path, split: str | None, task: str) -> None:
    # `datasets` reads text files as UTF-8 and fails on other bytes late and vaguely (a bare
    # UnicodeDecodeError while converting rows, or an Arrow error without file or line); name them.
    try:
        with open(path, encoding="utf-8") as fh:
            while fh.read(1 << 20):
                pass
        return
    except UnicodeDecodeError:
        pass
    offset = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                where = f"split {split!r} file" if split else "file"
                row = f"row {number - 1} after the header, " if path.suffix.lower() == ".csv" else ""
                raise TaskDataError(
                    f"task {task!r}: {where} {path} is not UTF-8 text: line {number} ({row}byte offset "
                    f"{offset + err.start}) has byte 0x{line[err.start]:02x}, which cannot be decoded "
                    f"({err.reason}); convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
            offset += len(line)


def _data_files(root: Path) -> list[Path]:
    """Data files under a local directory or the file itself (hidden folders, e.g. caches, skipped)."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- the Hub, offline

def _load_hub(source: DataSource, task: str):
    import datasets

    reason = offline_reason()
    try:
        if reason:
            with hub_offline_mode():
                return datasets.load_dataset(source.path, source.config, revision=source.revision)
        return datasets.load_dataset(source.path, source.config, revision=source.revision)
    except Exception as err:  # offline, not cached, no such dataset, a legacy script dataset, ...
        raise DataUnavailableError(unavailable_message(source, task, reason, err)) from err


def offline_reason() -> str | None:
    """Why the Hub must not be used now (None if it may be): offline mode, or no answer."""
    import datasets.config

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").upper() in _TRUE:
            return f"offline mode is on ({var}={os.environ[var]})"
    if datasets.config.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE)"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy a direct probe proves nothing; let the HTTP client try
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=HUB_PROBE_SECONDS):
            return None
    except OSError as err:
        return f"the Hub at {constants.ENDPOINT} did not answer within {HUB_PROBE_SECONDS:g}s ({err})"


@contextmanager
def hub_offline_mode() -> Iterator[None]:
    """Make `datasets` and `huggingface_hub` skip the network (their flags are read at import,
    so an environment variable set later, or a dead network, needs this)."""
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def unavailable_message(source: DataSource, task: str, reason: str | None, err: Exception) -> str:
    import datasets.config
    from huggingface_hub import constants

    why = f"{reason}, and it is not in the local cache" if reason else "loading it failed"
    local = f" (no local path {source.path!r} exists either)" if "/" in source.path else ""
    return (
        f"task {task!r}: cannot load {source.describe()}: {why}{local}.\n"
        f"  cause: {type(err).__name__}: {err}\n"
        f"  caches searched: HF_DATASETS_CACHE={datasets.config.HF_DATASETS_CACHE}, "
        f"HF_HUB_CACHE={constants.HF_HUB_CACHE}\n"
        f"  fix one of:\n"
        f"  - point the task at a local copy in the spec: tasks: [{{name: {task}, data: {{path: /path/to/copy}}}}] "
        f"(a directory with train/validation/test parquet, jsonl or csv files), or per split: "
        f"data: {{files: {{train: ..., validation: ..., test: ...}}}};\n"
        f"  - or load it once where the Hub is reachable (datasets.load_dataset({source.path!r}"
        f"{', ' + repr(source.config) if source.config else ''}"
        f"{', revision=' + repr(source.revision) if source.revision else ''})) and copy that cache here, "
        f"setting HF_HOME (or HF_DATASETS_CACHE and HF_HUB_CACHE) to it."
    )
