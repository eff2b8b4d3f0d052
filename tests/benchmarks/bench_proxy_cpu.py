"""The LiteLLM proxy's CPU per request, and what of it is llmbench's: the gateway config a run
emitted against the same config without llmbench's callbacks (semantic cache, interaction log) and
without the rate-limit check, then the bare proxy at 1, 32 and 128 streamed tokens and at 32 not
streamed. One real llama-server (the run's primary GGUF, 1 thread), requests one at a time; CPU is
the proxy process group's user + system time over the requests (Proxy.cpu_seconds, as verify reads it).

Usage: .venv/bin/python tests/benchmarks/bench_proxy_cpu.py RUN_DIR [REQUESTS]
   (RUN_DIR: a results folder after `llmbench verify`, whose gateway/litellm.verify.yaml it reads)
"""
from __future__ import annotations

import copy
import json
import os
import re
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import yaml

from llmbench.engines.llamacpp import ensure_engine
from llmbench.engines.llamacpp.server import ManagedServer
from llmbench.optimizers.cache.gateway_names import OPT_OUT_HEADER
from llmbench.verify.proxy import Proxy
from llmbench.verify.spec import read_spec

CASES = [("emitted", 32, True), ("no_callbacks", 32, True), ("bare", 32, True),
         ("bare", 1, True), ("bare", 128, True), ("bare", 32, False)]


def config(base: dict, alias: str, kind: str) -> dict:
    """The emitted config cut to the primary's first replica, less what `kind` leaves out."""
    c = copy.deepcopy(base)
    c["model_list"] = [m for m in c["model_list"] if m["model_name"] == alias][:1]
    c["router_settings"].pop("fallbacks", None)
    if kind in ("no_callbacks", "bare"):
        for key in ("callbacks", "cache", "cache_params"):
            c["litellm_settings"].pop(key, None)
    if kind == "bare":
        c["router_settings"].pop("optional_pre_call_checks", None)
        for m in c["model_list"]:
            m["litellm_params"].pop("rpm", None)
            m["litellm_params"].pop("tpm", None)
    return c


def main(run: Path, n: int) -> None:
    spec = read_spec(run)
    dep = spec.primaries[0]
    base = yaml.safe_load((run / "gateway" / "litellm.verify.yaml").read_text())
    alias = dep.aliases[0]
    argv = dep.replicas[0].argv
    gguf = Path(re.sub(r"^\$\{GGUF:-(.*)\}$", r"\1", argv[argv.index("-m") + 1]))
    key_env = next(m["litellm_params"]["api_key"].split("/", 1)[1] for m in base["model_list"] if m["model_name"] == alias)
    os.environ.setdefault(key_env, "none")
    port = int(re.search(r":(\d+)/", next(m["litellm_params"]["api_base"] for m in base["model_list"] if m["model_name"] == alias)).group(1))
    res = {}
    with TemporaryDirectory() as tmp, ManagedServer(ensure_engine(), gguf, parallel=4, ctx_size=928, threads=1,
                                                    log_path=Path(tmp) / "llama.log", alias=dep.served_name, port=port):
        for kind, tokens, stream in CASES:
            path = Path(tmp) / f"{kind}-{tokens}-{stream}.yaml"
            path.write_text(yaml.safe_dump(config(base, alias, kind), sort_keys=False))
            proxy = Proxy(path, Path(tmp) / f"{kind}.log", [key_env]).start()
            try:
                headers = {"Authorization": f"Bearer {proxy.key}", OPT_OUT_HEADER: "off"}
                with httpx.Client(timeout=60) as client:
                    def send(i: int) -> None:
                        body = {"model": alias, "prompt": f"ROMEO {i}: what light through yonder window", "max_tokens": tokens,
                                "stream": stream}
                        with client.stream("POST", f"{proxy.url}/completions", json=body, headers=headers) as r:
                            for _ in r.iter_lines():
                                pass
                    for i in range(10):  # warm-up
                        send(i)
                    c0, t0 = proxy.cpu_seconds(), time.perf_counter()
                    for i in range(n):
                        send(1000 + i)
                    res[f"{kind}, {tokens} tokens, {'streamed' if stream else 'not streamed'}"] = {
                        "cpu_ms_per_request": round(1e3 * (proxy.cpu_seconds() - c0) / n, 1),
                        "wall_ms_per_request": round(1e3 * (time.perf_counter() - t0) / n, 1)}
            finally:
                proxy.stop()
    print(json.dumps({"run": str(run), "requests": n, "cases": res}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100)
