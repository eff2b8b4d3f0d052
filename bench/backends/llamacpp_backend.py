"""GGUF variants served by a llama-server that llmbench starts, measures over HTTP, and stops.

load() builds the GGUF (llama.cpp's converter and llama-quantize, cached content-addressed) and
makes sure the engine is built; begin_cell() starts a server sized to the cell (`--parallel` =
the point's concurrency, a context of parallel x the longest request), or keeps the previous
cell's server when it has the same `--parallel` and is alive; everything between is the HTTP
backend's. The server's log and exact command line go to RUN/servers/.
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

from llmbench.backends.base import LoadedInfo
from llmbench.backends.http_backend import HttpBackend
from llmbench.backends.llamacpp_facts import (cpu_seconds, gguf_bytes_per_token, gguf_parameters, reset_hwm, vm_hwm_mb,
                                              vm_rss_mb)
from llmbench.errors import BadInput

# Each request needs its prompt, its output and a little room (llama.cpp counts a BOS/EOS, and
# a prompt's tokens can re-tokenize one longer); per slot, times --parallel.
CTX_MARGIN = 16
ALIAS = "model"
# Prompt caching would let a warm-up's or an earlier pass's identical prompt skip its prefill, and
# the host-memory prompt cache copies slot states between requests: neither is what a fresh
# request costs, so the measured server runs without both (recorded in the .cmd file).
SERVER_FLAGS = ("--no-cache-prompt", "--cache-ram", "0")
LOG_TAIL = 10
_ANNOUNCED = False  # the engine build was announced in this process (it is tried once: ensure_engine)


class ServerDied(RuntimeError):
    """The managed llama-server ended while a cell was being measured."""


async def _alive_soon(server, wait_s: float = 0.2) -> bool:
    # A killed server resets its connections a moment before the kernel reports it gone.
    deadline = time.monotonic() + wait_s
    while server.alive():
        if time.monotonic() >= deadline:
            return True
        await asyncio.sleep(0.02)
    return False


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


class LlamaCppBackend(HttpBackend):
    """A gguf-* variant on a managed llama-server (CPU build)."""

    kind = "gguf"
    served = True

    def __init__(self, source, variant: str, device: str, dtype: str, trust_remote_code: bool = False):
        super().__init__(source, variant, device, dtype, trust_remote_code)
        self.engine = None
        self.build = None
        self.engine_info: dict | None = None
        self.server = None
        self._parallel: int | None = None
        self._cell: dict = {}
        self._cpu_mark: tuple[float | None, float] = (None, 0.0)
        self._model_label = source.name if source is not None else "model"

    # ---- before measuring ----------------------------------------------------------------------
    @classmethod
    def check_variant(cls, variant: str, device: str = "cpu") -> None:
        """BadInput for a gguf name llama-quantize has no type for, or a device the engine was not built for."""
        from llmbench.engines.llamacpp.gguf import GGUF_TYPES

        if variant not in GGUF_TYPES:
            raise BadInput(f"variant {variant!r}: unknown GGUF type (known: {', '.join(GGUF_TYPES)})")
        if device != "cpu":
            raise BadInput(f"variant {variant!r}: the llama.cpp engine llmbench builds is built for the CPU; "
                           f"device {device!r} is not supported (use device: cpu)")

    def load(self) -> None:
        """Engine (built once when missing), GGUF (cached), tokenizer from the source folder."""
        from transformers import AutoTokenizer

        from llmbench.engines.llamacpp import ensure_engine, find_engine
        from llmbench.engines.llamacpp.gguf import GGUF_TYPES, build_gguf
        from llmbench.served.endpoint import EndpointSpec

        global _ANNOUNCED
        if not _ANNOUNCED and find_engine() is None:  # a build takes minutes: say so once, before it starts
            _ANNOUNCED = True
            print("building the llama.cpp engine (once; about 5-10 minutes on 2 cores) ...", file=sys.stderr)
        self.engine = ensure_engine()
        self.engine_info = self.engine.as_json()
        self.build = build_gguf(self.source, self.variant, self.engine)
        path = self.source.path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
        gguf_py = self.engine.source_dir / "gguf-py"
        self.info = LoadedInfo(
            parameters=gguf_parameters(self.build.path, gguf_py), size_bytes=self.build.size_bytes, device="cpu",
            dtype=GGUF_TYPES[self.variant].lower(),
            extra={**{k: v for k, v in self.build.facts().items() if k != "size_bytes"},
                   "gguf_path": str(self.build.path), "gguf_sha256": self.build.sha256,
                   "gguf_type": GGUF_TYPES[self.variant], "engine": f"{self.engine.name} {self.engine.version}"})
        # The URL is the server's once a cell starts it; the tokenizer counts what usage does not say.
        self.endpoint = EndpointSpec(url="http://127.0.0.1:1/v1", model=ALIAS, api="completions", tokenizer=path)

    def weight_bytes_per_token(self) -> int:
        """GGUF tensor bytes read per decoded token (llmbench.roofline asks the backend first)."""
        return gguf_bytes_per_token(self.build.path, self.engine.source_dir / "gguf-py")

    # ---- one cell --------------------------------------------------------------------------------
    @staticmethod
    def parallel_of(point) -> int:
        """The server slots a point needs: its most requests in flight (1 for single-stream)."""
        return max(1, int(getattr(point, "parallel", None) or getattr(point, "clients", None) or 1))

    @staticmethod
    def ctx_size(parallel: int, prompts) -> int:
        """parallel x (longest prompt + longest output + margin): every slot fits any request."""
        longest = max((len(p.ids) for p in prompts), default=1) + max((p.output_tokens for p in prompts), default=1)
        return parallel * (longest + CTX_MARGIN)

    def _start(self, parallel: int, ctx: int, log_path: Path | None):
        from llmbench.engines.llamacpp.server import ManagedServer

        # The tokenizers library warns in every forked child once it has used threads; the server
        # is exec'd at once, and this process's tokenizing is not what is measured.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

        server = ManagedServer(self.engine, self.build.path, parallel=parallel, ctx_size=ctx, log_path=log_path,
                               alias=ALIAS, extra_args=SERVER_FLAGS)
        self.server = server  # kept before start(): a start that fails is still stopped by close()
        server.start()
        return server

    def begin_cell(self, point, prompts, run_dir) -> None:
        """Start (or keep) the server for this cell and point the HTTP client at it."""
        parallel = self.parallel_of(point)
        ctx = self.ctx_size(parallel, prompts)
        reuse = (self.server is not None and self._parallel == parallel and self.server.alive()
                 and self._cell.get("server_ctx_size", 0) >= ctx)
        if not reuse:
            self._stop()
            log_path = None
            if run_dir is not None:
                folder = Path(getattr(run_dir, "path", run_dir)) / "servers"
                folder.mkdir(parents=True, exist_ok=True)
                log_path = folder / f"{_slug(self._model_label)}-{self.variant}-{_slug(point.label)}.log"
            self._parallel = None
            self._cell = {"server_parallel": parallel, "server_ctx_size": ctx,
                          "server_log": str(log_path) if log_path else None}
            server = self._start(parallel, ctx, log_path)
            self._parallel = parallel
            self._cell.update(server_cmd=list(server.command), server_threads=getattr(server, "threads", None),
                              server_reused=False, server_start_rss_mb=vm_rss_mb(server.pid),
                              server_ready_s=server.ready_s, cold_start_s=None)
        else:
            self._cell["server_reused"] = True
            for started in ("server_ready_s", "cold_start_s"):  # this cell did not start it
                self._cell.pop(started, None)
            self._cell["server_start_rss_mb"] = vm_rss_mb(self.server.pid)
        self._cell["hwm_reset"] = reset_hwm(self.server.pid)
        self._cpu_mark = (cpu_seconds(self.server.pid), time.perf_counter())
        self.endpoint = self.endpoint.model_copy(update={"url": self.server.url})

    def end_cell(self) -> None:
        """Read the server's peak memory; keep a live server for the next cell, clear a dead one."""
        server = self.server
        if server is None:
            return
        self._cell["peak_rss_mb"] = vm_hwm_mb(server.pid) if server.alive() else None
        # The server's CPU share of the machine during the cell: the runner's tracker counts only
        # this process, so without it the cell's own server would read as other load.
        (cpu0, t0), cpu1 = self._cpu_mark, cpu_seconds(server.pid)
        wall = time.perf_counter() - t0
        if cpu0 is not None and cpu1 is not None and wall > 0:
            # /proc's CPU times tick every 10 ms: over a cell of a few ms one tick read 1,506% (a
            # full suite, 2026-12-02); a share of the machine is at most all of it.
            self._cell["server_cpu_pct"] = min(100.0, 100.0 * (cpu1 - cpu0) / (wall * (os.cpu_count() or 1)))
        if not server.alive():
            self._cell["server_died"] = server.tail(LOG_TAIL)
            self._stop()

    def cell_facts(self) -> dict:
        """The cell's memory as the server's (VmHWM of its pid) and how the server was run."""
        facts = {k: v for k, v in self._cell.items() if k not in ("hwm_reset", "server_start_rss_mb")}
        peak = self._cell.get("peak_rss_mb")
        since = "" if self._cell.get("hwm_reset") else " (since the server started)"
        facts.update(peak_rss_mb=peak, rss_baseline_mb=None, peak_rss_delta_mb=peak, memory_method="server VmHWM" + since,
                     cuda_max_allocated_mb=None, cuda_max_reserved_mb=None)
        return facts

    # ---- requests (the HTTP backend's, with two llama.cpp specifics) ------------------------------
    def request_body(self, prompt) -> dict:
        """The HTTP backend's body with the prompt as token ids: llama-server takes them as they are,
        so the server sees exactly the workload's prompt length (no decode/re-tokenize drift)."""
        body = super().request_body(prompt)
        body["prompt"] = [int(t) for t in prompt.ids]
        return body

    async def send(self, client, prompt):
        """Send as the HTTP backend does; a request that failed because the server died fails the cell
        (ServerDied, with the log's last lines) instead of becoming one error record of many."""
        res = await super().send(client, prompt)
        server = self.server
        # A scale-up's cost (the autoscaling planner's): spawn -> the first token this server sent.
        if "cold_start_s" in self._cell and res.first_token is not None and server is not None and server.spawned_at:
            took, known = res.first_token - server.spawned_at, self._cell["cold_start_s"]
            self._cell["cold_start_s"] = took if known is None else min(known, took)  # the first token of all
        # An HTTP status came from a live server; a broken connection or stream may mean it is gone.
        if res.error_kind not in (None, "http_status") and server is not None and not await _alive_soon(server):
            raise ServerDied(f"llama-server (pid {server.pid}) died during the cell (exit code {server.exit_code}); "
                             f"log {server.log_path}, last lines:\n{server.tail(LOG_TAIL)}")
        return res

    # ---- the quality gate (llmbench.quality_served) ----------------------------------------------
    def greedy_ids(self, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
        """Each prompt's greedy continuation (token ids) from a one-slot server, ending at EOS if it stopped there."""
        import httpx

        longest = max((len(p) for p in prompts), default=1) + new_tokens + CTX_MARGIN
        if self.server is None or not self.server.alive() or self._cell.get("server_ctx_size", 0) < longest:
            self._stop()
            self._cell = {"server_ctx_size": longest}
            self._start(1, longest, None)
            self._parallel = 1
        out = []
        with httpx.Client(base_url=self.server.url.removesuffix("/v1"), timeout=120) as client:
            for ids in prompts:
                body = {"prompt": list(ids), "n_predict": new_tokens, "temperature": 0, "top_k": 1,
                        "return_tokens": True, "cache_prompt": False, "stream": False}
                resp = client.post("/completion", json=body)
                resp.raise_for_status()
                out.append([int(t) for t in resp.json()["tokens"]])
        return out

    def generate(self, prompts, new_tokens, timed=True):  # pragma: no cover - served: scenarios send requests
        raise NotImplementedError("a served variant is measured through its server, not generate()")

    # ---- the end --------------------------------------------------------------------------------
    def _stop(self) -> None:
        if self.server is not None:
            try:
                self.server.close()  # stop; a temporary log (quality runs) is removed, a run's log kept
            finally:
                self.server, self._parallel = None, None

    def close(self) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after a grace period)."""
        self._stop()

