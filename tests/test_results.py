import json

from bench.results import append_row, finished_row, read_rows, results_path


def row(key, status="ok", **kw):
    return {"trial_key": key, "status": status, **kw}


def test_ok_row_is_written_once(tmp_path):
    assert append_row(tmp_path, row("a", bleu=1.0))
    assert not append_row(tmp_path, row("a", bleu=2.0))  # a retry cannot duplicate or overwrite
    rows = read_rows(tmp_path)
    assert len(rows) == 1 and rows[0]["bleu"] == 1.0
    assert len(results_path(tmp_path).read_text().splitlines()) == 1


def test_error_then_ok_keeps_the_ok_row(tmp_path):
    append_row(tmp_path, row("a", status="error", error="boom"))
    assert finished_row(tmp_path, "a") is None
    append_row(tmp_path, row("a", bleu=3.0))
    append_row(tmp_path, row("b", status="error", error="x"))
    rows = {r["trial_key"]: r for r in read_rows(tmp_path)}
    assert rows["a"]["status"] == "ok" and rows["a"]["bleu"] == 3.0
    assert rows["b"]["status"] == "error"


def test_torn_line_is_skipped_and_sealed(tmp_path):
    append_row(tmp_path, row("a"))
    with open(results_path(tmp_path), "a") as fh:
        fh.write('{"trial_key": "b", "sta')  # a crash mid-write
    append_row(tmp_path, row("c"))
    assert sorted(r["trial_key"] for r in read_rows(tmp_path)) == ["a", "c"]
    lines = results_path(tmp_path).read_text().splitlines()
    assert json.loads(lines[-1])["trial_key"] == "c"
