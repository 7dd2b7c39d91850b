"""Task data on disk (one JSONL file per split) and its tokenized form.

The token ids every trial trains on — the labeled and unlabeled inputs, the labeled gold
targets, each PT set's candidates — are encoded once per (data or PT set, tokenizer, lengths)
by the shared stages (`tokenized` artifacts, `TOKEN_IDS_FILE`) and read by each trial whose
student has the task's tokenizer; a student with its own tokenizer encodes the texts itself,
with the same functions (`encode_splits`, `encode_pts`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks import SPLITS, TaskSplits

TOKENIZED = "tokenized"  # the artifact label of the data's token ids; a PT set's: tokenized_label(its label)
TOKEN_IDS_FILE = "token_ids.npz"
PT_FILE = "pseudo_targets.json"  # a PT set's texts: {split: [[candidate, ...] per input]}
TRAIN_SPLITS = ("labeled", "unlabeled")  # the splits students train on


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


def encode_splits(tokenizer, splits: TaskSplits, lengths: Lengths) -> dict[str, list[list[int]]]:
    """The token ids of what students train on, by name: `inputs.<split>` for the labeled and
    unlabeled inputs, `gold.labeled` for the labeled targets (without eos)."""
    out = {f"inputs.{s}": encode(tokenizer, splits.sources(s), lengths.max_source) for s in TRAIN_SPLITS}
    out["gold.labeled"] = encode(tokenizer, [r["target"] for r in splits.splits["labeled"]], lengths.max_target,
                                 add_eos=False)
    return out


def encode_candidates(tokenizer, texts_per_input: list[list[str]], max_len: int) -> list[list[list[int]]]:
    """Each input's candidate targets (e.g. its K pseudo-targets) as ids, in one batch."""
    flat = encode(tokenizer, [t for cands in texts_per_input for t in cands], max_len, add_eos=False)
    out, i = [], 0
    for cands in texts_per_input:
        out.append(flat[i : i + len(cands)])
        i += len(cands)
    return out


def write_pts(d: Path, pts: dict[str, list[list[str]]]) -> None:
    """Store a PT set's texts in `d` (model and API PT sets alike)."""
    (Path(d) / PT_FILE).write_text(json.dumps(pts, ensure_ascii=False))


def read_pts(d: Path | str) -> dict[str, list[list[str]]]:
    """The texts of the PT set stored in `d`."""
    path = Path(d) / PT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"pseudo-targets {path} are unreadable ({err}); the artifact is corrupt: delete {d} to "
                         f"rebuild it") from None


def encode_pts(tokenizer, pts: dict[str, list[list[str]]], max_target: int) -> dict[str, list[list[list[int]]]]:
    """A PT set's candidates as ids, for the splits students train on."""
    return {s: encode_candidates(tokenizer, pts[s], max_target) for s in TRAIN_SPLITS}


def tokenized_label(label: str) -> str:
    """The label of the token ids of the artifact labelled `label` (a PT set)."""
    return f"{TOKENIZED}/{label}"


def save_token_ids(d: Path, sequences: dict[str, list[list[int]]] | None = None,
                   candidates: dict[str, list[list[list[int]]]] | None = None) -> None:
    """Write named id sequences, and named per-input candidate lists, as flat int32 arrays with
    their lengths (and candidate counts), so a trial reads them without a tokenizer."""
    arrays = {}

    def put(name: str, flat: list[list[int]]) -> None:
        arrays[f"{name}.ids"] = np.fromiter((t for x in flat for t in x), dtype=np.int32)
        arrays[f"{name}.lengths"] = np.array([len(x) for x in flat], dtype=np.int32)

    for name, seqs in (sequences or {}).items():
        put(name, seqs)
    for name, per_input in (candidates or {}).items():
        put(name, [c for cands in per_input for c in cands])
        arrays[f"{name}.counts"] = np.array([len(c) for c in per_input], dtype=np.int32)
    np.savez(d / TOKEN_IDS_FILE, **arrays)


def load_token_ids(d: Path | str) -> dict[str, list]:
    """What `save_token_ids` wrote, by name: id sequences, or per-input candidate lists."""
    path = Path(d) / TOKEN_IDS_FILE
    out: dict[str, list] = {}
    try:
        with np.load(path) as npz:
            arrays = dict(npz)
        for key in (k for k in arrays if k.endswith(".ids")):
            name = key.removesuffix(".ids")
            ids, ends = arrays[key].tolist(), np.cumsum(arrays[f"{name}.lengths"]).tolist()
            seqs = [ids[a:b] for a, b in zip([0, *ends], ends)]
            if f"{name}.counts" in arrays:
                bounds = np.cumsum(arrays[f"{name}.counts"]).tolist()
                seqs = [seqs[a:b] for a, b in zip([0, *bounds], bounds)]
            out[name] = seqs
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"token ids {path} are unreadable ({err}); the artifact is corrupt: delete {d} to "
                         f"rebuild it") from None
    return out
