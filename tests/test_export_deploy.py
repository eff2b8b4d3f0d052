"""deploy/: each self-hosted deployment's start script, its exact commands in deployment.yaml, and
the gateway config pointing at exactly the ports the scripts serve on; a script really serves
(a real llama-server per replica, stopped with the script, whichever way it ends)."""
from __future__ import annotations

import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.export.writer import write_exports
from llmbench.recommend.engine import recommend
from llmbench.recommend.inputs import load_run
from llmbench.slo import parse_slo
from test_recommend_runs import make_run, served

# small q4_k_m at batch 4 is the cheapest; at 15 req/s it needs 2 replicas, with big f16 as a
# one-replica standby: 3 servers on 3 consecutive ports.
CELLS = [served("small", "gguf-q4_k_m", ttft_ms=40, tpot_ms=4), served("small", "gguf-q4_k_m", batch=4, ttft_ms=60, tpot_ms=6),
         served("big", "gguf-f16", ttft_ms=100, tpot_ms=10)]
PRIMARY, STANDBY = "small/gguf-q4_k_m/cpu/bs4", "big/gguf-f16/cpu/bs1"
SLO, RPS = "e2el_p95=2s", 15.0
FAKE_ENGINE = {"name": "llama.cpp", "version": "0.5.0-dev (commit test)", "source_version": "llama-cpp-python 0.3.36",
               "bin_dir": "/opt/llama/bin", "source_dir": "/opt/llama/src", "server": "/opt/llama/bin/llama-server",
               "quantize": "/opt/llama/bin/llama-quantize"}

MEASURED_CMD = [FAKE_ENGINE["server"], "--host", "127.0.0.1", "--port", "41234", "-m", "/models/small q4.gguf", "--parallel", "1",
                "-c", "300", "-t", "2", "--alias", "model", "--no-webui", "--seed", "0", "--no-cache-prompt", "--cache-ram", "0"]


def _served_run(path: Path, ggufs: dict[str, tuple[str, str]], engine: dict, server_facts: dict | None = None) -> Path:
    """A run of CELLS whose run.json carries what the managed engine records: run.json `engines`,
    each GGUF variant's file and sha256, and (optionally) the measured server's settings per row."""
    run = make_run(path, CELLS, params={"small": 5_000_000, "big": 50_000_000})
    meta = json.loads((run / "run.json").read_text())
    meta["engines"] = {"llama.cpp": engine}
    for key, (gguf, sha) in ggufs.items():
        meta["variants"][key].update(gguf_path=gguf, gguf_sha256=sha, engine={"name": "llama.cpp", "version": engine["version"]})
    (run / "run.json").write_text(json.dumps(meta))
    if server_facts:
        summary = json.loads((run / "summary.json").read_text())
        for row in summary["rows"]:
            row.update(server_facts.get(row["variant"], {}))
        (run / "summary.json").write_text(json.dumps(summary))
    return run


def _flag(argv: list[str], *names: str) -> str | None:
    for i, a in enumerate(argv[:-1]):
        if a in names:
            return argv[i + 1]
    return None


def _script_ports(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"--port (\d+)", text)]


def _gateway_ports(cfg: dict) -> dict[str, set[int]]:
    """{option: ports of its api_base entries} over every alias (fallback aliases reach the same servers)."""
    out: dict[str, set[int]] = {}
    for m in cfg["model_list"]:
        base = m["litellm_params"].get("api_base") or ""
        if m["model_info"].get("llmbench_option") and (hit := re.fullmatch(r"http://127\.0\.0\.1:(\d+)/v1", base)):
            out.setdefault(m["model_info"]["llmbench_option"], set()).add(int(hit.group(1)))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    ggufs = {"small|gguf-q4_k_m": ("/models/small q4.gguf", "a" * 64), "big|gguf-f16": ("/models/big-f16.gguf", "b" * 64)}
    # The measured server gave each slot 300 tokens of context, with 2 threads, and flags of its own.
    facts = {"gguf-q4_k_m": {"server_parallel": 1, "server_ctx_size": 300, "server_threads": 2, "server_cmd": MEASURED_CMD}}
    run = _served_run(tmp / "run", ggufs, FAKE_ENGINE, facts)
    rec = recommend(load_run(run), parse_slo(SLO), rps=RPS)
    write_exports(rec, tmp / "out")
    return rec, tmp / "out"


def test_deployment_yaml_names_the_gguf_and_the_exact_commands_on_consecutive_ports(exported):
    rec, out = exported
    assert rec["choice"]["chosen"] == PRIMARY and rec["recommended"]["fallbacks"] == [STANDBY]
    dep = {d["option"]: d for d in yaml.safe_load((out / "deployment.yaml").read_text())["deployments"]}
    primary, standby = dep[PRIMARY], dep[STANDBY]
    slots = rec["recommended"]["plan"]["max_batch"]
    assert primary["replicas"] == 2 and slots == 4
    sp = primary["serving"]
    assert sp["engine"] == "llama.cpp" and sp["measured"] is True and sp["version"] == FAKE_ENGINE["version"]
    assert sp["gguf"] == {"path": "/models/small q4.gguf", "sha256": "a" * 64}
    assert sp["ports"] == [8000, 8001] and standby["serving"]["ports"] == [8002]
    assert sp["api_bases"] == ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"] and primary["api_base"] == sp["api_bases"][0]
    assert sp["start"]["script"] == "deploy/serve-small-gguf-q4-k-m.sh"
    for port, line in zip(sp["ports"], sp["start"]["commands"]):
        # The measured command, every flag kept; only what a replica sets differently changes: its
        # port, --parallel = the planned batch, the measured 300 tokens per slot times the slots, its name.
        want = list(MEASURED_CMD)
        for flag, value in (("--port", str(port)), ("--parallel", "4"), ("-c", "1200"), ("--alias", "small-gguf-q4-k-m")):
            want[want.index(flag) + 1] = value
        assert shlex.split(line) == want
    # The standby was measured with no server facts: one slot of the workload's longest prompt and
    # output (160 + 32 tokens in make_run) plus the engine's 16-token margin.
    sb = shlex.split(standby["serving"]["start"]["commands"][0])
    assert _flag(sb, "--parallel", "-np") == "1" and _flag(sb, "-c", "--ctx-size") == str(160 + 32 + 16)
    assert standby["serving"]["gguf"]["sha256"] == "b" * 64


def test_scripts_are_valid_bash_on_exactly_the_gateways_ports(exported):
    rec, out = exported
    scripts = sorted((out / "deploy").glob("serve-*.sh"))
    assert [p.name for p in scripts] == ["serve-big-gguf-f16.sh", "serve-small-gguf-q4-k-m.sh"]
    gateway = _gateway_ports(yaml.safe_load((out / "gateway" / "litellm.yaml").read_text()))
    dep = {d["option"]: d for d in yaml.safe_load((out / "deployment.yaml").read_text())["deployments"]}
    by_script = {}
    for p in scripts:
        assert os.access(p, os.X_OK)
        res = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        text = p.read_text()
        assert "set -euo pipefail" in text and "trap 'stop; exit 143' TERM" in text and "trap 'stop; exit 130' INT" in text
        option = re.search(r"replica\(s\) of (\S+) ", text).group(1)
        by_script[option] = _script_ports(text)
    assert by_script == {PRIMARY: [8000, 8001], STANDBY: [8002]}
    assert {o: sorted(p) for o, p in gateway.items()} == by_script == {o: d["serving"]["ports"] for o, d in dep.items()}
    # One model_list entry per replica, one shared name: LiteLLM balances over the replicas.
    cfg = yaml.safe_load((out / "gateway" / "litellm.yaml").read_text())
    main_entries = [m for m in cfg["model_list"] if m["model_name"] == "llmbench"]
    assert len(main_entries) == 2 and len({m["model_info"]["id"] for m in cfg["model_list"]}) == len(cfg["model_list"])


def test_the_base_port_is_configurable_and_stale_scripts_go(tmp_path):
    run = _served_run(tmp_path / "run", {}, FAKE_ENGINE)
    (run / "deploy").mkdir()
    (run / "deploy" / "serve-gone.sh").write_text("#!/bin/bash\n")
    res = CliRunner().invoke(main, ["recommend", str(run), "--slo", SLO, "--rps", str(RPS), "--base-port", "9300"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (run / "deploy").glob("*.sh")) == ["serve-big-gguf-f16.sh", "serve-small-gguf-q4-k-m.sh"]
    ports = _gateway_ports(yaml.safe_load((run / "gateway" / "litellm.yaml").read_text()))
    assert ports == {PRIMARY: {9300, 9301}, STANDBY: {9302}}
    # run.json named no GGUF (an older run): the script refuses to start until GGUF is set.
    res = subprocess.run(["bash", str(run / "deploy" / "serve-big-gguf-f16.sh")], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "LLAMA_SERVER": "/bin/true"})
    assert res.returncode == 2 and "no GGUF at model.gguf (set GGUF)" in res.stderr


# ---- a real llama-server per replica ------------------------------------------------------------
def _free_ports(n: int) -> int:
    """The first of n consecutive loopback ports free right now."""
    for _ in range(200):
        base = random.randint(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free consecutive ports")


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status
    except (urllib.error.URLError, OSError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


@pytest.fixture(scope="module")
def real(engine, tmp_path_factory):
    from llmbench.engines.llamacpp.gguf import build_gguf
    from llmbench.models.source import resolve

    tmp = tmp_path_factory.mktemp("real")
    card = resolve("card:llama-5m")
    ggufs = {f"{m}|{v}": (str(b.path), b.sha256) for m, v in (("small", "gguf-q4_k_m"), ("big", "gguf-f16"))
             for b in [build_gguf(card, v, engine)]}
    # The command a measured cell ran (the backend's flags included), as run.json records it.
    from llmbench.backends.llamacpp_backend import SERVER_FLAGS
    from llmbench.engines.llamacpp.server import ManagedServer

    cmd = ManagedServer(engine, Path(ggufs["small|gguf-q4_k_m"][0]), parallel=1, ctx_size=256, threads=1, log_path=tmp / "m.log",
                        alias="model", extra_args=SERVER_FLAGS).command
    facts = {"gguf-q4_k_m": {"server_parallel": 1, "server_ctx_size": 256, "server_threads": 1, "server_cmd": cmd}}
    run = _served_run(tmp / "run", ggufs, engine.as_json(), facts)
    base = _free_ports(3)
    rec = recommend(load_run(run), parse_slo(SLO), rps=RPS, base_port=base)
    write_exports(rec, tmp / "out")
    return tmp / "out", base, ggufs


SERVER_FLAGS_CHECKED = ("--no-cache-prompt", "--no-webui", "--offline")


def _start(script: Path, log: Path) -> subprocess.Popen:
    # Its own session, so that the test can clean up whatever a failure leaves.
    return subprocess.Popen(["bash", str(script)], stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "LOG_DIR": str(log.parent / "logs")})


def _wait_healthy(proc: subprocess.Popen, ports: list[int], log: Path, timeout_s: float = 90) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the script exited {proc.returncode}: {log.read_text()}")
        if all(_health(p) == 200 for p in ports):
            pids = [int(x) for x in re.findall(r"\(pid (\d+),", log.read_text())]
            assert len(pids) == len(ports)
            return pids
        time.sleep(0.2)
    pytest.fail(f"replicas not healthy in {timeout_s} s: {log.read_text()}")


def _cleanup(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.parametrize("sig,rc", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_start_script_serves_every_replica_and_stops_them_all(real, tmp_path, sig, rc):
    out, base, ggufs = real
    script = out / "deploy" / "serve-small-gguf-q4-k-m.sh"
    assert _script_ports(script.read_text()) == [base, base + 1]
    assert ggufs["small|gguf-q4_k_m"][1] in script.read_text()  # the sha256 the script checks the GGUF against
    text = script.read_text()
    for flag in SERVER_FLAGS_CHECKED:  # the measured server's own flags reach the deployment
        assert flag in text
    proc = _start(script, tmp_path / "out.log")
    try:
        pids = _wait_healthy(proc, [base, base + 1], tmp_path / "out.log")
        # The replica answers as the gateway will call it: its served name, through the OpenAI API.
        body = json.dumps({"model": "small-gguf-q4-k-m", "prompt": "Hello", "max_tokens": 4}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{base + 1}/v1/completions", data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200 and json.loads(r.read())["usage"]["completion_tokens"] >= 1
        proc.send_signal(sig)
        assert proc.wait(30) == rc
        assert not any(_alive(p) for p in pids) and _health(base) is None and _health(base + 1) is None
    finally:
        _cleanup(proc)


def test_one_replica_dying_stops_the_deployment(real, tmp_path):
    out, base, _ = real
    proc = _start(out / "deploy" / "serve-small-gguf-q4-k-m.sh", tmp_path / "out.log")
    try:
        first, second = _wait_healthy(proc, [base, base + 1], tmp_path / "out.log")
        os.kill(first, signal.SIGKILL)
        assert proc.wait(30) == 137  # the dead replica's status, passed on
        assert not _alive(second) and _health(base + 1) is None
        assert "a replica exited (status 137): stopping the others" in (tmp_path / "out.log").read_text()
    finally:
        _cleanup(proc)


def test_a_gguf_that_is_not_the_measured_one_is_refused(real, tmp_path):
    out, _, ggufs = real
    other = ggufs["big|gguf-f16"][0]
    res = subprocess.run(["bash", str(out / "deploy" / "serve-small-gguf-q4-k-m.sh")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "GGUF": other, "LOG_DIR": str(tmp_path)})
    assert res.returncode == 2 and "is not the measured GGUF" in res.stderr
