import pytest

from bench.cli import main
from bench.spec import PRESETS, SpecError, load_preset, parse_spec
from tests.conftest import tiny_spec_dict


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_valid(name):
    spec = load_preset(name)
    assert {"ft", "word_kd", "seq_kd"} <= set(spec.methods)
    if name == "paper":  # the Hub tasks with a pretrained T5 pair (GPU, internet)
        assert {t.name for t in spec.tasks} == {"xsum", "squad_qg", "art"}
        assert all(t.teacher.pretrained for t in spec.tasks) and spec.resources.device == "cuda"
        assert spec.method("joint_teaching_pretrained").sources[1].start == 0
    elif name == "tune":  # a search to start from: its search block parses against the spec
        from bench.search import groups, parse_search

        search = parse_search(spec)
        assert search.samples and len(groups(spec)) == len(spec.methods)
    else:
        assert {t.name for t in spec.tasks} <= {"d2t", "qg"} and "joint_teaching" in spec.methods


def test_default_preset_runs_three_seeds_in_the_paper_proportions():
    spec = load_preset("default")
    assert [t.name for t in spec.tasks] == ["d2t"] and spec.seeds == [0, 1, 2]
    for t in spec.tasks:
        assert (t.sizes.labeled, t.sizes.unlabeled, t.sizes.dev, t.sizes.test) == (2000, 8000, 500, 500)


def _error(mutate) -> str:
    data = tiny_spec_dict()
    mutate(data)
    with pytest.raises(SpecError) as info:
        parse_spec(data, "test.yaml")
    return str(info.value)


def test_unknown_key_is_named():
    msg = _error(lambda d: d["student_train"].update(stpes=3))
    assert "student_train.stpes" in msg and "unknown key" in msg


def test_wrong_type_names_field_and_value():
    msg = _error(lambda d: d["student_train"].update(steps="many"))
    assert "student_train.steps" in msg and "'many'" in msg


def test_ratio_must_compress():
    msg = _error(lambda d: d.update(ratios=[2, 0.5]))
    assert "ratios" in msg and "0.5" in msg and "> 1" in msg


def test_unknown_method_lists_allowed():
    msg = _error(lambda d: d.update(methods=["ft", "magic_kd"]))
    assert "magic_kd" in msg and "joint_teaching" in msg and "seq_kd" in msg


def test_unknown_task_lists_allowed():
    msg = _error(lambda d: d["tasks"][0].update(name="poetry"))
    assert "tasks.0.name" in msg and "poetry" in msg and "d2t" in msg and "qg" in msg


def test_bf16_needs_cuda():
    msg = _error(lambda d: d.update(resources={"precision": "bf16"}))
    assert "bf16" in msg and "cuda" in msg


def test_unknown_preset():
    with pytest.raises(SpecError, match="allowed: default, smoke, full"):
        load_preset("huge")


def test_cli_rejects_bad_spec_before_work(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntasks: [{name: d2t}]\nratios: [1]\nmethods: [ft]\n")
    assert main(["run", str(bad), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "ratios" in err and "must be > 1" in err
    assert not (tmp_path / "runs").exists()  # nothing started


def test_cli_validate_and_list(capsys):
    assert main(["validate", "--preset", "smoke"]) == 0
    assert "is valid" in capsys.readouterr().out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "joint_teaching" in out and "d2t" in out


def test_validating_a_spec_loads_no_model_or_storage_code():
    """`kdbench validate` and `list` stay quick: parsing every preset and study, and the CLI's
    own imports, load neither transformers nor pyarrow nor Ray (they took 5 s before)."""
    import subprocess
    import sys

    code = ("import sys; from bench.cli import main; main(['list']); "
            "from bench.spec import PRESETS, load_preset; [load_preset(p) for p in PRESETS]; "
            "print(sorted(m for m in ('transformers', 'pyarrow', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_student_inits_are_an_axis_checked_before_any_work():
    data = tiny_spec_dict()
    data["student_inits"] = ["random", "shrink-first-last", "pretrained:org/mine"]  # a Hub name: checked at load
    assert parse_spec(data).student_inits == data["student_inits"]
    assert parse_spec(tiny_spec_dict()).student_inits == ["random"]
    msg = _error(lambda d: d.update(student_inits=["random", "shrink-every-third"]))
    assert "student_inits" in msg and "shrink-every-third" in msg
    assert ("allowed: random, random/width, random/depth, random/decoder-only, shrink-alternating, shrink-first-last, "
            "pretrained:<hub name or path>") in msg
    assert "may appear once" in _error(lambda d: d.update(student_inits=["random", "random"]))


def test_t5_deeper_decoder_than_encoder_is_refused():
    def deeper(d):
        d["tasks"][0]["teacher"]["model"].update(encoder_layers=1, decoder_layers=2)
    msg = _error(deeper)
    assert "decoder_layers (2) <= encoder_layers (1)" in msg and "tasks.0.teacher.model" in msg


def test_adaptive_schedules_need_dev_losses():
    msg = _error(lambda d: (d.update(methods=["distillm"]), d["student_train"].update(dev_every=0)))
    assert "student_train.dev_every = 0" in msg and "distillm" in msg


def test_every_run_dir_and_output_option_keeps_a_storage_uri_as_given():
    """Path() would fold `s3://b/x` into `s3:/b/x`: options that take a run dir, a report folder,
    a best.yaml or an export target keep the URI intact for `bench.storage.Location`."""
    from bench.cli import _parser

    from bench.storage import Location

    run = Location.of("s3://bucket/runs/r1?endpoint_override=http://127.0.0.1:9000&scheme=http")
    uri, best, report, exports = (str(x) for x in (run, run / "best.yaml", run / "report", run / "exports"))
    parse = _parser().parse_args
    assert parse(["run", "--run-dir", uri]).run_dir == uri
    assert parse(["run", "--tuned", best]).tuned == best
    tune = parse(["tune", "s.yaml", "--run-dir", uri, "--out", best])
    assert (tune.run_dir, tune.out) == (uri, best)
    assert parse(["report", uri, "--out", report]).out == report
    assert parse(["export", uri, "--best", "--to", exports]).to == exports
