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
