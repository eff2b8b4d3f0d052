"""A measured run end to end (real CLI, tiny model): what each cell records, recomputed from its records."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from llmbench.trackers.cpu import CpuTracker, cpu_shares, read_proc_stat
from llmbench.trackers.memory import MemoryTracker, current_rss_mb


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_llama):
    tmp = tmp_path_factory.mktemp("measured")
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "candidates": [{"model": str(tiny_llama), "name": "tiny"}],
        "workload": {"prompt_tokens": {"dist": "uniform", "low": 8, "high": 24}, "output_tokens": 6, "requests": 4},
        "scenarios": ["single-stream", {"kind": "batch", "batch_sizes": [2]}],
        "warmup": 3,
        "precision_pct": None,  # exactly one pass per point, so every count below is known
    }))
    out = tmp / "out"
    proc = subprocess.run([sys.executable, "-m", "llmbench", "run", str(cfg), "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    return json.loads((out / "summary.json").read_text()), json.loads((out / "run.json").read_text()), records, tiny_llama


def by_cell(records):
    cells = defaultdict(list)
    for r in records:
        cells[r["point"]].append(r)
    return cells


def test_warmup_is_never_recorded_and_requests_are_successes(run):
    summary, _, records, _ = run
    cells = by_cell(records)
    # warmup: 3 batches per point ran before each cell; only the pass itself is in the log:
    # 4 single requests, and 2 batches of 2 (at least two batches per batch point).
    assert len(cells["single"]) == 4 and len(cells["batch=2"]) == 4
    assert [r["request_id"] for r in records] == list(range(len(records)))
    for row in summary["rows"]:
        recs = cells[row["point"]]
        assert row["requests"] == sum(r["status"] == "ok" for r in recs)
        assert row["requests"] + row["failed"] == len(recs)


def test_roofline_recomputed_from_weights_and_records(run):
    summary, meta, records, model_dir = run
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    embed = model.get_input_embeddings().weight
    # Every weight once; the input embedding (not tied here) is read one row per token.
    expected_bytes = sum(p.numel() * 4 for p in model.parameters()) - (embed.shape[0] - 1) * embed.shape[1] * 4
    assert not model.config.tie_word_embeddings
    single = [r for r in records if r["point"] == "single"]
    tpot = [(r["e2el_ms"] - r["ttft_ms"]) / (r["output_tokens"] - 1) for r in single]
    decode = 1e3 / np.percentile(tpot, 50)
    gbs = meta["roofline_bandwidth"]["gbs"]
    # The higher of the run's reading at start and one after measuring (a bound is the machine's best).
    readings = meta["roofline_bandwidth"]["readings_gbs"]
    assert readings[0] == meta["environment"]["machine"]["memory_read_bandwidth_gbs"] and len(readings) == 2
    assert gbs == max(readings) > 0
    for row in summary["rows"]:
        assert row["weight_bytes_per_token"] == expected_bytes
        assert row["roofline_tok_s"] == pytest.approx(gbs * 1e9 / expected_bytes, rel=1e-12)
        # The batch-1 decode speed of the variant, for the batch=2 row too.
        assert row["roofline_share"] == pytest.approx(decode / row["roofline_tok_s"], rel=1e-9)


def test_each_cell_states_its_memory_baseline_and_machine_load(run):
    summary, meta, _, _ = run
    base = meta["variants"]["tiny|torch-fp32"]["rss_baseline_mb"]
    for row in summary["rows"]:
        assert row["rss_baseline_mb"] == base and row["memory_method"].startswith("in-process")
        assert row["peak_rss_delta_mb"] == pytest.approx(row["peak_rss_mb"] - base)
        assert 0 <= row["cpu_steal_pct"] <= 100 and 0 <= row["cpu_busy_pct"] <= 100
        if row["measured_s"] >= 1.0:  # /proc/stat counts 10 ms ticks: a cell of a few ticks can read 0 busy
            assert row["cpu_busy_pct"] > 0
        assert 0 <= row["cpu_others_pct"] <= row["cpu_busy_pct"]
        assert isinstance(row["unreliable"], bool)
        assert row["precision_target_pct"] is None and row["hit_cap"] is False


def test_peak_rss_is_stated_against_a_baseline_not_inherited():
    # Memory an earlier variant still holds is in the baseline, not in what this span added.
    ballast = np.ones(300 * 2**20 // 8)
    base = current_rss_mb()
    with MemoryTracker("cpu", base) as mem:
        block = np.ones(100 * 2**20 // 8)
        del block
    assert mem.peak.rss_mb >= base + 90
    assert mem.peak.delta_mb == pytest.approx(100, abs=25)
    del ballast


def test_cpu_shares_from_proc_stat_counters():
    before = dict(user=100, nice=0, system=50, idle=800, iowait=20, irq=5, softirq=5, steal=20)
    after = dict(user=300, nice=0, system=100, idle=1000, iowait=20, irq=5, softirq=5, steal=70)
    # 500 jiffies: 250 busy (user 200 + system 50), 50 stolen.
    assert cpu_shares(before, after) == {"cpu_steal_pct": pytest.approx(10.0), "cpu_busy_pct": pytest.approx(50.0)}
    assert read_proc_stat()["idle"] > 0


def test_cpu_tracker_sees_this_process_busy(tmp_path):
    with CpuTracker() as cpu:
        x = 0
        for i in range(3_000_000):
            x += i
    load = cpu.load
    assert load.cpu_busy_pct > 100 / (os.cpu_count() or 1) * 0.5  # one core of ours was busy
    assert 0 <= load.cpu_others_pct <= load.cpu_busy_pct


def test_onnx_bytes_per_token_counts_int4_int8_and_one_embedding_row(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from llmbench.optimizers.quantize.footprint import onnx_bytes_per_token

    table = helper.make_tensor("table", TensorProto.FLOAT, [1000, 16], np.zeros(16000, np.float32))
    w8 = helper.make_tensor("w8", TensorProto.INT8, [16, 32], np.zeros(512, np.int8))
    w4 = helper.make_tensor("w4", TensorProto.INT4, [32, 64], np.zeros(2048, np.int8))
    nodes = [helper.make_node("Gather", ["table", "ids"], ["h"]),
             helper.make_node("Identity", ["w8"], ["a"]), helper.make_node("Identity", ["w4"], ["b"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("h",)],
                              initializer=[table, w8, w4])
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    # One table row (16 float32), 512 int8 bytes, 2048 int4 values packed two per byte.
    assert onnx_bytes_per_token(tmp_path / "m.onnx") == 16 * 4 + 512 + 1024


def test_roofline_of_a_variant_without_a_batch1_point_uses_the_rows_own_speed():
    from llmbench.roofline import add_roofline

    rows = [{"model": "m", "variant": "v", "scenario": "concurrency", "point": "clients=4", "batch_size": 4,
             "tpot_ms": {"p50": 4.0}},
            {"model": "m", "variant": "w", "scenario": "single-stream", "point": "single", "batch_size": 1,
             "tpot_ms": {"p50": 2.0}},
            {"model": "m", "variant": "w", "scenario": "batch", "point": "batch=8", "batch_size": 8,
             "tpot_ms": {"p50": 8.0}}]
    add_roofline(rows, 10.0, {("m", "v"): 10**8, ("m", "w"): 5 * 10**7})
    assert rows[0]["roofline_tok_s"] == 100.0 and rows[0]["roofline_share"] == 250.0 / 100.0
    assert "no batch-1 point" in rows[0]["roofline_basis"]
    assert rows[1]["roofline_tok_s"] == rows[2]["roofline_tok_s"] == 200.0
    assert rows[1]["roofline_share"] == rows[2]["roofline_share"] == 500.0 / 200.0
