"""Content-addressed store for shared stage outputs (data, tokenizer, teacher, PTs, caches).

An artifact lives at `ROOT/<stage>/<hash>/`, where the hash covers everything that
determines it (its config, the hashes of its inputs and the stage's code version). ROOT is a
`bench.storage.Location`: a local (or NFS) directory, or an object store.

* Built once: the builder writes into a local temporary folder; on a local root the folder is
  renamed into place under a file lock (concurrent builders never build twice, never see
  half an artifact); on an object store its files are uploaded and `artifact.json` is written
  last — an artifact exists once its metadata does (two nodes may then build the same
  deterministic artifact at once; the second upload rewrites identical files).
* Verified, not trusted: `artifact.json` records the size and SHA-256 of every file. A reused
  artifact is verified before it is handed out; a corrupted or half-copied one is reported,
  removed and rebuilt. Every node reads artifacts through `local_artifact`, which verifies a
  local root in place and copies an object store's artifact into the node's own cache
  (`KDBENCH_CACHE_DIR`, default `~/.cache/kdbench`), verified, once per node.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from bench.storage import Location

META_FILE = "artifact.json"
VERIFIED_MARK = ".verified"


class CorruptArtifact(ValueError):
    """An artifact whose files do not match their recorded checksums."""


def content_hash(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checksums(root: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} of every file under `root` but the metadata file."""
    return {str(p.relative_to(root)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in (META_FILE, VERIFIED_MARK)}


def verify(path: Path, meta: dict | None = None) -> None:
    """Raise CorruptArtifact naming the first file that is missing or differs."""
    try:
        meta = meta or json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as err:
        raise CorruptArtifact(f"{path}: unreadable {META_FILE} ({err})") from None
    recorded = meta.get("files")
    if recorded is None:
        raise CorruptArtifact(f"{path}: no checksums recorded (built by an older kdbench)")
    for rel, want in recorded.items():
        f = path / rel
        if not f.is_file():
            raise CorruptArtifact(f"{path.parent.name}/{path.name}: file {rel} is missing")
        if f.stat().st_size != want["size"] or file_sha256(f) != want["sha256"]:
            raise CorruptArtifact(f"{path.parent.name}/{path.name}: file {rel} does not match its checksum "
                                  f"(corrupted or half-copied)")


def cache_root() -> Path:
    return Path(os.environ.get("KDBENCH_CACHE_DIR", Path.home() / ".cache" / "kdbench")).expanduser()


_VERIFIED: set[str] = set()  # artifacts verified by this process (a trial reads each several times)


def local_artifact(where: str | Path | Location) -> Path:
    """A verified local directory holding the artifact stored at `where`: the artifact itself on
    a local root, else this node's cached copy (downloaded once, verified). CorruptArtifact when
    the stored copy fails its checksums: the run's stages rebuild it."""
    loc = Location.of(where)
    if loc.is_local:
        path = loc.local_path
        if str(path) not in _VERIFIED:
            verify(path)
            _VERIFIED.add(str(path))
        return path
    meta = loc.join(META_FILE).read_json()
    target = cache_root() / "artifacts" / meta["stage"] / meta["hash"]
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / VERIFIED_MARK).exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{meta['hash']}.", dir=target.parent))
        loc.download_dir(tmp)
        try:
            verify(tmp, meta)
        except CorruptArtifact:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / VERIFIED_MARK).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        tmp.rename(target)
    return target


@dataclass(frozen=True)
class Artifact:
    stage: str
    hash: str
    location: Location  # where it is stored
    local: Path  # a verified local copy (the stored one itself on a local root)
    reused: bool  # True when it was already in the store
    build_seconds: float  # time spent building it (0 when reused)
    rebuilt_because: str | None = None  # why a stored copy was not used (corruption)

    @property
    def path(self) -> Path:
        return self.local

    def meta(self) -> dict[str, Any]:
        return json.loads((self.local / META_FILE).read_text())


class ArtifactStore:
    def __init__(self, root: str | Path | Location):
        self.root = Location.of(root)

    def location_for(self, stage: str, key: dict[str, Any]) -> tuple[str, Location]:
        digest = content_hash({"stage": stage, **key})
        return digest, self.root.join(stage, digest)

    def get_or_build(self, stage: str, key: dict[str, Any], build: Callable[[Path], None],
                     extra_meta: Callable[[Path], dict] | None = None) -> Artifact:
        """Return the artifact for (stage, key), running `build(tmp_dir)` only if missing or
        corrupted. `extra_meta(tmp_dir)` may add fields to its metadata (e.g. costs)."""
        digest, loc = self.location_for(stage, key)
        if self.root.is_local:
            return self._local(stage, key, digest, loc.local_path, build, extra_meta)
        why = None
        if loc.join(META_FILE).exists():
            try:
                return Artifact(stage, digest, loc, local_artifact(loc), reused=True, build_seconds=0.0)
            except CorruptArtifact as err:
                why = str(err)
        with tempfile.TemporaryDirectory(prefix=f"kdbench-build-{digest}-") as d:
            tmp = Path(d) / digest
            tmp.mkdir()
            seconds = self._build(tmp, stage, key, digest, build, extra_meta, why)
            loc.upload_dir(tmp, marker=META_FILE)  # the artifact exists once its meta file does
        return Artifact(stage, digest, loc, local_artifact(loc), reused=False, build_seconds=seconds,
                        rebuilt_because=why)

    def _local(self, stage, key, digest, final: Path, build, extra_meta) -> Artifact:
        final.parent.mkdir(parents=True, exist_ok=True)
        loc = Location.of(final)
        with FileLock(str(final) + ".lock"):
            why = None
            if (final / META_FILE).exists():
                try:
                    verify(final)
                    _VERIFIED.add(str(final))
                    return Artifact(stage, digest, loc, final, reused=True, build_seconds=0.0)
                except CorruptArtifact as err:
                    why = str(err)
            tmp = final.with_name(f"{digest}.partial")
            shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a crashed build
            tmp.mkdir()
            seconds = self._build(tmp, stage, key, digest, build, extra_meta, why)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            _VERIFIED.add(str(final))
        return Artifact(stage, digest, loc, final, reused=False, build_seconds=seconds, rebuilt_because=why)

    @staticmethod
    def _build(tmp: Path, stage, key, digest, build, extra_meta, why) -> float:
        start = time.perf_counter()
        build(tmp)
        seconds = time.perf_counter() - start
        meta = {"stage": stage, "hash": digest, "key": key, "build_seconds": seconds,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **(extra_meta(tmp) if extra_meta else {}), "files": checksums(tmp)}
        if why:
            meta["rebuilt_because"] = why
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return seconds
