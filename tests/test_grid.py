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
    progress.on_trial_result(0, [], trial, ok)  # first finished trial: a report at once
    progress.on_trial_result(0, [], trial, ok)  # within the period: none
    assert built == [0]
    progress.last_report -= 61
    progress.on_trial_result(0, [], trial, {"status": "error", "error": "boom"})  # fails: printed, not raised
    progress.last_report -= 61
    progress.on_trial_result(0, [], trial, ok)  # the last trial: the final report is the runner's
    out = capsys.readouterr().out
    assert built == [0, 1]
    assert "interim report (1/4 trials): /runs/x/report/report.html" in out
    assert "interim report not written: RuntimeError: disk full" in out and "[trial 4/4" in out
