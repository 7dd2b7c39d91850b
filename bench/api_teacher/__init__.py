"""An LLM teacher behind an OpenAI-compatible API (the paper's extreme setup: no labeled data).

    ApiTeacherSpec → build_prompts → ApiTeacherClient.generate → K Completions per input
                   → align_to_student → word-level KD targets on the student's tokens
                     (k candidates + a tail bucket per position; pack_targets pads a batch)
    ApiTeacherClient.probe_scoring / score: log-probs of given text (Joint-Teaching's student PTs)
    api_pseudo_targets: the whole PT stage body, returning plain values; the artifact bodies
    of the shared stages (`bench.api_teacher.stage`) and, in training, `ApiScoringTeacher`
    (`bench.api_teacher.online`): sparse targets for rows the teacher did not write

Standalone: it reads a spec, talks HTTP and returns plain values; the shared stages decide where
texts and arrays are stored. The client (and the `openai` package) is imported on first use, so
the spec can be validated where openai is not installed.
"""
from bench.api_teacher.align import (StudentTargets, align_to_student, align_tokens, pack_targets, student_pieces,
                                     student_tokens, student_vocab)
from bench.api_teacher.cache import ResponseCache, request_key
from bench.api_teacher.responses import Completion, MalformedResponse
from bench.api_teacher.spec import ApiTeacherSpec, Prices, PromptTemplate, build_prompts

_CLIENT = ("ApiAuthError", "ApiModelNotFoundError", "ApiRequestError", "ApiTeacherClient", "ApiTeacherError",
           "Progress", "ScoringSupport", "progress_printer")
_LAZY = {**dict.fromkeys(_CLIENT, "bench.api_teacher.client"),
         "ApiPseudoTargets": "bench.api_teacher.stage", "api_pseudo_targets": "bench.api_teacher.stage",
         "ApiScoringTeacher": "bench.api_teacher.online"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bench.api_teacher' has no attribute {name!r}")


__all__ = sorted([*_LAZY, "ApiTeacherSpec", "Completion", "MalformedResponse", "Prices", "PromptTemplate",
                  "ResponseCache", "StudentTargets", "align_to_student", "align_tokens", "build_prompts",
                  "pack_targets", "request_key", "student_pieces", "student_tokens", "student_vocab"])
