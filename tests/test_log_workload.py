"""An interaction log as the workload (`workload: {log: FILE}`), the replay scenario, the plan trace and the cache log.

The log is made of real records: a tiny model's run (the project's own runner) with its prompts
kept, then given known arrival times and, for every other request, only the prompt's hash (as the
gateway writes it unless told to keep the text).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.config import Workload, parse_config
from llmbench.errors import BadInput
from llmbench.scenarios.arrivals import arrival_gaps

GAPS = [0.05, 0.3, 0.1, 0.25, 0.05, 0.4, 0.15, 0.2, 0.1, 0.3, 0.05]  # 12 requests over 1.95 s
T0 = 1_800_000_000.0


def llmbench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmbench", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def config(tmp: Path, model: Path, **over) -> Path:
    doc = {"candidates": [{"model": str(model), "name": "tiny"}], "warmup": 1, "precision_pct": None, "quality": None}
    doc.update(over)
    path = tmp / f"c{len(list(tmp.glob('c*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def log(tmp_path_factory, tiny_llama) -> Path:
    tmp = tmp_path_factory.mktemp("logsrc")
    cfg = config(tmp, tiny_llama, workload={"prompt_tokens": {"dist": "uniform", "low": 6, "high": 30},
                                            "output_tokens": {"dist": "uniform", "low": 2, "high": 6},
                                            "requests": 12, "record_prompts": True},
                 scenarios=["single-stream"])
    res = llmbench("run", str(cfg), "--out", str(tmp / "src"))
    assert res.returncode == 0, res.stderr[-2000:]
    recs = [json.loads(line) for line in (tmp / "src" / "requests.jsonl").read_text().splitlines()]
    assert len(recs) == 12
    times = T0 + np.concatenate([[0.0], np.cumsum(GAPS)])
    for i, (r, t) in enumerate(zip(recs, times)):
        r.update(timestamp=float(t), run_id="gateway", scenario="gateway", point="chat")
        if i % 2:
            r["prompt"] = None  # hashed only: replayed as random tokens of the logged length
    out = tmp / "gateway.jsonl"
    # Written newest first: the workload takes them by timestamp, not by file order.
    out.write_text("".join(json.dumps(r) + "\n" for r in reversed(recs)))
    return out


def logged(log: Path) -> list[dict]:
    return sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda r: r["timestamp"])


@pytest.fixture(scope="module")
def replayed(log, tiny_llama, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    cfg = config(tmp, tiny_llama, workload={"log": str(log)}, scenarios=[{"kind": "replay", "speedups": [1, 2]}])
    res = llmbench("run", str(cfg), "--out", str(tmp / "out"))
    assert res.returncode == 0, res.stderr[-2000:]
    recs = [json.loads(line) for line in (tmp / "out" / "requests.jsonl").read_text().splitlines()]
    return recs, json.loads((tmp / "out" / "run.json").read_text())


def test_replay_sends_the_logged_arrival_gaps(replayed, log):
    recs, meta = replayed
    for speedup in (1, 2):
        cell = sorted((r for r in recs if r["point"] == f"replay={speedup}x"), key=lambda r: r["request_id"])
        assert len(cell) == 12 and cell[0]["scenario"] == "replay"
        # In-process open loop: a record's timestamp is its scheduled arrival, so the gaps are exact.
        sent = sorted(r["timestamp"] for r in cell)
        assert np.diff(sent) == pytest.approx(np.array(GAPS) / speedup, abs=1e-6)
        rate = meta["cells"][f"tiny|torch-fp32|replay|replay={speedup}x"]["rate_rps"]
        assert rate == pytest.approx(11 / sum(GAPS) * speedup)


def test_replay_sends_the_logged_prompts_and_lengths(replayed, log, tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    recs, meta = replayed
    src = logged(log)
    cell = sorted((r for r in recs if r["point"] == "replay=1x"), key=lambda r: r["timestamp"])
    for want, got in zip(src, cell):
        assert got["output_tokens"] == want["output_tokens"]
        if want["prompt"] is not None:  # the text itself, tokenised by the candidate's tokenizer
            assert got["prompt_sha256"] == want["prompt_sha256"]
            assert got["prompt_tokens"] == len(tok(want["prompt"])["input_ids"])
        else:  # only a hash: random tokens of the logged length
            assert got["prompt_tokens"] == want["prompt_tokens"]
            assert got["prompt_sha256"] != want["prompt_sha256"]
    ident = meta["dataset"]
    assert ident["kind"] == "interaction log" and ident["requests"] == 12 and ident["with_text"] == 6
    assert ident["span_s"] == pytest.approx(sum(GAPS)) and ident["skipped_lines"] == 0


def test_build_prompts_takes_the_oldest_requests_and_fills_failed_outputs(log, tiny_llama, tmp_path):
    from transformers import AutoTokenizer

    from llmbench.workload import build_prompts

    src = logged(log)
    src[2].update(status="error", error_kind="timeout", output_tokens=0)
    path = tmp_path / "failed.jsonl"
    path.write_text("garbage line\n" + "".join(json.dumps(r) + "\n" for r in src))
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    prompts = build_prompts(Workload(log=path, requests=5), tok, seed=0)
    assert len(prompts) == 5
    assert [p.arrival_s for p in prompts] == pytest.approx([0.0, *np.cumsum(GAPS[:4])])
    ok_outputs = [r["output_tokens"] for r in src if r["status"] == "ok"]
    assert prompts[2].output_tokens == int(np.median(ok_outputs))  # a failed request is still sent
    assert [len(p.ids) for p in prompts[1::2]] == [r["prompt_tokens"] for r in src[1:5:2]]
    assert Workload(log=path).requests == 100_000  # without `requests`, the whole log


def test_arrival_gaps_of_a_log_keep_its_shape_at_any_rate():
    offsets = [0.0, 1.0, 1.5, 4.0]  # mean rate 3 / 4 s = 0.75 /s
    g = arrival_gaps("log", 0.75, 0, offsets)
    assert [next(g) for _ in range(5)] == pytest.approx([0.0, 1.0, 0.5, 2.5, 1 / 0.75])
    g = arrival_gaps("log", 1.5, 0, offsets)  # twice the rate: every gap halved
    assert [next(g) for _ in range(4)] == pytest.approx([0.0, 0.5, 0.25, 1.25])
    with pytest.raises(ValueError):
        next(arrival_gaps("log", 1.0, 0, [5.0, 5.0]))


def test_plan_trace_reads_the_log_as_it_is(log):
    from llmbench.planner.trace import load_trace

    src = logged(log)
    tr = load_trace(log)
    assert tr.requests.arrival_s.tolist() == pytest.approx([0.0, *np.cumsum(GAPS)])
    assert tr.requests.prompt_tokens.tolist() == [r["prompt_tokens"] for r in src]
    assert tr.requests.output_tokens.tolist() == [r["output_tokens"] for r in src]


def test_the_cache_log_reads_the_records_and_skips_bad_lines(log, tmp_path, capsys):
    from llmbench.optimizers.cache.logs import PromptLog, read_log

    src = [r for r in logged(log) if r["prompt"] is not None]
    path = tmp_path / "texts.jsonl"
    path.write_text(json.dumps(src[0]) + "\n{cut off\n" + "".join(json.dumps(r) + "\n" for r in src[1:]))
    parsed = read_log(path)
    assert isinstance(parsed, PromptLog) and parsed.kind == "requests"
    assert parsed.prompts == [r["prompt"] for r in src] and parsed.costs == [r["cost"] for r in src]
    assert f"{path}:2" in capsys.readouterr().err
    with pytest.raises(BadInput, match=r"gateway.jsonl:\d+: .*sha256.*record_prompts: true"):
        read_log(log)  # half the prompts are hashes only


@pytest.mark.parametrize("workload, scenarios, message", [
    ({"log": "absent.jsonl"}, ["single-stream"], "workload.log: .*absent.jsonl does not exist"),
    ({"log": "junk.jsonl"}, ["single-stream"], "no usable request record .*junk.jsonl:1"),
    ({"prompt_tokens": 8}, ["replay"], "scenario 'replay' sends the arrivals of a log: give workload.log"),
    ({"log": "same.jsonl"}, ["replay"], "replay' needs arrivals spread over time"),
    ({"log": "same.jsonl", "dataset": {"path": "same.jsonl"}}, ["single-stream"], "one of 'dataset', 'templates' or 'log'"),
])
def test_bad_logs_are_refused_before_anything_loads(tmp_path, log, workload, scenarios, message):
    (tmp_path / "junk.jsonl").write_text("not a record\n{\"a\": 1}\n")
    rec = logged(log)[0]
    (tmp_path / "same.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps(rec) + "\n")
    cfg = config(tmp_path, Path("card:llama-5m"), workload=workload, scenarios=scenarios)
    res = CliRunner().invoke(main, ["run", str(cfg), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output[-2000:]
    last = res.output.strip().splitlines()[-1]
    assert "Traceback" not in res.output and re.search(message, last), last
    assert not (tmp_path / "out" / "requests.jsonl").exists()


def test_a_config_with_a_log_reads_back_from_run_json(log):
    cfg = parse_config({"candidates": [{"card": "llama-5m"}], "workload": {"log": str(log)}, "scenarios": ["replay"]}, "t")
    again = parse_config(cfg.model_dump(mode="json"), "t")
    assert again.workload.log == log and again.workload.requests == cfg.workload.requests == 100_000


def test_replay_on_a_served_backend_sends_on_the_logged_schedule():
    import types

    from load_server import LoadServer, ServedStub
    from llmbench.scenarios.base import CellContext
    from llmbench.scenarios.replay import ReplayScenario
    from llmbench.scenarios.sampling import Sampling
    from llmbench.workload import Prompt

    offsets = np.concatenate([[0.0], np.cumsum(GAPS)]) / 2  # the log twice as fast: a short test
    reqs = [Prompt(ids=[1, 2, 3], output_tokens=3, text=f"p{i}", arrival_s=float(t)) for i, t in enumerate(offsets)]
    sc = ReplayScenario(types.SimpleNamespace(speedups=[2.0], max_batch=4), seed=0)
    point = sc.points()[0]
    ids = iter(range(1000))
    with LoadServer(gap_s=0.003) as server:
        recs = list(sc.measure(ServedStub(server), reqs, CellContext("r", "m", "http", "replay", point, 1.0,
                                                                    next_id=lambda: next(ids)),
                               Sampling(iterations=1, precision_pct=None)))
        seen = np.diff([a.at for a in server.arrivals])
    assert len(recs) == 12 and all(r.ok and r.point == "replay=2x" for r in recs)
    sends = np.sort([r.timestamp for r in recs])
    want = np.array(GAPS) / 4
    assert np.diff(sends) == pytest.approx(want, abs=1e-6)  # the schedule: the log's gaps / 2
    # What the server saw: the same gaps, give or take this loaded machine's scheduling (a few ms).
    assert np.median(np.abs(seen - want)) < 0.01 and np.corrcoef(seen, want)[0, 1] > 0.9
    assert sc.last_facts["rate_rps"] == pytest.approx(11 / (offsets[-1] / 2))
