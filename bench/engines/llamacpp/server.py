"""A llama-server that llmbench starts on loopback, waits for, and always stops.

The server runs in its own process group (so that stopping it reaches anything it started) and
dies with llmbench whatever way llmbench ends (llmbench.engines.llamacpp.reaper). Its output goes
to a log file; its exact argv is written beside the log as `<name>.cmd`, so that what was measured
can be run again by hand.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from llmbench.engines.llamacpp import reaper
from llmbench.engines.llamacpp.info import EngineInfo

HOST = "127.0.0.1"
# No web UI (nothing to serve a browser from a benchmark), no network access, no colour codes in
# the log, a fixed sampling seed, and the arguments taken as given (no fitting to device memory).
QUIET_FLAGS = ("--no-webui", "--offline", "--log-colors", "off", "--seed", "0", "--fit", "off")
_BIND_FAILED = re.compile(r"couldn't bind|address already in use", re.I)
PORT_TRIES = 3


class ServerFailed(RuntimeError):
    """The server did not become healthy (it died or timed out); the message ends with its log's last lines."""


def free_port() -> int:
    """A loopback port free right now (the kernel's pick); another process may still take it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


CLIENT_CORES = 1  # kept for the client that measures the servers and the gateway in front of them


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """The cores llmbench may use less CLIENT_CORES: the client that measures the server (and the
    gateway in front of it) runs on the same machine, and a server thread that has to share a core
    with it stalls every step at the threads' barrier. On 2 cores a 50M model decodes at 2.1 ms/token
    with 2 threads and 3.7 with 1 when nothing else runs, but with the other core busy at 650 against
    3.5 (BENCHMARKS.md, bench_server_threads.py): a measurement must not hang on what else runs."""
    return max(1, usable_cores() - CLIENT_CORES)


class ManagedServer:
    """One llama-server process serving `model` on 127.0.0.1 (see CONTRACT: engine)."""

    def __init__(self, engine: EngineInfo, model: Path, *, parallel: int = 1, ctx_size: int,
                 threads: int | None = None, port: int | None = None, log_path: Path | None = None,
                 alias: str = "model", extra_args: Sequence[str] = ()):
        self.engine = engine
        self.model = Path(model)
        self.parallel, self.ctx_size = int(parallel), int(ctx_size)
        self.threads = int(threads or default_threads())
        self.alias = alias
        self.extra_args = list(extra_args)
        self._fixed_port = port is not None  # a port the caller chose is not swapped for another
        self.port = int(port) if port is not None else free_port()
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen | None = None
        self._log_fh = None
        self.spawned_at: float | None = None  # perf_counter at the spawn that came up (a cold start's origin)
        self.ready_s: float | None = None  # spawn -> /health 200

    @property
    def command(self) -> list[str]:
        """The exact argv of the server."""
        return [str(self.engine.server), "--host", HOST, "--port", str(self.port), "-m", str(self.model),
                "--parallel", str(self.parallel), "-c", str(self.ctx_size), "-t", str(self.threads),
                "--alias", self.alias, *QUIET_FLAGS, *self.extra_args]

    @property
    def cmd_path(self) -> Path:
        return self.log_path.with_suffix(".cmd")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout_s: float = 60) -> ManagedServer:
        """Start it and wait until /health answers 200; ServerFailed (with the log's tail) otherwise."""
        for attempt in range(PORT_TRIES):
            self._spawn()
            problem = self._wait_healthy(timeout_s)
            if problem is None:
                self.ready_s = time.perf_counter() - self.spawned_at
                return self
            bind_race = _BIND_FAILED.search(self.tail(20)) is not None
            self.stop()
            if bind_race and not self._fixed_port and attempt + 1 < PORT_TRIES:
                self.port = free_port()  # another process took the port between our probe and its bind
                continue
            raise ServerFailed(f"llama-server {problem} (log {self.log_path}); last lines:\n{self.tail()}")
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.cmd_path.write_text(shlex.join(self.command) + "\n")
        self._log_fh = open(self.log_path, "ab")
        self.spawned_at = time.perf_counter()
        self._proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=self._log_fh, stderr=subprocess.STDOUT, env=self.engine.env(),
            start_new_session=True, preexec_fn=reaper.child_setup(os.getpid()), close_fds=True)
        reaper.register(id(self), self.stop)

    def _wait_healthy(self, timeout_s: float) -> str | None:
        """None once /health says 200; else why not ('exited with code N', 'not healthy after T s')."""
        deadline = time.monotonic() + timeout_s
        health = f"http://{HOST}:{self.port}/health"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                why = f"exited with code {code} before it was ready"
                if code == -signal.SIGILL:  # a build whose instructions this CPU lists but does not run (isa.py)
                    why += (f" (illegal instruction: rebuild the engine for this CPU by deleting "
                            f"{self.engine.bin_dir.parent})")
                return why
            try:
                with urllib.request.urlopen(health, timeout=1.0) as resp:
                    if resp.status == 200:
                        return None
            except urllib.error.HTTPError:  # 503 while the model loads
                pass
            except (urllib.error.URLError, OSError):  # not listening yet
                pass
            time.sleep(0.05)
        return f"was not healthy after {timeout_s:.0f} s"

    @property
    def exit_code(self) -> int | None:
        """The server's exit code once it has ended by itself (None while it runs or once stopped)."""
        return self._proc.poll() if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def busy_slots(self) -> int | None:
        """How many of its slots are processing now (its /slots), None when it does not say."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/slots", timeout=2.0) as resp:
                slots = json.load(resp)
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return sum(bool(s.get("is_processing")) for s in slots) if isinstance(slots, list) else None

    def tail(self, n: int = 10) -> str:
        """The last `n` lines of the server's log."""
        return reaper.tail_lines(self.log_path, n)

    def stop(self, grace_s: float = 5) -> None:
        """SIGTERM to the process group, SIGKILL after `grace_s`; idempotent."""
        proc, self._proc = self._proc, None
        reaper.unregister(id(self))
        if proc is not None:
            reaper.stop_group(proc, grace_s)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def close(self) -> None:
        """Stop, and remove the log and .cmd files when llmbench chose their place (a temp file)."""
        self.stop()
        if self._own_log:
            for p in (self.log_path, self.cmd_path):
                p.unlink(missing_ok=True)

    def __enter__(self) -> ManagedServer:
        return self if self.alive() else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
