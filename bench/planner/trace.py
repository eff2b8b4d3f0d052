"""Request traces in the Azure LLM inference trace format: `TIMESTAMP,ContextTokens,GeneratedTokens`.

The header must name those three columns (case, spaces, underscores and dashes aside:
`timestamp, context_tokens, generated_tokens` reads too); a file with other columns is not taken
for a trace. Timestamps look like `2023-11-16 18:15:46.6805900` (seven fractional digits, more
than datetime parses), so they are read with a pattern; an ISO `T`, a trailing `Z` or offset, and
plain non-negative numbers (seconds) are accepted too. Token counts are whole numbers >= 0 up to
MAX_TOKENS. Anything malformed (inf, nan, negative, fractional) is a BadInput naming the file and line.

An interaction log (the gateway's JSONL records, or a run's requests.jsonl) is read as a trace too:
its timestamps, prompt_tokens and output_tokens, with no conversion step.
"""
from __future__ import annotations

import csv
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmbench.errors import BadInput
from llmbench.files import read_input_text
from llmbench.planner.queue import Requests

_STAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$"
)
# The Azure header's names, compared lower-case without spaces, underscores or dashes.
_COLUMNS = {"time": "timestamp", "prompt": "contexttokens", "output": "generatedtokens"}
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
MAX_TOKENS = 10_000_000  # far beyond any model's context; a larger count is a broken file, not a request
CREDIT = "Azure LLM inference trace 2023, Microsoft (CC-BY-4.0)"


@dataclass
class Trace:
    """A replayable trace: arrivals relative to the first request, and token lengths."""

    path: str
    requests: Requests
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        r = self.requests
        return {
            "path": self.path,
            "requests": len(r),
            "duration_s": r.duration_s,
            "mean_rps": r.mean_rps if r.duration_s > 0 else None,
            "prompt_tokens": _dist(r.prompt_tokens),
            "output_tokens": _dist(r.output_tokens),
            "notes": self.notes,
        }


def _dist(a: np.ndarray) -> dict:
    p = np.percentile(a, [50, 95, 99])
    return {"mean": float(a.mean()), "p50": float(p[0]), "p95": float(p[1]), "p99": float(p[2]),
            "min": float(a.min()), "max": float(a.max())}


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch (UTC when no offset is given); ValueError if unreadable."""
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"timestamp {text!r} must be a finite number of seconds >= 0 or a date and time")
        return value
    m = _STAMP.match(s)
    if not m:
        raise ValueError(f"cannot read timestamp {text!r}")
    y, mo, d, h, mi, sec, frac, tz = m.groups()
    offset = dt.timezone.utc
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        hh, mm = int(tz[1:3]), int(tz[-2:])
        offset = dt.timezone(sign * dt.timedelta(hours=hh, minutes=mm))
    base = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), tzinfo=offset).timestamp()
    return base + (float(f"0.{frac}") if frac else 0.0)


def _find_columns(header: list[str], where: str) -> dict[str, int]:
    norm = [re.sub(r"[\s_\-]", "", h.lower()) for h in header]
    found = {}
    for key, name in _COLUMNS.items():
        idx = next((i for i, h in enumerate(norm) if h == name), None)
        if idx is None:
            raise BadInput(f"{where}:1: the header {','.join(header)!r} is not the Azure trace format: "
                           f"expected {HEADER}")
        found[key] = idx
    return found


def _tokens(value: str, where: str, line: int, what: str) -> int:
    try:
        v = float(value)
    except ValueError:
        raise BadInput(f"{where}:{line}: {what} {value!r} is not a number") from None
    if not math.isfinite(v) or v < 0 or v != int(v) or v > MAX_TOKENS:
        raise BadInput(f"{where}:{line}: {what} {value!r} must be a whole number of tokens from 0 to {MAX_TOKENS:,}")
    return int(v)


def load_trace(path: str | Path) -> Trace:
    """Read a trace CSV; BadInput for a missing file, a bad header, or an unreadable line."""
    p = Path(path)
    where = str(p)
    text = read_input_text(p, "trace", encoding="utf-8-sig")
    if text.lstrip().startswith("{"):
        return log_trace(p)
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if not header:
        raise BadInput(f"{where}: empty file (expected a header TIMESTAMP,ContextTokens,GeneratedTokens)")
    cols = _find_columns(header, where)
    width = max(cols.values()) + 1
    times, prompts, outputs = [], [], []
    for line, row in enumerate(rows, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < width:
            raise BadInput(f"{where}:{line}: expected {width} fields, got {len(row)}")
        try:
            times.append(parse_timestamp(row[cols["time"]]))
        except ValueError as exc:
            raise BadInput(f"{where}:{line}: {exc}") from None
        prompts.append(_tokens(row[cols["prompt"]], where, line, "context tokens"))
        outputs.append(_tokens(row[cols["output"]], where, line, "generated tokens"))
    if not times:
        raise BadInput(f"{where}: no requests after the header")
    t = np.array(times)
    pr = np.array(prompts)
    out = np.array(outputs)
    if len(t) > 1 and t.max() == t.min():
        raise BadInput(f"{where}: every request has the same timestamp: a trace needs arrivals spread over time")
    notes = []
    if np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, pr, out = t[order], pr[order], out[order]
        notes.append("timestamps were not in order: requests sorted by arrival")
    # A request with no output still occupies a batch for its prefill: count it as one token.
    for name, a in (("context", pr), ("generated", out)):
        zero = int((a == 0).sum())
        if zero:
            a[a == 0] = 1
            notes.append(f"{zero} requests with 0 {name} tokens counted as 1")
    if "azure" in p.name.lower():
        notes.append(f"trace data: {CREDIT}")
    return Trace(where, Requests(t - t[0], pr, out), notes)


def log_trace(path: Path) -> Trace:
    """An interaction log as a trace: arrivals from its timestamps, lengths from its token counts."""
    from llmbench.monitor.log_read import read_log

    log = read_log(path, "trace")
    recs = sorted(log.records, key=lambda r: r.timestamp)
    t = np.array([r.timestamp for r in recs])
    if len(t) < 2 or t.max() == t.min():
        raise BadInput(f"{path}: every request has the same timestamp: a trace needs arrivals spread over time")
    # A failed request logged no output; it still arrived and took a prefill: counted as one token, as a 0 is above.
    pr = np.array([min(max(1, r.prompt_tokens), MAX_TOKENS) for r in recs])
    out = np.array([min(max(1, r.output_tokens), MAX_TOKENS) for r in recs])
    notes = [f"an interaction log: {len(recs)} requests"]
    if log.skipped:
        notes.append(f"{log.skipped} line(s) that are not request records skipped; the first: {log.first_bad}")
    return Trace(str(path), Requests(t - t[0], pr, out), notes)
