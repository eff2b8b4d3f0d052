"""`verify --load TRACE --autoscale`: the replay's attainment arithmetic, and the burst trace and
policy that test_verify.py carries out with real llama-server replicas (sharing its real run)."""
from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from llmbench.served.client import StreamResult
from llmbench.slo import parse_slo
from llmbench.verify.autoscale_replay import _attainment

POLICY = {"kind": "queue", "min_replicas": 1, "max_replicas": 2, "interval_s": 2.0, "cooldown_s": 4.0, "headroom": 1.0,
          "depth_target_requests": 1.0, "cold_start_s": 0.3, "slo": ["e2el_p95<=5000ms"]}


def burst_trace(path, rate: float, heavy: tuple[int, int], light: tuple[int, int] = (40, 12)) -> float:
    """12 s quiet (a light request every 2 s), 6 s of heavy requests at `rate`, 18 s quiet again; its
    mean rate. A queue policy decides at arrivals, so the tail gives it several looks after the backlog
    has drained (with 12 s the scale-down came at the last arrival, or not at all)."""
    times = [(t, light) for t in np.arange(0, 12, 2.0)] + [(12 + i / rate, heavy) for i in range(int(6 * rate))]
    times += [(t, light) for t in np.arange(18, 38, 2.0)]
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:00:{t:09.6f},{p},{o}\n" for t, (p, o) in times))
    return (len(times) - 1) / float(times[-1][0] - times[0][0])


def plan_the_trace_rate(run: Path, option: str, rps: float) -> None:
    """The plan's load (deployment.yaml) set to a trace's mean rate, so that verify replays it as
    written: a trace is scaled to the planned rate, which is the machine's (seen: the 38-s burst
    trace squeezed into 1.1 s and repeated, whose scale-downs then came or not by the machine)."""
    doc = yaml.safe_load((run / "deployment.yaml").read_text())
    doc["target_rps"] = rps
    for d in doc["deployments"]:
        if d["option"] == option:
            d["load_rps"] = rps
    (run / "deployment.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


SLOW_WAIT_S, SLOW_TARGET = 2.0, 0.95  # the queueing the slow-policy test's SLO allows
BURST_AT, BURST_S, TRACE_S = 4.0, 6.0, 16.0  # the heavy burst within a 16-s trace
OVERLOAD = 1.6  # the burst's rate over one replica's capacity for its requests: two replicas carry it


def slow_policy_trace(path, rate: float, heavy: tuple[int, int], light: tuple[int, int] = (40, 12)) -> float:
    """A TRACE_S-s trace: BURST_S s from BURST_AT of heavy requests at `rate`, light ones at half that
    rate before and after it (a fraction of the work: short outputs). Its mean rate, (n - 1) / span."""
    burst = int(rate * BURST_S)
    quiet = int(rate / 2 * (TRACE_S - BURST_S)) + 1
    spread = np.linspace(0.0, TRACE_S - BURST_S, quiet)
    times = [(t + BURST_S if t >= BURST_AT else t, light) for t in spread]
    times += [(BURST_AT + i / rate, heavy) for i in range(burst)]
    times.sort()
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:00:{t:09.6f},{p},{o}\n" for t, (p, o) in times))
    return (len(times) - 1) / TRACE_S


def replica_capacity(argv: list[str], heavy: tuple[int, int], parallel: int, log: Path, seconds: float = 3.0) -> float:
    """Requests/s one llama-server started from `argv` (on a free port) completes with every slot kept
    busy by `heavy` (prompt, output) requests: a closed loop of `parallel` clients for `seconds`."""
    from llmbench.engines.llamacpp.server import free_port
    from llmbench.verify.deploy import DeployedServer, engine_for, resolve_server

    port = free_port()
    argv = list(argv)
    argv[argv.index("--port") + 1] = str(port)
    server = DeployedServer(argv, port, log, engine_for(resolve_server(argv[0])))
    body = json.dumps({"prompt": list(range(100, 100 + heavy[0])), "n_predict": heavy[1], "ignore_eos": True}).encode()
    url = server.url.removesuffix("/v1") + "/completion"
    done: list[float] = []

    def one() -> None:
        req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["tokens_predicted"] == heavy[1]

    def client(until: float) -> None:
        while time.perf_counter() < until:
            one()
            done.append(time.perf_counter())
    try:
        server.start(60)
        one()  # warm
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(start + seconds,)) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    return len(done) / (max(done) - start)


def one_thread_each(run, policy: dict | None = None) -> dict:
    """The run's deployment.yaml with one thread a replica (two fit on two cores) and the policy (POLICY)."""
    path = run / "deployment.yaml"
    dep = yaml.safe_load(path.read_text())
    primary = next(d for d in dep["deployments"] if d["role"] == "primary")
    cmds = primary["serving"]["start"]["commands"]
    for i, line in enumerate(cmds):
        argv = line.split()
        for flag in ("-t", "--threads"):
            if flag in argv:
                argv[argv.index(flag) + 1] = "1"
        if "-t" not in argv and "--threads" not in argv:
            argv += ["--threads", "1"]
        cmds[i] = " ".join(argv)
    dep["autoscaling"] = {**(policy or POLICY), "option": primary["option"]}
    path.write_text(yaml.safe_dump(dep, sort_keys=False))
    return primary


def _streamed(ttft_s: float, e2el_s: float, tokens: int, ok: bool = True) -> StreamResult:
    times = list(np.linspace(ttft_s, e2el_s, tokens)) if tokens else []
    return StreamResult(sent=0.0, chunk_times=times, output_tokens=tokens, error_kind=None if ok else "timeout",
                        error=None if ok else "no answer")


def test_attainment_is_the_share_meeting_every_slo_and_a_failure_meets_none():
    slos = parse_slo("e2el_p95=1s,ttft_p50=200ms")
    outs = [(0.0, _streamed(0.1, 0.9, 5)), (0.0, _streamed(0.3, 0.9, 5)), (0.0, _streamed(0.1, 1.2, 5)),
            (0.0, _streamed(0.1, 0.5, 5, ok=False)), (0.5, _streamed(0.6, 1.4, 5))]
    # 1: ok; 2: TTFT 300 ms > 200; 3: E2EL 1.2 s > 1; 4: failed; 5: from its arrival at 0.5 s, 100 ms and 900 ms.
    assert _attainment(outs, slos) == pytest.approx(2 / 5)
    assert _attainment(outs, []) == pytest.approx(4 / 5) and _attainment([], slos) == 1.0
    assert math.isclose(_attainment(outs[:1], parse_slo("tpot_p50=200ms")), 1.0)  # (900-100)/4 = 200 ms: meets it


def test_a_timeout_shorter_than_the_slo_is_said():
    from llmbench.verify.autoscale_run import timeout_note

    assert timeout_note(30.0, parse_slo("e2el_p99=84s,tpot_p50=500s")).startswith("--timeout 30 s is shorter than the SLO's 84 s")
    assert timeout_note(30.0, parse_slo("e2el_p95=30s")) is None and timeout_note(30.0, parse_slo("tpot_p50=40s")) is None
    assert timeout_note(10.0, []) is None
