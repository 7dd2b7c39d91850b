"""`kdbench tune` for real, as a user runs it: a small grid search on the built-in d2t task
(three learning rates, ASHA) where ASHA stops the weak trials and their resources come back;
best.yaml round-trips into `kdbench run --tuned`, whose retrained trial has the dev value the
search chose it for. And, without Ray: shuffling the test references changes nothing a search
trial computes, so the choice cannot depend on test. (Equal budgets across methods, the
search block's validation, the schedulers' adapters: tests/test_search.py, without Ray.)"""
import dataclasses
import json
import random
import shutil

import pytest
import ray
import torch
import yaml

from bench.cli import main
from bench.results import read_rows
from tests.conftest import tiny_spec_dict

pytestmark = pytest.mark.slow

GOOD, BAD, WORSE = 3e-3, 1e-5, 1e-6  # learning rates: after 2 steps the weak ones trail clearly


def search_spec(artifacts_root, runs_dir, methods=("ft",)) -> dict:
    data = tiny_spec_dict(methods=methods)
    # dev loss: a smooth score, so that early rungs rank the learning rates reliably
    data["student_train"].update(steps=16, dev_every=2, select="dev_loss", checkpoint_every=0)
    data["storage"] = {"runs_dir": str(runs_dir), "artifacts_dir": str(artifacts_root)}
    data["eval"]["profile"] = "off"  # costs are not what this file tests
    data["resources"] = {"max_concurrent_trials": 2}  # the third trial starts once two rates reached a rung
    data["search"] = {"algorithm": "grid", "space": {"student_train.lr": {"choice": [GOOD, WORSE, BAD]}},
                      "scheduler": {"grace_period": 2, "reduction_factor": 2}}
    return data


@pytest.fixture(scope="module")
def tuned(tiny_artifacts, tmp_path_factory):
    """One search with the CLI (the shared stages come from the session's cache)."""
    _, _, root = tiny_artifacts
    base = tmp_path_factory.mktemp("tune")
    spec_path = base / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(search_spec(root, base / "runs")))
    run_dir = base / "runs" / "search"
    assert main(["tune", str(spec_path), "--run-dir", str(run_dir), "--out", str(base / "best.yaml")]) == 0
    summary = json.loads((run_dir / "tuning" / "tuning.json").read_text())
    trials = [t for path in sorted((run_dir / "tuning" / "groups").glob("*.json"))
              for t in json.loads(path.read_text())["trials"]]
    resources = (ray.cluster_resources(), ray.available_resources())
    return {"base": base, "run_dir": run_dir, "summary": summary, "trials": trials, "resources": resources}


def test_asha_stops_weak_trials_and_their_resources_come_back(tuned):
    summary, trials = tuned["summary"], tuned["trials"]
    (group,) = summary["groups"]
    assert group["trials"] == 3 == group["budget"]["samples"] and summary["budgets_equal"]
    stopped = [t for t in trials if t["status"] == "stopped"]
    # trial 3 always meets a rung holding the good and a weak rate: below its cutoff, it stops
    assert stopped, [(t["searched"], t["status"]) for t in trials]
    for t in stopped:
        assert t["stopped_by"] == "asha" and t["stopped_at_step"] < t["total_steps"] == 16
        assert t["steps"] < 16 and t["searched"]["student_train.lr"] != GOOD  # the weak ones
    assert group["stopped"] == len(stopped) and group["completed"] == 3 - len(stopped)
    assert group["best"]["searched"] == {"student_train.lr": GOOD}
    # every CPU is free again after each group and after the search (stopped trials' too)
    assert group["resources"]["released"] and group["resources"]["cpu_free"] == group["resources"]["cpu_total"]
    assert len(group["resources"]["reclaimed_from_stopped_trials"]) <= len(stopped)
    total, free = tuned["resources"]
    assert free.get("CPU", 0) == pytest.approx(total["CPU"])
    from ray.util.placement_group import placement_group_table

    assert all(pg["state"] == "REMOVED" for pg in placement_group_table().values())


def test_search_trials_never_see_test_and_the_report_has_the_search(tuned):
    run_dir = tuned["run_dir"]
    rows = [r for r in read_rows(run_dir / "tuning", profiles=False) if r["status"] == "ok"]
    assert rows  # the completed search trials' rows
    for r in rows:
        assert r["bleu"] is None and "chrf" not in r["metrics"] and not r.get("outputs_file")
        assert r["config"]["evaluate_test"] is False and r["tuning"]["tune_run"] == "search"
    assert not read_rows(run_dir)  # no test rows in the search's own run dir
    md = (run_dir / "report" / "report.md").read_text()
    for title in ("## Hyperparameter search: search", "### Best configuration per group",
                  "### Sensitivity of the dev value", "### Early stopping (ASHA)"):
        assert title in md
    assert (run_dir / "report" / "tuning_best_so_far.png").exists()


def test_best_yaml_round_trips_into_run(tuned, capsys):
    base, (group,) = tuned["base"], tuned["summary"]["groups"]
    best = yaml.safe_load((base / "best.yaml").read_text())["tuned"]
    (config,) = best["configs"]
    assert config["overrides"] == {"student_train": {"lr": GOOD}} and config["trial"] == group["best"]["trial_id"]
    run_dir = base / "runs" / "tuned"
    assert main(["run", "--tuned", str(base / "best.yaml"), "--run-dir", str(run_dir)]) == 0  # the tuned spec
    assert "tuned configurations from" in capsys.readouterr().out
    (row,) = [r for r in read_rows(run_dir) if r["role"] == "student"]
    assert row["status"] == "ok" and row["config"]["train"]["lr"] == GOOD and row["bleu"] is not None
    assert row["tuning"]["tune_run"] == "search" and row["tuning"]["trial"] == config["trial"]
    assert row["tuning"]["searched"] == {"student_train.lr": GOOD}
    # same seed, same configuration: the dev value the search chose it for (deterministic on CPU)
    assert row["metrics"]["selection"]["value"] == pytest.approx(config["dev_value"], rel=1e-6)
    md = (run_dir / "report" / "report.md").read_text()
    assert "### Chosen configurations retrained" in md and "## Hyperparameter search: search" in md


def test_a_search_whose_run_dir_cannot_take_rows_stops_and_says_how_to_resume(tuned, tiny_artifacts, tmp_path,
                                                                              capsys):
    """The run dir breaks under the search (here its rows folder is a file, which root cannot
    write into either): the trials' rows cannot be stored, so the search stops at once with the
    reason and how to resume (exit 3) instead of going on and recording its trials as unfinished."""
    data = search_spec(tiny_artifacts[2], tmp_path / "runs")
    data["search"]["space"] = {"student_train.lr": {"choice": [GOOD]}}  # one trial is enough to break
    data["student_train"].update(steps=4)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "runs" / "broken"
    (run_dir / "tuning").mkdir(parents=True)
    (run_dir / "tuning" / "rows").write_text("not a folder")
    assert main(["tune", str(spec), "--run-dir", str(run_dir)]) == 3
    err = capsys.readouterr().err
    assert "kdbench: stopped: cannot store the row of" in err and f"--run-dir {run_dir}" in err
    assert not (run_dir / "tuning" / "groups").exists()  # no group recorded as finished
    assert not (run_dir / "best.yaml").exists()


def test_shuffled_test_references_leave_the_choice_unchanged(tiny_artifacts, tmp_path):
    """What a search trial computes (`distill` with evaluate_test False) for three learning
    rates, on the task's data and on a copy whose test references are shuffled among inputs:
    identical results, hence the same choice, and no test metric anywhere."""
    from bench.artifacts import META_FILE, checksums
    from bench.data import read_jsonl, write_jsonl
    from bench.spec import parse_spec
    from bench.trial import worker_config
    from bench.worker import distill
    from bench.tune import choose, dev_objective

    _, art, _ = tiny_artifacts
    spec = parse_spec(search_spec(tmp_path / "a", tmp_path / "r", methods=("ft",)))
    art = dataclasses.asdict(art)
    shuffled = tmp_path / "data"
    shutil.copytree(art["paths"]["data"], shuffled)
    test = read_jsonl(shuffled / "test.jsonl")
    refs = [r["references"] for r in test]
    random.Random(0).shuffle(refs)
    assert refs != [r["references"] for r in test]
    write_jsonl(shuffled / "test.jsonl", [{**r, "references": x} for r, x in zip(test, refs)])
    meta = json.loads((shuffled / META_FILE).read_text())  # a consistent artifact, just other test references
    meta["files"] = checksums(shuffled)
    (shuffled / META_FILE).write_text(json.dumps(meta))

    def search(data_dir):
        records = []
        for i, lr in enumerate((GOOD, WORSE, BAD)):
            cfg = worker_config(spec.model_dump(mode="json"), {**art, "paths": {**art["paths"], "data": str(data_dir)}},
                                task="d2t", method="ft", ratio=2.0, seed=0,
                                overrides={"student_train": {"lr": lr, "steps": 6}})
            cfg["evaluate_test"] = False
            out = distill(cfg, 0, 1, torch.device("cpu"))
            assert not {"bleu", "chrf", "hypotheses"} & set(out)  # the test split is never scored
            value = out["selection"]["value"]
            records.append({"index": i, "status": "completed", "lr": lr, "curve": out["train"]["curve"],
                            "objective": dev_objective({"status": "ok", "selection_value": value}, "min")})
        return records

    original, changed = search(art["paths"]["data"]), search(shuffled)
    assert [r["curve"] for r in original] == [r["curve"] for r in changed]
    assert choose(original)["lr"] == choose(changed)["lr"]
