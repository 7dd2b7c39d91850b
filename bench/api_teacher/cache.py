"""On-disk cache of API answers, one file per request, so a stage that crashes halfway loses
nothing and a second run makes zero requests.

A request is keyed by the sha256 of its canonical JSON (base URL, path, body), which never
contains the API key: the key travels only in the HTTP header the openai client builds. Each
answer is written to a temporary file and renamed into place, so a reader sees a whole file
or none. An unreadable file (edited by hand, disk trouble) counts as a miss and is rewritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CACHE_FORMAT = 1  # bump when the stored record changes shape


def canonical(request: dict[str, Any]) -> str:
    return json.dumps({"format": CACHE_FORMAT, **request}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def request_key(request: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(request).encode()).hexdigest()


class ResponseCache:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{key[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json"))
