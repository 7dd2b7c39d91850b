"""The report's "API teacher" section: for a task whose teacher is an LLM behind an API, what it
is, which splits it saw (with no labeled examples, its dev outputs are the dev references), what
it cost, and how much of its log-probability signal reached the students.

Read from the teacher row's `metrics.api_teacher` (`bench.stages`); rows of model teachers
have none, so a run without an API teacher shows no such section.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.tables import DisplayTable

USAGE_COLUMNS = {"requests": "requests", "retries": "retries", "cache_hits": "cache hits",
                 "prompt_tokens": "prompt tokens", "completion_tokens": "completion tokens",
                 "failed": "failed", "cost_usd": "cost (USD)"}
STAGE_NAMES = {"api_teacher": "scoring probe", "pseudo_targets/api": "pseudo-targets", "teacher_dev": "dev outputs",
               "teacher_eval": "test outputs", "total": "total (this run)"}


def api_teachers(rows_by_dir: Mapping[Any, list[dict]]) -> dict[str, dict]:
    """task -> the `metrics.api_teacher` of its (last) teacher row that has one."""
    found: dict[str, dict] = {}
    for rows in rows_by_dir.values():
        for row in rows:
            api = (row.get("metrics") or {}).get("api_teacher") if row.get("role") == "teacher" else None
            if isinstance(api, dict) and row.get("status") == "ok":
                found[row["task"]] = api
    return found


def _share(value) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"


def _usage_table(task: str, usage: Mapping[str, Any]) -> DisplayTable:
    lines = {}
    for label, counts in usage.items():
        if not counts:
            continue
        cells = {}
        for key, name in USAGE_COLUMNS.items():
            value = counts.get(key)
            cells[name] = "n/a" if value is None else f"{value:.4f}" if key == "cost_usd" else f"{int(value):,}"
        lines[STAGE_NAMES.get(label, label)] = cells
    data = pd.DataFrame.from_dict(lines, orient="index")
    data.index.name = "stage"
    return DisplayTable(f"{task}: API usage", data,
                        note="Requests count every attempt (retries included); cache hits are answers read "
                             "from the on-disk response cache, which cost nothing again. Cost is shown when "
                             "the spec gives prices.")


def api_teacher_blocks(task: str, api: Mapping[str, Any]) -> list:
    endpoint = api.get("endpoint") or {}
    served = ", ".join(api.get("served_models") or []) or "not reported"
    scoring = api.get("scoring") or {}
    dev = ("the teacher's outputs for the dev inputs (no labeled examples)"
           if api.get("dev_references") == "teacher" else "the gold dev references")
    blocks: list = [
        f"{task}: the teacher is {api.get('model')!r} behind {endpoint.get('base_url')} "
        f"({endpoint.get('kind')} endpoint; the server named the model {served}). Students were selected on "
        f"dev against {dev}; test scores are always against the real references.",
    ]
    seen = pd.DataFrame({"what the teacher saw": api.get("splits_seen") or {}})
    seen.index.name = "split"
    blocks.append(DisplayTable(f"{task}: splits seen by the API teacher", seen))
    if api.get("usage"):
        blocks.append(_usage_table(task, api["usage"]))
    blocks.append(f"{task}: {_share(api.get('aligned_share'))} of the student's target positions were aligned "
                  f"to the API's tokens and got its top-k distribution (the rest a one-hot on the PT token); "
                  f"{_share(api.get('truncated_share'))} of the pseudo-targets were cut by max_tokens. Scoring of "
                  f"given text (student PTs): "
                  + ("not needed." if not scoring.get("needed_by") else
                     f"{'supported' if scoring.get('supported') else 'not supported'} — {scoring.get('reason')} "
                     f"(needed by {', '.join(scoring['needed_by'])})."))
    return blocks


def api_teacher_sections(rows_by_dir: Mapping[Any, list[dict]]) -> list:
    """One section for every task with an API teacher (none otherwise)."""
    from reports.content import Section  # here: reports.content builds on this module

    teachers = api_teachers(rows_by_dir)
    if not teachers:
        return []
    blocks: list = []
    for task, api in sorted(teachers.items()):
        blocks += api_teacher_blocks(task, api)
    return [Section("API teacher", blocks)]
