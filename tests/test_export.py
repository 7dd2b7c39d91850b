"""Export: the dev-best student of each task (never the test-best), copied with its card, from
a synthetic run dir of real rows and tiny saved T5 students; Hub pushes fail fast offline."""
from __future__ import annotations

import shutil
import json
import time

import pytest
import yaml
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from bench.cli import main
from bench.export import EXPORT_FILE, export_best, push_to_hub
from bench.results import STUDENTS_DIR, append_row, slug
from bench.storage import Location
from tests.test_modelcard import student_row, teacher_row, tiny_t5


def make_run(tmp_path, tok, rows_spec, save=True, task="d2t"):
    """A run dir with a teacher row and one student row (and saved student) per spec entry."""
    run_dir = tmp_path / "run"
    append_row(run_dir, teacher_row(task))
    rows = []
    for i, (method, seed, bleu, dev, dev_loss) in enumerate(rows_spec):
        row = student_row(task=task, method=method, seed=seed, bleu=bleu, dev=dev, dev_loss=dev_loss)
        if save:
            path = tiny_t5(tok, run_dir / "students" / slug(row["trial_key"]), d_model=8 + 2 * i)
            row["metrics"]["student_dir"] = str(path)
        append_row(run_dir, row)
        rows.append(row)
    return run_dir, rows


def card_values(path):
    head = path.read_text()[4:].split("\n---\n", 1)[0]
    metrics = yaml.safe_load(head)["model-index"][0]["results"][0]["metrics"]
    return {m["type"]: m["value"] for m in metrics}


def test_dev_best_is_exported_even_when_test_disagrees(tmp_path, bpe_tokenizer):
    # seq_kd is best on test (40), joint_teaching best on dev (35): dev must win
    run_dir, rows = make_run(tmp_path, bpe_tokenizer, [
        ("ft", 0, 20.0, 25.0, 2.0), ("seq_kd", 0, 40.0, 30.0, 1.0), ("joint_teaching", 0, 33.0, 35.0, 3.0),
        ("joint_teaching", 1, 31.0, 34.0, 3.1)])
    said = []
    [out] = export_best(run_dir, tmp_path / "export", say=said.append)
    assert out.local_path == tmp_path / "export" / "d2t"
    best = rows[2]
    why = json.loads((out / EXPORT_FILE).read_text())
    assert why["trial_key"] == best["trial_key"] and why["metric"] == "dev_bleu"
    assert why["higher_is_better"] and why["source"] == "metrics.selection.value" and why["value"] == 35.0
    assert "dev_bleu = 35" in said[0] and "higher is better" in said[0]

    model = AutoModelForSeq2SeqLM.from_pretrained(out.local_path)  # the chosen student's own weights
    assert model.config.d_model == 12
    assert AutoTokenizer.from_pretrained(out.local_path).pad_token == "<pad>"
    assert card_values(out.local_path / "README.md") == {"bleu": 33.0, "chrf": 53.0, "ter": 37.0, "rougeL": 43.0}
    body = (out.local_path / "README.md").read_text()
    assert "| BLEU | 33.00 | 32.00 ± " in body and "| 2 |" in body  # two seeds of this system
    assert "test BLEU: 59.60" in body  # the teacher row

    with pytest.raises(FileExistsError, match="overwrite"):
        export_best(run_dir, tmp_path / "export", say=said.append)
    # `by="dev_loss"` ranks by the final dev loss even though a selection exists
    [out] = export_best(run_dir, tmp_path / "export", by="dev_loss", overwrite=True, say=said.append)
    assert json.loads((out / EXPORT_FILE).read_text())["trial_key"] == rows[1]["trial_key"]
    assert AutoModelForSeq2SeqLM.from_pretrained(out.local_path).config.d_model == 10


def test_dev_loss_is_the_fallback_and_lower_wins(tmp_path, bpe_tokenizer):
    run_dir, rows = make_run(tmp_path, bpe_tokenizer, [
        ("ft", 0, 20.0, 25.0, 2.0), ("seq_kd", 0, 40.0, 30.0, 1.5), ("word_kd", 0, 10.0, 20.0, 1.2)])
    for row in rows:  # older rows: no selection recorded
        del row["metrics"]["selection"]
    shutil.rmtree(run_dir / "rows")
    for row in [teacher_row(), *rows]:
        append_row(run_dir, row)
    said = []
    [out] = export_best(run_dir, tmp_path / "export", task="d2t", say=said.append)
    why = json.loads((out / EXPORT_FILE).read_text())
    assert why["trial_key"] == rows[2]["trial_key"] and why["source"] == "metrics.dev_loss"
    assert not why["higher_is_better"] and "lower is better" in said[0]
    assert card_values(out.local_path / "README.md")["bleu"] == 10.0
    with pytest.raises(ValueError, match="dev only"):
        export_best(run_dir, tmp_path / "other", by="test")


def test_clear_errors_without_saved_students_or_for_unknown_tasks(tmp_path, bpe_tokenizer):
    run_dir, _ = make_run(tmp_path, bpe_tokenizer, [("ft", 0, 20.0, 25.0, 2.0)], save=False)
    with pytest.raises(ValueError, match=r"saved no students: set `storage.save_students: true`"):
        export_best(run_dir, tmp_path / "export")
    with pytest.raises(ValueError, match=r"task 'qg' has no finished students .*tasks: d2t"):
        export_best(run_dir, tmp_path / "export", task="qg")
    with pytest.raises(ValueError, match="no finished student trials"):
        export_best(tmp_path / "empty", tmp_path / "export")


def test_moved_run_dir_still_finds_its_students(tmp_path, bpe_tokenizer):
    run_dir, rows = make_run(tmp_path, bpe_tokenizer, [("ft", 0, 20.0, 25.0, 2.0)])
    moved = run_dir.rename(tmp_path / "moved")
    [out] = export_best(moved, tmp_path / "export", say=lambda _: None)
    assert (out / "model.safetensors").exists()


def test_a_run_on_an_object_store_exports_to_disk_and_to_the_store(tmp_path, bpe_tokenizer, s3_bucket):
    """Rows and saved students on S3 (a real S3 server on loopback), as a cluster run keeps them:
    `kdbench export` reads them there and writes to a local folder or back to the store."""
    run = Location.of(s3_bucket).join("runs", "r1")
    append_row(run, teacher_row())
    for i, (method, dev) in enumerate([("ft", 25.0), ("seq_kd", 31.0)]):
        row = student_row(method=method, seed=0, dev=dev)
        saved = run.join(STUDENTS_DIR, slug(row["trial_key"]))
        saved.upload_dir(tiny_t5(bpe_tokenizer, tmp_path / f"s{i}", d_model=8 + 2 * i))
        row["metrics"]["student_dir"] = str(saved)
        append_row(run, row)

    assert main(["export", str(run), "--best", "--to", str(tmp_path / "out")]) == 0
    assert AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out" / "d2t").config.d_model == 10  # seq_kd: dev 31
    assert "dev_bleu" in (tmp_path / "out" / "d2t" / "README.md").read_text()

    remote = Location.of(s3_bucket).join("exports")
    assert main(["export", str(run), "--best", "--to", str(remote)]) == 0
    back = tmp_path / "back"
    remote.join("d2t").download_dir(back)
    assert AutoModelForSeq2SeqLM.from_pretrained(back).config.d_model == 10
    assert json.loads((back / EXPORT_FILE).read_text())["run_dir"] == str(run)
    with pytest.raises(FileExistsError, match="overwrite"):
        export_best(run, remote, say=lambda _: None)
    [again] = export_best(run, remote, overwrite=True, by="dev_loss", say=lambda _: None)
    assert again == remote.join("d2t")
    with pytest.raises(ValueError, match="not on this machine's disk"):
        push_to_hub(again, "someone/kd-student")


def test_upload_dir_sends_its_marker_last_and_refuses_a_missing_one(tmp_path, s3_bucket, monkeypatch):
    """Readers wait for the marker (an artifact's meta file, an export's record), so it goes last;
    a marker that is not there would keep them waiting forever, so nothing is sent."""
    local = tmp_path / "d"
    (local / "sub").mkdir(parents=True)
    for name in ("z.bin", "sub/b.bin"):
        (local / name).write_bytes(name.encode())
    remote = Location.of(s3_bucket).join("upload")
    with pytest.raises(FileNotFoundError, match="the marker meta.json is not in"):
        remote.upload_dir(local, marker="meta.json")
    assert not remote.exists() and not remote.join("z.bin").exists()

    (local / "meta.json").write_text("{}")
    sent = []
    write = Location.write_bytes
    monkeypatch.setattr(Location, "write_bytes", lambda self, data: (sent.append(self.uri), write(self, data)))
    remote.upload_dir(local, marker="meta.json")
    assert [u.split("?")[0].rsplit("upload/", 1)[1] for u in sent] == ["sub/b.bin", "z.bin", "meta.json"]
    back = tmp_path / "back"
    remote.download_dir(back)
    assert (back / "sub" / "b.bin").read_bytes() == b"sub/b.bin" and (back / "meta.json").read_text() == "{}"


def test_push_to_hub_fails_fast_in_one_line_when_offline_or_unreachable(tmp_path, bpe_tokenizer, monkeypatch):
    student = tiny_t5(bpe_tokenizer, tmp_path / "student")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError, match=r"cannot push .* offline mode is on \(HF_HUB_OFFLINE=1\)") as err:
        push_to_hub(student, "someone/kd-student")
    assert "\n" not in str(err.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for var in ("HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    import datasets.config
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="did not answer") as err:
        push_to_hub(student, "someone/kd-student")
    assert time.monotonic() - start < 5 and "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="export it first"):
        push_to_hub(tmp_path, "someone/kd-student")
