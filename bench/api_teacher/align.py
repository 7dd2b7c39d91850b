"""Alignment of an API teacher's tokens to the student's tokenizer (word-level KD targets).

The API's tokenizer is not the student's, so its per-token distributions cannot be compared
with the student's as they are. As in the paper: rebuild the text from the API tokens,
re-tokenize it with the student's tokenizer, and align the two token sequences by an edit
alignment of their characters. A student token is *aligned* when an API token covers exactly
the same characters: there, the teacher's next-token distribution is a distribution over the
same unit of text, and its candidates that are single student tokens carry over. Elsewhere
(a word split differently, a character split into bytes) the target is one-hot on the PT token.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.api_teacher.responses import Completion, decode_pieces

MAX_EDIT_CELLS = 1_000_000  # beyond this the differing middle of two texts is left unaligned


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte ↔ printable-character table used by byte-level BPE vocabularies."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def student_vocab(tokenizer) -> dict[str, int]:
    """Surface text → student id for every non-special token (the lowest id when two share a
    text). Byte-level BPE tokens are decoded through the byte table (tokens that are not whole
    UTF-8 characters are left out); SentencePiece's "▁" becomes a space."""
    specials = set(tokenizer.all_special_ids)
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    byte_level = type(decoder).__name__ == "ByteLevel"
    from_char = {c: b for b, c in bytes_to_unicode().items()}
    out: dict[str, int] = {}
    for token, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        if i in specials:
            continue
        if byte_level:
            try:
                text = bytes(from_char[c] for c in token).decode("utf-8")
            except (KeyError, UnicodeDecodeError):
                continue
        else:
            text = token.replace("▁", " ")
        out.setdefault(text, i)
    return out


def student_tokens(tokenizer, text: str) -> tuple[list[int], list[str], list[bool]]:
    """The student's ids for `text` (no special tokens), each token's text, and whether it can
    be aligned. Texts partition the input: characters a tokenizer's offsets skip (trimmed
    spaces) belong to the next token, as API tokenizers attach spaces. Tokens that share a
    character (byte pieces of one character) cannot be aligned."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    texts, alignable, prev = [], [], 0
    for j, (start, end) in enumerate(offsets):
        shared = (j > 0 and start < offsets[j - 1][1]) or (j + 1 < len(offsets) and offsets[j + 1][0] < end)
        stop = max(end, prev)
        texts.append(text[prev:stop])
        alignable.append(not shared and stop > prev)
        prev = stop
    return ids, texts, alignable


def student_pieces(tokenizer, ids: Sequence[int]) -> tuple[list[str], list[bool]]:
    """Each given student id's text and whether it can be aligned, for ids the student wrote
    itself (its own samples need not be the tokenizer's canonical split of their text).
    "".join(texts) is the text the ids spell. Special tokens spell nothing; a byte piece of
    a character belongs to the token that completes it and none of them can be aligned."""
    specials = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(ids))
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if type(decoder).__name__ != "ByteLevel":
        texts = ["" if i in specials else t.replace("▁", " ") for i, t in zip(ids, tokens)]
        return texts, [bool(t) for t in texts]
    from_char = {c: b for b, c in bytes_to_unicode().items()}
    pieces = [b"" if i in specials else bytes(from_char.get(c, 63) for c in t) for i, t in zip(ids, tokens)]
    texts, partial = decode_pieces(pieces)
    return texts, [bool(t) and not p and i not in specials for t, p, i in zip(texts, partial, ids)]


def _edit_path(a: str, b: str) -> list[tuple[int, int]]:
    """The (i, j) pairs of equal characters a[i] == b[j] matched by a minimum edit-distance
    alignment of a and b, where a substitution costs a deletion plus an insertion: among the
    cheapest alignments are then exactly those that match the most characters. The common
    prefix and suffix match trivially; only the middle is aligned by dynamic programming (and
    left unmatched if it is huge)."""
    n, m = len(a), len(b)
    p = 0
    while p < min(n, m) and a[p] == b[p]:
        p += 1
    q = 0
    while q < min(n, m) - p and a[n - 1 - q] == b[m - 1 - q]:
        q += 1
    pairs = [(k, k) for k in range(p)]
    mid_a, mid_b = a[p:n - q], b[p:m - q]
    if mid_a and mid_b and len(mid_a) * len(mid_b) <= MAX_EDIT_CELLS:
        rows, cols = len(mid_a), len(mid_b)
        d = [list(range(cols + 1))] + [[i] + [0] * cols for i in range(1, rows + 1)]
        for i in range(1, rows + 1):
            ai, above, row = mid_a[i - 1], d[i - 1], d[i]
            for j in range(1, cols + 1):
                row[j] = min(above[j] + 1, row[j - 1] + 1, above[j - 1] + (0 if ai == mid_b[j - 1] else 2))
        i, j, middle = rows, cols, []
        while i and j:
            if mid_a[i - 1] == mid_b[j - 1] and d[i][j] == d[i - 1][j - 1]:
                middle.append((p + i - 1, p + j - 1))
                i, j = i - 1, j - 1
            elif d[i][j] == d[i - 1][j] + 1:
                i -= 1
            else:
                j -= 1
        pairs += middle[::-1]
    pairs += [(n - q + k, m - q + k) for k in range(q)]
    return pairs


def align_tokens(api_tokens: Sequence[str], student_tokens: Sequence[str]) -> list[int | None]:
    """For each student token, the index of the API token with the same text at the same place
    in the text, or None. Places are compared through an edit alignment of the two texts, so a
    student text that differs (normalised, truncated) still aligns where it agrees."""
    student_text, api_text = "".join(student_tokens), "".join(api_tokens)
    starts: dict[int, int] | None = {}  # student char offset -> API char offset, where a match begins
    ends: dict[int, int] | None = {}    # ... and where one ends
    if student_text == api_text:
        starts = ends = None  # the usual case: the same text, offsets are equal
    else:
        for i, j in _edit_path(student_text, api_text):
            starts[i], ends[i + 1] = j, j + 1
    by_span, pos = {}, 0
    for i, tok in enumerate(api_tokens):
        if tok:
            by_span[(pos, pos + len(tok))] = i
        pos += len(tok)
    out, pos = [], 0
    for tok in student_tokens:
        start, end = pos, pos + len(tok)
        pos = end
        if not tok:
            out.append(None)
            continue
        span = (start, end) if starts is None else (starts.get(start), ends.get(end))
        i = by_span.get(span)
        out.append(i if i is not None and api_tokens[i] == tok else None)
    return out


@dataclass(frozen=True)
class StudentTargets:
    """Word-level KD targets of one pseudo-target on the student's tokens. Row t is the teacher's
    distribution for predicting labels[t]: `topk_ids[t]` (k columns, most likely first, padded
    with `pad_id`; labels[t] is always among them) with `topk_logprobs[t]` (−inf in padding) and
    `tail_mass[t]`, the teacher's probability of every other token as one bucket;
    exp(topk_logprobs[t]).sum() + tail_mass[t] == 1. Unaligned rows (and the final eos) are
    one-hot on labels[t]."""

    labels: np.ndarray         # (T,) int64: student ids of the PT text, then eos
    topk_ids: np.ndarray       # (T, k) int64
    topk_logprobs: np.ndarray  # (T, k) float32
    tail_mass: np.ndarray      # (T,) float32
    aligned: np.ndarray        # (T,) bool

    @property
    def aligned_share(self) -> float:
        """Share of label positions (eos included) that got the teacher's distribution."""
        return float(self.aligned.mean()) if len(self.aligned) else 0.0


def align_to_student(completion: Completion, tokenizer, *, k: int, max_len: int,
                     vocab: dict[str, int] | None = None, pad_id: int = 0,
                     ids: Sequence[int] | None = None) -> StudentTargets:
    """Targets for `completion` on the student's tokens. Labels are the ids of its text cut to
    max_len − 1, then eos: the same as `bench.data.encode(tokenizer, [text], max_len)[0]` for
    kdbench's tokenizers. `k`: columns per row (the API's top_logprobs + 1 keeps every
    candidate); `vocab`: `student_vocab(tokenizer)`, pass it when aligning many completions.
    `ids`: the student's own ids of the text (a student's sample, scored by the teacher), used
    as they are instead of re-tokenizing `completion.text`; their text must be the completion's."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the student tokenizer has no eos token; the labels end with one")
    if k < 1 or max_len < 1:
        raise ValueError(f"k and max_len must be >= 1, got k={k}, max_len={max_len}")
    vocab = student_vocab(tokenizer) if vocab is None else vocab
    if ids is None:
        ids, texts, alignable = student_tokens(tokenizer, completion.text)
    else:
        ids = list(ids)
        texts, alignable = student_pieces(tokenizer, ids)
    body = ids[: max_len - 1]
    labels = np.asarray(body + [tokenizer.eos_token_id], dtype=np.int64)
    api_of = align_tokens(completion.tokens, texts) if completion.token_logprobs else [None] * len(ids)
    rows = len(labels)
    topk_ids = np.full((rows, k), pad_id, dtype=np.int64)
    topk_logprobs = np.full((rows, k), -np.inf, dtype=np.float32)
    tail = np.zeros(rows, dtype=np.float32)
    aligned = np.zeros(rows, dtype=bool)
    for t, label in enumerate(labels.tolist()):
        i = api_of[t] if t < len(body) and alignable[t] else None
        if i is None or completion.partial[i]:
            topk_ids[t, 0], topk_logprobs[t, 0] = label, 0.0
            continue
        probs = {label: math.exp(completion.token_logprobs[i])}  # the PT token is the student's own id
        alternatives = completion.top_logprobs[i] if i < len(completion.top_logprobs) else []
        for text, logprob in alternatives:
            sid = vocab.get(text)
            if text != completion.tokens[i] and sid is not None and sid != label:
                probs[sid] = probs.get(sid, 0.0) + math.exp(logprob)
        kept = [(label, probs.pop(label))] + sorted(probs.items(), key=lambda kv: -kv[1])[: k - 1]
        kept.sort(key=lambda kv: -kv[1])  # most likely first, as kdbench's sparse teacher rows
        total = sum(p for _, p in kept)
        scale = 1.0 / total if total > 1.0 else 1.0  # API log-probs rounded past 1: renormalise
        for c, (sid, p) in enumerate(kept):  # p = 0: a log-prob so low that exp() underflows (or -inf)
            topk_ids[t, c], topk_logprobs[t, c] = sid, math.log(p * scale) if p > 0 else -math.inf
        tail[t] = max(0.0, 1.0 - total * scale)
        aligned[t] = True
    return StudentTargets(labels, topk_ids, topk_logprobs, tail, aligned)


def pack_targets(targets: Sequence[StudentTargets], ignore_index: int = -100) -> dict[str, np.ndarray]:
    """Stack targets of different lengths into padded arrays, batch-first like kdbench's labels:
    labels (N, L) padded with `ignore_index`, topk_ids (N, L, k) with 0, topk_logprobs with −inf,
    tail_mass with 0, aligned with False; plus log_tail = log(tail_mass) (−inf where 0), the
    form `bench.distill.losses.SparseTopK` reads (ids, logprobs, log_tail, temperature 1)."""
    n = len(targets)
    width = max((len(t.labels) for t in targets), default=0)
    k = targets[0].topk_ids.shape[1] if targets else 1
    out = {"labels": np.full((n, width), ignore_index, dtype=np.int64),
           "topk_ids": np.zeros((n, width, k), dtype=np.int64),
           "topk_logprobs": np.full((n, width, k), -np.inf, dtype=np.float32),
           "tail_mass": np.zeros((n, width), dtype=np.float32),
           "aligned": np.zeros((n, width), dtype=bool)}
    for i, t in enumerate(targets):
        if t.topk_ids.shape[1] != k:
            raise ValueError(f"targets {i} has {t.topk_ids.shape[1]} columns, the first has {k}")
        rows = len(t.labels)
        out["labels"][i, :rows] = t.labels
        out["topk_ids"][i, :rows] = t.topk_ids
        out["topk_logprobs"][i, :rows] = t.topk_logprobs
        out["tail_mass"][i, :rows] = t.tail_mass
        out["aligned"][i, :rows] = t.aligned
    with np.errstate(divide="ignore"):
        out["log_tail"] = np.log(out["tail_mass"])
    return out
