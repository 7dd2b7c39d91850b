"""The body of an API teacher's pseudo-target stage: prompts → K completions per input →
(optionally) word-level KD targets on the student's tokens. Where they are stored is the
caller's (the shared stages); this returns plain values."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.api_teacher.align import StudentTargets, align_to_student, student_vocab
from bench.api_teacher.spec import build_prompts


@dataclass
class ApiPseudoTargets:
    prompts: list[str]                 # the prompt each input was sent as
    texts: list[list[str]]             # K pseudo-targets per input
    truncated: list[list[bool]]        # cut by max_tokens (finish_reason "length")
    targets: list[list[StudentTargets]] | None  # per PT, when a student tokenizer was given
    usage: dict[str, Any]              # ApiTeacherClient.usage() after the stage

    @property
    def aligned_share(self) -> float | None:
        """Mean share of aligned label positions over all PTs (None without targets)."""
        if not self.targets:
            return None
        shares = [t.aligned_share for ts in self.targets for t in ts]
        return sum(shares) / len(shares) if shares else None


def api_pseudo_targets(client, task: str, sources: Sequence[str], *,
                       labeled: Sequence[Mapping[str, Any]] | None = None, tokenizer=None,
                       max_len: int | None = None, progress: Callable | None = None) -> ApiPseudoTargets:
    """PTs of `client` (an ApiTeacherClient) for `sources` of `task`; few-shot examples come
    from `labeled`. With a student `tokenizer` (and `max_len`, the target length limit), each PT
    also gets its aligned targets (k = top_logprobs + 1 columns)."""
    spec = client.spec
    prompts = build_prompts(spec.prompt_for(task), sources, labeled)
    completions = client.generate(prompts, progress)
    targets = None
    if tokenizer is not None:
        if max_len is None:
            raise ValueError("aligning PTs to the student needs max_len (the task's max_target_tokens)")
        if not spec.logprobs:
            raise ValueError("aligned targets need the API's tokens: set logprobs: true in the API teacher spec")
        vocab = student_vocab(tokenizer)
        targets = [[align_to_student(c, tokenizer, k=spec.top_logprobs + 1, max_len=max_len, vocab=vocab)
                    for c in cs] for cs in completions]
    return ApiPseudoTargets(prompts, [[c.text for c in cs] for cs in completions],
                            [[c.truncated for c in cs] for cs in completions], targets, client.usage())
