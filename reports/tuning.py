"""The report's section on a hyperparameter search (`kdbench tune`): read from the search's own
records (`RUN_DIR/tuning/`, written by `bench.tune`), never from a test metric.

It answers: what budget did each (task, ratio, method) get, and was it the same for all; which
configuration won per group and by how much; how fast did each search find it (best so far vs.
trials and vs. training time); which hyperparameters mattered (rank correlation of the dev value
with each searched value, over completed trials); how many trials ASHA stopped and at which step.
For a run made from the search's best.yaml (`kdbench run --tuned`), whose rows carry `tuning`, it
also shows whether the retrained configuration reproduced the dev value the search chose it for.

A section appears for every run dir that holds a search, and for every search that rows of the
report's runs name in their `tuning.tune_dir`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.search import GROUPS_DIR, SUMMARY_FILE, TUNING_DIR, budgets_equal
from bench.storage import Location

TRIALS_CSV = "tuning_trials.csv"
PROGRESS_FILE = "tuning_best_so_far.png"
SENSITIVITY_FILE = "tuning_sensitivity.png"


@dataclass
class Search:
    """One search as stored: its summary and every trial record."""

    run_dir: Location
    summary: dict[str, Any]
    outcomes: list[dict[str, Any]]
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.summary.get("tune_run") or self.run_dir.name)

    @property
    def lower_is_better(self) -> bool:
        return any(o.get("mode") == "min" for o in self.outcomes)

    @property
    def metric(self) -> str:
        """E.g. "dev bleu" (what `bench.tune` recorded), "dev loss"."""
        if self.lower_is_better:
            return "dev loss"
        named = {o.get("metric") for o in self.outcomes if str(o.get("metric", "")).startswith("dev ")}
        return named.pop() if len(named) == 1 else "dev metric"


def find_searches(run_dirs: list[Path], rows_by_dir: dict[Any, list[dict[str, Any]]]) -> list[Search]:
    """The searches of these run dirs, and those their rows' `tuning` points to."""
    candidates = [str(d) for d in run_dirs]
    for rows in rows_by_dir.values():
        for row in rows:
            tuning = row_tuning(row)
            if tuning and tuning.get("tune_dir"):
                candidates.append(str(tuning["tune_dir"]))
    out, seen = [], set()
    for d in candidates:
        try:
            loc = Location.of(d)
        except OSError:
            continue
        if loc.uri in seen:
            continue
        seen.add(loc.uri)
        search = load_search(loc)
        if search is not None:
            out.append(search)
    return out


def load_search(run_dir: str | Path | Location) -> Search | None:
    """The search stored under `run_dir/tuning` (its finished groups even when the whole search
    did not finish), or None."""
    run_dir = Location.of(run_dir)
    base = run_dir.join(TUNING_DIR)
    try:
        files = base.join(GROUPS_DIR).files(".json")
    except OSError:
        return None
    summary = base.join(SUMMARY_FILE).read_json_object()
    outcomes, trials = [], []
    for path in files:
        data = path.read_json_object()
        if data.get("outcome"):
            outcomes.append(data["outcome"])
            trials += data.get("trials") or []
    if not outcomes:
        return None
    order = [o.get("group_key") for o in summary.get("groups", [])]
    outcomes.sort(key=lambda o: order.index(o["group_key"]) if o.get("group_key") in order else len(order))
    return Search(run_dir, summary, outcomes, trials)


def row_tuning(row: dict[str, Any]) -> dict[str, Any] | None:
    """Which tuning produced a row's config (top level, or under metrics in older rows)."""
    t = row.get("tuning") or (row.get("metrics") or {}).get("tuning")
    return t if isinstance(t, dict) else None


# ---------------------------------------------------------------------------- tables


def _group_label(g: dict[str, Any]) -> str:
    init = "" if g.get("student_init", "random") == "random" else f" [{g['student_init']}]"
    return f"{g['task']} ×{float(g['ratio']):g} {g['method']}{init}"


def budget_table(search: Search) -> pd.DataFrame:
    rows = []
    for o in search.outcomes:
        b = o["budget"]
        allotted = " + ".join(p for p in (f"{b['samples']} trials" if b.get("samples") else "",
                                          f"{b['time_budget_s']:g} s" if b.get("time_budget_s") else "") if p)
        res = o.get("resources") or {}
        full = sum(t.get("total_steps") or 0 for t in search.trials if t.get("group_key") == o["group_key"])
        rows.append({
            "group": _group_label(o["group"]), "budget": allotted, "at once": b.get("concurrency"),
            "trials": o["trials"], "completed": o["completed"], "stopped by ASHA": o["stopped"],
            "failed": o["errors"], "cut by time": o["unfinished"],
            "steps trained": f"{o['steps_trained']:,}" + (f" ({100 * o['steps_trained'] / full:.0f}%)" if full else ""),
            "training time (s)": f"{o['train_seconds']:.0f}",
            "CPUs free after": f"{res.get('cpu_free', 0):g}/{res.get('cpu_total', 0):g}",
        })
    return pd.DataFrame(rows)


def best_table(search: Search) -> pd.DataFrame:
    rows = []
    for o in search.outcomes:
        best = o.get("best")
        row = {"group": _group_label(o["group"])}
        if best is None:
            row[search.metric] = "no completed trial"
        else:
            row[search.metric] = f"{best['dev_value']:.4g}"
            row["selected step"] = best.get("selected_step")
            for path, value in (best.get("searched") or {}).items():
                row[path] = _fmt(value)
            row["trial"] = best.get("trial_id")
        rows.append(row)
    return pd.DataFrame(rows).fillna("—")


def reproduction_table(search: Search, rows_by_dir: dict[Any, list[dict[str, Any]]]) -> pd.DataFrame:
    """Rows retrained from this search's choices: the search's dev value vs. the run's."""
    out = []
    for run_dir, rows in rows_by_dir.items():
        for row in rows:
            t = row_tuning(row)
            if not t or t.get("tune_run") != search.run_id or row.get("status") != "ok":
                continue
            metrics = row.get("metrics") or {}
            run_dev = (metrics.get("selection") or {}).get("value")
            searched_dev = t.get("dev_value")
            headline = metrics.get("headline", "bleu")
            same_seed = row.get("seed") == t.get("search_seed")
            diff = run_dev - searched_dev if isinstance(run_dev, (int, float)) and \
                isinstance(searched_dev, (int, float)) else None
            out.append({
                "group": _group_label(row), "seed": row.get("seed"),
                f"{search.metric} (search)": _fmt(searched_dev), f"{search.metric} (run)": _fmt(run_dev),
                "difference": "—" if diff is None else f"{diff:+.3g}" + ("" if same_seed else " (other seed)"),
                f"test {headline}": _fmt(metrics.get(headline)), "run": Location.of(run_dir).name,
            })
    return pd.DataFrame(out)


def sensitivity_table(search: Search) -> pd.DataFrame:
    """Per group × searched parameter: Spearman's ρ between the value (numbers) and the final
    dev value of completed trials, or η² (share of the dev value's variance explained) for
    categories; sign: + means a larger value gave a better dev value."""
    rows = []
    for o in search.outcomes:
        trials = [t for t in search.trials if t.get("group_key") == o["group_key"]]
        done = [t for t in trials if t["status"] == "completed" and t.get("objective") is not None]
        sign = -1.0 if o.get("mode") == "min" else 1.0
        rung = min(o.get("rungs") or [0]) or None
        early = [(t, sign * v) for t in trials if (v := _value_at(t, rung)) is not None] if rung else []
        for path in o.get("params", {}):
            entry = {"group": _group_label(o["group"]), "parameter": path, "searched": o["params"][path],
                     "completed": len(done),
                     "effect (completed)": _effect([t["searched"].get(path) for t in done],
                                                   [t["objective"] for t in done])}
            if rung:
                entry[f"effect at step {rung:g} (all)"] = _effect([t["searched"].get(path) for t, _ in early],
                                                                  [v for _, v in early])
            best = max(done, key=lambda t: t["objective"]) if done else None
            entry["best value"] = _fmt(best["searched"].get(path)) if best else "—"
            rows.append(entry)
    return pd.DataFrame(rows)


def _effect(values: list, scores: list[float]) -> str:
    """Spearman's ρ (numbers) or η² (categories) of dev scores (higher is better) on values."""
    from scipy.stats import spearmanr

    if len(values) < 3 or len(set(map(repr, values))) < 2:
        return "n/a (fewer than 3 trials, or 1 value)"
    if len(set(scores)) < 2:
        return "n/a (constant dev value)"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        rho = spearmanr(values, scores).statistic
        return "n/a (constant dev value)" if not math.isfinite(rho) else f"ρ = {rho:+.2f} (n={len(values)})"
    return f"η² = {_eta_squared(values, scores):.2f} (n={len(values)})"


def _value_at(trial: dict[str, Any], step: float) -> float | None:
    """A trial's best dev value at the first evaluation at or after `step` (every trial that
    was not cut before it has one, stopped ones included)."""
    for point in trial.get("curve") or []:
        if (point.get("step") or 0) >= step and point.get("best_dev") is not None:
            return float(point["best_dev"])
    return None


def stopping_table(search: Search) -> pd.DataFrame:
    rows = []
    for o in search.outcomes:
        stopped = [t for t in search.trials if t.get("group_key") == o["group_key"] and t["status"] == "stopped"]
        at = pd.Series([t["stopped_at_step"] for t in stopped]).value_counts().sort_index()
        total = [t.get("total_steps") or 0 for t in stopped]
        saved = sum(total) - sum(t["steps"] for t in stopped)
        rows.append({
            "group": _group_label(o["group"]), "rungs (steps)": ", ".join(f"{r:g}" for r in o.get("rungs", [])) or "—",
            "stopped": f"{len(stopped)} of {o['trials']}",
            "stopped at step (count)": ", ".join(f"{int(s)} (×{n})" for s, n in at.items()) or "—",
            "steps saved": f"{saved:,}" if stopped else "0",
        })
    return pd.DataFrame(rows)


def trials_frame(search: Search) -> pd.DataFrame:
    """Every trial record, flat (also written as tuning_trials.csv)."""
    rows = []
    for t in search.trials:
        rows.append({"tune_run": search.run_id, **t["group"], "trial_id": t["trial_id"], "index": t["index"],
                     "status": t["status"], "stopped_at_step": t.get("stopped_at_step"), "steps": t.get("steps"),
                     "total_steps": t.get("total_steps"), "dev_value": t.get("dev_value"),
                     "objective": t.get("objective"), "selected_step": t.get("selected_step"),
                     "train_seconds": t.get("train_seconds"), "compute_flops": t.get("compute_flops"),
                     "ended_s": t.get("ended_s"), "error": t.get("error"),
                     **{f"searched.{k}": v for k, v in (t.get("searched") or {}).items()}})
    return pd.DataFrame(rows)


def best_so_far(search: Search) -> pd.DataFrame:
    """Per group, in the order trials ended: number of trials, cumulative training seconds, and
    the best dev value among completed trials so far (in the metric's units)."""
    out = []
    for o in search.outcomes:
        trials = sorted((t for t in search.trials if t.get("group_key") == o["group_key"]),
                        key=lambda t: (t.get("ended_s") or 0, t["index"]))
        best, seconds = None, 0.0
        for n, t in enumerate(trials, 1):
            seconds += t.get("train_seconds") or 0.0
            if t["status"] == "completed" and t.get("objective") is not None:
                if best is None or t["objective"] > best[0]:
                    best = (t["objective"], t["dev_value"])
            out.append({"group": _group_label(o["group"]), "trials": n, "train_seconds": seconds,
                        "best": best[1] if best else None})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------- figures


def progress_plot(search: Search, path: Path) -> Path | None:
    from reports.plots import figure_grid, palette, save

    data = best_so_far(search)
    if data.empty or data["best"].isna().all():
        return None
    colors = palette(data["group"])
    fig, (by_trials, by_time) = figure_grid(2, width=5.0, height=3.6)
    for group, part in data.groupby("group", sort=False):
        part = part[part["best"].notna()]
        by_trials.step(part["trials"], part["best"], where="post", marker="o", color=colors[group], label=group)
        by_time.step(part["train_seconds"], part["best"], where="post", marker="o", color=colors[group])
    for ax, xlabel in ((by_trials, "trials finished"), (by_time, "cumulative training time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"best {search.metric} so far ({'lower' if search.lower_is_better else 'higher'} is better)")
        ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize="small")
    return save(fig, path)


def sensitivity_plot(search: Search, path: Path) -> Path | None:
    from reports.plots import figure_grid, palette, save

    params = list(dict.fromkeys(p for o in search.outcomes for p in o.get("params", {})))
    points = [t for t in search.trials if t.get("dev_value") is not None and t["status"] in ("completed", "stopped")]
    if not params or not points:
        return None
    colors = palette([_group_label(o["group"]) for o in search.outcomes])
    fig, axes = figure_grid(len(params), width=4.2, height=3.4)
    for ax, param in zip(axes, params):
        for t in points:
            if param not in t["searched"]:
                continue
            color = colors[_group_label(t["group"])]
            filled = t["status"] == "completed"
            ax.scatter([_axis_value(t["searched"][param])], [t["dev_value"]], s=30, edgecolors=[color],
                       facecolors=[color] if filled else "none", linewidths=1.2)
        dist = next((o["params"][param] for o in search.outcomes if param in o.get("params", {})), "")
        xs = [t["searched"][param] for t in points if isinstance(t["searched"].get(param), (int, float))]
        if dist.startswith(("loguniform", "logint")) or (xs and min(xs) > 0 and max(xs) / min(xs) >= 100):
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_ylabel(search.metric)
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=g) for g, c in colors.items()]
    handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="0.4",
                          label="stopped by ASHA (best so far)"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return save(fig, path)


# ---------------------------------------------------------------------------- the section


def tuning_sections(run_dirs: list[Path], rows_by_dir: dict[Any, list[dict[str, Any]]], out_dir: Path) -> list:
    """One report section per search (see the module docstring); [] when there is none."""
    from reports.content import FigureItem, Section
    from reports.tables import DisplayTable

    searches = find_searches(run_dirs, rows_by_dir)
    sections = []
    frames = []
    for i, search in enumerate(searches):
        suffix = "" if i == 0 else f"_{i}"
        s = search.summary.get("search") or {}
        sched = s.get("scheduler") or {}
        equal = search.summary.get("budgets_equal")
        if equal is None:
            equal = budgets_equal(search.outcomes)
        early = (f"ASHA at training steps (grace period {sched.get('grace_period') or 'the first dev evaluation'}, "
                 f"reduction factor {sched.get('reduction_factor')})" if sched.get("kind", "asha") == "asha"
                 else "no early stopping")
        blocks: list = [
            f"Search {search.run_id}: {s.get('algorithm', '?')} search, {early}; each (task, ratio, method) group "
            f"searched separately with its own searcher and scheduler. Selection is by the {search.metric} on dev "
            f"({'lower' if search.lower_is_better else 'higher'} is better): search trials never evaluate the test "
            f"set, and a stopped trial is never chosen. Budgets {'were' if equal else 'were NOT'} the same for "
            f"every group."]
        blocks.append(DisplayTable("Budget and outcome per group", budget_table(search), index=False,
                                   note="steps trained: over all trials, as a share of training every trial to "
                                        "the end; CPUs free after: checked once the group's trials had ended "
                                        "(stopped trials must give theirs back)."))
        blocks.append(DisplayTable(f"Best configuration per group (by {search.metric} on dev)", best_table(search),
                                   index=False))
        repro = reproduction_table(search, rows_by_dir)
        if not repro.empty:
            blocks.append(DisplayTable("Chosen configurations retrained (`kdbench run --tuned`)", repro, index=False,
                                       note="With the search's seed the run retrains the chosen trial: its dev "
                                            "value should match; other seeds show the seed-to-seed spread."))
        path = progress_plot(search, out_dir / PROGRESS_FILE.replace(".png", f"{suffix}.png"))
        if path:
            blocks.append(FigureItem(path, "Best configuration so far",
                                     "Best dev value among completed trials as trials end, against the number of "
                                     "trials (left) and the training time they spent, stopped trials included "
                                     "(right); one line per group."))
        blocks.append(DisplayTable("Sensitivity of the dev value to each searched hyperparameter",
                                   sensitivity_table(search), index=False,
                                   note="Spearman ρ: rank correlation of the value with the dev score (+ = a "
                                        "larger value scored better on dev, whatever the metric's direction); "
                                        "η²: share of the dev score's variance explained by a categorical "
                                        "choice. 'completed': final dev values of trials that trained to the "
                                        "end; 'at step N (all)': every trial's best dev value at ASHA's first "
                                        "rung, stopped trials included. A handful of trials gives a rough "
                                        "picture only."))
        path = sensitivity_plot(search, out_dir / SENSITIVITY_FILE.replace(".png", f"{suffix}.png"))
        if path:
            blocks.append(FigureItem(path, "Dev value vs. each searched hyperparameter",
                                     "Filled: completed trials (final dev value); hollow: trials ASHA stopped "
                                     "(their best dev value when stopped)."))
        blocks.append(DisplayTable("Early stopping (ASHA)", stopping_table(search), index=False,
                                   note="steps saved: training steps that stopped trials did not run."))
        sections.append(Section(f"Hyperparameter search: {search.run_id}", blocks))
        frames.append(trials_frame(search))
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(out_dir / TRIALS_CSV, index=False)
    return sections


# ---------------------------------------------------------------------------- helpers


def _eta_squared(categories: list, scores: list[float]) -> float:
    frame = pd.DataFrame({"c": list(map(repr, categories)), "y": scores})
    total = ((frame["y"] - frame["y"].mean()) ** 2).sum()
    if total == 0:
        return 0.0
    means = frame.groupby("c")["y"].transform("mean")
    return float(((means - frame["y"].mean()) ** 2).sum() / total)


def _axis_value(v: Any) -> Any:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)

