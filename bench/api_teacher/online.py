"""The API teacher during training: word-level targets for rows the teacher did not write.

Joint-Teaching's student PTs (and gold targets) have no stored teacher distributions. For those
rows the training loop asks its teacher for `sparse_outputs`: each row's source becomes the
teacher's prompt again, its target ids (the student's own sample) become text, the endpoint
scores that text (`ApiTeacherClient.score`: /completions with echo=True, e.g. vLLM's
prompt log-probs), and the answer is aligned to the row's ids exactly as stored PTs are
(`align_to_student(..., ids=...)`): aligned positions get the teacher's top tokens, the others
a one-hot on the row's token. Answers are cached on disk, so a rerun of the same trial (same
seed, same machine: the same student samples) sends nothing.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from bench.api_teacher.align import align_to_student, pack_targets, student_pieces, student_vocab
from bench.api_teacher.responses import Completion
from bench.distill.losses import IGNORE_INDEX, SparseTopK


class ApiScoringTeacher:
    """Sparse teacher distributions for given rows, from an endpoint that scores text.

    `prompts` maps a source's student ids (as in the batch, eos included, no padding) to the
    prompt the teacher was given for that input; `k` columns per position (top_logprobs + 1)."""

    def __init__(self, client, tokenizer, prompts: Mapping[tuple[int, ...], str], *, k: int, max_target: int):
        self.client, self.tok, self.prompts = client, tokenizer, dict(prompts)
        self.k, self.max_target = k, max_target
        self.vocab = student_vocab(tokenizer)
        self.scored_rows = 0

    def _prompt(self, source: list[int]) -> str:
        try:
            return self.prompts[tuple(source)]
        except KeyError:
            raise ValueError("a row's source is not one of the task's labeled or unlabeled inputs; the API "
                             "teacher scores text after the prompt of a known input") from None

    def sparse_outputs(self, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> SparseTopK:
        """(rows, T, k) distributions aligned with `labels` (rows, T), at temperature 1."""
        rows = []
        for ids, keep, lab in zip(input_ids.tolist(), mask.tolist(), labels.tolist()):
            source = [i for i, m in zip(ids, keep) if m]
            body = [t for t in lab if t != IGNORE_INDEX][:-1]  # the labels end in eos
            rows.append((self._prompt(source), body, "".join(student_pieces(self.tok, body)[0])))
        todo = [i for i, (_, _, text) in enumerate(rows) if text]  # an empty text has nothing to score
        scored = dict(zip(todo, self.client.score([rows[i][0] for i in todo], [rows[i][2] for i in todo])))
        targets = []
        for i, (_, body, text) in enumerate(rows):
            t = align_to_student(scored.get(i, Completion(text)), self.tok, k=self.k, max_len=self.max_target,
                                 vocab=self.vocab, ids=body)
            want = [x for x in labels[i].tolist() if x != IGNORE_INDEX]
            if t.labels.tolist() != want:
                raise ValueError(f"API-scored targets do not match the batch's labels (row {i}: "
                                 f"{len(t.labels)} vs {len(want)} tokens)")
            targets.append(t)
        self.scored_rows += len(todo)
        packed = pack_targets(targets)
        width = labels.shape[1]

        def fit(a: np.ndarray, fill) -> np.ndarray:  # pad (or keep) to the batch's width
            out = np.full((a.shape[0], width, *a.shape[2:]), fill, dtype=a.dtype)
            out[:, : a.shape[1]] = a[:, :width]
            return out

        device = labels.device
        return SparseTopK(torch.from_numpy(fit(packed["topk_ids"], 0)).to(device),
                          torch.from_numpy(fit(packed["topk_logprobs"], -np.inf)).to(device),
                          torch.from_numpy(fit(packed["log_tail"], -np.inf)).to(device), 1.0)

    def usage(self) -> dict:
        return {**self.client.usage(), "scored_rows": self.scored_rows}
