"""A run with guardrails: every record carries guard_ms, and its TTFT/E2EL include it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml


def test_run_with_guardrails(tmp_path, tiny_llama):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "candidates": [{"model": str(tiny_llama), "name": "tiny"}],
        "workload": {"prompt_tokens": 16, "output_tokens": 4, "requests": 4},
        "scenarios": ["single-stream"], "warmup": 0, "precision_pct": None, "quality": None,
        "guardrails": [{"kind": "rules"}, {"kind": "embedding"}],
    }))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "llmbench", "run", str(cfg), "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "run.json").read_text())
    assert [g["kind"] for g in meta["guardrails"]] == ["rules", "embedding"]
    recs = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    for r in recs:
        # MiniLM on one prompt takes milliseconds; both pre-model guards sit inside TTFT and E2EL
        assert r["guard_ms"] > 1.0 and r["guard_flagged"] in (True, False)
        assert r["ttft_ms"] > r["guard_ms"] and r["e2el_ms"] > r["ttft_ms"]
        assert abs((r["e2el_ms"] - r["ttft_ms"]) - sum(r["itl_ms"])) < 1e-3  # decoding itself is unchanged
    # The guard really ran between requests: in single-stream the next request is sent only after
    # this one's model time and guard time have passed.
    for a, b in zip(recs, recs[1:]):
        assert (b["timestamp"] - a["timestamp"]) * 1e3 >= a["e2el_ms"] - 1.0
    # The run's own plan is fitted on those records and says how much of them was the guard.
    plan = json.loads((out / "plan.json").read_text())
    planned = [o for o in plan["options"] if "error" not in o]
    assert planned and all(o["guardrails"]["guard_ms_p50"] > 1.0 for o in planned)
    summary = json.loads(proc.stdout)
    assert summary["rows"][0]["ttft_ms"]["p50"] > min(r["guard_ms"] for r in recs)


def test_bad_guardrails_refused_before_loading(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"candidates": [{"model": str(tmp_path / "no-model")}],
                                   "guardrails": [{"kind": "embedding", "model": str(tmp_path / "no-fit")}]}))
    proc = subprocess.run([sys.executable, "-m", "llmbench", "run", str(cfg), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert proc.returncode == 2
    assert "no-fit" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
