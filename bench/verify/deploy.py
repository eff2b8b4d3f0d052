"""Start and stop the llama-server replicas deployment.yaml describes, with exactly its commands.

Each replica is a ManagedServer whose argv is the deployment's own line (the one its
deploy/serve-<name>.sh runs), so it is owned by llmbench like every managed server: own process
group, killed by the kernel if llmbench dies (PDEATHSIG), stopped at exit and on SIGTERM/SIGINT.
Only the binary is resolved here, as the script does with $LLAMA_SERVER: a bare `llama-server` is
the engine llmbench measured with.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Callable

from llmbench.engines.llamacpp import reaper
from llmbench.engines.llamacpp.info import EngineInfo
from llmbench.engines.llamacpp.server import HOST, ManagedServer, ServerFailed
from llmbench.errors import BadInput
from llmbench.verify.spec import Deployment, Replica

START_TIMEOUT_S = 120.0


class VerifyFailed(RuntimeError):
    """Something verify started did not come up or broke: exit 1 (everything else is stopped)."""


class DeployedServer(ManagedServer):
    """A ManagedServer running a given argv as is (deployment.yaml's), on the argv's own port."""

    def __init__(self, argv: list[str], port: int, log_path: Path, engine: EngineInfo):
        super().__init__(engine, Path(_flag(argv, "-m", "--model") or "model.gguf"), ctx_size=1, port=port, log_path=log_path)
        self._argv = [str(engine.server), *argv[1:]]

    @property
    def command(self) -> list[str]:
        return list(self._argv)


def _flag(argv: list[str], *names: str) -> str | None:
    for i, a in enumerate(argv[:-1]):
        if a in names:
            return argv[i + 1]
    return None


def resolve_server(argv0: str) -> Path:
    """The llama-server binary: the command's own path if it is one, else $LLAMA_SERVER, else the
    engine llmbench builds and measures with, else one on PATH; BadInput when there is none."""
    tried = []
    for cand in (argv0 if os.sep in argv0 else None, os.environ.get("LLAMA_SERVER")):
        if cand:
            tried.append(cand)
            found = shutil.which(cand) if os.sep not in cand else (cand if os.access(cand, os.X_OK) else None)
            if found:
                return Path(found)
    try:
        from llmbench.engines.llamacpp import find_engine

        engine = find_engine()
    except Exception:  # noqa: BLE001 - an unusable dev tree: fall through to PATH
        engine = None
    if engine is not None:
        return engine.server
    found = shutil.which(Path(argv0).name)
    if found:
        return Path(found)
    raise BadInput(f"no llama-server to run (tried {', '.join(tried) or argv0!r}, llmbench's engine and PATH): "
                   "set LLAMA_SERVER, or build the engine with `llmbench engines`")


def engine_for(server: Path) -> EngineInfo:
    """An EngineInfo for a server binary (its libraries sit beside it)."""
    return EngineInfo("llama.cpp", "", "", server.parent, server.parent, server, server.parent / "llama-quantize")


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port. Connections of an earlier run waiting out TIME_WAIT do not
    count (SO_REUSEADDR, as llama-server binds): the proxy leaves hundreds of them behind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def check_inputs(deps: list[Deployment]) -> None:
    """Before anything starts: every port free, every GGUF there and the one measured (BadInput)."""
    checked: set[str] = set()
    for d in deps:
        for i, r in enumerate(d.replicas):
            if not port_free(r.port):
                raise BadInput(f"port {r.port} on {HOST} (replica {i + 1} of {d.served_name}) is in use: stop what "
                               f"listens there, or recommend again with another --base-port")
            gguf = _flag(r.argv, "-m", "--model")
            if not gguf or not Path(gguf).is_file():
                raise BadInput(f"{d.option}: the GGUF {gguf} in its command is missing (run the measurement again to rebuild it)")
            if d.gguf_sha256 and gguf not in checked:
                checked.add(gguf)
                if gguf_sha256(gguf) != d.gguf_sha256:
                    raise BadInput(f"{d.option}: {gguf} is not the GGUF that was measured (sha256 differs from "
                                   f"deployment.yaml's {d.gguf_sha256[:12]}...)")


def gguf_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Fleet:
    """The replicas of every startable deployment; start() all or none, stop() is idempotent."""

    def __init__(self, deps: list[Deployment], log_dir: Path):
        self.deps = [d for d in deps if d.startable]
        self.log_dir = log_dir
        self.servers: dict[str, list[DeployedServer]] = {}

    def _make(self, d: Deployment, r: Replica) -> DeployedServer:
        server = resolve_server(r.argv[0])
        return DeployedServer(r.argv, r.port, self.log_dir / f"{d.served_name}-{r.port}.log", engine_for(server))

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start every replica and wait for each /health; VerifyFailed (log tail) stops them all."""
        made = {d.option: [self._make(d, r) for r in d.replicas] for d in self.deps}  # BadInput before any start
        try:
            for opt, servers in made.items():
                self.servers[opt] = []
                for s in servers:
                    self.servers[opt].append(s)
                    s.start(timeout_s)
        except ServerFailed as exc:
            self.stop()
            raise VerifyFailed(str(exc)) from None
        except BaseException:
            self.stop()
            raise

    def urls(self, option: str) -> list[str]:
        return [s.url for s in self.servers.get(option, [])]

    def commands(self) -> dict[str, list[list[str]]]:
        return {opt: [s.command for s in servers] for opt, servers in self.servers.items()}

    def kill(self, option: str) -> list[int]:
        """SIGKILL the deployment's servers at once (a crash, not a shutdown); their pids."""
        pids = []
        for s in self.servers.get(option, []):
            if s.pid is not None:
                pids.append(s.pid)
                reaper.signal_group(s.pid, signal.SIGKILL)
        return pids

    def wait_idle(self, timeout_s: float, quiet_s: float = 1.0, poll_s: float = 0.25,
                  cpu: Callable[[], float | None] | None = None, cpu_share: float = 0.1) -> dict:
        """Wait until no replica has had a slot processing for `quiet_s` on end, and the process
        whose CPU seconds `cpu` counts has used at most `cpu_share` of a core meanwhile; at most `timeout_s`.

        A client that gives up on a request through the proxy does not stop it: LiteLLM still
        forwards what it had queued and keeps the upstream stream. So an overloaded phase leaves
        work behind it in the proxy and the servers, which the next phase would measure as its own.
        What is left after `timeout_s` is reported, not hidden.
        """
        servers = [s for group in self.servers.values() for s in group]
        start = time.monotonic()
        quiet_since = cpu_then = None
        while True:
            busy = [s.busy_slots() for s in servers]
            now, cpu_now = time.monotonic(), cpu() if cpu else None
            if any(b is None for b in busy):
                return {"waited_s": now - start, "idle": None, "note": "a server does not expose /slots: not waited for"}
            calm = cpu_now is None or cpu_then is None or cpu_now - cpu_then <= cpu_share * (now - quiet_since) + 0.02
            if sum(busy) == 0 and calm:
                if quiet_since is None:
                    quiet_since, cpu_then = now, cpu_now
                elif now - quiet_since >= quiet_s:
                    return {"waited_s": quiet_since - start, "idle": True}
            else:
                quiet_since = cpu_then = None
            if now - start >= timeout_s:
                return {"waited_s": now - start, "idle": False, "busy_slots": int(sum(busy))}
            time.sleep(poll_s)

    def stop(self) -> None:
        for servers in self.servers.values():
            for s in servers:
                s.stop()
