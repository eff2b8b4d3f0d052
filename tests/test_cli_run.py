"""`llmbench run` end to end through the real CLI, on tiny models made here."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

LLMB = [sys.executable, "-m", "llmbench"]


def llmbench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*LLMB, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def write_config(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def e2e_run(tmp_path_factory, tiny_llama):
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = write_config(tmp / "run.yaml", {
        "candidates": [{"model": str(tiny_llama), "name": "tiny"}],
        "workload": {"prompt_tokens": {"dist": "uniform", "low": 8, "high": 24}, "output_tokens": 4, "requests": 4},
        "scenarios": ["single-stream", {"kind": "batch", "batch_sizes": [1, 2]},
                      {"kind": "concurrency", "clients": [2], "max_batch": 2}, {"kind": "concurrency", "rates": [50.0]}],
        "warmup": 1,
        "slo": "ttft_p95=5s",
    })
    out = tmp / "out"
    proc = llmbench("run", str(cfg), "--out", str(out), "--json")
    return proc, out


def test_run_writes_every_results_file(e2e_run):
    proc, out = e2e_run
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # stdout is one JSON document and nothing else
    for name in ("run.json", "requests.jsonl", "summary.json", "summary.csv"):
        assert (out / name).stat().st_size > 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["config"]["candidates"][0]["variants"] == ["torch-fp32"]
    env = meta["environment"]
    import torch

    assert env["packages"]["torch"] == torch.__version__ and env["machine"]["cpu_cores_logical"] == os.cpu_count()
    assert env["seed"] == 0 and 0.1 < env["machine"]["memory_read_bandwidth_gbs"] < 10_000  # a measured figure
    points = [(r["scenario"], r["point"]) for r in summary["rows"]]
    assert points == [("single-stream", "single"), ("batch", "batch=1"), ("batch", "batch=2"),
                      ("concurrency", "clients=2"), ("concurrency", "rate=50")]
    for row in summary["rows"]:
        assert row["failed"] == 0 and row["ttft_ms"]["p95"] >= row["ttft_ms"]["p50"] > 0
        assert row["tpot_ms"]["n"] == row["requests"] and row["output_throughput_tok_s"] > 0
        assert row["cost_per_1m_output_tokens_usd"] > 0 and row["peak_rss_mb"] > 0
    lines = (out / "requests.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    for row in summary["rows"]:
        # goodput recomputed from the records: requests meeting ttft_p95=5s over the cell's window
        cell = [r for r in recs if (r["scenario"], r["point"]) == (row["scenario"], row["point"])]
        window = max(r["timestamp"] + r["e2el_ms"] / 1e3 for r in cell) - min(r["timestamp"] for r in cell)
        good = sum(1 for r in cell if r["ttft_ms"] <= 5000)
        assert row["goodput_req_s"] == pytest.approx(good / window, rel=1e-3, abs=1e-3)
    assert len(lines) == sum(r["requests"] for r in summary["rows"])
    first = recs[0]
    assert (first["model"], first["variant"], first["scenario"], first["status"]) == ("tiny", "torch-fp32", "single-stream", "ok")
    assert 8 <= first["prompt_tokens"] <= 24 and first["output_tokens"] == 4 and first["prompt_length"] > 0
    assert abs(first["timestamp"] - meta_started(meta)) < 3600
    # E2EL is TTFT plus the gaps between tokens; one request at a time costs its own busy time
    assert len(first["itl_ms"]) == first["output_tokens"] - 1
    assert first["e2el_ms"] == pytest.approx(first["ttft_ms"] + sum(first["itl_ms"]), rel=1e-3)
    usd_per_ms = meta["hardware_profile"]["usd_per_hour"] / 3600e3
    assert first["cost"] == pytest.approx(usd_per_ms * first["e2el_ms"], rel=0.25)
    header = (out / "summary.csv").read_text().splitlines()[0]
    assert "ttft_ms_p95" in header and "ttft_ms_p50_ci95" in header


def meta_started(meta: dict) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(meta["started_at"]).timestamp()


def test_concurrency_queueing_counts_in_ttft(e2e_run):
    _, out = e2e_run
    recs = [json.loads(l) for l in (out / "requests.jsonl").read_text().splitlines()]
    closed = [r for r in recs if r["point"] == "clients=2"]
    assert closed and all(r["batch_size"] <= 2 for r in closed)
    for r in recs:
        assert r["ttft_ms"] >= r["queue_ms"] >= 0


BAD = {
    "broken": "candidates: [\n",
    "unknown": "candidates:\n  - model: {tmp}/nope\nbogus_key: 1\n",
    "missing": "candidates:\n  - model: {tmp}/does-not-exist\n",
    "badslo": "candidates:\n  - model: {model}\nslo: ttft=fast\n",
    "emptyds": "candidates:\n  - model: {model}\nworkload: {{dataset: {{path: {tmp}/empty.jsonl}}}}\n",
    "badvariant": "candidates:\n  - model: {model}\n    variants: [tensorrt-fp8]\n",
    "badonnx": "candidates:\n  - model: {model}\n    variants: [onnx-int5]\n",
    "badhw": "candidates:\n  - model: {model}\nhardware: quantum-9000\n",
}


@pytest.mark.parametrize("case", sorted(BAD) + ["binary", "absent"])
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_llama, case):
    (tmp_path / "empty.jsonl").write_text("")
    cfg = tmp_path / f"{case}.yaml"
    if case == "binary":
        cfg.write_bytes(b"\xff\xfe\x00garbage")
    elif case != "absent":
        cfg.write_text(BAD[case].format(tmp=tmp_path, model=tiny_llama))
    proc = llmbench("run", str(cfg), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "requests.jsonl").exists()  # found before measuring


def test_failing_candidate_does_not_stop_the_others(tmp_path, tiny_llama):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_llama / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    for f in tiny_llama.iterdir():
        if f.name.startswith(("tokenizer", "special")):
            (broken / f.name).write_bytes(f.read_bytes())
    cfg = write_config(tmp_path / "c.yaml", {
        "candidates": [{"model": str(broken), "name": "broken"}, {"model": str(tiny_llama), "name": "good"}],
        "workload": {"prompt_tokens": 8, "output_tokens": 3, "requests": 2}, "warmup": 0, "precision_pct": None})
    proc = llmbench("run", str(cfg), "--out", str(tmp_path / "r"), "--json")
    assert proc.returncode == 1
    rows = {r["model"]: r for r in json.loads(proc.stdout)["rows"]}
    assert rows["broken"]["failed"] == 1 and rows["broken"]["error"]
    assert rows["good"]["failed"] == 0 and rows["good"]["requests"] == 2


def test_interrupted_run_resumes_without_losing_records(tmp_path, tiny_llama):
    cfg = write_config(tmp_path / "c.yaml", {
        "candidates": [{"model": str(tiny_llama), "name": "tiny"}],
        "workload": {"prompt_tokens": 16, "output_tokens": 8, "requests": 40},
        # precision_pct: null: exactly one pass per point, so the counts below are known.
        "scenarios": [{"kind": "batch", "batch_sizes": [1, 2, 3]}], "warmup": 0, "precision_pct": None})
    out = tmp_path / "r"
    proc = subprocess.Popen([*LLMB, "run", str(cfg), "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "requests.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 45):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = log.read_text().splitlines()
    assert 45 <= len(kept) < 40 * 3
    meta = json.loads((out / "run.json").read_text())
    completed = {tuple(c)[3] for c in meta["completed_cells"]}
    assert "batch=1" in completed and "batch=3" not in completed

    resumed = llmbench("run", "--resume", str(out), "--json")
    assert resumed.returncode == 0, resumed.stderr
    lines = log.read_text().splitlines()
    # The completed cell's records survive byte for byte; every point ends with all its requests.
    done_before = [l for l in kept if json.loads(l)["point"] == "batch=1"]
    assert lines[: len(done_before)] == done_before
    rows = json.loads(resumed.stdout)["rows"]
    assert [(r["point"], r["requests"]) for r in rows] == [("batch=1", 40), ("batch=2", 40), ("batch=3", 42)]
