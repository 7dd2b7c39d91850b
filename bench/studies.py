"""The paper's design findings (S1–S8) as shipped studies: one spec per study in
`bench/specs/studies/`, each with a `study:` block that states its claim and the comparisons
that test it. The report's Findings section turns the rows into a verdict per comparison, task
and ratio (holds / does not hold / inconclusive; `reports/findings.py`).

A study spec is sized for a CPU (≤ 30 min on 2 cores, one built-in task, three seeds);
`scale="full"` sizes it for a GPU or a cluster (both built-in tasks, a larger teacher, longer
training, beam-4 evaluation). `tasks` / `tasks_from` run any study on other tasks — built-in,
the paper's Hub tasks, or your own. Adding a study is one YAML file.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SCALES = ("cpu", "full")
EXPECTATIONS = ("better", "worse", "not worse")


def studies_dir() -> Path:
    return Path(str(resources.files("bench") / "specs" / "studies"))


def study_names() -> list[str]:
    return sorted(p.stem for p in studies_dir().glob("S*.yaml"))


def study_data(name: str) -> dict[str, Any]:
    from bench.spec import SpecError

    if name not in study_names():
        raise SpecError(f"unknown study {name!r}; allowed: {', '.join(study_names())}, all")
    return yaml.safe_load((studies_dir() / f"{name}.yaml").read_text())


# `full`: the full preset's tasks, teacher and training budgets (a GPU or a cluster)
_FULL = {
    "teacher": {"model": {"arch": "t5", "d_model": 256, "ffn_dim": 1024, "encoder_layers": 6, "decoder_layers": 6,
                          "heads": 4},
                "train": {"steps": 6000, "batch_size": 64, "lr": 0.001, "warmup_steps": 300, "dev_every": 500}},
    "student_train": {"steps": 3000, "batch_size": 64, "lr": 0.001, "warmup_steps": 200, "dev_every": 250},
    "tokenizer": {"vocab_size": 4000},
    "eval": {"num_beams": 4, "batch_size": 250, "latency_examples": 32},
}


def study_spec_data(name: str, scale: str = "cpu", tasks: list[str] | None = None,
                    tasks_from: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A study's spec as plain data, at a scale, on the study's tasks or on others (`tasks`:
    registered task names; `tasks_from`: task entries, e.g. the `tasks:` block of your spec)."""
    from bench.spec import SpecError

    if scale not in SCALES:
        raise SpecError(f"unknown study scale {scale!r}; allowed: {', '.join(SCALES)}")
    data = study_data(name)
    teacher = data["tasks"][0].get("teacher", {})
    if scale == "full":
        teacher = _FULL["teacher"]
        data["tasks"] = [{"name": "d2t", "teacher": teacher}, {"name": "qg", "teacher": teacher}]
        data["student_train"] = {**data.get("student_train", {}), **_FULL["student_train"]}
        data["tokenizer"] = _FULL["tokenizer"]
        data["eval"] = {**data.get("eval", {}), **_FULL["eval"]}
        data["pseudo_targets"] = {**data.get("pseudo_targets", {}), "num_beams": 4}
        data["name"] = f"{data['name']}-full"
    if tasks:
        data["tasks"] = [{"name": t, "teacher": teacher} for t in tasks]
    if tasks_from:
        data["tasks"] = tasks_from
    return data


def load_study(name: str, scale: str = "cpu", tasks: list[str] | None = None,
               tasks_from: list[dict[str, Any]] | None = None):
    """The study's validated `Spec`."""
    from bench.spec import parse_spec

    return parse_spec(study_spec_data(name, scale, tasks, tasks_from), f"study {name} ({scale})")


def parse_study(spec) -> None:
    """Check a spec's `study:` block against the spec: every comparison names systems the grid
    has — a method, or "method [init]" when the spec has several student inits (as the report
    labels them). ValueError naming the field, the value and what is allowed."""
    data = spec.study
    if not isinstance(data, dict):
        raise ValueError(f"study: expected a mapping, got {data!r:.80}")
    allowed_keys = {"id", "title", "claim", "comparisons", "min_seeds"}
    unknown = sorted(set(data) - allowed_keys)
    if unknown:
        raise ValueError(f"study: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed_keys))}")
    for key in ("id", "claim"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ValueError(f"study.{key}: a non-empty text is required")
    seeds = data.get("min_seeds", 3)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"study.min_seeds = {seeds!r}: a positive integer is required")
    comparisons = data.get("comparisons")
    if not isinstance(comparisons, list) or not comparisons:
        raise ValueError("study.comparisons: a non-empty list is required")
    labels = _labels(spec)
    for i, c in enumerate(comparisons):
        where = f"study.comparisons[{i}]"
        if not isinstance(c, dict):
            raise ValueError(f"{where}: expected a mapping with system, baseline, expect")
        extra = sorted(set(c) - {"id", "system", "baseline", "expect", "axis"})
        if extra:
            raise ValueError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: id, system, baseline, expect, axis")
        for side in ("system", "baseline"):
            if c.get(side) not in labels:
                raise ValueError(f"{where}.{side} = {c.get(side)!r}: not a system of this grid; allowed: "
                                 f"{', '.join(sorted(labels))}")
        if c.get("expect", "better") not in EXPECTATIONS:
            raise ValueError(f"{where}.expect = {c.get('expect')!r}; allowed: {', '.join(EXPECTATIONS)}")


def _labels(spec) -> set[str]:
    """The names the report gives the grid's systems (`reports/frame.py`)."""
    if len(spec.student_inits) > 1:
        return {f"{m} [{i}]" for m in spec.methods for i in spec.student_inits}
    return set(spec.methods)
