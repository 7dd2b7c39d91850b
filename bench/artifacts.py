"""Content-addressed store for shared stage outputs (data, tokenizer, teacher, PTs, caches).

An artifact lives at `ROOT/<stage>/<hash>/`, where the hash covers everything that
determines it (its config, the hashes of its inputs and the stage's code version). It is
built into a temporary folder and renamed into place only when complete, under a file lock,
so concurrent builders (trials, runs, nodes on a shared filesystem) never build it twice at
the same time and never see half an artifact.

Artifacts are verified, not trusted: `artifact.json` records the size and SHA-256 of every
file, and `verify` checks them. A reused artifact is verified before it is handed out; a
corrupted or half-copied one is reported, removed and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

META_FILE = "artifact.json"


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
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != META_FILE}


def verify(path: Path) -> None:
    """Raise CorruptArtifact naming the first file that is missing or differs."""
    try:
        meta = json.loads((path / META_FILE).read_text())
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


@dataclass(frozen=True)
class Artifact:
    stage: str
    hash: str
    path: Path
    reused: bool  # True when it was already in the store
    build_seconds: float  # time spent building it (0 when reused)
    rebuilt_because: str | None = None  # why a stored copy was not used (corruption)

    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / META_FILE).read_text())


class ArtifactStore:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()

    def path_for(self, stage: str, key: dict[str, Any]) -> tuple[str, Path]:
        digest = content_hash({"stage": stage, **key})
        return digest, self.root / stage / digest

    def get_or_build(self, stage: str, key: dict[str, Any], build: Callable[[Path], None],
                     extra_meta: Callable[[Path], dict] | None = None) -> Artifact:
        """Return the artifact for (stage, key), running `build(tmp_dir)` only if missing or
        corrupted. `extra_meta(tmp_dir)` may add fields to its metadata (e.g. costs)."""
        digest, final = self.path_for(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            why = None
            if (final / META_FILE).exists():
                try:
                    verify(final)
                    return Artifact(stage, digest, final, reused=True, build_seconds=0.0)
                except CorruptArtifact as err:
                    why = str(err)
            tmp = final.with_name(f"{digest}.partial")
            shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a crashed build
            tmp.mkdir()
            start = time.perf_counter()
            build(tmp)
            seconds = time.perf_counter() - start
            meta = {"stage": stage, "hash": digest, "key": key, "build_seconds": seconds,
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    **(extra_meta(tmp) if extra_meta else {}), "files": checksums(tmp)}
            if why:
                meta["rebuilt_because"] = why
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        return Artifact(stage, digest, final, reused=False, build_seconds=seconds, rebuilt_because=why)
