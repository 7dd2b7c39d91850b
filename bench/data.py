"""Task data on disk (one JSONL file per split) and its tokenized form."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks import SPLITS, TaskSplits


def save_splits(splits: TaskSplits, out_dir: Path) -> None:
    for name, rows in splits.splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", rows)


def load_splits(data_dir: Path | str) -> TaskSplits:
    data_dir = Path(data_dir)
    return TaskSplits({s: read_jsonl(data_dir / f"{s}.jsonl") for s in SPLITS if (data_dir / f"{s}.jsonl").exists()})


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@dataclass(frozen=True)
class Lengths:
    max_source: int
    max_target: int


def encode(tokenizer, texts: list[str], max_len: int, add_eos: bool = True) -> list[list[int]]:
    """Token ids, truncated to max_len; sources keep their eos, targets are stored without it.
    No texts (an empty split, e.g. labeled = 0): no ids (the tokenizer refuses an empty batch)."""
    if not texts:
        return []
    ids = tokenizer(texts, add_special_tokens=add_eos, truncation=True, max_length=max_len)["input_ids"]
    return [list(x) for x in ids]
