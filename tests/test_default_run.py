"""The embedded default, end to end through the real CLI, as `make run` runs it.

One full `llmbench run --json` per session; every test below recomputes a published figure from
the files beneath it (records -> summary -> decision -> gateway), so a stage that drifts from its
inputs fails here even when each stage's own tests pass.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

DEFAULT = Path(__file__).resolve().parents[1] / "profiles" / "default.yaml"


def _servers() -> set[int]:
    """llama-server processes serving from this session's cache (other sessions' servers do not count)."""
    lines = subprocess.run(["pgrep", "-a", "-x", "llama-server"], capture_output=True, text=True).stdout.splitlines()
    return {int(ln.split()[0]) for ln in lines if ln.strip() and os.environ.get("LLMBENCH_CACHE", "") in ln}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, engine) -> tuple[Path, dict]:
    # `engine`: llama.cpp is built before (as `make run` does), so the run measures, not builds.
    out = tmp_path_factory.mktemp("default-run")
    cli = Path(sys.executable).with_name("llmbench")
    before = _servers()
    proc = subprocess.run([str(cli), "run", "--out", str(out), "--json"], capture_output=True, text=True,
                          timeout=1500, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _servers() - before == set(), "llama-server processes left behind by the default run"
    run = next(out.rglob("run.json")).parent
    return run, json.loads(proc.stdout)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "requests.jsonl").read_text().splitlines() if line.strip()]


def test_every_configured_cell_has_a_row_and_its_records(default_run):
    run, printed = default_run
    summary = json.loads((run / "summary.json").read_text())
    assert printed["rows"] == summary["rows"]  # --json prints the summary as written
    cfg = yaml.safe_load(DEFAULT.read_text())  # read apart from the package's own config loader

    def points(variant: str) -> int:
        # Served (gguf) variants skip static batches: a server batches continuously.
        served = variant.startswith("gguf-")
        return sum(1 if s == "single-stream" else 0 if (s["kind"] == "batch" and served)
                   else len(s.get("batch_sizes") or s.get("clients")) for s in cfg["scenarios"])

    expected = sum(points(v) for c in cfg["candidates"] for v in c["variants"])
    assert len(summary["rows"]) == expected
    per_cell = Counter((r["model"], r["variant"], r["scenario"], r["point"]) for r in _records(run))
    for row in summary["rows"]:
        assert per_cell[(row["model"], row["variant"], row["scenario"], row["point"])] == row["requests"] + row["failed"]


def test_percentiles_and_costs_recompute_from_the_records(default_run):
    run, _ = default_run
    summary = json.loads((run / "summary.json").read_text())
    recs = _records(run)
    usd_per_s = summary["usd_per_hour"] / 3600.0
    checked = 0
    for row in summary["rows"]:
        if row["scenario"] != "single-stream" or row["failed"]:
            continue
        cell = [r for r in recs if (r["model"], r["variant"], r["scenario"], r["point"]) == (row["model"], row["variant"], row["scenario"], row["point"]) and r["status"] == "ok"]
        ttft = np.array([r["ttft_ms"] for r in cell])
        assert row["ttft_ms"]["p50"] == pytest.approx(np.percentile(ttft, 50), rel=1e-9)
        assert row["ttft_ms"]["n"] == len(cell)
        # Cost per 1M output tokens = 1e6 x $/s / output throughput (DESIGN.md).
        tok_s = row["output_throughput_tok_s"]
        assert row["cost_per_1m_output_tokens_usd"] == pytest.approx(1e6 * usd_per_s / tok_s, rel=1e-6)
        assert math.isfinite(row["roofline_share"]) and 0 < row["roofline_share"] < 5 and row["roofline_tok_s"] > 0
        checked += 1
    assert checked >= 8  # every variant of both cards, one request at a time


def test_onnx_int4_and_llama_cpp_q4_side_by_side_on_the_50m_card(default_run):
    run, _ = default_run
    rows = json.loads((run / "summary.json").read_text())["rows"]
    meta = json.loads((run / "run.json").read_text())
    recs = _records(run)
    got = {(r["variant"], r["point"]): r for r in rows if r["model"] == "card:llama-50m" and not r.get("error")}
    for variant in ("onnx-int4", "gguf-q4_k_m", "gguf-f16"):
        for point in ("single", "clients=4"):
            row = got[(variant, point)]
            assert row["ttft_ms"]["p50"] > 0 and row["itl_ms"]["p50"] >= 0 and row["output_throughput_tok_s"] > 0
    for variant in ("gguf-q4_k_m", "gguf-f16"):
        mine = [r for r in recs if r["variant"] == variant and r["status"] == "ok"]
        # Token counts from the server's usage, and exactly the forced output length.
        assert mine and {r["usage_source"] for r in mine} == {"server"}
        assert all(r["output_tokens"] == 32 and not r["ended_early"] for r in mine)
        for point, parallel in (("single", 1), ("clients=4", 4)):
            row = got[(variant, point)]
            cell = meta["cells"][f"card:llama-50m|{variant}|{row['scenario']}|{point}"]
            assert cell["server_parallel"] == parallel and row["memory_method"].startswith("server VmHWM")
            assert 10 < row["peak_rss_mb"] < 4000  # the server's own peak: its GGUF weights and KV cache
            cmd = Path(cell["server_log"]).with_suffix(".cmd").read_text()
            assert f"--parallel {parallel}" in cmd and "127.0.0.1" in cmd
        # Roofline from the GGUF's own tensor bytes: q4_k_m reads well under half of f16's.
    bpt = {v: got[(v, "single")]["weight_bytes_per_token"] for v in ("gguf-f16", "gguf-q4_k_m")}
    assert 0.2 < bpt["gguf-q4_k_m"] / bpt["gguf-f16"] < 0.45
    for v in ("gguf-f16", "gguf-q4_k_m"):
        row = got[(v, "single")]
        assert row["roofline_share"] == pytest.approx(1e3 / row["tpot_ms"]["p50"] / row["roofline_tok_s"], rel=1e-6)
    assert meta["engines"]["llama.cpp"]["version"]


def test_decision_files_agree_on_cost_and_parts(default_run):
    run, _ = default_run
    rec = json.loads((run / "recommendation.json").read_text())
    dep = yaml.safe_load((run / "deployment.yaml").read_text())
    gw = yaml.safe_load((run / "gateway" / "litellm.yaml").read_text())
    m = re.search(r"\$([0-9][0-9,]*\.?[0-9]*)\s*/\s*month", rec["choice"]["answer"])
    assert m, rec["choice"]["answer"]
    assert float(m.group(1).replace(",", "")) == pytest.approx(dep["total_cost_per_month_usd"], abs=0.01)
    assert bool((gw.get("litellm_settings") or {}).get("cache")) == bool((rec.get("recommended") or {}).get("cache"))
    for o in rec["options"]:
        for metric, v in (o.get("latency") or {}).items():
            # A streamed ITL can be 0: tokens that reached the client in one read (llama-server flushes
            # two at once when its HTTP thread waits for a CPU); every other latency is positive.
            low = 0 if metric == "itl_ms" else 1e-12
            assert all(v[q] >= low for q in ("p50", "p95") if isinstance(v, dict) and isinstance(v.get(q), (int, float))), (o["id"], metric)
        if o.get("kind") == "self-hosted":
            assert o["cost_per_1k_usd"] > 0, o["id"]
    # The chosen option is the trained reference model's, its quality verified; the random-weight
    # card's options deployed beside it (fallbacks) carry their caveat into the file a user deploys.
    assert rec["recommended"]["quality_status"] == "measured" and rec["recommended"]["gate"] == "pass"
    assert dep["deployments"][0]["quality_status"] == "measured"
    # Sidecars (the cache's embedder, the compressor) serve no answers, so carry no quality; whether the
    # plan has one depends on the measured cache savings, so both shapes occur.
    models = [d for d in dep["deployments"] if d["kind"] != "sidecar"]
    assert all(d["quality_status"] in ("measured", "unverified: random weights") for d in models)
    assert all("quality_status" not in d and d["role"] in ("semantic-cache embedder", "prompt compressor") for d in dep["deployments"] if d not in models)


def test_the_reference_models_variants_get_verified_verdicts(default_run):
    run, _ = default_run
    q = json.loads((run / "quality.json").read_text())
    assert q["golden"]["name"] == "shakespeare"
    ref = q["candidates"]["shakespeare-4m"]
    assert not ref["random_weights"] and ref["entropy_share"] < 0.9
    gates = {v: x["gate"] for v, x in ref["variants"].items()}
    assert gates["torch-fp32"] == "reference" and set(gates.values()) <= {"reference", "pass", "fail"}
    assert gates["onnx-fp32"] == gates["gguf-f16"] == "pass"  # fp32 and f16 keep the reference's answers
    int4, fp32 = ref["variants"]["onnx-int4"], ref["variants"]["onnx-fp32"]
    assert int4["kl_mean"] > fp32["kl_mean"] and int4["greedy_agreement"] < fp32["greedy_agreement"]
    for variant, x in ref["variants"].items():  # each verdict follows its checks at the floor
        if x["gate"] in ("pass", "fail"):
            assert x["gate"] == ("pass" if all(c["ok"] for c in x["checks"].values()) else "fail"), variant
    # The random-weight card: figures shown, verdicts withheld.
    assert {x["gate"] for x in q["candidates"]["card:llama-50m"]["variants"].values()} == {"reference", "unverified"}


def test_report_embeds_every_plot_it_drew(default_run):
    run, _ = default_run
    html = (run / "report.html").read_text()
    plots = sorted((run / "plots").glob("*.png"))
    assert len(plots) >= 5
    assert html.count("data:image/png;base64,") >= len(plots)
    assert "src=\"plots/" not in html  # self-contained: no file references


def test_rerunning_a_stage_changes_nothing_it_should_not(default_run):
    # `llmbench report` on the finished folder rebuilds the report from the files alone.
    run, _ = default_run
    before = json.loads((run / "summary.json").read_text())
    cli = Path(sys.executable).with_name("llmbench")
    proc = subprocess.run([str(cli), "report", str(run)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert json.loads((run / "summary.json").read_text()) == before
