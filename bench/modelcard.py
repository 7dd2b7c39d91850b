"""Model cards for distilled students: `README.md` in Hugging Face's model-card format.

A saved student is only useful to someone else with its provenance: which teacher, which KD
method, how much smaller, how good on which test set (and how much another seed could move
that), how it was trained and how to load it. Everything comes from the student's result row
(and the teacher's), so a card can be rewritten any time from stored results.

The YAML front matter follows the Hub's model-card metadata (`library_name`, `tags`,
`pipeline_tag`, `model-index` with task / dataset / metrics), so `huggingface_hub.ModelCard`
reads the numbers back as `eval_results`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

import bench

# Test-set quality metrics a row may hold, in the order the card lists them.
CARD_METRICS = ["bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "bertscore_f1"]
METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF", "ter": "TER", "rouge1": "ROUGE-1",
                "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "bertscore_f1": "BERTScore F1"}
SIGNATURES = {"bleu": "bleu_signature", "chrf": "chrf_signature", "ter": "ter_signature",
              "rouge1": "rouge_signature", "rouge2": "rouge_signature",
              "rougeL": "rouge_signature", "bertscore_f1": "bertscore_signature"}


def metric_value(row: Mapping[str, Any], key: str) -> float | None:
    """A metric from the row's top level, else from its `metrics` dict (as reports read it)."""
    value = row.get(key)
    if value is None:
        value = (row.get("metrics") or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def card_metrics(row: Mapping[str, Any]) -> list[str]:
    """The row's test metrics, headline first."""
    headline = (row.get("metrics") or {}).get("headline")
    keys = [k for k in CARD_METRICS if metric_value(row, k) is not None]
    return sorted(keys, key=lambda k: k != headline)


def seed_summary(rows: Iterable[Mapping[str, Any]], metrics: Iterable[str]) -> dict[str, Any]:
    """metric -> `reports.stats.Interval` (mean ± 95% t-interval) over the rows' seeds."""
    from reports.stats import t_interval

    rows = list(rows)
    return {m: t_interval(metric_value(r, m) for r in rows) for m in metrics}


def write_model_card(student_dir: Path | str, row: Mapping[str, Any],
                     teacher_row: Mapping[str, Any] | None = None,
                     summary: Mapping[str, Any] | None = None) -> Path:
    """Write `student_dir/README.md` for the student of `row`; returns its path.

    `summary` maps a metric to its mean ± CI over seeds (a `reports.stats.Interval`, or a dict
    with `mean`, `ci` (half-width) and `n`, as in the report's summary.csv).
    """
    student_dir = Path(student_dir)
    config_file = student_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{student_dir} is not a saved model (no config.json); a model card "
                                f"describes a student saved with save_pretrained")
    seq2seq = bool(json.loads(config_file.read_text(encoding="utf-8")).get("is_encoder_decoder"))
    path = student_dir / "README.md"
    front = yaml.safe_dump(_front_matter(row, seq2seq), sort_keys=False, allow_unicode=True)
    path.write_text(f"---\n{front}---\n\n{_body(row, teacher_row, summary, seq2seq)}", encoding="utf-8")
    return path


def model_name(row: Mapping[str, Any]) -> str:
    init = row.get("student_init") or "random"
    name = f"kdbench-{row['task']}-{row['method']}-r{float(row['ratio']):g}-s{row.get('seed', 0)}"
    return name if init == "random" else f"{name}-{init.replace(':', '-').replace('/', '-')}"


def _front_matter(row: Mapping[str, Any], seq2seq: bool) -> dict[str, Any]:
    pipeline = "text2text-generation" if seq2seq else "text-generation"
    metrics = (row.get("metrics") or {})
    results = []
    for key in card_metrics(row):
        entry = {"type": key, "value": metric_value(row, key), "name": f"{METRIC_NAMES[key]} (test)"}
        if metrics.get(SIGNATURES[key]):
            entry["args"] = {"signature": str(metrics[SIGNATURES[key]])}
        results.append(entry)
    return {
        "library_name": "transformers",
        "pipeline_tag": pipeline,
        "tags": ["kdbench", "knowledge-distillation", row["task"], row["method"]],
        "model-index": [{
            "name": model_name(row),
            "results": [{
                "task": {"type": pipeline, "name": pipeline.replace("-", " ").title()},
                "dataset": {"name": f"{row['task']} (kdbench)", "type": f"kdbench/{row['task']}",
                            "split": "test"},
                "metrics": results,
            }],
        }],
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(value: Any) -> tuple[float, float, int]:
    if isinstance(value, Mapping):
        half = value.get("ci", value.get("half_width"))
        return float(value["mean"]), float("nan") if half is None else float(half), int(value["n"])
    return float(value.mean), float(value.half_width), int(value.n)


def _method_description(row: Mapping[str, Any]) -> str:
    method = row["method"]
    for declared in (row.get("config") or {}).get("custom_methods") or []:
        if declared.get("name") == method:
            return declared.get("description") or "declared in the spec (custom_methods); no description given"
    try:
        from bench.distill.methods import METHODS
    except ImportError as exc:  # the card is still correct without it; say why it is missing
        return f"(description unavailable: {exc})"
    return METHODS[method].description if method in METHODS else "no description recorded"


def _body(row, teacher_row, summary, seq2seq: bool) -> str:
    metrics = row.get("metrics") or {}
    config = row.get("config") or {}
    train = config.get("train") or {}
    headline = metrics.get("headline") or (card_metrics(row) or ["bleu"])[0]
    teacher_params = (teacher_row or {}).get("params") or metrics.get("teacher_params")
    realized = metric_value(row, "realized_ratio")
    version = (row.get("versions") or {}).get("kdbench", "unknown")
    lines = [
        f"# {model_name(row)}",
        "",
        f"A student distilled with **{row['method']}** for the kdbench task **{row['task']}**, "
        f"{_fmt(realized)}× smaller than its teacher (requested {_fmt(float(row['ratio']))}×).",
        "",
        "## Task",
        "",
        f"kdbench task `{row['task']}`; headline metric `{headline}`, scored on its test split.",
        "",
        "## Teacher",
        "",
        f"- parameters: {_fmt(teacher_params)}",
    ]
    if teacher_row is not None:
        lines.append(f"- test {METRIC_NAMES.get(headline, headline)}: {_fmt(metric_value(teacher_row, headline))}")
    else:
        lines.append("- test metrics: not given (no teacher row)")
    lines += [
        "",
        "## Method",
        "",
        f"`{row['method']}`: {_method_description(row)}",
        "",
        "## Compression",
        "",
        "| | value |", "|---|---|",
        f"| requested ratio (teacher / student params) | {_fmt(float(row['ratio']))} |",
        f"| realized ratio | {_fmt(realized)} |",
        f"| student parameters | {_fmt(row.get('params') or metrics.get('params_total'))} |",
        f"| student init | {row.get('student_init') or config.get('student_init') or 'random'} |",
        f"| latency (ms per example, batch 1, greedy) | {_fmt(metric_value(row, 'latency_ms'))} |",
        "",
        "## Metrics (test split)",
        "",
    ]
    if summary:
        lines += ["| metric | this seed | mean ± 95% CI over seeds | seeds |", "|---|---|---|---|"]
    else:
        lines += ["| metric | value |", "|---|---|"]
    for key in card_metrics(row):
        cell = f"| {METRIC_NAMES[key]} | {_fmt(metric_value(row, key))} |"
        if summary:
            if key in summary:
                mean, half, n = _interval(summary[key])
                cell += f" {_fmt(mean)} ± {_fmt(half)} | {n} |"
            else:
                cell += " n/a | n/a |"
        lines.append(cell)
    if summary:
        lines += ["", "The interval is Student's t over seeds (± n/a with one seed)."]
    selection = metrics.get("selection")
    if isinstance(selection, Mapping):
        lines += ["", f"Checkpoint chosen on dev: `{selection.get('metric')}` = {_fmt(selection.get('value'))} "
                      f"at step {selection.get('selected_step')} ({selection.get('steps_evaluated')} steps evaluated)."]
    lines += [
        "",
        "## Training",
        "",
        f"- steps: {_fmt(train.get('steps'))}, learning rate: {train.get('lr', 'n/a')}, "
        f"batch size: {_fmt(train.get('batch_size'))}, warm-up steps: {_fmt(train.get('warmup_steps'))}",
        f"- seed: {row.get('seed')}",
        f"- trained with kdbench {version} (card written by kdbench {bench.__version__}); "
        f"trial `{row.get('trial_key')}` of run `{row.get('run_id')}`",
        "",
        "## How to use",
        "",
        *_usage(row, seq2seq),
    ]
    return "\n".join(lines) + "\n"


def _usage(row: Mapping[str, Any], seq2seq: bool) -> list[str]:
    metrics = row.get("metrics") or {}
    config = row.get("config") or {}
    samples = metrics.get("samples") or [{}]
    source = samples[0].get("source", "an input of the task")
    max_new = (config.get("lengths") or {}).get("max_target", 64)
    beams = (config.get("eval") or {}).get("num_beams", 1)
    auto = "AutoModelForSeq2SeqLM" if seq2seq else "AutoModelForCausalLM"
    text = repr(source) if seq2seq else f"{source!r} + tokenizer.eos_token"
    lines = ["```python", f"from transformers import AutoTokenizer, {auto}", "",
             'path = "PATH_OR_REPO_ID"  # this folder, or its Hub repository',
             "tokenizer = AutoTokenizer.from_pretrained(path)",
             f"model = {auto}.from_pretrained(path)",
             f"inputs = tokenizer([{text}], return_tensors=\"pt\")",
             f"outputs = model.generate(**inputs, max_new_tokens={max_new}, num_beams={beams})"]
    if seq2seq:
        lines.append("print(tokenizer.batch_decode(outputs, skip_special_tokens=True))")
    else:  # a decoder-only student reads `prompt + eos` and continues with the target
        lines.append("print(tokenizer.batch_decode(outputs[:, inputs['input_ids'].shape[1]:], "
                     "skip_special_tokens=True))")
    lines.append("```")
    if samples[0].get("output") is not None:
        lines += ["", f"On this input the student wrote: {samples[0]['output']!r}"]
    return lines


def write_run_cards(run_dir, rows: list[Mapping[str, Any]]) -> int:
    """A model card for every saved student of a run (`metrics.student_dir`), with the mean ±
    CI over the seeds of its system; cards of students on an object store are uploaded beside
    them. Returns how many were written."""
    import tempfile

    from bench.results import same_system
    from bench.storage import Location

    ok = [r for r in rows if r.get("status") == "ok"]
    teachers = {r["task"]: r for r in ok if r.get("role") == "teacher"}
    written = 0
    for row in ok:
        where = (row.get("metrics") or {}).get("student_dir")
        if row.get("role") != "student" or not where:
            continue
        seeds = [r for r in ok if r.get("role") == "student" and same_system(r, row)]
        summary = seed_summary(seeds, card_metrics(row)) if len(seeds) > 1 else None
        target = Location.of(where)
        if target.is_local:
            write_model_card(target.local_path, row, teachers.get(row["task"]), summary)
        else:
            with tempfile.TemporaryDirectory(prefix="kdbench-card-") as d:
                Path(d, "config.json").write_bytes(target.join("config.json").read_bytes())
                card = write_model_card(d, row, teachers.get(row["task"]), summary)
                target.join("README.md").write_bytes(card.read_bytes())
        written += 1
    return written
