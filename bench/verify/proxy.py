"""The LiteLLM proxy (`litellm --config gateway/litellm.yaml`) as a process verify owns.

It runs on a free loopback port, with no database and no telemetry, the cost map read locally,
and a master key generated here that lives only in the proxy's environment and in this process's
memory (never in a file). Like a managed llama-server it has its own process group, dies with
llmbench (PDEATHSIG) and is stopped at exit and on SIGTERM/SIGINT (the engine's reaper).
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from llmbench.engines.llamacpp import reaper
from llmbench.engines.llamacpp.server import HOST, free_port
from llmbench.errors import BadInput
from llmbench.monitor.gateway_names import PATH_ENV as GATEWAY_LOG_ENV
from llmbench.verify.deploy import VerifyFailed

PIN = "litellm[proxy]==1.108.7"
START_TIMEOUT_S = 180.0
# The proxy must not reach out (cost map, telemetry) nor look for a database.
QUIET_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}
DROP_ENV = ("DATABASE_URL", "DIRECT_URL", "LITELLM_SALT_KEY", "STORE_MODEL_IN_DB", "REDIS_HOST", "REDIS_URL")
DUMMY_KEY = "llmbench-verify"  # for self-hosted servers that take any key


def litellm_executable() -> Path:
    """The `litellm` command beside this Python, else on PATH; BadInput when it is not installed."""
    beside = Path(sys.executable).with_name("litellm")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("litellm")
    if found:
        return Path(found)
    raise BadInput(f"the LiteLLM proxy is not installed (no `litellm` executable beside {sys.executable} or on PATH): "
                   f"pip install '{PIN}'")


class Proxy:
    """One `litellm --config FILE --host 127.0.0.1 --port P` process."""

    def __init__(self, config: Path, log_path: Path, key_envs: list[str], port: int | None = None,
                 interaction_log: Path | None = None):
        self.executable = litellm_executable()
        self.config = Path(config).resolve()  # the proxy runs in the config's folder
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.key = "sk-" + secrets.token_hex(24)
        self._key_envs = list(key_envs)
        self._interaction_log = interaction_log
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def command(self) -> list[str]:
        return [str(self.executable), "--config", str(self.config), "--host", HOST, "--port", str(self.port)]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
        env.update(QUIET_ENV)
        env["LITELLM_MASTER_KEY"] = self.key
        if self._interaction_log is not None:  # else where the config's callback_settings say
            env[GATEWAY_LOG_ENV] = str(self._interaction_log)
        for name in self._key_envs:  # a key the user set (an API model's) is kept
            env.setdefault(name, DUMMY_KEY)
        return env

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "Proxy":
        """Start it and wait until /health/liveliness answers 200; VerifyFailed (log tail) otherwise."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=self._env(), cwd=str(self.config.parent), start_new_session=True,
                                      preexec_fn=reaper.child_setup(os.getpid()), close_fds=True)
        reaper.register(id(self), self.stop)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self.stop()
                raise VerifyFailed(f"the LiteLLM proxy exited with code {code} before it was ready (log {self.log_path}); "
                                   f"last lines:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/health/liveliness", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise VerifyFailed(f"the LiteLLM proxy did not answer within {timeout_s:.0f} s (log {self.log_path}); "
                           f"last lines:\n{self.tail()}")

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the proxy's process group has used so far; None once stopped."""
        if self._proc is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self._proc.pid:  # pgrp: the proxy and any worker it started
                total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return total / tick

    def tail(self, n: int = 10) -> str:
        return reaper.tail_lines(self.log_path, n).replace(self.key, "***")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL after `grace_s`; idempotent."""
        proc, self._proc = self._proc, None
        reaper.unregister(id(self))
        if proc is not None:
            reaper.stop_group(proc, grace_s)
        if self._log is not None:
            self._log.close()
            self._log = None
            self._scrub_log()

    def _scrub_log(self) -> None:
        # The key is never meant to reach the log; should the proxy print it, it is not kept.
        try:
            text = self.log_path.read_bytes()
            if self.key.encode() in text:
                self.log_path.write_bytes(text.replace(self.key.encode(), b"***"))
        except OSError:
            pass
