from bench.grid import concurrency, grid_size, longest_first
from bench.spec import parse_spec
from tests.conftest import tiny_spec_dict


def test_costliest_methods_are_scheduled_first():
    spec = parse_spec(tiny_spec_dict(methods=("ft", "seq_kd", "joint_teaching", "word_kd")))
    assert longest_first(spec) == ["joint_teaching", "word_kd", "ft", "seq_kd"]


def test_concurrency_fits_the_cluster():
    spec = parse_spec(tiny_spec_dict())
    assert concurrency(spec, 2) == 2  # 0.01 + 0.99 per trial on 2 CPUs
    two_workers = parse_spec({**tiny_spec_dict(), "resources": {"num_workers": 2}})
    assert concurrency(two_workers, 2) == 1
    capped = parse_spec({**tiny_spec_dict(), "resources": {"max_concurrent_trials": 1}})
    assert concurrency(capped, 8) == 1
    assert grid_size(spec) == 4
    assert grid_size(parse_spec({**tiny_spec_dict(), "student_inits": ["random", "shrink-alternating"]})) == 8


def test_interim_reports_as_trials_finish_throttled_and_never_fatal(capsys):
    from types import SimpleNamespace

    from bench.grid import TrialProgress

    built = []

    def build():
        built.append(len(built))
        if len(built) == 2:
            raise RuntimeError("disk full")
        return "/runs/x/report/report.html"

    progress = TrialProgress(total=4, on_progress=build, report_every=60)
    trial = SimpleNamespace(config={"task": "d2t", "ratio": 4, "method": "ft", "seed": 0, "student_init": "random"})
    ok = {"status": "ok", "bleu": 20.0, "chrf": 40.0, "params": 1000, "realized_ratio": 4.0, "headline": "bleu"}
    progress.on_trial_result(0, [], trial, ok)  # first finished trial: a report at once (in a thread)
    progress.wait()
    progress.on_trial_result(0, [], trial, ok)  # within the period: none
    progress.wait()
    assert built == [0]
    progress.last_report -= 61
    progress.on_trial_result(0, [], trial, {"status": "error", "error": "boom"})  # fails: printed, not raised
    progress.wait()
    progress.last_report -= 61
    progress.on_trial_result(0, [], trial, ok)  # the last trial: the final report is the runner's
    progress.wait()
    # a running trial's intermediate report is a progress line, not a finished trial
    progress.on_trial_result(0, [], SimpleNamespace(trial_id="t1", config=trial.config),
                             {"step": 100, "total_steps": 400, "loss": 2.5, "dev_loss": 2.9, "dev_metric": 11.0,
                              "selected_step": 100, "train_seconds": 30.0})
    out = capsys.readouterr().out
    assert "[running] d2t r=4 ft seed=0: step 100/400 · loss 2.500 · dev loss 2.900 · dev metric 11.00" in out
    assert "ETA 90s" in out and progress.done == 4
    assert built == [0, 1]
    assert "interim report (1/4 trials): /runs/x/report/report.html" in out
    assert "interim report not written: RuntimeError: disk full" in out and "[trial 4/4" in out


def test_a_resumed_grid_rebuilds_the_interim_report_only_for_trials_trained_now():
    from types import SimpleNamespace

    from bench.grid import TrialProgress

    built = []
    progress = TrialProgress(total=4, on_progress=lambda: built.append(1) or "/r", report_every=0)
    trial = SimpleNamespace(config={"task": "d2t", "ratio": 4, "method": "ft", "seed": 0, "student_init": "random"})
    stored = {"status": "ok", "bleu": 20.0, "chrf": 40.0, "params": 1000, "realized_ratio": 4.0, "reused": True}
    for _ in range(2):  # rows of the interrupted run: already in its report
        progress.on_trial_result(0, [], trial, stored)
        progress.wait()
    assert built == []
    progress.on_trial_result(0, [], trial, {**stored, "reused": False})  # trained in this run
    progress.wait()
    assert built == [1]


def test_the_drivers_method_definitions_give_the_trials_own_config_and_identity(tiny_artifacts):
    """The grid's Tune processes take each method's definition from the driver (so they never
    import torch): the worker config, and so the trial's identity, is the one resolving the
    method there gives; a method override still resolves it."""
    import dataclasses

    from bench.trial import method_definitions, trial_identity, worker_config

    spec, art, _ = tiny_artifacts
    spec = parse_spec({**tiny_spec_dict(), "custom_methods": [
        {"name": "kd_t2", "sources": [{"origin": "gold"}], "losses": [{"kind": "word_kl", "temperature": 2.0}]}],
        "methods": ["seq_kd", "kd_t2"]})
    data, art = spec.model_dump(mode="json"), dataclasses.asdict(art)
    definitions = method_definitions(spec)
    for method in spec.methods:
        own = worker_config(data, art, task="d2t", method=method, ratio=2.0, seed=0)
        given = worker_config(data, art, task="d2t", method=method, ratio=2.0, seed=0, definitions=definitions)
        assert given == own and trial_identity(given, art["hashes"]) == trial_identity(own, art["hashes"])
    override = {"method": {"losses.0.temperature": 4.0}}
    tuned = worker_config(data, art, task="d2t", method="kd_t2", ratio=2.0, seed=0, overrides=override,
                          definitions=definitions)
    assert tuned["method_definition"] != definitions["kd_t2"]
    assert tuned["method_definition"]["losses"][0]["temperature"] == 4.0


def test_trials_train_without_the_actors_that_serve_kdbench_nothing(tmp_path):
    """The trainer leaves out Ray Train's placement-group cleaner (it needs the dashboard, so it
    never acts here; bench.janitor does its job) and, without Ray Datasets, the dataset manager;
    Ray's other callbacks stay. On a real Ray: tests/test_e2e.py checks that no such actor starts."""
    import ray.train
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from bench.trial import _trainer_class

    config = {"scaling_config": ray.train.ScalingConfig(num_workers=1),
              "run_config": ray.train.RunConfig(storage_path=str(tmp_path))}
    for ddp in (False, True):
        cls = _trainer_class(ddp)
        kept = {type(c) for c in DataParallelTrainer._create_default_callbacks(cls(lambda c: None, **config))}
        lean = {type(c) for c in cls(lambda c: None, **config)._create_default_callbacks()}
        assert kept - lean == {PlacementGroupCleanerCallback, DatasetsCallback}
        with_data = {type(c) for c in cls(lambda c: None, datasets={"train": lambda: None},
                                          **config)._create_default_callbacks()}
        assert DatasetsCallback in with_data and PlacementGroupCleanerCallback not in with_data
    assert _trainer_class(True).__mro__[1].__name__ == "TorchTrainer"


def test_a_reused_report_queue_starts_empty_and_lives_on_this_node(local_ray):
    """A Tune trial process keeps one report queue for its trials (bench.trial._report_callback):
    a report an earlier trial left unread never reaches the next one."""
    import ray

    from bench import trial

    trial._QUEUE = None
    queue = trial._process_queue()
    queue.put({"step": 4, "dev_loss": 1.0})
    assert queue.qsize() == 1
    again = trial._process_queue()
    assert again is queue and again.empty()
    actor = ray._private.state.actors()[queue.actor._actor_id.hex()]
    assert actor["Address"]["NodeID"] == ray.get_runtime_context().get_node_id()
    trial._QUEUE = None
