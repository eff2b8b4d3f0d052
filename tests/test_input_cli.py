"""`llmbench run` input paths through the real CLI (issues 13 and 20): resume, relative paths, locks, names."""
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

from llmbench.errors import BadInput

LLMB = [sys.executable, "-m", "llmbench"]


def llmbench(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*LLMB, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=os.environ.copy())


def one_line_exit_2(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_card_candidate_resumes_after_a_real_sigint(tmp_path):
    # Issue 13 item 1: run.json stores `model: card:X` and `card: X`; the resume refused them.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"candidates": [{"card": "llama-5m"}], "warmup": 0,
                                   "workload": {"prompt_tokens": 16, "output_tokens": 6, "requests": 8},
                                   "scenarios": [{"kind": "batch", "batch_sizes": [1, 2, 4]}]}))
    out = tmp_path / "r"
    proc = subprocess.Popen([*LLMB, "run", str(cfg), "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        if (out / "run.json").exists() and json.loads((out / "run.json").read_text()).get("completed_cells"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"llmbench run --resume {out}" in err
    stored = json.loads((out / "run.json").read_text())["config"]["candidates"][0]
    assert stored["model"] == "card:llama-5m" and stored["card"] == "llama-5m"
    before = (out / "requests.jsonl").read_text().splitlines()
    done = {tuple(c) for c in json.loads((out / "run.json").read_text())["completed_cells"]}
    kept = [line for line in before if (lambda r: (r["model"], r["variant"], r["scenario"], r["point"]))(json.loads(line)) in done]
    resumed = llmbench("run", "--resume", str(out), "--json")
    assert resumed.returncode == 0, resumed.stderr
    rows = json.loads(resumed.stdout)["rows"]
    recs = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert [r["point"] for r in rows] == ["batch=1", "batch=2", "batch=4"]
    # the cells done before Ctrl-C keep their records byte for byte; each row counts exactly its records
    assert (out / "requests.jsonl").read_text().splitlines()[: len(kept)] == kept and kept
    for row in rows:
        assert row["requests"] + row["failed"] == sum(1 for x in recs if x["point"] == row["point"]) >= 8


def test_relative_paths_resolve_against_the_config_and_resume_from_anywhere(tmp_path, tiny_llama):
    # Issue 20 item 6: `model: models/tiny` and `hardware: hw.yaml` without ./, run from the config's folder.
    home = tmp_path / "project"
    (home / "models").mkdir(parents=True)
    os.symlink(tiny_llama, home / "models" / "tiny")
    (home / "hw.yaml").write_text("name: my-box\nusd_per_hour: 0.5\n")
    (home / "data").mkdir()
    (home / "data" / "ds.jsonl").write_text('{"prompt": "hello there", "output_tokens": 3}\n{"prompt": "and again"}\n')
    (home / "c.yaml").write_text("candidates:\n  - model: models/tiny\nhardware: hw.yaml\nwarmup: 0\n"
                                 "workload: {dataset: {path: data/ds.jsonl}, requests: 2, output_tokens: 4}\n")
    out = tmp_path / "r"
    first = llmbench("run", "c.yaml", "--out", str(out), cwd=home)
    assert first.returncode == 0, first.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["config"]["candidates"][0]["model"] == str(home / "models" / "tiny")
    assert meta["config"]["hardware"] == str(home / "hw.yaml") and meta["hardware_profile"]["usd_per_hour"] == 0.5
    assert meta["config"]["workload"]["dataset"]["path"] == str(home / "data" / "ds.jsonl")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = llmbench("run", "--resume", str(out), "--json", cwd=elsewhere)
    assert again.returncode == 0, again.stderr
    recs = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    # the first row's own length, then the config's, in every pass over the dataset
    # (a cell may stop mid-pass at its time cap: the count of records need not be even)
    assert recs and [r["output_tokens"] for r in recs] == ([3, 4] * len(recs))[: len(recs)]


def test_resume_refuses_a_config_or_another_out(tmp_path, tiny_llama):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"candidates: [{{model: {tiny_llama}}}]\n")
    one_line_exit_2(llmbench("run", str(cfg), "--resume", str(tmp_path / "r")), "not both")
    one_line_exit_2(llmbench("run", "--resume", str(tmp_path / "r"), "--out", str(tmp_path / "x")), "drop --out")


def test_a_folder_in_use_is_refused(tmp_path, tiny_llama):
    from llmbench.results import FolderLock

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"candidates: [{{model: {tiny_llama}}}]\nworkload: {{prompt_tokens: 8, output_tokens: 2, requests: 1}}\n")
    lock = FolderLock(tmp_path / "r").acquire()  # as a run in progress holds it
    try:
        one_line_exit_2(llmbench("run", str(cfg), "--out", str(tmp_path / "r")), "in use by another llmbench run")
        one_line_exit_2(llmbench("run", "--resume", str(tmp_path / "r")), "in use")
    finally:
        lock.release()
    assert not (tmp_path / "r" / "requests.jsonl").exists()


def test_two_runs_started_in_one_second_get_different_ids():
    from llmbench.runner import new_run_id

    ids = {new_run_id("same config") for _ in range(50)}
    assert len(ids) == 50


def test_bracketed_names_survive_the_run_and_quality_null_turns_the_gate_off(tmp_path, tiny_llama):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"candidates": [{"model": str(tiny_llama), "name": "tiny [/int4]"},
                                                  {"model": str(tiny_llama), "name": "[int4]", "variants": ["torch-fp32", "torch-int8"]}],
                                   "workload": {"prompt_tokens": 8, "output_tokens": 2, "requests": 1}, "warmup": 0,
                                   "quality": None}))
    proc = llmbench("run", str(cfg), "--out", str(tmp_path / "r"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["model"] for r in json.loads(proc.stdout)["rows"]] == ["tiny [/int4]", "[int4]", "[int4]"]
    assert "tiny [/int4]" in proc.stderr and "[int4]" in proc.stderr  # the table shows them, nothing eaten
    assert not (tmp_path / "r" / "quality.json").exists() and "quality gate: off" in proc.stderr


@pytest.mark.parametrize("doc, needles", [
    ("dtype: float16\n", ["dtype", "float16", "CPU"]),
    ("workload: {prompt_tokens: 600, output_tokens: 4, requests: 1}\n", ["604 tokens", "context of 512"]),
    ("workload: {dataset: {path: q.jsonl}}\n", ["q.jsonl:1", "no string field 'prompt'"]),
    ("slo: ttft_p96=500ms\n", ["p96", "p50, p90, p95, p99"]),
    ("quality: {golden_set: g.jsonl}\n", ["quality.golden_set", "header"]),
    ("plan: {trace: t.csv}\n", ["plan.trace", "t.csv"]),
    ("cache: {log: l.jsonl}\n", ["cache.log", "l.jsonl:1"]),
])
def test_bad_input_found_before_the_first_model_loads(tmp_path, tiny_llama, doc, needles):
    (tmp_path / "q.jsonl").write_text('{"question": "where is my order?"}\n')
    (tmp_path / "g.jsonl").write_text('{"prompt": "no header here"}\n')
    (tmp_path / "t.csv").write_text("when,what\n1,2\n")
    (tmp_path / "l.jsonl").write_text('{"text_a": "x"}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"candidates: [{{model: {tiny_llama}}}]\ndevice: cpu\n" + doc)
    proc = llmbench("run", str(cfg), "--out", str(tmp_path / "r"))
    one_line_exit_2(proc, *needles)
    assert not (tmp_path / "r" / "requests.jsonl").exists()


def test_a_card_larger_than_free_memory_is_refused_before_building(monkeypatch):
    from llmbench import preflight
    from llmbench.config import parse_config
    from llmbench.models.cards import card_parameters
    from llmbench.models.source import resolve

    cfg = parse_config({"candidates": [{"card": "llama-50m"}]}, "c.yaml")
    need = card_parameters("llama-50m") * 4
    monkeypatch.setattr(preflight, "available_memory_bytes", lambda: need - 1)
    with pytest.raises(BadInput, match=rf"needs at least {need / 1e9:.2f} GB for its weights \(float32\)"):
        preflight.check_card_memory(cfg, [resolve("card:llama-50m")], "cpu")
    monkeypatch.setattr(preflight, "available_memory_bytes", lambda: need + 1)
    preflight.check_card_memory(cfg, [resolve("card:llama-50m")], "cpu")


def test_a_cache_profile_without_settings_is_bad_input(tmp_path):
    from llmbench.config import parse_config
    from llmbench.optimizers.cache.profile import profile_path

    doc = json.loads(profile_path("default").read_text())
    doc["settings"] = []
    (tmp_path / "v.json").write_text(json.dumps(doc))
    with pytest.raises(BadInput, match="cache.verifier.*'settings' list is empty"):
        parse_config({"candidates": [{"model": "x"}], "cache": {"verifier": str(tmp_path / "v.json")}}, str(tmp_path / "c.yaml"))


def test_an_uncached_hub_id_fails_fast_without_offline_mode():
    # Issue 13 item 11: without HF_HUB_OFFLINE, huggingface_hub retried for about 30 s, printing tracebacks.
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there: the hub is unreachable
    code = ("import time; from transformers import AutoConfig; from llmbench.models.source import resolve\n"
            "t = time.perf_counter()\ntry:\n    resolve('someorg/not-cached-model')\nexcept Exception as e:\n"
            "    print(type(e).__name__, round(time.perf_counter() - t, 2))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    name, seconds = proc.stdout.split()
    assert name == "BadInput" and float(seconds) < 5.0, proc.stdout + proc.stderr
    assert "Retrying" not in proc.stderr and "Traceback" not in proc.stderr


def test_record_prompts_keeps_the_text_for_cache_simulate(tmp_path, tiny_llama):
    # Issue 13 item 6: `cache simulate RUN/requests.jsonl` needs prompt text; a config switch keeps it.
    import hashlib

    texts = ["how do I reset my password?", "how can I reset my password?", "where is my order?"]
    (tmp_path / "ds.jsonl").write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    base = {"candidates": [{"model": str(tiny_llama)}], "warmup": 0,
            "workload": {"dataset": {"path": str(tmp_path / "ds.jsonl")}, "requests": 3, "output_tokens": 2}}
    counts = {}
    for keep in (True, False):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({**base, "workload": {**base["workload"], "record_prompts": keep}}))
        out = tmp_path / f"r-{keep}"
        assert llmbench("run", str(tmp_path / "c.yaml"), "--out", str(out)).returncode == 0
        recs = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
        n = counts[keep] = len(recs)
        assert [r["prompt_sha256"] for r in recs] == [hashlib.sha256(texts[i % 3].encode()).hexdigest() for i in range(n)]
        assert [r["prompt"] for r in recs] == ([texts[i % 3] for i in range(n)] if keep else [None] * n)
    sim = llmbench("cache", "simulate", str(tmp_path / "r-True" / "requests.jsonl"), "--json", timeout=600)
    assert sim.returncode == 0, sim.stderr
    assert json.loads(sim.stdout)["lookups"] == counts[True]
    hidden = llmbench("cache", "simulate", str(tmp_path / "r-False" / "requests.jsonl"))
    one_line_exit_2(hidden, "prompt_sha256", "record_prompts: true")
