"""Content-addressed store for shared stage outputs (data, tokenizer, teacher, PTs, ...).

An artifact lives at `ROOT/<stage>/<hash>/`, where the hash covers everything that
determines it (its config, the hashes of its inputs and the stage's code version). It is
built into a temporary folder and renamed into place only when complete, under a file lock,
so concurrent builders (trials, runs, nodes on a shared filesystem) never build it twice at
the same time and never see half an artifact.
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


def content_hash(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Artifact:
    stage: str
    hash: str
    path: Path
    reused: bool  # True when it was already in the store
    build_seconds: float  # time spent building it (0 when reused)

    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / META_FILE).read_text())


class ArtifactStore:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()

    def path_for(self, stage: str, key: dict[str, Any]) -> tuple[str, Path]:
        digest = content_hash({"stage": stage, **key})
        return digest, self.root / stage / digest

    def get_or_build(
        self, stage: str, key: dict[str, Any], build: Callable[[Path], None]
    ) -> Artifact:
        """Return the artifact for (stage, key), running `build(tmp_dir)` only if missing."""
        digest, final = self.path_for(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if (final / META_FILE).exists():
                return Artifact(stage, digest, final, reused=True, build_seconds=0.0)
            tmp = final.with_name(f"{digest}.partial")
            shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a crashed build
            tmp.mkdir()
            start = time.perf_counter()
            build(tmp)
            seconds = time.perf_counter() - start
            meta = {"stage": stage, "hash": digest, "key": key, "build_seconds": seconds,
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        return Artifact(stage, digest, final, reused=False, build_seconds=seconds)
