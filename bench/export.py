"""Export the best distilled student of each task (with its model card), and push it to the Hub.

"Best" is decided on the **dev** split only: the dev selection value of each row
(`metrics.selection.value`; higher is better unless the metric is a loss), or, when the rows
lack it, the lowest final `metrics.dev_loss`. Choosing by test would make the exported
student's test score an optimistic, selected-on-test number, so test metrics are never read
here except to write them into the card.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.modelcard import card_metrics, seed_summary, write_model_card
from bench.results import STUDENTS_DIR, read_rows, same_system
from bench.storage import Location

EXPORT_FILE = "kdbench_export.json"  # why this student was chosen, next to its weights


@dataclass(frozen=True)
class Criterion:
    """How students were ranked: a dev metric, its direction, and where it came from."""

    metric: str
    higher_is_better: bool
    source: str  # "metrics.selection.value" | "metrics.dev_loss"

    def value(self, row: dict[str, Any]) -> float | None:
        metrics = row.get("metrics") or {}
        if self.source == "metrics.dev_loss":
            value = metrics.get("dev_loss")
        else:
            selection = metrics.get("selection") or {}
            value = selection.get("value") if selection.get("metric") == self.metric else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return float(value)


def _is_loss(metric: str) -> bool:
    from reports.stats import lower_is_better

    bare = metric[4:] if metric.startswith("dev_") else metric
    return "loss" in metric or lower_is_better(metric) or lower_is_better(bare)


def criterion(rows: list[dict[str, Any]], by: str = "dev") -> Criterion:
    """The dev criterion for `rows` (one task's students): their common selection metric when
    every row has one, else the final dev loss."""
    if by not in ("dev", "dev_loss"):
        raise ValueError(f"by={by!r}: students are chosen on dev only ('dev': the dev selection "
                         f"value, falling back to the dev loss; 'dev_loss': the dev loss)")
    selected = {((r.get("metrics") or {}).get("selection") or {}).get("metric") for r in rows}
    if by == "dev" and len(selected) == 1 and None not in selected:
        metric = selected.pop()
        return Criterion(metric, not _is_loss(metric), "metrics.selection.value")
    return Criterion("dev_loss", False, "metrics.dev_loss")


def student_dir(run_dir: Location, row: dict[str, Any]) -> Location | None:
    """Where the row's saved student is: as recorded, else under this run dir's students/
    (a run dir that was moved or copied keeps its students next to its rows)."""
    recorded = (row.get("metrics") or {}).get("student_dir")
    if not recorded:
        return None
    moved = run_dir.join(STUDENTS_DIR, Location.of(recorded).name)
    for candidate in (Location.of(recorded), moved):
        try:
            if candidate.join("config.json").exists():
                return candidate
        except OSError:  # e.g. a recorded store endpoint that is gone: the moved copy may still be there
            continue
    raise FileNotFoundError(f"the saved student of {row['trial_key']} is missing: neither {recorded} "
                            f"nor {moved} holds a model")


def export_best(run_dir: Path | str, to_dir: Path | str, task: str | None = None, by: str = "dev",
                overwrite: bool = False, say: Callable[[str], None] = print) -> list[Location]:
    """Copy the dev-best student of each task (or of `task`) to `to_dir/<task>/` with its model
    card; returns the exported directories. Either side may be a local path or a storage URI
    (`s3://…`): a run on an object store exports like a local one."""
    run_dir, to_dir = Location.of(run_dir), Location.of(to_dir)
    rows = [r for r in read_rows(run_dir) if r.get("status") == "ok"]
    students = [r for r in rows if r.get("role") == "student"]
    if not students:
        raise ValueError(f"{run_dir} has no finished student trials to export")
    tasks = sorted({r["task"] for r in students})
    if task is not None and task not in tasks:
        raise ValueError(f"task {task!r} has no finished students in {run_dir} (tasks: {', '.join(tasks)})")
    if not any((r.get("metrics") or {}).get("student_dir") for r in students):
        raise ValueError(f"{run_dir} saved no students: set `storage.save_students: true` in the spec "
                         f"and run again (finished trials are not retrained, so use a new run dir)")
    exported = []
    for name in [task] if task else tasks:
        candidates = sorted((r for r in students if r["task"] == name), key=lambda r: r["trial_key"])
        rule = criterion(candidates, by)
        scored = [(rule.value(r), r) for r in candidates]
        scored = [(v, r) for v, r in scored if v is not None]
        if not scored:
            raise ValueError(f"task {name!r}: no student row has a dev value to choose by "
                             f"({rule.source}); cannot pick a best student without test data")
        best_value, best = (max if rule.higher_is_better else min)(scored, key=lambda vr: vr[0])
        source = student_dir(run_dir, best)
        if source is None:
            raise ValueError(f"task {name!r}: the dev-best student {best['trial_key']} was not saved "
                             f"(`storage.save_students` was off for it)")
        target = to_dir.join(name)
        _refuse_to_replace(target, overwrite)
        teacher = next((r for r in rows if r.get("role") == "teacher" and r["task"] == name), None)
        seeds = [r for r in candidates if same_system(r, best)]
        summary = seed_summary(seeds, card_metrics(best)) if len(seeds) > 1 else None
        why = {"trial_key": best["trial_key"], "run_dir": str(run_dir), "metric": rule.metric,
               "value": best_value, "higher_is_better": rule.higher_is_better, "source": rule.source,
               "candidates": len(scored), "seeds_in_summary": len(seeds) if summary else 1}
        with _publishing(target) as staged:
            source.download_dir(staged)
            for stale in (staged / "README.md", staged / EXPORT_FILE):  # the student's, not this export's
                stale.unlink(missing_ok=True)
            write_model_card(staged, best, teacher_row=teacher, summary=summary)
            (staged / EXPORT_FILE).write_text(json.dumps(why, indent=2) + "\n", encoding="utf-8")
        direction = "higher" if rule.higher_is_better else "lower"
        say(f"[{name}] best of {len(scored)} students on dev: {best['trial_key']} "
            f"({rule.metric} = {best_value:.4g}, {direction} is better, from {rule.source}) -> {target}")
        exported.append(target)
    return exported


def _refuse_to_replace(target: Location, overwrite: bool) -> None:
    if not overwrite and (target.files() or target.dirs()):
        raise FileExistsError(f"{target} already exists and is not empty (pass overwrite=True / "
                              f"--overwrite to replace it)")


@contextlib.contextmanager
def _publishing(target: Location) -> Iterator[Path]:
    """A staging folder for an export, put at `target` whole when the block ends without error.
    On a local disk it is staged beside the target and renamed into place (one filesystem), so a
    reader never sees a half-copied student; on an object store its marker (EXPORT_FILE) is
    uploaded last, so an export without one is incomplete."""
    near = None
    if target.is_local:
        near = target.local_path.parent
        near.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.kdbench-export-", dir=near) as d:
        staged = Path(d, target.name)
        yield staged
        if target.is_local:
            shutil.rmtree(target.local_path, ignore_errors=True)
            os.replace(staged, target.local_path)
        else:
            target.delete()
            target.upload_dir(staged, marker=EXPORT_FILE)


def push_to_hub(path: Location | Path | str, repo: str, private: bool = False) -> str:
    """Upload an exported student folder (on this machine's disk) to the Hub repo `repo`; returns
    the commit URL.

    Fails at once, in one line, when offline mode is on (HF_HUB_OFFLINE) or the Hub does not
    answer a short probe, instead of hanging on retries."""
    from tasks.sources import offline_reason

    where = Location.of(path)
    if not where.is_local:
        raise ValueError(f"cannot push {where} to the Hub: it is not on this machine's disk; export to a "
                         f"local directory (--to DIR) to push it")
    path = where.local_path
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a saved model (no config.json): export it first")
    reason = offline_reason()
    if reason:
        raise ConnectionError(f"cannot push {path} to the Hub repo {repo!r}: {reason}")
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(path), repo_id=repo,
                               commit_message="kdbench: distilled student with model card")
    return str(getattr(commit, "commit_url", commit))
