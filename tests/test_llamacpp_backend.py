"""GGUF variants measured through a real llama-server that llmbench builds, starts and stops.

One `llmbench run` (the real CLI) on card:llama-5m gguf-q4_k_m with three cells: single-stream
(--parallel 1), whose server this test kills with SIGKILL after the cell's first records,
then clients=1 (also --parallel 1: it would reuse a live server, so it must start a fresh one)
and clients=2 (--parallel 2). No fake server anywhere here.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tiny_models import session_root, train_tiny

CLI = Path(sys.executable).with_name("llmbench")
OUTPUT = 16
PROMPT = 64


def _servers(parent: int | None = None) -> set[int]:
    """llama-server processes of this test session: their model is in the session's own cache
    (conftest points LLMBENCH_CACHE at it), so other sessions' servers on the machine do not count."""
    args = ["pgrep", "-a", "-x", "llama-server"] + (["-P", str(parent)] if parent else [])
    mark = os.environ.get("LLMBENCH_CACHE", "")
    lines = subprocess.run(args, capture_output=True, text=True).stdout.splitlines()
    return {int(ln.split()[0]) for ln in lines if ln.strip() and mark in ln}


def _killer(proc: subprocess.Popen, requests: Path, point: str, done: dict) -> None:
    """SIGKILL the run's llama-server once `point` has logged a measured record."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        lines = requests.read_text().splitlines() if requests.exists() else []
        if any(json.loads(ln).get("point") == point and json.loads(ln).get("status") == "ok" for ln in lines if ln.strip()):
            for pid in _servers(proc.pid):
                os.kill(pid, signal.SIGKILL)
                done.setdefault("killed", []).append(pid)
            return
        time.sleep(0.01)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, engine) -> dict:
    base = tmp_path_factory.mktemp("gguf-run")
    cfg = {
        "candidates": [{"card": "llama-5m", "variants": ["gguf-q4_k_m"]}],
        "workload": {"prompt_tokens": PROMPT, "output_tokens": OUTPUT, "requests": 8},
        "scenarios": ["single-stream", {"kind": "concurrency", "clients": [1, 2]}],
        "min_duration_s": 2.0, "cell_time_cap_s": 4.0, "quality": None,
    }
    (base / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = base / "r"
    before = _servers()
    proc = subprocess.Popen([str(CLI), "run", str(base / "c.yaml"), "--out", str(out), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done: dict = {}
    watcher = threading.Thread(target=_killer, args=(proc, out / "requests.jsonl", "single", done), daemon=True)
    watcher.start()
    try:
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    watcher.join(5)
    recs = [json.loads(ln) for ln in (out / "requests.jsonl").read_text().splitlines() if ln.strip()]
    return {"rc": proc.returncode, "stderr": stderr, "out": out, "killed": done.get("killed", []),
            "left": _servers() - before, "recs": recs, "rows": json.loads((out / "summary.json").read_text())["rows"],
            "meta": json.loads((out / "run.json").read_text())}


def _cell(run: dict, point: str) -> list[dict]:
    return [r for r in run["recs"] if r["point"] == point]


def test_the_killed_cell_fails_with_the_servers_last_log_lines(killed_run):
    assert killed_run["killed"], "the server was never seen"
    assert killed_run["rc"] == 1, killed_run["stderr"][-1500:]  # measured, with a failed cell
    errors = [r for r in _cell(killed_run, "single") if r["status"] == "error"]
    assert errors, "no error record in the killed cell"
    msg = errors[-1]["error"]
    assert "ServerDied" in msg and "died during the cell" in msg and "last lines" in msg
    assert str(killed_run["killed"][0]) in msg
    # The log's tail is in it: llama-server's own log lines carry its " I srv " / " I slot " tags.
    assert " I " in msg.split("last lines:", 1)[1]
    done = {tuple(c) for c in killed_run["meta"]["completed_cells"]}
    assert ("card:llama-5m", "gguf-q4_k_m", "single-stream", "single") not in done  # a resume measures it again
    assert "failed cell" in killed_run["stderr"] and "single" in killed_run["stderr"]


def test_the_next_cells_are_measured_on_fresh_servers(killed_run):
    rows = {r["point"]: r for r in killed_run["rows"]}
    for point, parallel in (("clients=1", 1), ("clients=2", 2)):
        row = rows[point]
        assert not row.get("error") and row["failed"] == 0 and row["requests"] >= 8, row
        cell = killed_run["meta"]["cells"][f"card:llama-5m|gguf-q4_k_m|concurrency|{point}"]
        assert cell["server_parallel"] == parallel and cell["server_reused"] is False
        cmd = Path(cell["server_log"]).with_suffix(".cmd").read_text()
        assert f"--parallel {parallel} " in cmd and "--host 127.0.0.1" in cmd
        assert f"-c {parallel * (PROMPT + OUTPUT + 16)} " in cmd  # parallel x (prompt + output + margin)
        assert cell["memory_method"].startswith("server VmHWM") and 5 < cell["peak_rss_mb"] < 2000
        # The cold start (spawn -> the first token served) comes after the server said it was ready.
        assert 0 < cell["server_ready_s"] < cell["cold_start_s"] < 60
    cmds = sorted((killed_run["out"] / "servers").glob("*.cmd"))
    assert {"--parallel 1" in c.read_text() for c in cmds} == {True, False} and len(cmds) == 3
    assert killed_run["meta"]["engines"]["llama.cpp"]["version"]


def test_records_carry_ttft_itl_and_the_servers_usage(killed_run):
    ok = [r for r in killed_run["recs"] if r["status"] == "ok" and r["point"] != "single"]
    assert len(ok) >= 16
    for r in ok:
        assert r["usage_source"] == "server" and r["output_tokens"] == OUTPUT and not r["ended_early"]
        assert r["prompt_tokens"] == PROMPT  # token ids are sent as they are: no re-tokenizing drift
        assert 0 < r["ttft_ms"] <= r["e2el_ms"] and len(r["itl_ms"]) >= 1 and all(x >= 0 for x in r["itl_ms"])
        # TTFT/ITL are the client's clock; the server's own timings bound what it spent generating.
        assert r["server_timings"]["predicted_n"] == OUTPUT
        assert r["e2el_ms"] >= r["server_timings"]["predicted_ms"] * 0.5
    rows = {r["point"]: r for r in killed_run["rows"]}
    assert rows["clients=2"]["itl_ms"]["p50"] is not None and rows["clients=1"]["ttft_ms"]["p50"] > 0


def test_no_llama_server_is_left(killed_run):
    assert killed_run["left"] == set()


def test_a_server_is_kept_for_a_cell_of_the_same_parallel_and_replaced_otherwise(engine, tmp_path):
    from llmbench.backends.registry import backend_for
    from llmbench.models.source import resolve
    from llmbench.scenarios.base import Point
    from llmbench.workload import Prompt

    backend = backend_for("gguf-q4_k_m")(resolve("card:llama-5m"), "gguf-q4_k_m", "cpu", "float32")
    backend.load()
    prompts = [Prompt(ids=list(range(10, 10 + PROMPT)), output_tokens=OUTPUT)]
    try:
        backend.begin_cell(Point("a", parallel=1), prompts, tmp_path)
        first = backend.server.pid
        backend.end_cell()
        facts = backend.cell_facts()
        assert facts["memory_method"] == "server VmHWM" and facts["peak_rss_mb"] > 1
        assert 0 <= facts["server_cpu_pct"] <= 100  # the runner takes it out of the 'other load' share
        backend.begin_cell(Point("b", parallel=1), prompts, tmp_path)
        reused = backend.cell_facts()
        assert backend.server.pid == first and reused["server_reused"] is True
        assert "cold_start_s" not in reused and "server_ready_s" not in reused  # this cell started nothing
        assert backend.endpoint.url == backend.server.url
        backend.end_cell()
        backend.begin_cell(Point("c", parallel=3), prompts, tmp_path)
        assert backend.server.pid != first and first not in _servers()
        assert backend.cell_facts()["server_ctx_size"] == 3 * (PROMPT + OUTPUT + 16)
        backend.end_cell()
    finally:
        backend.close()
    assert backend.server is None and _servers() == set()
    assert sorted(p.name for p in (tmp_path / "servers").glob("*.cmd")) == [
        "card_llama-5m-gguf-q4_k_m-a.cmd", "card_llama-5m-gguf-q4_k_m-c.cmd"]


def test_an_unconvertible_architecture_is_bad_input_naming_it(tmp_path):
    folder = tmp_path / "opt-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["OPTForCausalLM"], "model_type": "opt",
                                                    "max_position_embeddings": 2048}))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"candidates": [{"model": str(folder), "variants": ["gguf-q4_k_m"]}],
                                   "workload": {"prompt_tokens": 16, "output_tokens": 4, "requests": 2}}))
    res = subprocess.run([str(CLI), "run", str(cfg), "--out", str(tmp_path / "r")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2, res.stderr[-1000:]
    assert "OPTForCausalLM" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r" / "requests.jsonl").exists()  # refused before measuring


def test_an_engine_that_cannot_be_had_fails_only_its_cells(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"candidates": [{"card": "llama-5m", "variants": ["torch-fp32", "gguf-f16", "gguf-q4_k_m"]}],
                                   "workload": {"prompt_tokens": 16, "output_tokens": 4, "requests": 2},
                                   "quality": None, "cell_time_cap_s": 0.2}))
    env = {**os.environ, "LLMBENCH_LLAMA_CPP_DIR": str(tmp_path / "no-tree")}
    res = subprocess.run([str(CLI), "run", str(cfg), "--out", str(tmp_path / "r"), "--json"], capture_output=True,
                         text=True, timeout=600, env=env)
    assert res.returncode == 1, res.stderr[-1000:]
    assert "Traceback" not in res.stderr
    rows = {r["variant"]: r for r in json.loads(res.stdout)["rows"]}
    assert not rows["torch-fp32"].get("error") and rows["torch-fp32"]["requests"] >= 2
    for v in ("gguf-f16", "gguf-q4_k_m"):
        assert "EngineUnavailable" in rows[v]["error"] and "LLMBENCH_LLAMA_CPP_DIR" in rows[v]["error"]


def test_a_gguf_variant_on_cuda_is_refused_before_measuring():
    from llmbench.backends.registry import backend_for
    from llmbench.errors import BadInput

    cls = backend_for("gguf-q4_k_m")
    with pytest.raises(BadInput, match="built for the CPU"):
        cls.check_variant("gguf-q4_k_m", "cuda")
    with pytest.raises(BadInput, match="unknown GGUF type"):
        cls.check_variant("gguf-q3", "cpu")


def test_quality_gate_through_the_server_on_a_trained_model(tmp_path_factory, engine):
    """gguf-f16 of a trained tiny Llama keeps the fp32 reference's greedy output (token ids from the
    server); the teacher-forced figures are marked not measured, not invented."""
    from llmbench.config import QualityConfig
    from llmbench.golden import load_golden
    from llmbench.models.source import resolve
    from llmbench.quality import measure_candidate

    source = resolve(str(train_tiny(session_root(tmp_path_factory) / "trained-llama")))
    before = _servers()
    doc = measure_candidate(source, ["torch-fp32", "gguf-f16"], "cpu", "float32", load_golden(None), QualityConfig())
    assert _servers() - before == set()
    q = doc["variants"]["gguf-f16"]
    assert "error" not in q, q
    assert q["greedy_agreement"] >= 0.95 and q["gate"] == "pass"
    assert "greedy_agreement" in q["checks"] and "top1_agreement" not in q["checks"] and "top1_agreement" not in q
    assert "teacher-forced" in q["not_measured"]["top1_agreement"] and "kl_mean" in q["not_measured"]
