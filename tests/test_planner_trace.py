"""Reading request traces in the Azure LLM inference trace format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmbench.errors import BadInput
from llmbench.planner.trace import load_trace, parse_timestamp

AZURE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces" / "azure_llm_code_2023.csv"


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(text)
    return p


def test_seven_fractional_digits_and_relative_arrivals(tmp_path):
    p = _write(tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                         "2023-11-16 18:15:46.6805900,4808,10\n"
                         "2023-11-16 18:15:47.0000001,110,27\n"
                         "2023-11-16 18:16:00,7,1\n")
    tr = load_trace(p)
    assert tr.requests.arrival_s == pytest.approx([0.0, 0.3194101, 13.31941], abs=1e-6)
    assert list(tr.requests.prompt_tokens) == [4808, 110, 7]
    assert list(tr.requests.output_tokens) == [10, 27, 1]
    assert tr.describe()["requests"] == 3


def test_timestamp_forms():
    base = parse_timestamp("2023-11-16 18:15:46")
    assert parse_timestamp("2023-11-16T18:15:46.5Z") == pytest.approx(base + 0.5)
    assert parse_timestamp("2023-11-16 19:15:46+01:00") == pytest.approx(base)
    assert parse_timestamp(" 12.25 ") == 12.25
    with pytest.raises(ValueError):
        parse_timestamp("16/11/2023 18:15")


def test_header_variants_and_unsorted_rows(tmp_path):
    p = _write(tmp_path, "timestamp, context_tokens, generated_tokens\n3.0,10,0\n1.0,20,5\n\n")
    tr = load_trace(p)
    assert list(tr.requests.prompt_tokens) == [20, 10]  # sorted by arrival
    assert list(tr.requests.output_tokens) == [5, 1]  # 0 generated counted as 1
    assert any("sorted" in n for n in tr.notes) and any("0 generated" in n for n in tr.notes)


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,1\n", ":1: the header 'TIMESTAMP,ContextTokens' is not the Azure"),
    # Other CSVs are not taken for traces (they were read as '1 req/s' by aliases such as time/prompt/output).
    ("time,prompt,output\n0,10,5\n1,10,5\n", ":1: the header 'time,prompt,output' is not the Azure trace format"),
    ("2023-11-16 18:15:46,4808,10\n2023-11-16 18:15:47,110,27\n", ":1: .* is not the Azure trace format"),
    # Non-finite and out-of-range values: one line naming file and line (they were tracebacks).
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,inf,3\n", ":2: context tokens 'inf' must be a whole"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,nan,3\n", ":2: context tokens 'nan' must be a whole"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,4,-inf\n", ":2: generated tokens '-inf' must be"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,4,1e30\n", ":2: generated tokens '1e30' must be a whole number of tokens from 0 to 10,000,000"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n1.0,4,3\ninf,4,3\n", ":3: timestamp 'inf' must be a finite"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\nnan,4,3\n", ":2: timestamp 'nan' must be a finite"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n-5,4,3\n", ":2: timestamp '-5' must be a finite number of seconds >= 0"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n5,4,3\n5,4,3\n", "every request has the same timestamp"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,12,3\nyesterday,1,1\n", ":3: cannot read timestamp"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,-4,3\n", ":2: context tokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,4,many\n", "not a number"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,4\n", "expected 3 fields"),
])
def test_malformed_traces_are_bad_input(tmp_path, text, needle):
    with pytest.raises(BadInput, match=needle):
        load_trace(_write(tmp_path, text))


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        load_trace(tmp_path / "nope.csv")


def test_the_azure_code_trace():
    tr = load_trace(AZURE)
    r = tr.requests
    assert len(r) == 8819
    assert 2.4 < r.mean_rps < 2.8 and 3300 < r.duration_s < 3600
    assert np.mean(r.prompt_tokens) == pytest.approx(2048, rel=0.01)
    assert np.all(np.diff(r.arrival_s) >= 0)
    assert any("Azure LLM inference trace 2023" in n for n in tr.notes)
