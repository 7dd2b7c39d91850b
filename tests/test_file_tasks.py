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
