"""`llmbench serve`: prints the exact command, serves on loopback, and stops cleanly on Ctrl-C or SIGTERM."""
from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from llmbench.engines.llamacpp.gguf import build_gguf
from llmbench.engines.llamacpp.server import free_port
from llmbench.models.source import resolve

LLMB = [sys.executable, "-m", "llmbench"]


def _wait_health(port: int, proc: subprocess.Popen, within_s: float = 120) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_the_command_serves_and_stops(engine, sig, tmp_path):
    build_gguf(resolve("card:llama-5m"), "gguf-q4_k_m", engine)  # built here, so that serve only reuses it
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([*LLMB, "serve", "card:llama-5m", "--variant", "gguf-q4_k_m", "--port", str(port),
                             "--parallel", "2", "--log", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        argv = shlex.split(proc.stdout.readline())  # the first line: the exact command line
        assert argv[0] == str(engine.server)
        assert argv[argv.index("--port") + 1] == str(port) and argv[argv.index("--parallel") + 1] == "2"
        assert argv[argv.index("-c") + 1] == "4096"  # 2048 per slot by default
        assert argv[argv.index("--alias") + 1] == "card:llama-5m"
        assert _wait_health(port, proc), proc.stderr.read() if proc.poll() is not None else "no /health"
        children = [c for c in psutil.Process(proc.pid).children() if c.name() == "llama-server"]
        assert len(children) == 1 and children[0].cmdline() == argv
        server_pid = children[0].pid
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
    assert log.is_file() and log.with_suffix(".cmd").read_text().strip() == shlex.join(argv)


def test_serve_refuses_an_unconvertible_model_before_building(tmp_path):
    from transformers import BertConfig

    folder = tmp_path / "bert"
    BertConfig(architectures=["BertModel"]).save_pretrained(folder)
    res = subprocess.run([*LLMB, "serve", str(folder)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "BertModel" in res.stderr and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
