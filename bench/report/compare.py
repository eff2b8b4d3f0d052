"""Compare two runs cell by cell, and flag changes larger than the measurement noise.

A percentile's change counts as real when the two runs' bootstrap 95% confidence intervals do not
overlap (conservative: a change inside overlapping intervals may still be real, but is not shown
as one). Throughput and cost carry no interval: they are ratios of a count to the summed request
times, so their relative standard error is about E2EL's CV / sqrt(n); a change counts when it
exceeds 1.96 times the two runs' combined standard error.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.results import RunDir, flatten

PERCENTILE_METRICS = [("ttft_ms", "p50"), ("ttft_ms", "p95"), ("tpot_ms", "p50"), ("tpot_ms", "p95"), ("e2el_ms", "p50"), ("e2el_ms", "p95")]
SCALAR_METRICS = ["output_throughput_tok_s", "request_throughput_req_s", "cost_per_request_usd", "peak_rss_mb"]


def _key(row: dict) -> tuple:
    return (row.get("model"), row.get("variant"), row.get("scenario"), row.get("point"))


def _pct(a: float | None, b: float | None) -> float | None:
    return None if a in (None, 0) or b is None else round(100.0 * (b - a) / a, 2)


def _percentile_change(ra: dict, rb: dict, metric: str, q: str) -> dict | None:
    sa, sb = ra.get(metric) or {}, rb.get(metric) or {}
    a, b = sa.get(q), sb.get(q)
    if a is None or b is None:
        return None
    ca, cb = sa.get(f"{q}_ci95"), sb.get(f"{q}_ci95")
    if ca and cb:
        significant = ca[1] < cb[0] or cb[1] < ca[0]
        rule = "95% CIs apart" if significant else "95% CIs overlap"
    else:
        significant, rule = False, "no confidence interval: not judged"
    return {"metric": f"{metric[:-3]}_{q}", "a": a, "b": b, "change_pct": _pct(a, b), "a_ci95": ca, "b_ci95": cb,
            "significant": significant, "rule": rule}


def _scalar_change(ra: dict, rb: dict, metric: str) -> dict | None:
    a, b = ra.get(metric), rb.get(metric)
    if a is None or b is None:
        return None
    change = _pct(a, b)
    ea, eb = ra.get("e2el_ms") or {}, rb.get("e2el_ms") or {}
    var = sum(((e.get("cv_pct") or 0.0) ** 2) / e["n"] for e in (ea, eb) if e.get("n"))
    noise = 1.96 * math.sqrt(var)
    significant = change is not None and noise > 0 and abs(change) > noise
    rule = f"{'beyond' if significant else 'within'} noise ±{noise:.1f}%" if noise else "no spread measured: not judged"
    return {"metric": metric, "a": a, "b": b, "change_pct": change, "significant": significant, "rule": rule}


def _context_changes(ma: dict, mb: dict) -> list[dict]:
    # What differs between the runs besides the results: config, hardware, library versions.
    out = []
    for section in ("config", "hardware_profile", "environment"):
        fa, fb = flatten(ma.get(section) or {}), flatten(mb.get(section) or {})
        for k in sorted(set(fa) | set(fb)):
            if fa.get(k) != fb.get(k) and not k.endswith(("started_at", "hostname", "pid")):
                out.append({"what": f"{section}.{k}", "a": fa.get(k), "b": fb.get(k)})
    return out


def _meta(path: Path) -> dict:
    f = path / "run.json"
    try:
        return json.loads(f.read_text()) if f.is_file() else {}
    except (json.JSONDecodeError, OSError):
        return {}


def compare_runs(run_a: str | Path, run_b: str | Path) -> dict:
    """{run_a, run_b, context_changes, cells[{cell, metrics[]}], only_in_a, only_in_b, flagged}."""
    pa, pb = Path(run_a), Path(run_b)
    for p in (pa, pb):
        if not p.is_dir():
            raise BadInput(f"{p}: no such results folder")
    sa, sb = RunDir(pa).read_json("summary.json"), RunDir(pb).read_json("summary.json")
    rows_a = {_key(r): r for r in sa.get("rows") or [] if not r.get("error")}
    rows_b = {_key(r): r for r in sb.get("rows") or [] if not r.get("error")}
    cells = []
    for key in [k for k in rows_a if k in rows_b]:
        ra, rb = rows_a[key], rows_b[key]
        metrics = [m for metric, q in PERCENTILE_METRICS if (m := _percentile_change(ra, rb, metric, q))]
        metrics += [m for metric in SCALAR_METRICS if (m := _scalar_change(ra, rb, metric))]
        cells.append({"cell": dict(zip(("model", "variant", "scenario", "point"), key)), "n": [ra.get("requests"), rb.get("requests")],
                      "metrics": metrics, "flagged": [m["metric"] for m in metrics if m["significant"]]})
    return {
        "run_a": {"path": str(pa), "run_id": sa.get("run_id"), "hardware": sa.get("hardware")},
        "run_b": {"path": str(pb), "run_id": sb.get("run_id"), "hardware": sb.get("hardware")},
        "context_changes": _context_changes(_meta(pa), _meta(pb)),
        "cells": cells,
        "only_in_a": [dict(zip(("model", "variant", "scenario", "point"), k)) for k in rows_a if k not in rows_b],
        "only_in_b": [dict(zip(("model", "variant", "scenario", "point"), k)) for k in rows_b if k not in rows_a],
        "flagged": sum(len(c["flagged"]) for c in cells),
    }
