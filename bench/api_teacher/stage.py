"""The bodies of an API teacher's shared stages, and the names trials find their outputs under.

    api_pseudo_targets     prompts → K completions per input (→ aligned targets): plain values
    write_pseudo_targets   the PT artifact: `pseudo_targets.json` in the format of a model's PTs
                           (so sequence-level methods read it unchanged), the completions with
                           their tokens and log-probs, and the usage of the requests
    write_aligned_targets  the word-level targets: the completions aligned to the student's
                           tokens, written in the teacher cache's format (`bench.teacher_cache`)
    write_outputs          one greedy output per input (the dev references of the no-label setup,
                           the teacher's own test outputs)

`bench.stages` decides the keys, the order and where each artifact lives; these functions write
into the folder they are given. Requests go through `ApiTeacherClient`, whose on-disk response
cache lives outside every artifact (`response_cache_dir`), so a stage that crashes halfway loses
no answer and a second run makes zero requests.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.api_teacher.align import align_to_student, student_vocab
from bench.api_teacher.responses import Completion
from bench.api_teacher.spec import ApiTeacherSpec, build_prompts
from bench.data import write_pts

API_SLUG = "api"  # the target set of the API's PT set (in teacher caches and example keys)
API_TEACHER_LABEL = "api_teacher"  # the teacher stage of an API teacher: no model, its description
API_PT_LABEL = f"pseudo_targets/{API_SLUG}"
API_CACHE_LABEL = f"teacher_cache/{API_SLUG}-t1"  # = bench.teacher_cache.cache_label(API_SLUG, 1.0)
RESPONSES_DIR = "api_responses"
DESCRIPTION_FILE = "api_teacher.json"
USAGE_FILE = "api_usage.json"
COMPLETIONS_FILE = "completions.json.gz"
PT_MAPPING = ("every teacher-PT source of every method reads the API's PT set: K = pts_per_input completions "
              "per labeled and unlabeled input at the API spec's temperature and top_p (a method's own beam or "
              "sampling settings do not apply; PT number (epoch mod K) is used, as for model PTs)")
USAGE_COUNTS = ("requests", "retries", "cache_hits", "prompt_tokens", "completion_tokens", "truncated", "failed")


# ---------------------------------------------------------------------------- what methods need

def needs_scoring(method) -> bool:
    """Whether `method` needs the API to score text it did not write: a word-level term on rows
    that are not the API's own PTs (student PTs, gold targets)."""
    return method.needs_teacher_model and any(s.origin != "teacher_pt" for s in method.sources)


def reads_aligned_targets(method) -> bool:
    """Whether `method` trains word-level on the API's PTs (their aligned log-probs)."""
    return method.cacheable and any(s.origin == "teacher_pt" for s in method.sources)


def greedy(spec: ApiTeacherSpec) -> ApiTeacherSpec:
    """The teacher as evaluated: one output per input at temperature 0, no log-probs."""
    return spec.model_copy(update={"temperature": 0.0, "top_p": 1.0, "pts_per_input": 1, "logprobs": False,
                                   "top_logprobs": 0})


def response_cache_dir(store_root) -> Path:
    """Where answers are cached: ARTIFACTS_ROOT/api_responses/ for a local artifact root, this
    node's KDBENCH_CACHE_DIR/api_responses/ for an object store (the cache writes small files
    one by one, which object stores do badly)."""
    from bench.artifacts import cache_root
    from bench.storage import Location

    root = Location.of(store_root)
    return root.local_path / RESPONSES_DIR if root.is_local else cache_root() / RESPONSES_DIR



# ---------------------------------------------------------------------------- plain values

def share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


@dataclass
class ApiPseudoTargets:
    prompts: list[str]                 # the prompt each input was sent as
    texts: list[list[str]]             # K pseudo-targets per input
    truncated: list[list[bool]]        # cut by max_tokens (finish_reason "length")
    usage: dict[str, Any]              # ApiTeacherClient.usage() after the stage
    completions: list[list[Completion]]  # the answers themselves (tokens, log-probs)

    @property
    def truncated_share(self) -> float:
        """The share of pseudo-targets cut by max_tokens."""
        return share([t for ts in self.truncated for t in ts])


def api_pseudo_targets(client, task: str, sources: Sequence[str], *,
                       labeled: Sequence[Mapping[str, Any]] | None = None,
                       progress: Callable | None = None) -> ApiPseudoTargets:
    """PTs of `client` (an ApiTeacherClient) for `sources` of `task`; few-shot examples come
    from `labeled`. (Aligning them to a student's tokens is `write_aligned_targets`' job, from
    the stored answers.)"""
    prompts = build_prompts(client.spec.prompt_for(task), sources, labeled)
    completions = client.generate(prompts, progress) if prompts else []
    return ApiPseudoTargets(prompts, [[c.text for c in cs] for cs in completions],
                            [[c.truncated for c in cs] for cs in completions], client.usage(), completions)


# ---------------------------------------------------------------------------- artifact bodies

def stripped(c: Completion) -> Completion:
    """The completion with its text stripped of surrounding white space, as model PTs are
    (`bench.evaluate.decode`); its API tokens stay as they came, so a token that held the
    stripped space is not aligned (`align_tokens` compares places in the text)."""
    from dataclasses import replace

    return replace(c, text=c.text.strip())


def write_pseudo_targets(client, task: str, splits, out_dir: Path, *, say: Callable[[str], None] = print) -> dict:
    """The API's PTs for every labeled and unlabeled input of `splits` (`tasks.TaskSplits`),
    written as `pseudo_targets.json` ({split: [[K texts] per input]}, as model PTs are), the
    completions (`completions.json.gz`) and `api_usage.json`; returns the usage record."""
    from bench.api_teacher.client import progress_printer

    names = ("labeled", "unlabeled")
    sources = [s for split in names for s in splits.sources(split)]
    pts = api_pseudo_targets(client, task, sources, labeled=splits.splits["labeled"],
                             progress=progress_printer(say, f"[{task}] api teacher pseudo-targets"))
    by_split, start = {}, 0
    for split in names:
        n = len(splits.splits[split])
        by_split[split] = slice(start, start + n)
        start += n
    completions = [[stripped(c) for c in cs] for cs in pts.completions]
    write_pts(out_dir, {s: [[c.text for c in cs] for cs in completions[cut]] for s, cut in by_split.items()})
    with gzip.open(out_dir / COMPLETIONS_FILE, "wt", encoding="utf-8") as fh:
        json.dump({s: [[c.to_dict() for c in cs] for cs in completions[cut]] for s, cut in by_split.items()},
                  fh, ensure_ascii=False)
    record = {"usage": pts.usage, "inputs": len(sources), "pts_per_input": client.spec.pts_per_input,
              "temperature": client.spec.temperature, "top_p": client.spec.top_p,
              "truncated_share": pts.truncated_share, "mapping": PT_MAPPING}
    (out_dir / USAGE_FILE).write_text(json.dumps(record, indent=2))
    return record


def write_aligned_targets(pt_dir: Path, tokenizer, out_dir: Path, *, k: int, max_target: int, dtype: str) -> dict:
    """The completions of a PT artifact aligned to the student's tokens, as a teacher cache
    with target set `API_SLUG` (the loop reads it as any cache); returns its index."""
    from bench.teacher_cache import write_teacher_cache

    with gzip.open(pt_dir / COMPLETIONS_FILE, "rt", encoding="utf-8") as fh:
        completions = json.load(fh)
    vocab = student_vocab(tokenizer)
    sets: dict[str, list] = {}
    aligned = positions = 0
    truncated: list[bool] = []
    for split, per_input in completions.items():
        sets[split] = []
        for cands in per_input:
            entries = []
            for c in map(Completion.from_dict, cands):
                t = align_to_student(c, tokenizer, k=k, max_len=max_target, vocab=vocab)
                aligned, positions = aligned + int(t.aligned.sum()), positions + len(t.labels)
                truncated.append(c.truncated)
                with np.errstate(divide="ignore"):
                    entries.append((t.labels, t.topk_ids, t.topk_logprobs, np.log(t.tail_mass)))
            sets[split].append(entries)
    stats = {"aligned_share": aligned / max(1, positions), "truncated_share": share(truncated),
             "source": "api", "unaligned": "one-hot on the pseudo-target token"}
    return write_teacher_cache(out_dir, {API_SLUG: sets}, k=k, dtype=dtype, vocab_size=len(tokenizer),
                               max_target=max_target, stats=stats)


def write_outputs(client, task: str, sources: Sequence[str], labeled: Sequence[Mapping[str, Any]], *,
                  what: str, say: Callable[[str], None] = print) -> tuple[list[str], dict]:
    """One output per source (the client's spec should be `greedy`); returns the texts and the
    usage record (with the share cut by max_tokens)."""
    from bench.api_teacher.client import progress_printer

    out = api_pseudo_targets(client, task, sources, labeled=labeled,
                             progress=progress_printer(say, f"[{task}] api teacher {what}"))
    return [ts[0].strip() for ts in out.texts], {"usage": out.usage, "inputs": len(sources),
                                          "truncated_share": out.truncated_share}


# ---------------------------------------------------------------------------- reading back

def read_description(api_dir: Path | str) -> dict[str, Any]:
    """The teacher stage's record: {spec, task, responses, reference, scoring}."""
    return json.loads((Path(api_dir) / DESCRIPTION_FILE).read_text())


def read_usage(artifact_dir: Path | str) -> dict[str, Any] | None:
    path = Path(artifact_dir) / USAGE_FILE
    return json.loads(path.read_text())["usage"] if path.exists() else None


def total_usage(usages: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Counts summed over several usage records; cost over those that have one (None if none)."""
    found = [u for u in usages if u]
    out: dict[str, Any] = {k: sum(int(u.get(k) or 0) for u in found) for k in USAGE_COUNTS}
    costs = [u["cost_usd"] for u in found if u.get("cost_usd") is not None]
    out["cost_usd"] = sum(costs) if costs else None
    answers = [u.get("all_answers") or {} for u in found]
    out["all_answers"] = {k: sum(int(a.get(k) or 0) for a in answers) for k in ("answers", "prompt_tokens",
                                                                                "completion_tokens")}
    answer_costs = [a["cost_usd"] for a in answers if a.get("cost_usd") is not None]
    out["all_answers"]["cost_usd"] = sum(answer_costs) if answer_costs else None
    return out
