"""Custom tasks declared in the spec from your own files (JSONL, CSV, Parquet) or any Hub
dataset, and every kind of bad data failing clearly before training."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.spec import SpecError, TaskEntry, parse_spec, spec_to_yaml
from bench.stages import prepare_task
from tasks import SPLITS, DataUnavailableError, TaskDataError
from tests.conftest import tiny_spec_dict

CUSTOM = Path(__file__).parent / "fixtures" / "custom"
HUB = Path(__file__).parent / "fixtures" / "hub"
SIZES = {"labeled": 15, "unlabeled": None, "dev": 6, "test": None}


def custom_entry(sizes: dict | None = None, **custom) -> TaskEntry:
    """A custom task entry (validated through the whole spec, as `kdbench run` does); the JSONL
    fixture unless `files` or `path` is given."""
    if "files" not in custom and "path" not in custom:
        custom["files"] = {s: str(CUSTOM / f"{s}.jsonl") for s in ("train", "validation", "test")}
    custom = {"source_field": "text", "target_field": "summary", **custom}
    spec = parse_spec({**tiny_spec_dict(), "tasks": [{"name": "headlines", "custom": custom,
                                                      "sizes": sizes or SIZES}]})
    return spec.tasks[0]


def build(e: TaskEntry):
    return e.task().build(e.split_sizes(), e.data_seed)


def jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def fixture_rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (CUSTOM / f"{split}.jsonl").read_text().splitlines()]


def files_with(tmp_path: Path, **replace: list[dict] | str) -> dict[str, str]:
    """The custom fixture as JSONL files in tmp_path, with some splits replaced (rows or raw text)."""
    out = {}
    for split in ("train", "validation", "test"):
        rows = replace.get(split, fixture_rows(split))
        path = tmp_path / f"{split}.jsonl"
        if isinstance(rows, str):
            path.write_text(rows)
        else:
            jsonl(path, rows)
        out[split] = str(path)
    return out


# ----------------------------------------------------------------------------- custom tasks

def test_custom_jsonl_task_with_prompt_metric_lengths_and_references():
    e = custom_entry(references_field="refs", prompt="headline: ", metric="rougeL", max_source_tokens=128,
                     max_target_tokens=24, filters={"max_source_words": 60})
    task = e.task()
    assert (task.name, task.metric, task.prompt, task.max_source_tokens, task.max_target_tokens) == \
        ("headlines", "rougeL", "headline: ", 128, 24)
    splits = build(e)
    assert set(splits.splits) == set(SPLITS) and splits.splits["teacher_pool"] == []
    counts = {k: len(v) for k, v in splits.splits.items()}
    assert counts == {"labeled": 15, "unlabeled": 25, "dev": 6, "test": 10, "teacher_pool": 0}
    truth = {r["text"]: r for split in ("train", "validation", "test") for r in fixture_rows(split)}
    for row in splits.splits["labeled"]:
        assert row["target"] == truth[row["source"].removeprefix("headline: ")]["summary"]
    for row in splits.splits["dev"] + splits.splits["test"]:
        assert row["references"] == truth[row["source"].removeprefix("headline: ")]["refs"]
        assert len(row["references"]) == 2
    all_sources = [s for name in ("labeled", "unlabeled", "dev", "test") for s in splits.sources(name)]
    assert len(all_sources) == len(set(all_sources)) == 56


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_tasks_give_the_same_splits_as_jsonl(fmt):
    plain = build(custom_entry())
    files = {s: str(CUSTOM / f"{s}.{fmt}") for s in ("train", "validation", "test")}
    other = build(custom_entry(files=files))
    assert other.splits == plain.splits
    explicit = build(custom_entry(files=files, format=fmt))
    assert explicit.splits == plain.splits


def test_parquet_list_column_gives_references():
    files = {s: str(CUSTOM / f"{s}.parquet") for s in ("train", "validation", "test")}
    splits = build(custom_entry(files=files, references_field="refs"))
    assert all(len(r["references"]) == 2 for r in splits.splits["test"])


def test_only_a_train_file_carves_dev_and_test_out_of_train():
    e = custom_entry(files={"train": str(CUSTOM / "train.jsonl")},
                     sizes={"labeled": 20, "unlabeled": None, "dev": 5, "test": 5})
    splits = build(e)
    assert splits.info["recipe"] == "dev and test carved out of train"
    assert {k: len(v) for k, v in splits.splits.items()} == \
        {"labeled": 20, "unlabeled": 10, "dev": 5, "test": 5, "teacher_pool": 0}
    with pytest.raises(TaskDataError, match="sizes.test = null .* needs a validation or test split"):
        build(custom_entry(files={"train": str(CUSTOM / "train.jsonl")}))


def test_custom_task_from_a_dataset_directory_like_a_hub_copy():
    # any dataset directory works: here the Shakespeare copy the other way round (original -> modern)
    e = custom_entry(path=str(HUB / "shakespeare"), source_field="original", target_field="modern",
                     sizes={"labeled": 10, "unlabeled": 5, "dev": 3, "test": 3})
    splits = build(e)
    assert len(splits.splits["labeled"]) == 10 and splits.info["recipe"] == "dev from validation, test from test"
    assert all(r["target"].startswith(("I ", "You", "Do ", "Why", "Please", "Hurry")) for r in splits.splits["labeled"])
    # custom tasks are strict: XSum's article with an empty body is an error, not a silent skip
    strict = custom_entry(path=str(HUB / "xsum"), source_field="document", target_field="summary",
                          sizes={"labeled": 10, "unlabeled": 5, "dev": 3, "test": 3})
    with pytest.raises(TaskDataError, match=r"split 'train' \(local directory .*xsum, split 'train'\), row 3: "
                                            r"field 'document' is empty"):
        build(strict)


def test_custom_hub_dataset_offline_names_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = custom_entry(path="some-org/headline-data", config="en")
    with pytest.raises(DataUnavailableError) as err:
        build(e)
    assert "'some-org/headline-data', config 'en'" in str(err.value) and "offline mode is on" in str(err.value)


def test_custom_entry_round_trips_through_yaml():
    import yaml

    e = custom_entry(references_field="refs", metric="chrf")
    spec = parse_spec({**tiny_spec_dict(), "tasks": [e.model_dump(mode="json")]})
    again = parse_spec(yaml.safe_load(spec_to_yaml(spec)))
    assert again.tasks[0] == spec.tasks[0] == e


# ----------------------------------------------------------------------------- spec errors

def spec_error(task: dict) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec({**tiny_spec_dict(), "tasks": [task]})
    return str(err.value)


def test_spec_errors_name_field_value_and_allowed():
    base = {"files": {"train": str(CUSTOM / "train.jsonl")}, "source_field": "text", "target_field": "summary"}
    msg = spec_error({"name": "xsum", "custom": base})
    assert "tasks.0.name" in msg and "registered task" in msg
    msg = spec_error({"name": "my task", "custom": base})
    assert "tasks.0.name" in msg and "'my task'" in msg
    msg = spec_error({"name": "mine", "custom": {**base, "metric": "meteor"}})
    assert "tasks.0.custom.metric" in msg and "'meteor'" in msg and "bleu, chrf, rouge1, rouge2, rougeL" in msg
    msg = spec_error({"name": "mine", "custom": {**base, "files": {"train": "nowhere/train.jsonl"}}})
    assert "tasks.0.custom.files" in msg and "nowhere/train.jsonl" in msg and "does not exist" in msg
    msg = spec_error({"name": "mine", "custom": {**base, "files": {"train": base["files"]["train"], "dev": "x"}}})
    assert "unknown split 'dev'" in msg and "allowed: train, validation, test" in msg
    msg = spec_error({"name": "mine", "custom": {**base, "files": {"validation": base["files"]["train"]}}})
    assert "a `train` split is required" in msg
    msg = spec_error({"name": "mine", "custom": {**base, "files": {"train": str(CUSTOM.parent / "make_fixtures.py")}}})
    assert "tasks.0.custom.format" in msg and "allowed: parquet, jsonl, json, csv" in msg
    msg = spec_error({"name": "mine", "custom": {**base, "format": "xml"}})
    assert "tasks.0.custom.format" in msg and "'xml'" in msg
    msg = spec_error({"name": "mine", "custom": {**base, "soruce_field": "x"}})
    assert "tasks.0.custom.soruce_field" in msg and "unknown key" in msg
    msg = spec_error({"name": "mine", "prompt": "x: ", "custom": base})
    assert "tasks.0.prompt" in msg and "inside `custom:`" in msg
    msg = spec_error({"name": "d2t", "sizes": {"references": None}})
    assert "tasks.0.sizes.references" in msg and "needs a number" in msg
    msg = spec_error({"name": "d2t", "data": {"path": str(HUB / "xsum")}})
    assert "tasks.0.data" in msg and "generated" in msg and "allowed overrides" in msg
    msg = spec_error({"name": "d2t", "sizes": {"unlabeled": None}})
    assert "tasks.0.sizes.unlabeled" in msg and "needs a number" in msg


# ----------------------------------------------------------------------------- bad data

def bad(tmp_path: Path, **replace) -> str:
    with pytest.raises(TaskDataError) as err:
        build(custom_entry(files=files_with(tmp_path, **replace)))
    return str(err.value)


def test_missing_field_names_the_column_and_what_is_there(tmp_path):
    rows = [{"text": r["text"], "title": r["summary"]} for r in fixture_rows("train")]
    msg = bad(tmp_path, train=rows)
    assert "split 'train'" in msg and "train.jsonl" in msg and "no column 'summary'" in msg
    assert "its columns are text, title" in msg and "custom.source_field / target_field" in msg
    assert "data.columns" in msg


def test_missing_value_in_one_row_names_the_row(tmp_path):
    rows = fixture_rows("train")
    del rows[3]["summary"]
    msg = bad(tmp_path, train=rows)
    assert "split 'train'" in msg and "train.jsonl), row 3: field 'summary' is missing (null)" in msg


def test_empty_target_fails(tmp_path):
    rows = fixture_rows("validation")
    rows[2]["summary"] = "   "
    msg = bad(tmp_path, validation=rows)
    assert "split 'validation'" in msg and "validation.jsonl), row 2: field 'summary' is empty" in msg


def test_non_text_value_fails(tmp_path):
    rows = fixture_rows("train")
    rows[5]["text"] = 42
    assert "row 5: field 'text' must be text, got int 42" in bad(tmp_path, train=rows)
    frame = pd.DataFrame(fixture_rows("train"))
    frame["summary"] = range(len(frame))  # a whole numeric column, as CSV readers infer it
    frame[["text", "summary"]].to_csv(tmp_path / "numbers.csv", index=False)
    with pytest.raises(TaskDataError, match="row 0: field 'summary' must be text, got int 0"):
        build(custom_entry(files={"train": str(tmp_path / "numbers.csv"), "test": str(CUSTOM / "test.csv")},
                           sizes={"labeled": 5, "unlabeled": None, "dev": 2, "test": None}))


def test_references_must_be_a_list_of_texts(tmp_path):
    rows = fixture_rows("test")
    rows[1]["refs"] = "just one string"
    with pytest.raises(TaskDataError, match=r"split 'test' .* row 1: field 'refs' must be a non-empty list"):
        build(custom_entry(files=files_with(tmp_path, test=rows), references_field="refs"))
    rows[1]["refs"] = ["fine", ""]
    with pytest.raises(TaskDataError, match=r"row 1: field 'reference' is empty"):
        build(custom_entry(files=files_with(tmp_path, test=rows), references_field="refs"))


def test_empty_split_fails(tmp_path):
    msg = bad(tmp_path, validation="\n")
    assert "validation.jsonl is empty (no rows)" in msg
    pd.DataFrame({"text": pd.Series([], dtype=str), "summary": pd.Series([], dtype=str)}).to_parquet(
        tmp_path / "empty.parquet")
    files = {"train": str(CUSTOM / "train.parquet"), "validation": str(tmp_path / "empty.parquet")}
    with pytest.raises(TaskDataError, match=r"empty.parquet is empty \(no rows\)"):
        build(custom_entry(files=files))


def test_sizes_larger_than_the_data_fail(tmp_path):
    with pytest.raises(TaskDataError, match=r"sizes.labeled = 100 but the train split has only 40 \(input, target\) "
                                            r"pairs \(40 distinct inputs"):
        build(custom_entry(sizes={**SIZES, "labeled": 100}))
    with pytest.raises(TaskDataError, match=r"sizes.unlabeled = 30 but .* has only 25"):
        build(custom_entry(sizes={**SIZES, "unlabeled": 30}))
    with pytest.raises(TaskDataError, match=r"sizes.dev = 11 but the validation split has only 10"):
        build(custom_entry(sizes={**SIZES, "dev": 11}))


def test_filters_that_drop_everything_say_so():
    with pytest.raises(TaskDataError, match=r"no row of split 'train' .* is left after the length filters"):
        build(custom_entry(filters={"max_source_words": 3}))


def test_bad_data_stops_the_run_at_the_data_stage_before_any_training(tmp_path):
    rows = fixture_rows("train")
    rows[7]["summary"] = ""
    e = custom_entry(files=files_with(tmp_path, train=rows))
    spec = parse_spec({**tiny_spec_dict(), "tasks": [e.model_dump(mode="json")]})
    store = tmp_path / "artifacts"
    with pytest.raises(TaskDataError, match="row 7: field 'summary' is empty"):
        prepare_task(spec, spec.tasks[0], str(store), say=lambda m: None)
    assert [p.name for p in store.iterdir() if p.is_dir()] == ["data"]  # no tokenizer, no teacher
    assert not list(store.glob("data/*/artifact.json"))  # and no data artifact either


def test_copied_files_with_same_content_reuse_the_same_data(tmp_path):
    from bench.stages import data_key

    copy = tmp_path / "copy"
    shutil.copytree(CUSTOM, copy)
    a = custom_entry()
    b = custom_entry(files={s: str(copy / f"{s}.jsonl") for s in ("train", "validation", "test")})
    assert data_key(a, a.task()) == data_key(b, b.task())
    (copy / "test.jsonl").write_text((copy / "test.jsonl").read_text().replace("Residents", "People"))
    assert data_key(a, a.task()) != data_key(b, b.task())


# ----------------------------------------------------------------------------- real-data shapes
# tests/fixtures/concepts: concept sets -> sentences, one row per pair (as CommonGen ships it):
# 24 train inputs with 1-3 targets each (57 distinct pairs, plus one exact duplicate row); 8
# validation and 8 test inputs with up to 7 references.

CONCEPTS = Path(__file__).parent / "fixtures" / "concepts"
CONCEPT_SIZES = {"labeled": 15, "unlabeled": None, "dev": 6, "test": None}


def concepts_entry(sizes: dict | None = None, **custom) -> TaskEntry:
    return custom_entry({**CONCEPT_SIZES, **(sizes or {})}, source_field="concepts", target_field="sentence",
                        files={s: str(CONCEPTS / f"{s}.jsonl") for s in ("train", "validation", "test")}, **custom)


def concept_groups(split: str) -> dict[str, list[str]]:
    """{input: its distinct targets in file order} of one fixture split."""
    out: dict[str, list[str]] = {}
    for line in (CONCEPTS / f"{split}.jsonl").read_text().splitlines():
        row = json.loads(line)
        targets = out.setdefault(row["concepts"], [])
        if row["sentence"] not in targets:
            targets.append(row["sentence"])
    return out


def by_input(rows: list[dict]) -> dict[str, list[str]]:
    """{input: [targets]} of labeled / teacher-pool rows, inputs in the order they were drawn."""
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["source"], []).append(r["target"])
    return out


def test_every_reference_is_kept_by_default():
    e = concepts_entry()
    assert e.split_sizes().references is None  # the custom task default
    splits = build(e)
    truth = {**concept_groups("validation"), **concept_groups("test")}
    rows = splits.splits["dev"] + splits.splits["test"]
    for row in rows:
        assert row["references"] == truth[row["source"]]
    assert max(len(r["references"]) for r in splits.splits["test"]) == 7
    assert sum(len(r["references"]) > 4 for r in rows) >= 4  # the old cap of 4 would have cut these
    refs = splits.info["references"]
    assert refs["at_most"] is None and refs["test"]["references_dropped"] == 0
    assert refs["test"]["references_kept"] == sum(map(len, concept_groups("test").values())) == 31


def test_a_reference_cap_says_how_many_inputs_lost_references():
    splits = build(concepts_entry({"references": 4}))
    truth = {**concept_groups("validation"), **concept_groups("test")}
    for row in splits.splits["dev"] + splits.splits["test"]:
        assert row["references"] == truth[row["source"]][:4]
    test = splits.info["references"]["test"]  # references per test input: 2, 3, 7, 4, 5, 1, 6, 3
    assert (test["inputs"], test["inputs_with_references_dropped"], test["references_dropped"]) == (8, 3, 6)
    assert (test["references_kept"], test["most_per_input_in_data"]) == (25, 7)
    dev = splits.info["references"]["dev"]
    assert dev["references_dropped"] == sum(max(0, len(truth[r["source"]]) - 4) for r in splits.splits["dev"])
    assert splits.info["references"]["at_most"] == 4


def test_repeated_train_inputs_give_one_labeled_example_per_target():
    train = concept_groups("train")
    everything = build(concepts_entry({"labeled": 57, "unlabeled": None}))
    labeled = everything.splits["labeled"]
    assert sorted((r["source"], r["target"]) for r in labeled) == sorted((s, t) for s, ts in train.items() for t in ts)
    info = everything.info
    assert (info["labeled_pairs"], info["distinct_labeled_inputs"], info["train_pairs"]) == (57, 24, 57)
    assert info["repeated_train_inputs"] == 57 - 24 and info["duplicate_train_pairs_dropped"] == 1
    assert everything.splits["unlabeled"] == []

    splits = build(concepts_entry())  # 15 pairs: whole inputs, only the last one drawn may be cut
    drawn = by_input(splits.splits["labeled"])
    assert len(splits.splits["labeled"]) == 15 and splits.info["distinct_labeled_inputs"] == len(drawn) < 15
    *whole, last = drawn
    assert all(drawn[s] == train[s] for s in whole)
    assert drawn[last] == train[last][:len(drawn[last])]
    assert splits.info["train_pairs_cut_at_split_ends"] == len(train[last]) - len(drawn[last])
    unlabeled = set(splits.sources("unlabeled"))
    assert not unlabeled & set(drawn) and len(unlabeled) == 24 - len(drawn)  # disjoint by input
    with pytest.raises(TaskDataError, match=r"sizes.labeled = 58 but the train split has only 57 \(input, target\) "
                                            r"pairs \(24 distinct inputs"):
        build(concepts_entry({"labeled": 58}))


def test_teacher_pool_draws_train_pairs_that_no_other_split_has():
    e = concepts_entry({"teacher_pool": 10})
    assert e.split_sizes().teacher_pool == 10  # a dataset task may ask for one
    splits = build(e)
    train = concept_groups("train")
    pool = splits.splits["teacher_pool"]
    assert len(pool) == 10 and all(r["target"] in train[r["source"]] for r in pool)
    drawn = by_input(pool)
    *whole, _ = drawn
    assert all(drawn[s] == train[s] for s in whole)
    for split in ("labeled", "unlabeled", "dev", "test"):
        assert not set(drawn) & set(splits.sources(split)), split
    info = splits.info
    assert (info["teacher_pool_pairs"], info["distinct_teacher_pool_inputs"]) == (10, len(drawn))
    assert len(splits.splits["unlabeled"]) == 24 - info["distinct_labeled_inputs"] - len(drawn)


def test_splits_stay_put_when_other_sizes_change():
    built: dict = {}

    def cut(**sizes):
        sizes = {"labeled": 15, "unlabeled": 3, "teacher_pool": 10, **sizes}
        key = tuple(sorted(sizes.items()))
        if key not in built:
            built[key] = build(concepts_entry(sizes)).splits
        return built[key]

    base = cut()
    for other in (cut(labeled=5), cut(labeled=20), cut(unlabeled=0), cut(unlabeled=None)):
        assert other["teacher_pool"] == base["teacher_pool"]  # the pool ignores labeled and unlabeled
    for pool in (0, 4, 16):  # what students train on ignores the pool
        other = cut(teacher_pool=pool)
        assert other["labeled"] == base["labeled"] and other["unlabeled"] == base["unlabeled"]
    assert cut(labeled=20)["labeled"][:15] == base["labeled"]  # growing a split extends it
    assert cut(teacher_pool=16)["teacher_pool"][:10] == base["teacher_pool"]
    assert cut(unlabeled=5)["unlabeled"][:3] == base["unlabeled"]
    for other in (cut(labeled=20, teacher_pool=16), cut(teacher_pool=0, unlabeled=None)):
        assert (other["dev"], other["test"]) == (base["dev"], base["test"])
    assert cut(teacher_pool=0)["labeled"] == build(concepts_entry({"labeled": 15, "unlabeled": 3})).splits["labeled"]


def test_impossible_teacher_pool_names_the_split_the_numbers_and_the_fix():
    info = build(concepts_entry()).info
    left = 57 - 15 - info["train_pairs_cut_at_split_ends"]
    with pytest.raises(TaskDataError) as err:
        build(concepts_entry({"teacher_pool": 50}))
    msg = str(err.value)
    assert f"sizes.teacher_pool = 50 but the train split has only {left} (input, target) pairs" in msg
    assert f"left after the labeled split (15 pairs of {info['distinct_labeled_inputs']} inputs; 57 pairs of 24 " \
           f"inputs in all)" in msg
    assert "lower tasks[].sizes.teacher_pool or sizes.labeled" in msg
    with pytest.raises(TaskDataError, match=r"sizes.unlabeled = 20 but the train split after the labeled inputs and "
                                            r"the teacher pool has only \d+ distinct inputs.*lower "
                                            r"tasks\[\].sizes.unlabeled or sizes.teacher_pool, or set it to null"):
        build(concepts_entry({"teacher_pool": 10, "unlabeled": 20}))


def test_teacher_pool_reaches_the_teacher_and_nothing_students_see(tmp_path, monkeypatch):
    import bench.stages as stages
    from bench.data import encode, load_splits
    from bench.pretrained import load_tokenizer

    tiny = tiny_spec_dict(methods=("ft", "seq_kd"))
    teacher = tiny["tasks"][0]["teacher"]
    teacher = {**teacher, "train": {**teacher["train"], "dev_every": 0}}  # short texts, no dev passes: fast
    e = concepts_entry({"unlabeled": 3, "teacher_pool": 10}, max_source_tokens=16, max_target_tokens=16)
    task = {**e.model_dump(mode="json"), "teacher": teacher}
    spec = parse_spec({**tiny, "tasks": [task]})
    seen: dict = {}
    real_train_tokenizer, real_stream = stages.train_tokenizer, stages.Stream

    def train_tokenizer(texts, *args, **kwargs):
        seen["tokenizer"] = list(texts)
        return real_train_tokenizer(texts, *args, **kwargs)

    def stream(*args, **kwargs):
        seen.setdefault("teacher", real_stream(*args, **kwargs))
        return seen["teacher"]

    monkeypatch.setattr(stages, "train_tokenizer", train_tokenizer)
    monkeypatch.setattr(stages, "Stream", stream)
    art = prepare_task(spec, spec.tasks[0], str(tmp_path / "artifacts"), say=lambda m: None)
    splits = load_splits(art.paths["data"])
    labeled, unlabeled, pool = (splits.splits[s] for s in ("labeled", "unlabeled", "teacher_pool"))
    assert len(pool) == 10
    # the students' tokenizer learns from their own text only
    assert seen["tokenizer"] == [r["source"] for r in labeled] + [r["target"] for r in labeled] + \
        [r["source"] for r in unlabeled]
    assert not {r["source"] for r in pool} & set(seen["tokenizer"])
    # the teacher trains on labeled + pool
    tok = load_tokenizer(art.paths["tokenizer"])
    assert seen["teacher"].inputs == encode(tok, [r["source"] for r in labeled + pool], art.lengths.max_source)
    # the teacher's pseudo-targets, what students learn from it, cover labeled and unlabeled inputs only
    [pt_path] = [p for label, p in art.paths.items() if label.startswith("pseudo_targets/")]
    pts = json.loads((Path(pt_path) / "pseudo_targets.json").read_text())
    assert {k: len(v) for k, v in pts.items()} == {"labeled": len(labeled), "unlabeled": len(unlabeled)}
    card = json.loads((Path(art.paths["data"]) / "task.json").read_text())
    assert card["splits"]["counts"]["teacher_pool"] == 10 and card["version"] == "headlines-custom-2"
