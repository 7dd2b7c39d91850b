"""The search block of a spec (bench/search.py) and the parts of `kdbench tune` that need no
cluster (bench/tune.py): validation with errors that name the field, the value and what is
allowed; equal budgets for every method and (task, ratio); the schedulers' and searchers'
adapters on Tune's reports; best.yaml → `run --tuned` cells; the report section."""
import json

import pytest

from bench.search import Param, draw_random, grid_points, groups, overrides_from, parse_search
from bench.spec import SpecError, parse_spec
from tests.conftest import tiny_spec_dict

LR = {"student_train.lr": {"loguniform": ["1e-4", 1e-2]}}  # YAML reads 1e-4 as a string: accepted


def spec_with(search, methods=("ft", "seq_kd", "joint_teaching"), ratios=(2.0,), **train):
    data = tiny_spec_dict(methods=methods, ratios=ratios)
    data["student_train"].update({"steps": 40, "dev_every": 10, **train})
    data["search"] = search
    return parse_spec(data)


def error_of(search, **kw) -> str:
    with pytest.raises(SpecError) as err:
        spec_with(search, **kw)
    return str(err.value)


def test_a_valid_block_parses_to_spaces_per_method():
    spec = spec_with({"samples": 4, "space": LR, "methods": {"joint_teaching": {
        "method.losses.0.temperature": {"uniform": [1, 4]}, "method.sources.1.start": {"uniform": [0.2, 0.6]}}}})
    search = parse_search(spec)
    assert [p.path for p in search.space("ft")] == ["student_train.lr"]
    assert [p.path for p in search.space("joint_teaching")] == [
        "student_train.lr", "method.losses.0.temperature", "method.sources.1.start"]
    assert search.space("ft")[0].dist.low == 1e-4 and search.mode == "max" and search.max_steps == 40
    assert overrides_from({"student_train.lr": 0.001, "method.losses.0.temperature": 2.0}) == {
        "student_train": {"lr": 0.001}, "method": {"losses.0.temperature": 2.0}}


@pytest.mark.parametrize("search, expected", [
    ({"samples": 2, "space": {"student_train.lrr": {"uniform": [0.1, 0.2]}}},
     "search.space.student_train.lrr = {'uniform': [0.1, 0.2]}: student_train has no field 'lrr'; allowed: steps, "
     "batch_size, lr"),
    ({"samples": 2, "space": {"student_train.lr": {"loguniform": [0, 0.1]}}},
     "search.space.student_train.lr = [0, 0.1]: loguniform needs low > 0"),
    ({"samples": 2, "space": {"student_train.lr": {"uniform": [0.2, 0.1]}}}, "uniform needs low < high"),
    ({"samples": 2, "space": {"student_train.warmup_steps": {"int": [-5, 3]}}},
     "student_train.warmup_steps = -5 is not allowed: Input should be greater than or equal to 0"),
    ({"samples": 2, "space": {"student_train.batch_size": {"uniform": [4, 8]}}},
     "student_train.batch_size is an integer: int, logint or choice of integers; got uniform[4, 8]"),
    ({"samples": 2, "space": {"student_train.select": {"choice": ["dev_loss"]}}},
     "student_train.select is fixed for a search: it decides what the search optimises"),
    ({"samples": 2, "space": {"method.sources.1.start": {"uniform": [0.1, 0.5]}}},
     "search.space.method.sources.1.start = {'uniform': [0.1, 0.5]}: method 'ft' has no field 'sources.1.start': "
     "'1' is not an index of a list of 1 (search it under search.methods.ft, or not at all)"),
    ({"samples": 2, "methods": {"joint_teaching": {"method.losses.0.weight": {"uniform": [-1, 1]}}}},
     "method 'joint_teaching' does not accept losses.0.weight = -1.0: loss weight must be a finite number > 0"),
    ({"samples": 2, "methods": {"seq_kd": {"method.sources.0.pts.k": {"uniform": [1, 4]}}}},
     "method 'seq_kd': 'sources.0.pts.k' is int (1); allowed: int, logint or choice of integers"),
    ({"samples": 2, "methods": {"word_kd": {"method.losses.0.temperature": {"uniform": [1, 2]}}}},
     "search.methods.word_kd = {'method.losses.0.temperature': {'uniform': [1, 2]}}: 'word_kd' is not a method of "
     "this spec; allowed: ft, seq_kd, joint_teaching"),
    ({"samples": 2, "space": LR, "sampler": "tpe"}, "search.sampler = 'tpe': unknown key; allowed: algorithm"),
    ({"samples": 2, "space": LR, "algorithm": "bayes"},
     "search.algorithm = 'bayes': unknown algorithm; allowed: random, grid, optuna"),
    ({"space": LR}, "give a budget per group: search.samples and/or search.time_budget_s"),
    ({"samples": 2, "space": {"student_train.lr": 0.1}}, "expected one distribution, one of {uniform: [low, high]}"),
    ({"algorithm": "grid", "space": LR}, "grid search needs discrete values (choice, int, logint); "
                                         "student_train.lr is loguniform[0.0001, 0.01]"),
    ({"samples": 2, "space": LR, "scheduler": {"grace_period": 40}},
     "search.scheduler.grace_period = 40: ASHA's first rung (grace_period = 40 steps) is not before the end of "
     "training (40 steps)"),
])
def test_bad_blocks_fail_naming_the_field_the_value_and_what_is_allowed(search, expected):
    assert expected in error_of(search)


def test_grids_of_different_sizes_would_give_unequal_budgets():
    search = {"algorithm": "grid", "space": {"student_train.lr": {"choice": [1e-3, 3e-3]}},
              "methods": {"seq_kd": {"method.losses.0.weight": {"choice": [0.5, 1.0]}}}}
    assert ("search.samples = None: the grids differ in size across methods (ft: 2, seq_kd: 4, joint_teaching: 2): "
            "budgets would differ; set search.samples to at most 2") in error_of(search)
    assert "samples = 3 is more than some grids have (ft: 2, joint_teaching: 2)" in error_of({**search, "samples": 3})
    parsed = parse_search(spec_with({**search, "samples": 2}))
    assert {parsed.budget(m).samples for m in ("ft", "seq_kd", "joint_teaching")} == {2}
    # the cut is a seeded subset of each grid, the same for every grid of that size
    params = parsed.space("seq_kd")
    assert grid_points(params, 2, 0) == grid_points(params, 2, 0) and len(grid_points(params, 2, 0)) == 2


def test_every_group_gets_the_same_budget_and_the_same_shared_values():
    spec = spec_with({"samples": 5, "time_budget_s": 600, "space": LR, "methods": {
        "joint_teaching": {"method.sources.1.start": {"uniform": [0.2, 0.6]}}}}, ratios=(2.0, 4.0))
    search = parse_search(spec)
    all_groups = groups(spec)
    assert len(all_groups) == 6  # 2 ratios × 3 methods
    assert len({search.budget(g.method) for g in all_groups}) == 1
    assert search.budget("ft").samples == 5 and search.budget("ft").time_budget_s == 600
    # random draws: every method sees the same learning rates, whatever else it searches
    ft = [draw_random(search.space("ft"), search.seed, i)["student_train.lr"] for i in range(5)]
    jt = [draw_random(search.space("joint_teaching"), search.seed, i)["student_train.lr"] for i in range(5)]
    assert ft == jt and len(set(ft)) == 5 and all(1e-4 <= v <= 1e-2 for v in ft)
    from bench.search import budgets_equal

    same = {"samples": 5, "time_budget_s": 600, "concurrency": 2}
    assert budgets_equal([{"budget": same}, {"budget": dict(same)}])
    assert not budgets_equal([{"budget": same}, {"budget": {**same, "samples": 4}}])


def test_every_method_of_the_spec_must_search_something():
    assert ("search.methods = None: nothing is searched for 'ft', 'joint_teaching': every method gets the same "
            "budget") in error_of({"samples": 2, "methods": {"seq_kd": {"method.losses.0.weight": {"uniform": [0.5, 2]}}}})


def test_a_small_discrete_space_cannot_fill_the_samples():
    assert "method 'ft' has only 2 distinct configurations but samples = 3" in error_of(
        {"samples": 3, "space": {"student_train.lr": {"choice": [1e-3, 3e-3]}}})


def test_teacher_pseudo_target_sets_are_searched_over_discrete_values_built_before_training():
    from bench.stages import pt_specs_needed
    from bench.tune import pt_variants, stage_spec

    assert "sets a teacher pseudo-target set, which is generated before training: use choice or int" in error_of(
        {"samples": 2, "methods": {"seq_kd": {"method.sources.0.pts.temperature": {"uniform": [0.5, 1.5]}}}})
    spec = spec_with({"samples": 2, "space": LR, "methods": {"seq_kd": {"method.sources.0.pts.k": {"choice": [1, 2]}}}})
    staged = stage_spec(spec, pt_variants(spec, parse_search(spec)))
    assert [pt.slug for pt in pt_specs_needed(staged)] == ["beam-k1", "beam-k2"]
    assert staged.methods[:3] == spec.methods and staged.methods[3] == "seq_kd~beam-k2"


class FakeTrial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def test_asha_reads_the_dev_objective_skips_reports_without_one_and_never_stops_at_the_end():
    from ray.tune.schedulers import TrialScheduler

    from bench.tune import DevASHA, dev_objective

    assert dev_objective({"best_dev": 5.0}, "min") == -5.0 and dev_objective({"best_dev": None}, "max") is None
    assert dev_objective({"status": "ok", "selection_value": 30.0, "best_dev": 1.0}, "max") == 30.0
    asha = DevASHA("min", grace_period=2, max_steps=16, reduction_factor=2, brackets=1)
    assert asha.rungs() == [2.0, 4.0, 8.0]  # none at step 16, the last
    good, bad, late = FakeTrial("good"), FakeTrial("bad"), FakeTrial("late")
    for t in (good, bad, late):
        asha.on_trial_add(None, t)
    assert asha.on_trial_result(None, good, {"step": 1, "best_dev": None}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, good, {"step": 2, "best_dev": 5.0}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, bad, {"step": 2, "best_dev": 6.0}) == TrialScheduler.STOP  # loss: lower wins
    assert asha.stopped == {"bad": 2}
    for step in (4, 8, 16):
        assert asha.on_trial_result(None, good, {"step": step, "best_dev": 4.0}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, good, {"status": "ok", "selection_value": 4.0}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, late, {"step": 2, "best_dev": 4.5}) == TrialScheduler.CONTINUE


def test_optuna_tpe_through_the_dev_adapter():
    import optuna

    from bench.search import Distribution
    from bench.tune import DevSearch, make_searcher

    spec = spec_with({"algorithm": "optuna", "samples": 4, "space": LR}, methods=("ft",))
    search = parse_search(spec)
    searcher = DevSearch(make_searcher(search, search.space("ft"), 4), "min")
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert second["searched"] != first["searched"]
    assert set(first) == {"searched"} and 1e-4 <= first["searched"]["student_train.lr"] <= 1e-2
    searcher.on_trial_result("a", {"step": 10, "best_dev": 3.0, "training_iteration": 1})
    searcher.on_trial_complete("a", {"status": "ok", "selection_value": 2.5})
    searcher.on_trial_result("b", {"step": 10, "best_dev": 9.0, "training_iteration": 1})
    searcher.on_trial_complete("b", {"step": 10, "best_dev": 9.0})  # stopped by ASHA: no final value
    study = searcher.inner._ot_study
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert study.trials[0].value == -2.5  # higher is better: minus the dev loss
    assert Param("student_train.lr", Distribution("choice", values=(1, 2))).section == "student_train"


def test_random_search_draws_distinct_configurations():
    from bench.tune import Draws, make_searcher

    spec = spec_with({"samples": 3, "space": {"student_train.batch_size": {"choice": [4, 8, 16]}}}, methods=("ft",))
    search = parse_search(spec)
    searcher = make_searcher(search, search.space("ft"), 3)
    drawn = [searcher.suggest(str(i)) for i in range(3)]
    assert sorted(d["student_train.batch_size"] for d in drawn) == [4, 8, 16]
    assert searcher.suggest("3") == Draws.FINISHED


def _summary(spec, search, tmp_path):
    """A finished search's summary as `bench.tune.tune` writes it (two groups)."""
    best = {"trial_id": "t1", "searched": {"student_train.lr": 0.003}, "overrides": {"student_train": {"lr": 0.003}},
            "dev_value": 5.2, "objective": -5.2, "selected_step": 30, "seed": 0}
    outcomes = [{"group": g.as_dict(), "group_key": g.key, "best": best} for g in groups(spec)]
    return {"tune_run": "tune-x", "tune_dir": str(tmp_path / "tune-x"), "groups": outcomes, "budgets_equal": True}


def test_best_yaml_becomes_the_cells_of_a_tuned_run(tmp_path):
    from bench.storage import Location
    from bench.tune import export_best, load_tuned, tuned_cells

    spec = spec_with({"samples": 2, "space": LR}, methods=("ft", "seq_kd"))
    path = export_best(spec, parse_search(spec), _summary(spec, parse_search(spec), tmp_path),
                       Location.of(tmp_path / "best.yaml"))
    assert "kdbench run --tuned" in path.read_text()
    tuned = load_tuned(tmp_path / "best.yaml")
    cells = tuned_cells(spec, tuned, tmp_path / "best.yaml")
    assert [(c["method"], c["overrides"]) for c in cells] == [("ft", {"student_train": {"lr": 0.003}}),
                                                             ("seq_kd", {"student_train": {"lr": 0.003}})]
    assert cells[0]["tuning"]["tune_run"] == "tune-x" and cells[0]["tuning"]["dev_value"] == 5.2
    # a spec with a cell the search did not tune, and an override the spec cannot take, fail up front
    wider = spec_with({"samples": 2, "space": LR}, methods=("ft", "seq_kd", "joint_teaching"))
    with pytest.raises(SpecError, match="no tuned configuration for d2t r=2 joint_teaching"):
        tuned_cells(wider, tuned, tmp_path / "best.yaml")
    tuned["configs"][0]["overrides"] = {"student_train": {"lr": -1.0}}
    with pytest.raises(SpecError, match="d2t r=2 ft: the tuned overrides do not fit this spec"):
        tuned_cells(spec, tuned, tmp_path / "best.yaml")
    with pytest.raises(SpecError, match="is not a best.yaml from `kdbench tune`"):
        (tmp_path / "spec.yaml").write_text("name: x\n")
        load_tuned(tmp_path / "spec.yaml")


def test_the_report_section_reads_the_stored_search(tmp_path):
    from reports.tuning import load_search, sensitivity_table, tuning_sections

    group = {"task": "d2t", "ratio": 2.0, "method": "ft", "student_init": "random"}
    trials = []
    for i, (lr, dev, status) in enumerate([(1e-3, 5.0, "completed"), (3e-3, 4.5, "completed"),
                                           (1e-2, 4.0, "completed"), (1e-5, 6.0, "stopped")]):
        trials.append({"group": group, "group_key": "k", "trial_id": f"t{i}", "index": i, "status": status,
                       "searched": {"student_train.lr": lr}, "dev_value": dev,
                       "objective": -dev if status == "completed" else None, "steps": 40 if status == "completed" else 10,
                       "total_steps": 40, "train_seconds": 10.0, "ended_s": float(i), "stopped_at_step": 10,
                       "curve": [{"step": 10, "best_dev": dev + 1}]})
    outcome = {"group": group, "group_key": "k", "params": {"student_train.lr": "loguniform[1e-05, 0.01]"},
               "budget": {"samples": 4, "time_budget_s": None, "concurrency": 2}, "rungs": [10.0], "trials": 4,
               "completed": 3, "stopped": 1, "errors": 0, "unfinished": 0, "steps_trained": 130, "train_seconds": 40.0,
               "mode": "min", "resources": {"cpu_free": 2, "cpu_total": 2},
               "best": {**trials[2], "trial_id": "t2"}}
    (tmp_path / "tuning" / "groups").mkdir(parents=True)
    (tmp_path / "tuning" / "groups" / "k.json").write_text(json.dumps({"outcome": outcome, "trials": trials}))
    search = load_search(tmp_path)
    table = sensitivity_table(search)
    assert table.loc[0, "effect (completed)"] == "ρ = +1.00 (n=3)"  # a larger rate, a lower dev loss
    assert table.loc[0, "effect at step 10 (all)"] == "ρ = +1.00 (n=4)"
    (section,) = tuning_sections([tmp_path], {}, tmp_path)
    titles = [getattr(b, "title", None) for b in section.blocks]
    assert "Early stopping (ASHA)" in titles and "Best configuration so far" in titles
    assert (tmp_path / "tuning_trials.csv").exists()


def test_a_search_resumed_with_a_changed_spec_is_refused_before_any_work(tmp_path):
    """Finished groups are found by (task, ratio, method, init) alone, so resuming a search dir
    with another search space would mix two searches in best.yaml: refused, naming the field."""
    from bench.spec import spec_to_yaml
    from bench.tune import tune

    space = {"space": {"student_train.lr": {"loguniform": [1e-4, 1e-2]}}}
    first = spec_with({**space, "samples": 2}, methods=("ft",))
    run_dir = tmp_path / "search"
    run_dir.mkdir()
    (run_dir / "spec.yaml").write_text(spec_to_yaml(first))
    with pytest.raises(SpecError, match=r"changed: search\.samples.*search resumes only with the spec"):
        tune(spec_with({**space, "samples": 3}, methods=("ft",)), run_dir=run_dir)
    assert yaml_of(run_dir) == spec_to_yaml(first)  # the stored spec is untouched


def yaml_of(run_dir) -> str:
    return (run_dir / "spec.yaml").read_text()
