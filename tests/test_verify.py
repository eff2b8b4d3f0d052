"""`llmbench verify` end to end: real llama-servers started from a real run's deploy/ folder, a real
LiteLLM proxy (`litellm --config`) in front, real streamed requests; nothing left running.

The results folder is made once per module by `llmbench run` on card:llama-5m with two GGUF variants
(so that the recommendation has a primary and a one-replica fallback standby), recommended with a
free base port. Loads are short (a few seconds at 4 req/s).
"""
from __future__ import annotations

import json
import math
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from llmbench.engines.llamacpp.server import CLIENT_CORES
from llmbench.verify.compare import METRICS
from llmbench.verify.deploy import port_free
from test_verify_autoscale import (BURST_AT, BURST_S, OVERLOAD, POLICY, SLOW_TARGET, SLOW_WAIT_S, TRACE_S, burst_trace,
                                   one_thread_each, plan_the_trace_rate, replica_capacity, slow_policy_trace)

LLMB = [sys.executable, "-m", "llmbench"]
PGREP = shutil.which("pgrep") or "pgrep"
CONFIG = """\
candidates:
  - card: llama-5m
    variants: [gguf-q4_k_m, gguf-f16]
workload:
  prompt_tokens: {dist: lognormal, mean: 40, sigma: 0.3, min: 16, max: 72}
  output_tokens: 12
  requests: 8
scenarios:
  - single-stream
  - {kind: concurrency, clients: [1, 2]}
hardware: cpu-2core
warmup: 1
seed: 0
"""


def _ours(run: Path) -> list[str]:
    """Processes verify may have started for `run`: llama-servers on its deployment's ports, and a
    `litellm --config` of its gateway file (other tests may run their own at the same time)."""
    dep = yaml.safe_load((run / "deployment.yaml").read_text())
    ports = [p for d in dep.get("deployments") or [] for p in (d.get("serving") or {}).get("ports") or []]
    lines = subprocess.run([PGREP, "-af", "llama-server|litellm"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in lines if (("llama-server" in line and any(f"--port {p} " in line + " " for p in ports))
                                      or ("litellm --config" in line and str(run / "gateway") in line))]


def _free_base(n: int) -> int:
    for _ in range(200):
        base = random.randint(20000, 40000)
        if all(port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range")


def _cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*LLMB, *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def run_dir(engine, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("verify")
    (tmp / "tiny.yaml").write_text(CONFIG)
    got = _cli("run", str(tmp / "tiny.yaml"), "--out", str(tmp / "out"), timeout=600)
    assert got.returncode == 0, got.stderr[-2000:]
    run = tmp / "out"
    rec = _cli("recommend", str(run), "--base-port", str(_free_base(3)))
    assert rec.returncode == 0, rec.stderr[-2000:]
    dep = yaml.safe_load((run / "deployment.yaml").read_text())
    assert dep["fallbacks"], "the recommendation needs a fallback for the drill"
    return run


def _check_figures(block: dict) -> None:
    for m in METRICS:
        assert set(block[m]) >= {"predicted", "measured", "error", "measured_direct", "error_direct"}, m
    for m in ("ttft_p50", "ttft_p95", "e2el_p50", "e2el_p95", "throughput"):
        c = block[m]
        assert c["predicted"] > 0 and c["measured"] > 0, (m, c)
        assert c["error"] == pytest.approx((c["measured"] - c["predicted"]) / c["predicted"])


def test_verify_through_a_real_proxy(run_dir):
    got = _cli("verify", str(run_dir), "--load", "4", "--duration", "5", "--refit", "3", "--json")
    time.sleep(1)
    assert _ours(run_dir) == [], "verify left a llama-server or litellm process running"
    assert got.returncode == 0, got.stderr[-3000:]
    doc = json.loads(got.stdout)
    assert json.loads((run_dir / "verify.json").read_text()) == doc

    # Scaled to this machine: the replicas its cores hold, with that share of the load (4 req/s x 5 s).
    primary = next(k for k, v in doc["deployments"].items() if v["role"] == "primary")
    sc, cores = doc["scale"]["deployments"][primary], doc["scale"]["cores_here"]
    dep = next(d for d in yaml.safe_load((run_dir / "deployment.yaml").read_text())["deployments"] if d["option"] == primary)
    assert sc["planned_replicas"] == dep["replicas"]
    serving = max(1, cores - CLIENT_CORES)  # kept for the client and the proxy
    assert sc["started"] == min(dep["replicas"], max(1, serving // (dep["serving"].get("threads") or serving)))
    n = round(4 * 5 * sc["load_share"])
    assert doc["load"]["requests"] == n and doc["load"]["kind"] == "poisson"
    assert doc["load"]["between_phases"]["idle"] is True  # the direct phase started on idle servers
    over = doc["overall"]
    _check_figures(over)
    assert over["requests"] == n and over["ok"] == n, over["errors_by_kind"]
    # Predicted throughput: the requests over the load's time, or until the simulation's last answer if later.
    span = doc["deployments"][primary]["predicted_span_s"]
    assert 0 < span < 5 + 2 and over["throughput"]["predicted"] == pytest.approx(n / max(5, span))
    _check_figures(doc["deployments"][primary])
    assert f"simulated on the {n} requests" in doc["deployments"][primary]["predicted_source"]
    # --refit: the primary's two closed-loop cells measured just before the load, a model fitted on
    # them alone (its step times refitted here from the saved records), simulated on the same requests.
    from llmbench.planner.served import fit_records
    from llmbench.planner.served_fit import fit_continuous
    from llmbench.records import RequestRecord

    r, par = doc["refit"], doc["deployments"][primary]["parallel"]
    assert r["skipped"] is False and set(r["deployments"]) == {primary}
    cells = r["cells"][primary]
    saved = [RequestRecord.model_validate_json(line) for line in Path(cells["records"]).read_text().splitlines()]
    ok = fit_records(saved)
    assert cells["requests"] == len(saved) and cells["ok"] == len(ok) == sum(cells["cells"].values())
    assert set(cells["cells"]) == {"clients=1", f"clients={par}"} and min(cells["cells"].values()) > 0
    assert cells["seconds"] == [1.5, 3.0]
    model = fit_continuous(ok)
    assert {int(k): v for k, v in cells["step_ms_by_slots"].items()} == pytest.approx(
        dict(zip(model.step_batches, model.step_base_ms)))
    _check_figures(r["overall"])
    for m in ("ttft_p50", "e2el_p95", "throughput"):  # the same measurement, another prediction
        assert r["overall"][m]["measured"] == over[m]["measured"]
    assert r["overall"]["throughput"]["predicted"] == pytest.approx(n / max(5, r["deployments"][primary]["predicted_span_s"]))
    e2, th = r["overall"]["e2el_p95"]["error"], r["overall"]["throughput"]["error"]
    assert r["accurate"] is (abs(e2) <= 0.10 and abs(th) <= 0.15)
    # at_load_speed: the direct phase's decode windows against the run's model give the machine's
    # speed during the load; the run's model at that speed predicts the same requests again.
    from llmbench.verify.predict import fitted_service
    from llmbench.verify.spec import read_spec

    s, direct_ok = doc["at_load_speed"], doc["gateway"]["direct"]["ok"]
    assert s["skipped"] is False, s
    sp = s["speed"][primary]
    assert 0 < sp["windows"] + sp["left_out"] <= direct_ok
    plan = fitted_service(run_dir, next(d for d in read_spec(run_dir).primaries if d.option == primary))
    assert sp["run_ratio_mean"] == pytest.approx(plan.mean_ratio)
    assert sp["slower_than_run"] == pytest.approx(sp["load_ratio_mean"] / sp["run_ratio_mean"])
    _check_figures(s["overall"])
    for m in ("e2el_p95", "throughput"):  # the same direct measurement, another prediction
        assert s["overall"][m]["measured_direct"] == over[m]["measured_direct"]
    e2d, thd = s["overall"]["e2el_p95"]["error_direct"], s["overall"]["throughput"]["error_direct"]
    assert s["accurate_direct"] is (abs(e2d) <= 0.10 and abs(thd) <= 0.15)
    # The gateway's added TTFT is proxied minus direct on the same schedule.
    g = doc["gateway"]
    assert g["ttft_p50_added_ms"] == pytest.approx(g["proxied"]["ttft_p50_ms"] - g["direct"]["ttft_p50_ms"])
    assert g["ttft_p95_added_ms"] == pytest.approx(g["proxied"]["ttft_p95_ms"] - g["direct"]["ttft_p95_ms"])
    assert g["direct"]["ok"] == g["proxied"]["ok"] == n and g["proxy_cpu_s"] > 0
    # The proxy beside servers whose threads fill the cores: said, since it slows them (on cores of its own it would not).
    threads = sum(int(next((a for f, a in zip(c["command"], c["command"][1:]) if f in ("-t", "--threads")), cores))
                  for c in doc["started"]["servers"] if c["deployment"] == primary)
    assert g["server_threads_here"] == threads and g["shares_server_cores"] is (threads >= cores)
    assert any("the proxy shared this machine's" in x for x in doc["notes"]) is (threads >= cores)
    # The gateway's own cores at the offered rate: its CPU a request times the rate, said in a note.
    assert g["proxy_cpu_ms_per_request"] == pytest.approx(1e3 * g["proxy_cpu_s"] / n)
    assert g["proxy_cores_needed"] == pytest.approx(g["proxy_cpu_ms_per_request"] / 1e3 * doc["load"]["offered_rps"])
    assert any(f"the gateway needs {g['proxy_cores_needed']:.2f} cores of its own" in x for x in doc["notes"])
    # ... and flows into the next recommendation: deployment.yaml's gateway, sized at the plan's load
    # (the first recommendation, made before any verify, says how to measure it).
    first = yaml.safe_load((run_dir / "deployment.yaml").read_text())["gateway"]
    assert first["cores_needed"] is None and "llmbench verify" in first["note"]
    again = _cli("recommend", str(run_dir), "--out", str(run_dir.parent / "again"))
    assert again.returncode == 0 and "cores for the LiteLLM proxy" in again.stdout, again.stderr[-2000:]
    dep_again = yaml.safe_load((run_dir.parent / "again" / "deployment.yaml").read_text())
    sized = dep_again["gateway"]
    assert sized["cpu_ms_per_request"] == pytest.approx(g["proxy_cpu_ms_per_request"])
    assert sized["cores_needed"] == pytest.approx(sized["cpu_ms_per_request"] / 1e3 * dep_again["target_rps"])
    assert sized["whole_cores"] == max(1, math.ceil(sized["cores_needed"])) and doc["verified_at"] in sized["source"]

    # The costs the gateway config emits come back in the proxy's responses: every request carried
    # LiteLLM's usage.cost, equal to its token counts times the config's per-token prices.
    money = doc["money"]
    assert money["requests_with_cost"] == money["requests"] == n
    assert money["max_rel_diff_from_gateway_prices"] < 1e-6
    assert money["reported_usd_per_request"] == pytest.approx(money["expected_from_gateway_prices_usd_per_request"])
    assert money["planned_usd_per_request"] > 0
    assert money["error"] == pytest.approx(money["reported_usd_per_request"] / money["planned_usd_per_request"] - 1)

    # The budget check: a second proxy on the config with every rpm/tpm divided by one factor. No
    # deployment was admitted past its budget; the rest went to the fallbacks or got 429; none lost.
    b = doc["budget"]
    assert b["skipped"] is False and b["one_minute"] and b["past_budget"] == [] and b["enforced"] is True, b
    assert b["served_by_unknown"] == 0 and b["every_failure_has_an_error"] is True
    assert b["served_by_primary"] + b["served_by_fallback"] + b["refused_429"] + \
        sum(e["count"] for e in b["other_failures"].values()) == b["sent"] == sum(x["rpm"] for x in b["budgets"].values()) + 2
    emitted = {m["model_info"]["id"]: m["litellm_params"] for m in
               yaml.safe_load((run_dir / "gateway" / "litellm.yaml").read_text())["model_list"]}
    for i, x in b["budgets"].items():
        assert (x["emitted_rpm"], x["emitted_tpm"]) == (emitted[i]["rpm"], emitted[i]["tpm"])
        assert x["rpm"] == max(1, math.floor(x["emitted_rpm"] / b["divided_by"]))
        assert x["served"] <= x["rpm"]
    assert min(x["rpm"] for x in b["budgets"].values() if x["role"] == "primary") == 3  # budget.PER_REPLICA

    # The proxy's interaction log of verify's own traffic is kept with verify's logs, one record per
    # request it answered, not in the gateway folder a user deploys from.
    assert not (run_dir / "gateway" / "gateway-log").exists()
    logged = [json.loads(line) for line in (run_dir / "verify-logs" / "litellm-requests.jsonl").read_text().splitlines()]
    assert sum(r["status"] == "ok" for r in logged) >= over["ok"]

    # Requests through the proxy reached the servers: their logs show each one served.
    logs = run_dir / "verify-logs"
    served = sum(len(re.findall(r"stop processing", p.read_text())) for p in logs.glob("*.log") if p.name != "litellm.log")
    assert served >= 2 * n + doc["fallback"]["succeeded"]

    # The drill: none lost without an error record, none hung, the gap and the fallback's share reported.
    f = doc["fallback"]
    assert f["skipped"] is False and f["killed"]["pids"]
    assert f["unaccounted"] == 0 and f["hung"] == 0 and f["every_failure_has_an_error"] is True
    assert f["succeeded"] + f["failed"] == f["requests"] == f["scheduled"]
    assert sum(e["count"] for e in f["errors_by_kind"].values()) == f["failed"]
    assert 0 <= f["success_share"] <= 1 and f["max_request_s"] < f["timeout_s"] + 1
    assert f["chat_probe"]["succeeded"] == f["chat_probe"]["requests"]  # the fallback serves chat streams
    if f["after_kill"]["succeeded"]:
        assert f["gap_s"] is not None and f["gap_s"] >= 0
    assert isinstance(doc["verdict"], str) and re.search(r"the plan (held|did not hold)", doc["verdict"])
    assert "verdict_detail" in doc and doc["verdict_detail"]["rule"]
    text = (run_dir / "verify.json").read_text() + (logs / "litellm.log").read_text()
    assert not re.search(r"sk-[0-9a-f]{48}", text), "the master key was written down"

    # Without --json the same document is printed as tables and lines: the refit's and the verdict's among them.
    from io import StringIO

    from rich.console import Console

    from llmbench.verify.show import show

    out = StringIO()
    show(doc, Console(file=out, width=1000))
    assert doc["verdict"] in out.getvalue()
    assert f"p95 E2EL {r['overall']['e2el_p95']['predicted']:.1f} ms predicted, {r['overall']['e2el_p95']['error']:+.1%}" \
        in out.getvalue()
    assert f"p95 E2EL {s['overall']['e2el_p95']['predicted']:.1f} ms predicted, {e2d:+.1%} against the servers alone" \
        in out.getvalue()


def test_a_routed_plans_deployments_are_measured_side_by_side_or_in_turn(run_dir, tmp_path):
    # A routed load runs its deployments at once on the same cores; the refit measures them so: each
    # deployment's cells beside the other's same cell (here the primary and its fallback, one thread
    # each). Where they do not fit the machine together, the refit and the load take them in turn.
    from llmbench.verify.deploy import DeployedServer, engine_for, resolve_server
    from llmbench.verify.load import Arrival, Targets, make_backend, tokenizer_for
    from llmbench.verify.refit import measure_cells
    from llmbench.verify.run import _send
    from llmbench.verify.spec import read_spec
    from llmbench.verify.workload import run_prompts

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    one_thread_each(run)
    spec = read_spec(run)
    deps = [spec.primaries[0], next(d for d in spec.deployments if d.role == "fallback")]
    assert deps[0].variant != deps[1].variant
    tok = tokenizer_for(spec.model_ref(deps[0]))
    prompts = run_prompts(spec, tok)
    base, servers = _free_base(2), []
    try:
        for i, d in enumerate(deps):
            argv = list(d.replicas[0].argv)
            argv[argv.index("--port") + 1] = str(base + i)
            if "--threads" not in argv and "-t" not in argv:
                argv += ["--threads", "1"]
            servers.append(DeployedServer(argv, base + i, tmp_path / f"s{i}.log", engine_for(resolve_server(argv[0]))))
            servers[-1].start(60)
        seconds = 2.0
        targets = [(d, s.url, prompts) for d, s in zip(deps, servers)]
        together, in_turn = (measure_cells(targets, tok, 30.0, seconds, turn) for turn in (False, True))
        # Six arrivals 0.3 s apart, alternating between the deployments, each part sent alone.
        arrivals = [Arrival(0.3 * i, prompts[i % len(prompts)], deps[i % 2].aliases[0]) for i in range(6)]
        direct = Targets({d.aliases[0]: [make_backend(s.url, d.served_name, tok, 30.0)] for d, s in zip(deps, servers)})
        t0 = time.perf_counter()
        load = _send(spec, arrivals, direct, {}, 30.0, in_turn=True)
        wall = time.perf_counter() - t0
    finally:
        for s in servers:
            s.stop()

    def spans(measured) -> list[tuple[float, float]]:
        out = []
        for d, recs in zip(deps, measured):
            assert recs and all(r.status == "ok" and r.variant == d.variant for r in recs)
            assert len({r.request_id for r in recs}) == len(recs)
            assert {r.point for r in recs} == {f"clients={n}" for n in (1, d.parallel)}
            out.append((min(r.timestamp for r in recs), max(r.timestamp + r.e2el_ms / 1e3 for r in recs)))
        return out
    # Measured at the same time: the two deployments' 1.5 x `seconds` of cells overlap for most of it;
    # in turn, not at all.
    overlap = lambda s: min(e for _, e in s) - max(b for b, _ in s)  # noqa: E731
    assert overlap(spans(together)) > 0.8 * 1.5 * seconds, spans(together)
    assert overlap(spans(in_turn)) < 0, spans(in_turn)
    # The load in turn: the parts ran one after the other (the wall time holds both: 1.2 s + 1.5 s of
    # arrivals), and each request is back on the schedule's one clock, at its own arrival time.
    assert len(load.outcomes) == 6 and all(o.ok for o in load.outcomes)
    assert wall > 1.2 + 1.5 and load.span_s == pytest.approx(wall, abs=0.5)
    for d in deps:
        mine = sorted(o.arrived - load.start for o in load.outcomes if o.alias == d.aliases[0])
        assert mine == pytest.approx([a.at for a in arrivals if a.alias == d.aliases[0]], abs=1e-6)
    for o in load.outcomes:  # the request's own times moved with it
        assert o.arrived - 0.05 <= o.res.sent <= o.res.first_token <= o.res.end < o.arrived + 10
        assert o.res.chunk_times[0] >= o.res.sent


def test_a_server_that_does_not_come_up(run_dir, tmp_path):
    bad = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(bad)], check=True)
    dep = yaml.safe_load((bad / "deployment.yaml").read_text())
    d = next(x for x in dep["deployments"] if x["role"] == "primary")
    # The first replica's: verify scaled to a small machine starts only the first ones.
    d["serving"]["start"]["commands"][0] += " --no-such-flag"
    (bad / "deployment.yaml").write_text(yaml.safe_dump(dep, sort_keys=False))
    (bad / "verify.json").unlink(missing_ok=True)
    got = _cli("verify", str(bad), "--duration", "2")
    assert _ours(bad) == []
    assert got.returncode == 1, got.stderr
    assert "llama-server exited" in got.stderr and "no-such-flag" in got.stderr  # the log's last lines
    assert not (bad / "verify.json").exists()


def test_bad_input_is_one_line_exit_2_and_starts_nothing(run_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from llmbench.cli import main

    # A port in use.
    dep = yaml.safe_load((run_dir / "deployment.yaml").read_text())
    port = dep["deployments"][0]["serving"]["ports"][0]
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the earlier test's connections linger in TIME_WAIT
        s.bind(("127.0.0.1", port))
        s.listen()
        got = _cli("verify", str(run_dir), "--duration", "2")
    assert got.returncode == 2 and f"port {port}" in got.stderr and len(got.stderr.strip().splitlines()) == 1
    # Nothing deployable: a folder without a recommendation, and one whose options no engine serves.
    (tmp_path / "empty").mkdir()
    got = _cli("verify", str(tmp_path / "empty"))
    assert got.returncode == 2 and "recommendation.json" in got.stderr
    nothing = tmp_path / "nothing"
    subprocess.run(["cp", "-r", str(run_dir), str(nothing)], check=True)
    (nothing / "deployment.yaml").write_text(yaml.safe_dump({"run_id": "x", "deployments": [], "not_deployable": [
        {"option": "m/onnx-int4/cpu/bs1", "reason": "no OpenAI-compatible server for ONNX"}]}))
    got = _cli("verify", str(nothing))
    assert got.returncode == 2 and "nothing deployable" in got.stderr and "ONNX" in got.stderr
    # The proxy not installed: no `litellm` beside the interpreter nor on PATH.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    res = CliRunner().invoke(main, ["verify", str(run_dir)])
    assert res.exit_code == 2 and "LiteLLM proxy is not installed" in res.output, res.output
    assert _ours(run_dir) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_everything(run_dir, sig):
    # SIGTERM mid-load once went unheeded: uvloop swallowed the exception its handler raised.
    proc = subprocess.Popen([*LLMB, "verify", str(run_dir), "--load", "2", "--duration", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("sending"):
                break
        assert len(_ours(run_dir)) >= 3  # the servers and the proxy are up
        time.sleep(1)  # into the load's event loop
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)
    assert proc.returncode == 130
    assert _ours(run_dir) == []


def test_autoscale_policy_runs_for_real_and_matches_its_simulation(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    primary = one_thread_each(run)
    # A burst at OVERLOAD x one replica's capacity in the planner's model fitted on this machine's run:
    # the simulated policy scales up for it and back down after it whatever the machine's speed (a
    # fixed 5 req/s burst scaled to the planned rate missed the scale-down in CI).
    _, heavy, _, cap = heavy_capacity(run)
    trace = tmp_path / "burst.csv"
    rps = burst_trace(trace, OVERLOAD * cap, heavy)
    plan_the_trace_rate(run, primary["option"], rps)
    got = _cli("verify", str(run), "--load", str(trace), "--duration", f"{36 + 1.5 / rps:.6f}", "--autoscale", "--json",
               timeout=600)
    assert got.returncode == 0, got.stderr[-3000:]
    doc = json.loads(got.stdout)
    assert json.loads((run / "verify-autoscale.json").read_text()) == doc and doc["deployment"] == primary["option"]
    assert doc["load"]["time_scale"] == pytest.approx(1.0) and doc["load"]["repeats"] == 1
    sim, real = doc["simulated"], doc["measured"]
    # The burst made the simulated policy scale up and back down; those decisions were carried out.
    ups = sum(1 for a, b in zip(doc["decisions"], doc["decisions"][1:]) if b["replicas"] > a["replicas"])
    assert ups >= 1 and sim["peak_replicas"] == 2 and sim["scale_downs"] >= 1
    # Carried out: the pool spawned that many servers at each scale-up's time, and each came up.
    steps = [(b["at_s"], b["replicas"] - a["replicas"]) for a, b in zip(doc["decisions"], doc["decisions"][1:])
             if b["replicas"] > a["replicas"]]
    assert [u["spawned"] for u in real["scale_up_starts"]] == [n for _, n in steps]
    assert all(u["at_s"] == pytest.approx(at, abs=0.5) for u, (at, _) in zip(real["scale_up_starts"], steps))
    assert all(len(u["cold_starts_s"]) == u["spawned"] and not u["failed"] for u in real["scale_up_starts"])
    assert real["scale_ups"] == sim["scale_ups"] == ups
    # Each replica the decisions started came up (its measured cold start) and was billed.
    started = sum(max(0, b["replicas"] - a["replicas"]) for a, b in zip(doc["decisions"], doc["decisions"][1:]))
    assert len(real["cold_starts_s"]) == started and all(0 < c < 60 for c in real["cold_starts_s"])
    assert sum(r["starts"] for r in real["replicas"]) == started + doc["decisions"][0]["replicas"]
    # Every request sent was answered; both sides saw the same requests.
    assert real["requests"] == sim["requests"] == real["ok"] and real["errors"] == {}
    # Replica-seconds: one replica all along plus the second while scaled up; measured within 35% of the
    # simulation (real starts take their cold start, a scaled-down replica finishes its requests).
    assert sim["window_s"] <= sim["replica_seconds"] <= 2 * sim["window_s"]
    assert real["replica_seconds"] == pytest.approx(sim["replica_seconds"], rel=0.35)
    assert 0 <= sim["slo_attainment"] <= 1 and 0 <= real["slo_attainment"] <= 1
    assert sim["e2el_p95_ms"] > 0 and real["e2el_p95_ms"] > 0
    assert doc["attainment_error"] == pytest.approx(real["slo_attainment"] - sim["slo_attainment"])
    assert doc["replica_seconds_error"] == pytest.approx(real["replica_seconds"] / sim["replica_seconds"] - 1)
    # Nothing it started outlives it.
    lines = subprocess.run([PGREP, "-af", "llama-server"], capture_output=True, text=True).stdout
    assert not [r for r in real["replicas"] if f"--port {r['port']} " in lines + " "], lines


def heavy_capacity(run: Path):
    """(the primary, a request that fills a slot (prompt, output), the planner's model fitted on the
    run, one replica's continuous-batching capacity for that request in it, req/s)."""
    from llmbench.planner.continuous import saturation_rps
    from llmbench.verify.load import SLOT_MARGIN
    from llmbench.verify.predict import fitted_service
    from llmbench.verify.spec import read_spec

    dep = read_spec(run).primaries[0]
    heavy = (8, dep.slot_tokens - SLOT_MARGIN - 8 - 1)
    # The simulation's claim is about when the policy looks, not the machine's speed: the fitted model
    # runs without the speed ratios of a run measured beside other tests (seen: 0.88-0.92 attainment for
    # the 1-s policy), at its own continuous-batching saturation for these requests (a static batch's
    # overstates it: admissions beside decoding slots cost more).
    service = replace(fitted_service(run, dep), duration_ratios=())
    return dep, heavy, service, saturation_rps(service, np.array([heavy[0]], float), np.array([heavy[1]]), dep.parallel)


def test_a_policy_that_scales_too_slowly_misses_the_slo_in_the_simulation_and_for_real(run_dir, tmp_path):
    from llmbench.planner.autoscale import Knobs, simulate_policy
    from llmbench.planner.queue import policy_for_strategy
    from llmbench.planner.trace import load_trace
    from llmbench.slo import parse_slo
    from llmbench.verify.spec import read_spec

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    one_thread_each(run)
    dep, heavy, service, sim_cap = heavy_capacity(run)
    # One replica's capacity for the burst's requests, measured on a real one-thread replica (it differs
    # from the model's: seen 25 against 12 req/s, 42 against 17, the run measured under others' load
    # and at 12 tokens out).
    real_cap = replica_capacity(dep.replicas[0].argv, heavy, dep.parallel, tmp_path / "capacity.log")
    # The SLO allows a heavy request its time with every slot busy (Little: slots / capacity) and
    # SLOW_WAIT_S of queueing. At OVERLOAD x one replica's capacity the queue grows (OVERLOAD - 1) s a
    # second until a second replica takes load: ~0.8 s for the 1-s policy (1 s + its cold start), 3.6 s
    # for the 10-s one, whatever the machine's speed. A fixed 1-s SLO was missed by the fast policy
    # (0.82 in CI) on a slow machine, where that time alone neared a second.
    slo = f"e2el_p95<={1000 * (dep.parallel / sim_cap + SLOW_WAIT_S):.0f}ms"
    # Looks at the queue every 10 s: the first look after the burst starts (4 s) comes as it ends (10 s).
    one_thread_each(run, {**POLICY, "interval_s": 10.0, "slo": [slo], "attainment_target": SLOW_TARGET})
    # In the simulation, on a burst at OVERLOAD x its own replica's capacity: a policy looking every
    # second meets the target, the slow one misses it (two replicas carry the burst; one does not).
    sim_trace = tmp_path / "sim.csv"
    slow_policy_trace(sim_trace, OVERLOAD * sim_cap, heavy)
    reqs = load_trace(sim_trace).requests
    sim_of = lambda interval: simulate_policy(  # noqa: E731
        Knobs("queue", 1, 2, interval, POLICY["cooldown_s"], 1.0, POLICY["cold_start_s"],
              depth_target=POLICY["depth_target_requests"]), reqs, service, dep.parallel,
        policy_for_strategy(read_spec(run).strategy), parse_slo(slo.replace("<=", "=")), 0.0, 0.0)[0]
    fast, slow_sim = sim_of(1.0), sim_of(10.0)
    print(f"{slo}: simulated attainment: 1-s policy {fast['slo_attainment']:.3f}, 10-s policy {slow_sim['slo_attainment']:.3f}")
    assert fast["slo_attainment"] >= SLOW_TARGET > slow_sim["slo_attainment"], (fast, slow_sim)
    # Replayed for real on a burst at OVERLOAD x the larger capacity: one replica is overloaded on both sides.
    trace = tmp_path / "slow.csv"
    rps = slow_policy_trace(trace, OVERLOAD * max(real_cap, sim_cap), heavy)
    plan_the_trace_rate(run, dep.option, rps)

    duration = f"{TRACE_S + 1.5 / rps:.6f}"  # the whole trace once (a repeat would start 2 / rps after its end)
    # A request 10 s late has long missed the SLO: it is given up as failed (a failure meets no SLO).
    got = _cli("verify", str(run), "--load", str(trace), "--duration", duration, "--timeout", "10", "--autoscale", "--json",
               timeout=300)
    assert got.returncode == 0, got.stderr[-3000:]
    doc = json.loads(got.stdout)
    assert doc["load"]["time_scale"] == pytest.approx(1.0) and doc["load"]["repeats"] == 1
    sim, real = doc["simulated"], doc["measured"]
    assert sim["requests"] == real["requests"] == len(load_trace(trace).requests) and set(real["errors"]) <= {"timeout"}
    assert real["ok"] + sum(e["count"] for e in real["errors"].values()) == real["requests"]
    # The policy scaled up only once the burst was over, in the simulation and for real.
    ups = [b for a, b in zip(doc["decisions"], doc["decisions"][1:]) if b["replicas"] > a["replicas"]]
    assert ups and all(d["at_s"] >= BURST_AT + BURST_S - 1e-6 for d in ups), doc["decisions"]
    assert [u["spawned"] for u in real["scale_up_starts"]] == [1] * len(ups)
    # Both miss the attainment the policy was meant to meet.
    assert doc["attainment_target"] == SLOW_TARGET and sim["meets_target"] is False and real["meets_target"] is False
    assert real["slo_attainment"] < SLOW_TARGET and sim["slo_attainment"] < SLOW_TARGET
    print(f"capacity real {real_cap:.1f}, model {sim_cap:.1f} req/s; attainment simulated {sim['slo_attainment']:.3f}, "
          f"measured {real['slo_attainment']:.3f} (target {SLOW_TARGET}); {real['requests'] - real['ok']} timed out")


def test_autoscale_needs_a_trace_and_a_policy(run_dir, tmp_path):
    got = _cli("verify", str(run_dir), "--load", "2", "--autoscale")
    assert got.returncode == 2 and "--autoscale replays a trace" in got.stderr and "Traceback" not in got.stderr
    trace = tmp_path / "burst.csv"
    burst_trace(trace, 5.0, (40, 12))
    got = _cli("verify", str(run_dir), "--load", str(trace), "--autoscale")
    assert got.returncode == 2 and "no autoscaling block" in got.stderr and "Traceback" not in got.stderr
