"""The results store: one file per trial, written once when ok, atomically, on a local disk or
an S3-compatible object store (moto's server on loopback)."""
import json

import pytest

from bench.results import ROWS_DIR, append_row, finished_row, read_rows
from bench.storage import Location


def row(key, status="ok", **kw):
    return {"trial_key": key, "status": status, **kw}


def test_ok_row_is_written_once(tmp_path):
    assert append_row(tmp_path, row("a", bleu=1.0))
    assert not append_row(tmp_path, row("a", bleu=2.0))  # a retry cannot duplicate or overwrite
    rows = read_rows(tmp_path)
    assert len(rows) == 1 and rows[0]["bleu"] == 1.0
    assert len(list((tmp_path / ROWS_DIR).iterdir())) == 1


def test_error_then_ok_keeps_the_ok_row(tmp_path):
    append_row(tmp_path, row("a", status="error", error="boom"))
    assert finished_row(tmp_path, "a") is None
    append_row(tmp_path, row("a", bleu=3.0))
    append_row(tmp_path, row("b", status="error", error="x"))
    rows = {r["trial_key"]: r for r in read_rows(tmp_path)}
    assert rows["a"]["status"] == "ok" and rows["a"]["bleu"] == 3.0
    assert rows["b"]["status"] == "error"


def test_a_half_written_row_is_never_seen(tmp_path):
    """Writes go to a temporary name and are renamed into place: a crash mid-write leaves at
    most a stray temporary file, which readers skip."""
    append_row(tmp_path, row("a"))
    (tmp_path / ROWS_DIR / ".x.json.123.tmp").write_text('{"trial_key": "b", "sta')
    append_row(tmp_path, row("c"))
    assert sorted(r["trial_key"] for r in read_rows(tmp_path)) == ["a", "c"]


def test_rows_of_older_runs_in_results_jsonl_are_still_read(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps(row("old", bleu=5.0)) + "\n" + '{"trial_key": "torn"\n')
    append_row(tmp_path, row("new"))
    assert sorted(r["trial_key"] for r in read_rows(tmp_path)) == ["new", "old"]
    assert not append_row(tmp_path, row("old", bleu=9.0)) and finished_row(tmp_path, "old")["bleu"] == 5.0


def test_appending_does_not_read_the_store(tmp_path, monkeypatch):
    """O(1) appends: with thousands of rows stored, an append reads one file, never all."""
    for i in range(300):
        append_row(tmp_path, row(f"k{i}"))
    import bench.results as results

    monkeypatch.setattr(results, "_stored_rows", lambda *a: pytest.fail("append scanned the store"))
    assert append_row(tmp_path, row("k-new")) and not append_row(tmp_path, row("k7"))


def test_the_store_works_on_an_s3_compatible_object_store(s3_bucket):
    run = Location.of(s3_bucket).join("runs", "r1")
    assert append_row(run, row("a", bleu=1.0)) and not append_row(run, row("a", bleu=2.0))
    append_row(run, row("b", status="error", error="x"))
    rows = {r["trial_key"]: r for r in read_rows(run)}
    assert rows["a"]["bleu"] == 1.0 and rows["b"]["status"] == "error"
    assert finished_row(run, "a")["bleu"] == 1.0 and finished_row(run, "b") is None


def test_rows_with_what_only_pythons_json_writes_are_read(tmp_path):
    """Rows are parsed with orjson where it can; NaN, Infinity and huge integers (which
    json.dumps writes and orjson refuses) still read, through the json module."""
    import math

    append_row(tmp_path, row("nan", bleu=float("nan"), ter=float("inf"), big=2**70))
    append_row(tmp_path, row("plain", bleu=1.5, text="é ± ×"))
    rows = {r["trial_key"]: r for r in read_rows(tmp_path)}
    assert math.isnan(rows["nan"]["bleu"]) and rows["nan"]["ter"] == math.inf and rows["nan"]["big"] == 2**70
    assert rows["plain"]["bleu"] == 1.5 and rows["plain"]["text"] == "é ± ×"


@pytest.mark.parametrize("array", [
    "c-order float32", "fortran float64", "empty", "scalar", "big-endian int",
])
def test_read_npy_reads_what_np_load_reads(array):
    import io

    import numpy as np

    from bench.results import read_npy

    values = {
        "c-order float32": np.arange(12, dtype="float32").reshape(3, 4),
        "fortran float64": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "empty": np.zeros((0, 9), dtype="float32"),
        "scalar": np.array(3.5),
        "big-endian int": np.arange(5, dtype=">i4"),
    }[array]
    buffer = io.BytesIO()
    np.save(buffer, values)
    data = buffer.getvalue()
    got, want = read_npy(data), np.load(io.BytesIO(data))
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    assert read_npy(data).dtype == got.dtype  # the second read of the same header (cached)


def test_read_npy_refuses_truncated_files_and_pickles():
    import io

    import numpy as np

    from bench.results import read_npy

    buffer = io.BytesIO()
    np.save(buffer, np.arange(10.0))
    with pytest.raises(ValueError):
        read_npy(buffer.getvalue()[:-8])
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickles"):
        read_npy(buffer.getvalue())
