"""The results folder's files (issue 20 item 10): strict JSON, umask modes, fsync, cut lines, CSV cells, lock."""
import csv
import io
import json
import os
import stat

import pytest

from llmbench.errors import BadInput
from llmbench.records import RequestRecord
from llmbench.results import FolderLock, RunDir, write_atomic, write_csv, write_json


def test_nan_and_infinity_are_never_written(tmp_path):
    write_json(tmp_path / "s.json", {"a": float("nan"), "b": [1.5, float("inf")], "c": {"d": -float("inf")}})
    text = (tmp_path / "s.json").read_text()
    # a strict parser (no NaN/Infinity constants) reads it back
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert doc == {"a": None, "b": [1.5, None], "c": {"d": None}}


def test_results_files_follow_the_umask(tmp_path, monkeypatch):
    import llmbench.results as results

    old = os.umask(0o027)
    try:
        # what the module computes at import, under this umask (mkstemp alone would give 0600)
        monkeypatch.setattr(results, "_FILE_MODE", 0o666 & ~results._umask())
        results.write_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


def test_write_atomic_fsyncs_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    write_atomic(tmp_path / "f.json", "{}")
    assert events == ["fsync", "replace"] and (tmp_path / "f.json").read_text() == "{}"


def _record(i: int, model: str = "m") -> RequestRecord:
    return RequestRecord(timestamp=1.0, run_id="r", model=model, variant="v", scenario="s", point="p", request_id=i,
                         prompt_tokens=3, output_tokens=2, ttft_ms=1.0, e2el_ms=2.0)


def test_a_line_cut_inside_a_multibyte_character_is_skipped(tmp_path):
    run = RunDir(tmp_path)
    whole = _record(0, "modèle").model_dump_json() + "\n"
    cut = _record(1, "modèle").model_dump_json().encode("utf-8")
    cut = cut[: cut.index("è".encode()) + 1]  # ends on the first byte of a two-byte character
    run.requests_path.write_bytes(whole.encode() + cut)
    assert [r.request_id for r in run.records()] == [0]
    (tmp_path / "run.json").write_bytes(b'{"a": "\xc3')
    with pytest.raises(BadInput, match="run.json"):
        run.read_json("run.json")


def test_csv_cells_that_would_run_as_formulas_are_quoted(tmp_path):
    write_csv(tmp_path / "s.csv", [{"model": "=HYPERLINK(\"http://x\")", "variant": "+1", "point": "-2", "n": -3,
                                     "note": "@SUM(A1)", "plain": "tiny [int4]"}])
    row = next(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert row == {"model": "'=HYPERLINK(\"http://x\")", "variant": "'+1", "point": "'-2", "n": "-3",
                   "note": "'@SUM(A1)", "plain": "tiny [int4]"}


def test_a_second_lock_on_a_folder_is_refused(tmp_path):
    first = FolderLock(tmp_path / "r").acquire()
    with pytest.raises(BadInput, match=rf"in use by another llmbench run \(pid {os.getpid()}\)"):
        FolderLock(tmp_path / "r").acquire()
    first.release()
    FolderLock(tmp_path / "r").acquire().release()  # free again once released
