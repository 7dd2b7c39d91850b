"""The paper's Hub tasks (xsum, squad_qg, art, shakespeare) through their real definitions:
fixtures in the exact Hub schemas and file layouts (tests/fixtures/hub, see make_fixtures.py)
are read by `datasets.load_dataset` via a `data: {path: ...}` override of the same task entry;
the realistic split recipe, fingerprints of the data artifact, and offline behaviour."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import datasets  # imported before any test sets offline variables: datasets reads them at import
import datasets.config
import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants as hub_constants

from bench.artifacts import ArtifactStore
from bench.data import load_splits
from bench.spec import SpecError, TaskEntry, parse_spec
from bench.stages import build_data, data_key
from tasks import (
    METRICS,
    SPLITS,
    DataUnavailableError,
    TaskDataError,
    get_task,
    task_names,
)
from tests.conftest import tiny_spec_dict

HUB = Path(__file__).parent / "fixtures" / "hub"
FIXTURE = {"xsum": HUB / "xsum", "squad_qg": HUB / "squad", "art": HUB / "art", "shakespeare": HUB / "shakespeare"}
SIZES = {
    "xsum": {"labeled": 12, "unlabeled": None, "dev": 5, "test": 5},
    "squad_qg": {"labeled": 10, "unlabeled": 15, "dev": 8, "test": None},
    "art": {"labeled": 4, "unlabeled": None, "dev": 2, "test": None},
    "shakespeare": {"labeled": 20, "unlabeled": 10, "dev": 5, "test": None},
}
PAPER_TASKS = list(FIXTURE)


def entry(name: str, path: Path | None = None, **overrides) -> TaskEntry:
    """The task's spec entry, reading the fixture through a `data.path` override."""
    return TaskEntry(name=name, data={"path": str(path or FIXTURE[name])},
                     sizes=overrides.pop("sizes", SIZES[name]), **overrides)


def build(e: TaskEntry, seed: int | None = None):
    return e.task().build(e.split_sizes(), e.data_seed if seed is None else seed)


def rows_of(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def check_splits(splits, e: TaskEntry) -> None:
    """The shape every task produces: splits disjoint by input, the right fields, sizes and
    prompt. Labeled rows are (input, target) pairs, so an input may repeat there with another
    target; every other split has one row per input."""
    task, sizes = e.task(), e.split_sizes()
    assert set(splits.splits) == set(SPLITS) and len(splits.splits["teacher_pool"]) == sizes.teacher_pool
    seen: set[str] = set()
    for name in ("labeled", "unlabeled", "dev", "test", "teacher_pool"):
        rows = splits.splits[name]
        want = getattr(sizes, name)
        assert (rows or name == "teacher_pool") and (want is None or len(rows) == want), (name, len(rows), want)
        sources = splits.sources(name)
        if name in ("labeled", "teacher_pool"):
            pairs = [(r["source"], r["target"]) for r in rows]
            assert len(set(pairs)) == len(pairs), name
        else:
            assert len(set(sources)) == len(sources), name
        assert not seen & set(sources), name
        seen |= set(sources)
        keys = {"labeled": {"source", "target"}, "teacher_pool": {"source", "target"},
                "unlabeled": {"source"}}.get(name, {"source", "references"})
        for row in rows:
            assert set(row) == keys and row["source"].startswith(task.prompt) and row["source"] != task.prompt
            if "target" in row:
                assert isinstance(row["target"], str) and row["target"].strip()
            if "references" in row:
                assert 1 <= len(row["references"]) <= (sizes.references or len(row["references"]))
                assert len(set(row["references"])) == len(row["references"])
                assert all(isinstance(r, str) and r.strip() for r in row["references"])


# ----------------------------------------------------------------------------- registry

def test_registry_has_the_paper_tasks():
    assert {"d2t", "qg", "xsum", "squad_qg", "art", "shakespeare"} == set(task_names())
    hub = {name: get_task(name).data for name in PAPER_TASKS}
    assert (hub["xsum"].path, hub["xsum"].revision) == ("EdinburghNLP/xsum", "refs/convert/parquet")
    assert (hub["squad_qg"].path, hub["squad_qg"].config) == ("rajpurkar/squad", "plain_text")
    assert (hub["art"].path, hub["art"].config) == ("allenai/art", "anli")
    assert hub["shakespeare"] is None  # no vetted Hub copy: a local one is required
    for name in PAPER_TASKS:
        task = get_task(name)
        assert task.metric in METRICS and task.prompt and task.description
        assert task.default_sizes.teacher_pool == 0 and not task.uses_teacher_pool
        assert task.default_sizes.references is None  # every reference the data has
        assert task.definition_version == "2"
    assert get_task("xsum").metric == "rougeL" and get_task("shakespeare").metric == "bleu"


def test_spec_entry_takes_the_task_defaults_and_overrides():
    spec = parse_spec({**tiny_spec_dict(), "tasks": [
        {"name": "xsum", "data": {"path": str(FIXTURE["xsum"])}, "sizes": {"labeled": 7}},
        {"name": "art", "data": {"path": str(FIXTURE["art"])}, "prompt": "why: ", "max_source_tokens": 64,
         "filters": {"min_target_words": 4}},
    ]})
    xsum, art = spec.tasks
    assert asdict(xsum.split_sizes()) == {**asdict(get_task("xsum").default_sizes), "labeled": 7}
    task = art.task()
    assert (task.prompt, task.max_source_tokens, task.max_target_tokens) == ("why: ", 64, 48)
    assert task.filters.min_target_words == 4 and task.metric == "rougeL"


def test_shakespeare_without_a_copy_is_refused_before_any_work():
    with pytest.raises(SpecError) as err:
        parse_spec({**tiny_spec_dict(), "tasks": [{"name": "shakespeare"}]})
    msg = str(err.value)
    assert "tasks.0.data" in msg and "data: {path: ...}" in msg and "modern" in msg and "original" in msg


# ----------------------------------------------------------------------------- the split recipe

@pytest.mark.parametrize("name", PAPER_TASKS)
def test_fixture_builds_the_realistic_splits(name):
    e = entry(name)
    first = build(e)
    check_splits(first, e)
    assert build(e).splits == first.splits  # deterministic per seed
    other = build(e, seed=1)
    assert other.splits["labeled"] != first.splits["labeled"]
    assert first.info["data"].startswith("local directory") and first.info["counts"]["labeled"] > 0


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_a_teacher_pool_comes_from_train_and_leaves_the_other_splits_alone(name):
    plain = build(entry(name))
    e = entry(name, sizes={**SIZES[name], "teacher_pool": 4})
    pooled = build(e)
    check_splits(pooled, e)  # disjoint from every other split by input, with targets
    for split in ("labeled", "dev", "test"):
        assert pooled.splits[split] == plain.splits[split], split
    if SIZES[name]["unlabeled"] is not None:
        assert pooled.splits["unlabeled"] == plain.splits["unlabeled"]
    assert pooled.info["teacher_pool_pairs"] == 4 and pooled.info["distinct_teacher_pool_inputs"] >= 1
    assert data_key(e, e.task()) != data_key(entry(name), entry(name).task())


def test_xsum_drops_empty_and_stub_articles_and_keeps_test_articles_out_of_train():
    e = entry("xsum", sizes={"labeled": 10, "unlabeled": None, "dev": 5, "test": None})
    splits = build(e)
    info = splits.info
    assert info["dropped_empty"]["train"] == 1 and info["dropped_by_filters"]["train"] == 1
    assert info["train_inputs_also_in_dev_or_test"] == 1  # one train article is also a test article
    assert info["recipe"] == "dev from validation, test from test" and len(splits.splits["test"]) == 10
    test_docs = {r["document"] for r in rows_of(HUB / "xsum/default/test/0000.parquet")}
    prompt = "summarize: "
    assert {s.removeprefix(prompt) for s in splits.sources("test")} == test_docs
    train = {r["document"]: r["summary"] for r in rows_of(HUB / "xsum/default/train/0000.parquet")}
    for row in splits.splits["labeled"]:
        assert train[row["source"].removeprefix(prompt)] == row["target"]


def test_squad_qg_divides_validation_into_dev_and_test():
    splits = build(entry("squad_qg"))
    assert splits.info["recipe"] == "validation divided into dev and test"
    validation = rows_of(HUB / "squad/plain_text/validation-00000-of-00001.parquet")
    val_contexts = {r["context"] for r in validation}
    held_out = splits.splits["dev"] + splits.splits["test"]
    assert len(held_out) == len(validation)  # dev = 8, test = all the rest
    for row in held_out:
        answer, context = row["source"].removeprefix("generate question: answer: ").split(" context: ", 1)
        assert context in val_contexts and answer in context
        assert row["references"][0].endswith("?")
    train_contexts = {r["context"] for r in rows_of(HUB / "squad/plain_text/train-00000-of-00001.parquet")}
    for row in splits.splits["labeled"] + splits.splits["unlabeled"]:
        assert row["source"].split(" context: ", 1)[1] in train_contexts


def test_squad_qg_questions_sharing_passage_and_answer_become_references():
    e = entry("squad_qg", sizes={"labeled": 36, "unlabeled": 0, "dev": 1, "test": 1})
    splits = build(e)
    info = splits.info
    # the year of founding is asked twice per passage in train: two labeled pairs, one per question
    assert info["repeated_train_inputs"] == 6 and info["duplicate_train_pairs_dropped"] == 0
    assert (info["labeled_pairs"], info["distinct_labeled_inputs"]) == (36, 30)
    years = {}
    for r in splits.splits["labeled"]:
        if r["source"].split(" context: ")[0][-4:].isdigit():
            years.setdefault(r["source"], []).append(r["target"])
    assert len(years) == 6
    for questions in years.values():
        assert sorted(q.split()[0] for q in questions) == ["In", "When"]  # "When was ...", "In which year ..."
    # validation rows repeat the answer three times but each (passage, answer) is one input
    assert info["merged_duplicate_inputs"] == {"validation": 0}


def test_art_target_is_the_hypothesis_the_label_marks_correct():
    splits = build(entry("art"))
    rows = rows_of(HUB / "art/anli/train-00000-of-00001.parquet") + \
        rows_of(HUB / "art/anli/validation-00000-of-00001.parquet")
    correct, wrong = {}, {}
    for r in rows:
        key = f"explain: observation 1: {r['observation_1']} observation 2: {r['observation_2']}"
        correct.setdefault(key, set()).add(r[f"hypothesis_{r['label']}"])
        wrong.setdefault(key, set()).add(r[f"hypothesis_{3 - r['label']}"])
    for row in splits.splits["labeled"]:
        assert row["target"] in correct[row["source"]]
    for row in splits.splits["dev"] + splits.splits["test"]:
        assert set(row["references"]) == correct[row["source"]]  # every correct hypothesis is a reference
        assert not set(row["references"]) & wrong[row["source"]]


def test_art_bad_label_fails_with_split_file_and_row(tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(FIXTURE["art"], copy)
    path = copy / "anli/train-00000-of-00001.parquet"
    table = pq.read_table(path)
    labels = table.column("label").to_pylist()
    labels[5] = 0
    pq.write_table(table.set_column(4, "label", [labels]), path)
    with pytest.raises(TaskDataError, match=r"split 'train' .* row 5: field 'label' must be 1 or 2"):
        build(entry("art", copy))


def test_shakespeare_goes_from_modern_to_original(tmp_path):
    splits = build(entry("shakespeare"))
    pairs = {}
    for split in ("train", "validation", "test"):
        for line in (HUB / "shakespeare" / f"{split}.jsonl").read_text().splitlines():
            row = __import__("json").loads(line)
            pairs[row["modern"]] = row["original"]
    for row in splits.splits["labeled"]:
        assert pairs[row["source"].removeprefix("shakespearize: ")] == row["target"]
    for row in splits.splits["test"]:
        assert row["references"] == [pairs[row["source"].removeprefix("shakespearize: ")]]
    assert splits.info["dropped_by_filters"]["train"] == 2  # lines under 8 words
    pooled = build(entry("shakespeare", sizes={**SIZES["shakespeare"], "teacher_pool": 5}))
    for row in pooled.splits["teacher_pool"]:
        assert pairs[row["source"].removeprefix("shakespearize: ")] == row["target"]


def test_columns_of_a_differently_named_copy_are_mapped(tmp_path):
    copy = tmp_path / "shk"
    copy.mkdir()
    for split in ("train", "validation", "test"):
        text = (HUB / "shakespeare" / f"{split}.jsonl").read_text()
        (copy / f"{split}.jsonl").write_text(text.replace('"modern"', '"src"').replace('"original"', '"tgt"'))
    with pytest.raises(TaskDataError, match=r"no column 'modern', 'original'; its columns are src, tgt"):
        build(entry("shakespeare", copy))
    mapped = entry("shakespeare", sizes=SIZES["shakespeare"])
    mapped = TaskEntry(name="shakespeare", data={"path": str(copy), "columns": {"modern": "src", "original": "tgt"}},
                       sizes=SIZES["shakespeare"])
    assert build(mapped).splits == build(entry("shakespeare")).splits


# ----------------------------------------------------------------------------- the data artifact

def test_data_key_follows_file_content_and_settings_not_location(tmp_path):
    copy = tmp_path / "xsum"
    shutil.copytree(FIXTURE["xsum"], copy)
    base = entry("xsum")
    key = data_key(base, base.task())
    moved = entry("xsum", copy)
    assert data_key(moved, moved.task()) == key  # same bytes elsewhere: same artifact
    for changed in (entry("xsum", copy, prompt="tl;dr: "), entry("xsum", copy, sizes={**SIZES["xsum"], "dev": 4}),
                    entry("xsum", copy, filters={"min_source_words": 30}),
                    entry("xsum", copy, data_seed=1)):
        assert data_key(changed, changed.task()) != key
    path = copy / "default/validation/0000.parquet"
    table = pq.read_table(path)
    summaries = table.column("summary").to_pylist()
    summaries[0] += " Updated."
    pq.write_table(table.set_column(1, "summary", [summaries]), path)
    assert data_key(moved, moved.task()) != key  # edited data: a new artifact


def test_data_artifact_holds_splits_and_task_card(tmp_path):
    e = entry("squad_qg")
    task = e.task()
    store = ArtifactStore(tmp_path)
    art = store.get_or_build("data", data_key(e, task), lambda d: build_data(task, e, d))
    again = store.get_or_build("data", data_key(e, task), lambda d: pytest.fail("rebuilt"))
    assert not art.reused and again.reused and again.hash == art.hash
    splits = load_splits(art.path)
    assert splits.splits == build(e).splits
    card = __import__("json").loads((art.path / "task.json").read_text())
    assert card["metric"] == "rougeL" and card["prompt"] == "generate question: "
    assert (card["max_source_tokens"], card["max_target_tokens"]) == (512, 48)
    assert card["splits"]["counts"]["test"] == 12 and card["data"].startswith("local directory")
    assert card["version"] == "squad_qg-2" and card["splits"]["sizes"]["references"] is None
    refs = card["splits"]["references"]
    assert refs["at_most"] is None and refs["test"]["references_dropped"] == 0
    assert refs["dev"]["inputs"] + refs["test"]["inputs"] == 20
    assert card["splits"]["labeled_pairs"] == 10 and "distinct_labeled_inputs" in card["splits"]


# ----------------------------------------------------------------------------- offline

@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No cached Hub datasets, and any attempt to open a socket is recorded."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    connects = []
    real_connect = socket.socket.connect

    def record(sock, address):
        connects.append(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", record)
    return connects


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_mode_names_the_dataset_and_the_fix_without_touching_the_network(var, monkeypatch, empty_caches):
    monkeypatch.setenv(var, "1")
    e = TaskEntry(name="xsum", sizes={"labeled": 5})
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError) as err:
        build(e)
    assert time.perf_counter() - start < 20
    msg = str(err.value)
    assert "'EdinburghNLP/xsum'" in msg and f"offline mode is on ({var}=1)" in msg
    assert "data: {path:" in msg and "HF_DATASETS_CACHE=" in msg and "HF_HOME" in msg
    assert not empty_caches  # no connection attempted


def test_unreachable_hub_falls_back_to_the_cache_quickly(monkeypatch, empty_caches):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError) as err:
        build(TaskEntry(name="art", sizes={"labeled": 5}))
    assert time.perf_counter() - start < 20
    msg = str(err.value)
    assert "'allenai/art'" in msg and "did not answer" in msg and "not in the local cache" in msg
    assert empty_caches == [("127.0.0.1", 9)]  # the probe only


def test_offline_variables_set_before_start_fail_fast_in_a_fresh_process(tmp_path):
    code = textwrap.dedent("""
        from bench.spec import TaskEntry
        from tasks import DataUnavailableError
        e = TaskEntry(name="squad_qg", sizes={"labeled": 5})
        try:
            e.task().build(e.split_sizes(), 0)
        except DataUnavailableError as err:
            print("UNAVAILABLE", err)
    """)
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert "UNAVAILABLE task 'squad_qg'" in done.stdout, done.stderr[-2000:]
    assert "'rajpurkar/squad'" in done.stdout and str(tmp_path / "hf") in done.stdout
