"""ManagedServer against the real llama-server: start, a real streamed completion, stop, failures,
and no server outliving its parent however the parent ends."""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import psutil
import pytest

from llmbench.engines.llamacpp import server as server_mod
from llmbench.engines.llamacpp.gguf import build_gguf
from llmbench.engines.llamacpp.server import ManagedServer, ServerFailed
from llmbench.models.source import resolve


@pytest.fixture(scope="module")
def q4(engine):
    return build_gguf(resolve("card:llama-5m"), "gguf-q4_k_m", engine).path


def gone(pid: int, within_s: float = 10) -> bool:
    """Whether process `pid` has ended (or is only a zombie) within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def llama_servers() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "llama-server"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_start_stream_with_usage_and_stop(engine, q4, tmp_path):
    log = tmp_path / "servers" / "llama-5m-gguf-q4_k_m-c2.log"
    srv = ManagedServer(engine, q4, parallel=2, ctx_size=512, threads=1, log_path=log, alias="tiny")
    t0 = time.perf_counter()
    with srv:
        start_s = time.perf_counter() - t0
        pid = srv.pid
        assert srv.alive() and pid in llama_servers() and start_s < 30
        assert srv.url == f"http://127.0.0.1:{srv.port}/v1"
        assert httpx.get(f"http://127.0.0.1:{srv.port}/health").status_code == 200
        body = {"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 6, "ignore_eos": True,
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        chunks, usage = [], None
        with httpx.stream("POST", f"{srv.url}/completions", json=body, timeout=30) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    doc = json.loads(line[6:])
                    chunks += [c["text"] for c in doc.get("choices", []) if c.get("text")]
                    usage = doc.get("usage") or usage
        assert usage is not None and usage["completion_tokens"] == 6 and usage["prompt_tokens"] > 0
        assert 1 <= len(chunks) <= 6
        # The exact argv is kept beside the log, and it is what runs.
        argv = shlex.split(log.with_suffix(".cmd").read_text())
        assert argv == srv.command == psutil.Process(pid).cmdline()
        assert argv[argv.index("--parallel") + 1] == "2" and argv[argv.index("-c") + 1] == "512"
        assert "--no-webui" in argv and argv[argv.index("--host") + 1] == "127.0.0.1"
    assert not srv.alive() and gone(pid, 1) and pid not in llama_servers()
    assert "n_slots = 2" in log.read_text()  # the log is kept after stop
    srv.stop()  # idempotent


def test_a_bad_model_file_fails_with_the_logs_last_lines(engine, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    srv = ManagedServer(engine, bad, ctx_size=256, log_path=tmp_path / "bad.log")
    with pytest.raises(ServerFailed, match=r"exited with code \d+") as err:
        srv.start(timeout_s=30)
    assert "failed to load model" in str(err.value) or "error" in str(err.value).lower()
    assert srv.tail(5) in str(err.value) and srv.pid is None


def test_a_taken_port_is_replaced_unless_it_was_chosen(engine, q4, tmp_path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(ServerFailed, match="bind|address"):
            ManagedServer(engine, q4, ctx_size=256, port=taken, log_path=tmp_path / "fixed.log").start(timeout_s=30)
        # A port llmbench picked itself and lost to a race is picked again.
        picks = iter([taken, server_mod.free_port()])
        monkeypatch.setattr(server_mod, "free_port", lambda: next(picks))
        with ManagedServer(engine, q4, ctx_size=256, log_path=tmp_path / "race.log") as srv:
            assert srv.port != taken and httpx.get(f"http://127.0.0.1:{srv.port}/health").status_code == 200


_PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from llmbench.engines.llamacpp import find_engine
    from llmbench.engines.llamacpp.server import ManagedServer
    srv = ManagedServer(find_engine(), Path(sys.argv[1]), ctx_size=256, threads=1).start()
    print(srv.pid, flush=True)
    time.sleep(120)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_no_server_outlives_its_parent(engine, q4, sig):
    # SIGKILL: only the kernel's parent-death signal can act; SIGTERM/SIGINT: llmbench's hooks.
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(q4)], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert psutil.Process(pid).name() == "llama-server" and psutil.Process(pid).ppid() == parent.pid
        parent.send_signal(sig)
        parent.wait(timeout=20)
        assert gone(pid), f"llama-server {pid} outlived its parent after {sig.name}"
    finally:
        parent.kill()
        parent.wait()
    if sig == signal.SIGTERM:
        assert parent.returncode == -signal.SIGTERM  # still ends as SIGTERM says, after the clean-up


def test_verify_waits_out_the_work_a_phase_leaves_behind(engine, q4, tmp_path):
    """Fleet.wait_idle returns once no slot has worked for its quiet time, after the last answer;
    a server still busy at its deadline is reported busy; without /slots it says it could not wait."""
    import threading

    from llmbench.verify.deploy import Fleet

    def fleet_of(srv: ManagedServer) -> Fleet:
        fleet = Fleet([], tmp_path)
        fleet.servers = {"tiny": [srv]}
        return fleet

    srv = ManagedServer(engine, q4, parallel=1, ctx_size=512, threads=1, log_path=tmp_path / "s.log", alias="tiny")
    done_at: list[float] = []

    def ask() -> None:  # what the proxy does with a request its client gave up on: it keeps the stream
        body = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 300, "ignore_eos": True}
        assert httpx.post(f"{srv.url}/completions", json=body, timeout=120).status_code == 200
        done_at.append(time.perf_counter())

    with srv:
        fleet = fleet_of(srv)
        assert srv.busy_slots() == 0 and fleet.wait_idle(5, quiet_s=0.3)["idle"] is True
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while srv.busy_slots() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        early = fleet.wait_idle(0.05, poll_s=0.01)
        assert early["idle"] is False and early["busy_slots"] == 1
        got = fleet.wait_idle(120, quiet_s=0.5)
        returned = time.perf_counter()
        for t in threads:
            t.join(10)
        assert got["idle"] is True and got["waited_s"] > 0 and len(done_at) == 8
        assert max(done_at) < returned - 0.4, "wait_idle returned before the last answer"
        # Idle slots are not enough while the proxy still works (a core's worth of CPU a second here).
        t0 = time.monotonic()
        busy_proxy = fleet.wait_idle(1.5, quiet_s=0.3, poll_s=0.05, cpu=lambda: time.monotonic() - t0)
        assert busy_proxy["idle"] is False and busy_proxy["busy_slots"] == 0
        assert fleet.wait_idle(5, quiet_s=0.3, poll_s=0.05, cpu=lambda: 7.0)["idle"] is True
    no_slots = ManagedServer(engine, q4, parallel=1, ctx_size=512, threads=1, log_path=tmp_path / "n.log",
                             extra_args=["--no-slots"])
    with no_slots:
        got = fleet_of(no_slots).wait_idle(5)
        assert got["idle"] is None and no_slots.busy_slots() is None
