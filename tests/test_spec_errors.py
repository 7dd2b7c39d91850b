"""Every bad input is one clear line — the field's path, the value (cut to ~80 characters) and
what is allowed — found before any work: by `parse_spec` / `load_spec` (so `kdbench validate`,
without Ray) wherever the check needs no data, and when the data is read otherwise."""
import json
import sys

import pytest

from bench.cli import main
from bench.spec import MAX_PROBLEMS, SpecError, load_preset, load_spec, parse_spec, spec_to_yaml
from tests.conftest import tiny_spec_dict

NAN, INF = float("nan"), float("inf")
LINE_CHARS = 400  # no problem line is longer (values are cut to ~80 characters)


def problems(data) -> list[str]:
    """The problem lines of the SpecError that `data` raises (the header line dropped)."""
    with pytest.raises(SpecError) as info:
        parse_spec(data, "test.yaml")
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid spec test.yaml:"
    assert all(len(line) <= LINE_CHARS for line in lines), max(lines, key=len)
    return [line.strip() for line in lines[1:]]


def mutated(mutate) -> dict:
    data = tiny_spec_dict()
    mutate(data)
    return data


def method(source=None, loss=None, **fields):
    """A mutation declaring one custom method `m` (one source, one loss) and running only it."""
    m = {"name": "m", "sources": [source or {"origin": "gold"}], "losses": [loss or {"kind": "ce"}], **fields}
    return lambda d: d.update(methods=["m"], custom_methods=[m])


def teacher_train(**kw):
    return lambda d: d["tasks"][0]["teacher"]["train"].update(kw)


# (mutation, the one problem line's parts: path = value, then what is allowed)
CASES = {
    # NaN and infinities, anywhere numeric
    "ratio nan": (lambda d: d.update(ratios=[NAN]), "ratios.0 = nan", "must be a finite number"),
    "ratio inf": (lambda d: d.update(ratios=[2.0, INF]), "ratios.1 = inf", "must be a finite number"),
    "lr inf": (lambda d: d["student_train"].update(lr=INF), "student_train.lr = inf", "must be a finite number"),
    "teacher lr nan": (teacher_train(lr=NAN), "tasks.0.teacher.train.lr = nan", "must be a finite number"),
    "dropout nan": (lambda d: d["tasks"][0]["teacher"]["model"].update(dropout=NAN),
                    "tasks.0.teacher.model.dropout = nan", "must be a finite number"),
    "cpus inf": (lambda d: d.update(resources={"cpus_per_worker": INF}), "resources.cpus_per_worker = inf",
                 "must be a finite number"),
    "temperature nan": (method(loss={"kind": "word_kl", "temperature": NAN}),
                        "custom_methods[m].losses[0].temperature = nan", "must be a finite number > 0"),
    "source weight inf": (method({"origin": "gold", "weight": INF}), "custom_methods[m].sources[0].weight = inf",
                          "must be a finite number >= 0"),
    "search bound nan": (lambda d: d.update(search={"samples": 2, "space": {"student_train.lr": {
        "uniform": [NAN, 0.1]}}}), "search.space.student_train.lr.uniform.0 = nan", "must be a finite number"),
    # booleans, strings and decimals are not integers; booleans are not numbers
    "steps true": (lambda d: d["student_train"].update(steps=True), "student_train.steps = True",
                   "must be an integer, not a boolean"),
    "batch size string": (teacher_train(batch_size="32"), "tasks.0.teacher.train.batch_size = '32'",
                          "must be an integer, not a string (write it without quotes)"),
    "steps decimal": (lambda d: d["student_train"].update(steps=400.0), "student_train.steps = 400.0",
                      "must be an integer, not a decimal (write 400)"),
    "vocab true": (lambda d: d.update(tokenizer={"vocab_size": True}), "tokenizer.vocab_size = True",
                   "must be an integer, not a boolean"),
    "seed true": (lambda d: d.update(seeds=[0, True]), "seeds.1 = True", "must be an integer, not a boolean"),
    "seed negative": (lambda d: d.update(seeds=[-1]), "seeds.0 = -1", "must be >= 0"),
    "lr true": (lambda d: d["student_train"].update(lr=True), "student_train.lr = True",
                "must be a number, not a boolean"),
    "ter one": (lambda d: d["eval"].update(ter=1), "eval.ter = 1", "must be true or false"),
    "pts k true": (method({"origin": "teacher_pt", "pts": {"k": True}}), "custom_methods[m].sources[0].pts.k = True",
                   "must be an integer >= 1"),
    "replay capacity true": (method({"origin": "student_pt", "inputs": ["labeled"], "replay": {"capacity": True}},
                                    schedule={"kind": "static"}),
                             "custom_methods[m].sources[0].replay.capacity = True", "must be an integer"),
    "alternate every decimal": (method({"origin": "gold"}, schedule={"kind": "alternate", "every": 2.5}),
                                "custom_methods[m].schedule.every = 2.5", "must be an integer"),
    # duplicates, naming the repeated values
    "methods twice": (lambda d: d.update(methods=["ft", "seq_kd", "ft"]), "methods = ['ft', 'seq_kd', 'ft']",
                      "'ft' appears more than once; each method may appear once"),
    "seeds twice": (lambda d: d.update(seeds=[0, 1, 0]), "seeds = [0, 1, 0]",
                    "0 appears more than once; each seed may appear once"),
    "ratios twice": (lambda d: d.update(ratios=[2, 3.0, 2.0]), "ratios = [2, 3.0, 2.0]",
                     "2 appears more than once; each ratio may appear once"),
    "inits twice": (lambda d: d.update(student_inits=["random", "random"]), "student_inits = ['random', 'random']",
                    "'random' appears more than once; each student init may appear once"),
    "tasks twice": (lambda d: d.update(tasks=[d["tasks"][0], d["tasks"][0]]), "tasks",
                    "'d2t' appears more than once; each task may appear once"),
    "custom methods twice": (lambda d: d.update(methods=["m"], custom_methods=[
        {"name": "m", "sources": [{"origin": "gold"}], "losses": [{"kind": "ce"}]}] * 2), "custom_methods",
        "'m' appears more than once; each custom method name may appear once"),
    # the run directory's name
    "name too long": (lambda d: d.update(name="x" * 300), "name = 'xxxxxxxx", "(300 chars)", "1 to 64 letters"),
    "name escapes": (lambda d: d.update(name="../../x"), "name = '../../x'", "no path separators"),
    "name slash": (lambda d: d.update(name="a/b"), "name = 'a/b'", "no path separators"),
    "name dot": (lambda d: d.update(name=".."), "name = '..'", "not starting with '.'"),
    "name empty": (lambda d: d.update(name=""), "name = ''", "1 to 64 letters"),
    # custom methods: method name and field path, value, what is allowed
    "pt strategy typo": (method({"origin": "teacher_pt", "pts": {"strategy": "beem"}}),
                         "custom_methods[m].sources[0].pts.strategy = 'beem'", "not allowed; allowed: beam, sample"),
    "beam with temperature": (method({"origin": "teacher_pt", "pts": {"temperature": 0.7}}),
                              "custom_methods[m].sources[0].pts.temperature = 0.7",
                              "applies to strategy 'sample' only"),
    "negative weight": (method({"origin": "teacher_pt", "weight": -1}), "custom_methods[m].sources[0].weight = -1",
                        "must be a finite number >= 0"),
    "zero weights": (method({"origin": "teacher_pt", "weight": 0}), "custom_methods[m]:",
                     "all have weight 0", "give one of them a weight > 0"),
    "start at the end": (method({"origin": "teacher_pt", "start": 1.0}), "custom_methods[m].sources[0].start = 1.0",
                         "must be a number in [0, 1)"),
    "origin typo": (method({"origin": "teacher"}), "custom_methods[m].sources[0].origin = 'teacher'",
                    "not allowed; allowed: gold, teacher_pt, student_pt"),
    "inputs typo": (method({"origin": "teacher_pt", "inputs": ["labeled", "unlabled"]}),
                    "custom_methods[m].sources[0].inputs = ['labeled', 'unlabled']",
                    "'unlabled' is not an input split; allowed: labeled, unlabeled"),
    "inputs not a list": (method({"origin": "teacher_pt", "inputs": "labeled"}),
                          "custom_methods[m].sources[0].inputs = 'labeled'",
                          "must be a non-empty list of: labeled, unlabeled"),
    "inputs twice": (method({"origin": "teacher_pt", "inputs": ["labeled", "labeled"]}),
                     "custom_methods[m].sources[0].inputs = ['labeled', 'labeled']", "each split may appear once"),
    "loss weight zero": (method(loss={"kind": "ce", "weight": 0}), "custom_methods[m].losses[0].weight = 0",
                         "must be a finite number > 0"),
    "loss kind typo": (method(loss={"kind": "kl"}), "custom_methods[m].losses[0].kind = 'kl'",
                       "unknown loss kind; allowed: ce, word_kl, forward_kl"),
    "description null": (method(description=None), "custom_methods[m].description = None", "must be a string"),
    "auto_scale floor nan": (method(auto_scale={"floor": NAN}), "custom_methods[m].auto_scale.floor = nan",
                             "must be a finite number > 0"),
    # a missing required key names what it wants, never the whole spec
    "ratios missing": (lambda d: d.pop("ratios"), "ratios: required (a list of compression ratios > 1)"),
    "methods missing": (lambda d: d.pop("methods"), "methods: required (a list of KD methods"),
    "task name missing": (lambda d: d["tasks"][0].pop("name"), "tasks.0.name: required (a registered task"),
    # choices
    "device typo": (lambda d: d.update(resources={"device": "gpu"}), "resources.device = 'gpu'",
                    "not allowed; allowed: 'cpu', 'cuda'"),
    "autoscale not a boolean": (lambda d: d.update(resources={"autoscale": "yes please"}),
                                "resources.autoscale = 'yes please'", "must be true or false"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_bad_value_is_one_line_naming_field_value_and_allowed(case):
    mutate, *parts = CASES[case]
    lines = problems(mutated(mutate))
    assert len(lines) == 1, lines
    position = 0
    for part in parts:  # in this order, on the one line
        found = lines[0].find(part, position)
        assert found >= 0, f"{part!r} not in {lines[0]!r}"
        position = found + len(part)


def test_numbers_yaml_reads_as_strings_are_numbers_and_integers_stay_integers():
    """PyYAML (YAML 1.1) reads `1e-3` as a string: a float field takes it; an integer field does not."""
    data = mutated(lambda d: d["student_train"].update(lr="1e-3"))
    data["ratios"] = ["2", 4]
    spec = parse_spec(data)
    assert spec.student_train.lr == 0.001 and spec.ratios == [2.0, 4.0]
    assert problems(mutated(lambda d: d["student_train"].update(lr="nan"))) == [
        "student_train.lr = 'nan': must be a number, not a string"]
    assert problems(mutated(lambda d: d["student_train"].update(steps="1e3"))) == [
        "student_train.steps = '1e3': must be an integer, not a string"]


def test_long_values_are_cut_and_the_spec_is_never_echoed():
    long = "x" * 5_000_000
    for mutate, path in [(lambda d: d.update(methods=[long]), "methods.0"),
                         (lambda d: d["tasks"][0]["sizes"].update(labeled=long), "tasks.0.sizes.labeled"),
                         (lambda d: d.update(student_inits=["random", long]), "student_inits.1"),
                         (lambda d: d.update(ratios=[long]), "ratios.0"),
                         (lambda d: d["student_train"].update(stpes={str(i): long for i in range(100)}),
                          "student_train.stpes")]:
        (line,) = problems(mutated(mutate))
        assert line.startswith(path) and "x" * 100 not in line and len(line) <= LINE_CHARS
    (line,) = problems(mutated(lambda d: d.update(methods=[long])))
    assert "xxx…xxx" in line and "xxx' (5,000,000 chars): " in line and "unknown method; allowed: ft, word_kd" in line
    (line,) = problems(mutated(lambda d: d["student_train"].update(stpes={str(i): 1 for i in range(100)})))
    assert "unknown key (value {a mapping of 100 keys: '0', '1'" in line and "allowed: steps, batch_size" in line
    # a missing key: what it wants, not the spec around it
    (line,) = problems(mutated(lambda d: d.pop("ratios")))
    assert line == "ratios: required (a list of compression ratios > 1)"


def test_many_problems_are_listed_up_to_a_limit():
    lines = problems(mutated(lambda d: d.update(seeds=[True] * 1000)))
    assert len(lines) == MAX_PROBLEMS + 1 and lines[-1] == f"… and {1000 - MAX_PROBLEMS} more"
    assert lines[0] == "seeds.0 = True: must be an integer, not a boolean"


def test_every_problem_of_a_spec_is_reported_at_once():
    lines = problems(mutated(lambda d: (d.update(ratios=[NAN], seeds=[True], name="../x"),
                                        d["student_train"].update(steps=True, lr=INF))))
    assert {line.split(" = ")[0] for line in lines} == {"name", "ratios.0", "seeds.0", "student_train.steps",
                                                         "student_train.lr"}
    bad_methods = [{"name": "a", "sources": [{"origin": "x"}], "losses": [{"kind": "ce"}]},
                   {"name": "b", "sources": [{"origin": "gold", "weight": INF}], "losses": [{"kind": "ce"}]}]
    lines = problems(mutated(lambda d: d.update(methods=["a", "b"], custom_methods=bad_methods)))
    assert [line.split(" = ")[0] for line in lines] == ["custom_methods[a].sources[0].origin",
                                                         "custom_methods[b].sources[0].weight"]


def test_method_building_blocks_check_themselves_in_code_too():
    from bench.distill.methods import AutoScale, FieldError, LossTerm, Method, PTSpec, Source

    for build, field in [(lambda: PTSpec("beem"), "strategy"), (lambda: PTSpec("sample", k=True), "k"),
                         (lambda: PTSpec("sample", temperature=NAN), "temperature"),
                         (lambda: Source("teacher"), "origin"), (lambda: Source("gold", ("labeld",)), "inputs"),
                         (lambda: Source("gold", weight=NAN), "weight"), (lambda: Source("gold", start=-0.1), "start"),
                         (lambda: LossTerm("ce", temperature=INF), "temperature"),
                         (lambda: LossTerm("ce", weight=True), "weight"),
                         (lambda: AutoScale(batches=True), "batches")]:
        with pytest.raises(FieldError) as info:
            build()
        assert info.value.field == field and str(info.value).startswith(f"{field} = ")
    with pytest.raises(ValueError, match="all have weight 0"):
        Method("x", "x", (Source("gold", weight=0.0),), (LossTerm("ce"),))


# ----------------------------------------------------------------------------- local paths

def test_a_local_pretrained_student_or_bertscore_model_must_exist(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "empty").mkdir()
    missing = "pretrained:/no/such/model"
    (line,) = problems(mutated(lambda d: d.update(student_inits=["random", missing])))
    assert line.startswith(f"student_inits.1 = '{missing}': pretrained student: this local path does not exist")
    assert "a Hub name such as org/model is checked only when the model is loaded" in line
    long = f"pretrained:{tmp_path / 'missing'}"  # a long path: its start and its end, and its length
    (line,) = problems(mutated(lambda d: d.update(student_inits=[long])))
    assert line.startswith(f"student_inits.0 = '{long[:37]}…{long[-18:]}' ({len(long)} chars): pretrained")
    (line,) = problems(mutated(lambda d: d.update(student_inits=["pretrained:./no/such/dir"])))
    assert line.startswith("student_inits.0 = 'pretrained:./no/such/dir': pretrained student: this local path")
    (line,) = problems(mutated(lambda d: d.update(student_inits=[f"pretrained:{tmp_path / 'empty'}"])))
    assert "is not a model directory written by save_pretrained (no config.json in it)" in line
    (line,) = problems(mutated(lambda d: d["eval"].update(bertscore_model="/no/bertscore")))
    assert line.startswith("eval.bertscore_model = '/no/bertscore': not a local BERTScore model directory")
    (line,) = problems(mutated(lambda d: d["tasks"][0].update(teacher={"pretrained": "/no/teacher"})))
    assert line.startswith("tasks.0.teacher.pretrained = '/no/teacher': this local path does not exist")

    (model / "config.json").write_text("{}")
    spec = parse_spec(mutated(lambda d: (d.update(student_inits=[f"pretrained:{model}", "pretrained:org/name"]),
                                         d["eval"].update(bertscore_model=str(model)))))
    assert spec.student_inits == [f"pretrained:{model}", "pretrained:org/name"]  # a Hub name: checked at load


# ----------------------------------------------------------------------------- the YAML file

def _load(tmp_path, content: str | bytes) -> str:
    path = tmp_path / "spec.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


VALID = "name: x\ntasks: [{name: d2t}]\nratios: [2]\nmethods: [ft]\n"


def test_duplicate_yaml_keys_are_refused_with_the_key_and_line(tmp_path):
    msg = _load(tmp_path, VALID + "ratios: [3]\n")
    assert msg == (f"spec {tmp_path / 'spec.yaml'} line 5, column 1: key 'ratios' appears twice in one mapping (first "
                   f"at line 3, column 1); each key may appear once")
    msg = _load(tmp_path, VALID + "student_train:\n  steps: 3\n  lr: 0.1\n  steps: 4\n")
    assert "line 8, column 3: key 'steps' appears twice in one mapping (first at line 6, column 3)" in msg
    # merge keys may be overridden: that is YAML, not a repetition
    anchored = VALID + "student_train: &st {steps: 4, lr: 0.01}\ntasks: [{name: d2t, teacher: {train: {<<: *st, " \
                       "steps: 8}}}]\n"
    path = tmp_path / "merge.yaml"
    path.write_text(anchored.replace("tasks: [{name: d2t}]\n", ""))
    assert load_spec(path).tasks[0].teacher.train.steps == 8


def test_a_spec_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    msg = _load(tmp_path, b"name: x\nmethods: [caf\xe9]\n")
    assert msg == (f"spec {tmp_path / 'spec.yaml'} is not UTF-8 text: byte 0xe9 at offset 21 (line 2, column 14) "
                   f"cannot be decoded (invalid continuation byte); save the file as UTF-8")
    assert load_spec_text(tmp_path, "\ufeff" + VALID).name == "x"  # a byte-order mark is fine


def load_spec_text(tmp_path, text: str):
    path = tmp_path / "bom.yaml"
    path.write_text(text, encoding="utf-8")
    return load_spec(path)


@pytest.mark.parametrize("content, expected", [
    ("name: x\ntasks: [{name: d2t}\nratios: [2]\n", "is not valid YAML: expected ',' or ']', but got '<scalar>' at "
                                                    "line 3, column 1 (while parsing a flow sequence at line 2)"),
    ("", "it is empty (needs at least tasks, ratios and methods)"),
    ("- name: x\n", "the top level must be a mapping of keys (name, tasks, ratios, methods, …), got list"),
])
def test_unreadable_yaml_is_one_line(tmp_path, content, expected):
    msg = _load(tmp_path, content)
    assert expected in msg and "\n" not in msg


def test_cli_validate_reports_without_ray_or_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: ../../x\ntasks: [{name: d2t}]\nratios: [.nan]\nmethods: [ft, ft]\nseeds: [true]\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"kdbench: invalid spec {bad}:",
                   "  name = '../../x': must be 1 to 64 letters, digits, '_', '.', '-', not starting with '.' or '-' "
                   "(no path separators): it names the run directory inside storage.runs_dir",
                   "  ratios.0 = nan: must be a finite number (NaN and infinities are not allowed)",
                   "  methods = ['ft', 'ft']: 'ft' appears more than once; each method may appear once",
                   "  seeds.0 = True: must be an integer, not a boolean"]
    cuda = tmp_path / "cuda.yaml"  # whether the cluster has GPUs is known only once it runs
    cuda.write_text(VALID + "resources: {device: cuda, cpus_per_worker: 64}\n")
    assert main(["validate", str(cuda)]) == 0
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_a_safe_name_keeps_the_run_directory_inside_runs_dir(tmp_path):
    from bench.runner import new_run_dir

    spec = parse_spec(mutated(lambda d: d.update(name="my-run_1.v2", storage={"runs_dir": str(tmp_path)})))
    assert str(new_run_dir(spec)).startswith(f"{tmp_path}/my-run_1.v2-")


@pytest.mark.parametrize("preset", ["default", "smoke", "full", "paper", "tune"])
def test_presets_survive_a_round_trip_through_yaml(tmp_path, preset):
    spec = load_preset(preset)
    path = tmp_path / "again.yaml"
    path.write_text(spec_to_yaml(spec))
    assert load_spec(path) == spec


# ----------------------------------------------------------------------------- resources (a cluster)

@pytest.fixture
def cluster(monkeypatch):
    """A cluster of the given shape, as Ray's resource API reports it (no Ray started)."""
    import ray

    def shape(nodes: list[dict]):
        total = {k: sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
        monkeypatch.setattr(ray, "cluster_resources", lambda: total)
        monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": n} for n in nodes])
    return shape


@pytest.mark.parametrize("resources, nodes, expected", [
    ({"device": "cuda"}, [{"CPU": 2}], "resources.device = 'cuda': the cluster has 0 GPU(s) for num_workers = 1 (one "
                                       "GPU each); allowed: device: cpu, fewer workers, or resources.autoscale: true"),
    ({"device": "cuda", "num_workers": 2}, [{"CPU": 4, "GPU": 1}], "the cluster has 1 GPU(s) for num_workers = 2"),
    ({"cpus_per_worker": 64}, [{"CPU": 2}, {"CPU": 8}],
     "resources.cpus_per_worker = 64: a Train worker runs on one node and the largest node has 8 CPUs; allowed: at "
     "most 8"),
    ({"num_workers": 3}, [{"CPU": 2}], "resources.num_workers = 3: one trial needs 2.98 CPUs (num_workers × "
                                       "cpus_per_worker 0.99 + 0.01) but the cluster has 2; allowed: num_workers <= 2"),
])
def test_a_cluster_that_cannot_host_a_trial_is_one_spec_error(cluster, resources, nodes, expected):
    from bench.runner import check_resources

    cluster(nodes)
    spec = parse_spec(mutated(lambda d: d.update(resources=resources)))
    with pytest.raises(SpecError) as info:
        check_resources(spec)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_gpus_may_come_later_on_an_autoscaling_cluster(cluster):
    from bench.runner import check_resources

    cluster([{"CPU": 2}])
    check_resources(parse_spec(mutated(lambda d: d.update(resources={"device": "cuda", "autoscale": True}))))
    check_resources(parse_spec(tiny_spec_dict()))


# ----------------------------------------------------------------------------- data files

@pytest.mark.parametrize("name, content, where", [
    ("train.jsonl", b'{"source": "a", "target": "b"}\n{"source": "caf\xe9", "target": "b"}\n',
     "line 2 (byte offset {})"),
    ("train.csv", b"source,target\na,b\ncaf\xe9,b\n", "line 3 (row 2 after the header, byte offset {})"),
    ("train.json", b'[{"source": "a", "target": "b"},\n {"source": "caf\xe9", "target": "b"}]',
     "line 2 (byte offset {})"),
])
def test_data_that_is_not_utf8_names_split_file_and_line(tmp_path, name, content, where):
    from tasks.base import TaskDataError
    from tasks.sources import DataSource, load_rows

    path = tmp_path / name
    path.write_bytes(content)
    where = where.format(content.index(b"\xe9"))
    columns = lambda split: ("source", "target")  # noqa: E731
    with pytest.raises(TaskDataError) as info:
        load_rows(DataSource.from_dict({"files": {"train": str(path)}}), columns, "mine")
    assert str(info.value) == (f"task 'mine': split 'train' file {path} is not UTF-8 text: {where} has byte 0xe9, "
                               f"which cannot be decoded (invalid continuation byte); convert the file to UTF-8 "
                               f"(e.g. iconv -f latin1 -t utf-8)")
    with pytest.raises(TaskDataError, match=rf"task 'mine': file {path} is not UTF-8 text: {where.split(' (')[0]}"):
        load_rows(DataSource.from_dict({"path": str(tmp_path)}), columns, "mine")  # a directory: no split known
    path.write_text(json.dumps({"source": "café", "target": "b"}) + "\n" if name.endswith("l") else
                    content.decode("latin1"), encoding="utf-8")
    assert load_rows(DataSource.from_dict({"files": {"train": str(path)}}), columns, "mine").rows["train"]
