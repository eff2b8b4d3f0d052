"""llama-server's decode time per token at every thread count up to the cores, with the other cores
idle and with one of them busy (a spinning Python process: the measuring client's, or the gateway's,
share of the machine). Interleaved in rounds, so that the machine's drift falls on every setting alike.

Usage: .venv/bin/python tests/benchmarks/bench_server_threads.py [MODEL ...]   (default: card:llama-5m card:llama-50m)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from llmbench.engines.llamacpp import ensure_engine
from llmbench.engines.llamacpp.gguf import build_gguf
from llmbench.engines.llamacpp.server import ManagedServer
from llmbench.models.source import resolve

ROUNDS, REQUESTS, TOKENS = 4, 4, 32
PROMPT = "ROMEO: But soft, what light through yonder window breaks? It is the east, and"


def per_token_ms(url: str) -> float:
    body = json.dumps({"prompt": PROMPT, "n_predict": TOKENS, "ignore_eos": True}).encode()
    req = urllib.request.Request(f"{url}/completion", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return float(json.load(resp)["timings"]["predicted_per_token_ms"])


def main(models: list[str]) -> None:
    engine = ensure_engine(print)
    cores = len(os.sched_getaffinity(0))
    out: dict = {"cores": cores, "rounds": ROUNDS, "requests_per_setting": REQUESTS, "tokens": TOKENS, "models": {}}
    with TemporaryDirectory() as tmp:
        for ref in models:
            gguf = build_gguf(resolve(ref), "gguf-q4_k_m", engine).path
            ms: dict[str, list[float]] = {}
            for _ in range(ROUNDS):
                for busy in (False, True):
                    for threads in range(1, cores + 1):
                        spin = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
                        try:
                            with ManagedServer(engine, gguf, parallel=1, ctx_size=256, threads=threads,
                                               log_path=Path(tmp) / "llama.log") as srv:
                                per_token_ms(srv.url.removesuffix("/v1"))  # warm-up
                                key = f"t{threads}{'_one_core_busy' if busy else '_idle'}"
                                ms.setdefault(key, []).extend(per_token_ms(srv.url.removesuffix("/v1")) for _ in range(REQUESTS))
                        finally:
                            if spin is not None:
                                spin.kill()
                                spin.wait()
                        time.sleep(0.5)
            out["models"][ref] = {k: {"median_ms": round(float(np.median(v)), 2), "p90_ms": round(float(np.percentile(v, 90)), 2)}
                                  for k, v in sorted(ms.items())}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:] or ["card:llama-5m", "card:llama-50m"])
