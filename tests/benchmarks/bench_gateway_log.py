"""What the interaction log costs a request: the callback's own time on the request path (its hook's
p50/p95, as the proxy reports it when it stops) and the client's latency through a real LiteLLM proxy
with the log and without it, in front of one real llama-server (half the requests streamed).

Usage: nice -n 10 .venv/bin/python tests/benchmarks/bench_gateway_log.py OUT_DIR [--requests 200]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import yaml

from llmbench.engines.llamacpp import ensure_engine
from llmbench.engines.llamacpp.gguf import build_gguf
from llmbench.engines.llamacpp.server import ManagedServer
from llmbench.models.source import resolve
from llmbench.monitor.gateway_names import CALLBACK, SETTINGS_KEY, default_settings
from llmbench.monitor.log_read import log_files
from llmbench.verify.proxy import Proxy


def _one(url: str, auth: dict, i: int) -> float:
    body = {"model": "llmbench", "prompt": f"Request {i}: say something short.", "max_tokens": 8, "temperature": 0}
    if i % 2:
        body.update(stream=True, stream_options={"include_usage": True})
    t0 = time.perf_counter()
    with httpx.stream("POST", f"{url}/completions", json=body, headers=auth, timeout=120) as r:
        r.read()
        assert r.status_code == 200, r.text
    return (time.perf_counter() - t0) * 1e3


def _round(out: Path, srv_url: str, with_log: bool, n: int) -> dict:
    name = "with-log" if with_log else "without-log"
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"model_list": [{"model_name": "llmbench", "litellm_params": {"model": "openai/tiny", "api_base": srv_url,
                                                                         "api_key": "os.environ/LLMBENCH_TEST_KEY",
                                                                         "input_cost_per_token": 1e-7, "output_cost_per_token": 4e-7},
                           "model_info": {"llmbench_model": "tiny", "llmbench_variant": "gguf-q4_k_m"}}],
           "litellm_settings": {"callbacks": [CALLBACK]} if with_log else {},
           "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
           "callback_settings": {SETTINGS_KEY: default_settings()}}
    path = folder / "litellm.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proxy = Proxy(path, folder / "litellm.log", ["LLMBENCH_TEST_KEY"]).start()
    try:
        auth = {"Authorization": f"Bearer {proxy.key}"}
        for i in range(8):  # warm up the proxy's first-request paths
            _one(proxy.url, auth, -1 - i)
        with ThreadPoolExecutor(4) as pool:
            ms = list(pool.map(lambda i: _one(proxy.url, auth, i), range(n)))
    finally:
        proxy.stop()
    doc = {"requests": n, "client_ms_p50": round(float(np.median(ms)), 2), "client_ms_p95": round(float(np.percentile(ms, 95)), 2)}
    if with_log:
        m = re.search(r"(\d+) request\(s\) logged to \S+, (\d+) dropped; hook p50 ([\d.]+) ms, p95 ([\d.]+) ms "
                      r"\(own CPU p50 ([\d.]+) ms, p95 ([\d.]+) ms\) over (\d+)", (folder / "litellm.log").read_text())
        lines = [x for f in log_files(folder / "gateway-log" / "requests.jsonl") for x in f.read_text().splitlines()]
        doc.update(logged=int(m.group(1)), dropped=int(m.group(2)), hook_ms_p50=float(m.group(3)), hook_ms_p95=float(m.group(4)),
                   hook_cpu_ms_p50=float(m.group(5)), hook_cpu_ms_p95=float(m.group(6)), hook_calls=int(m.group(7)),
                   lines=len(lines), bytes_per_line=round(sum(len(x) + 1 for x in lines) / len(lines)))
    return doc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    engine = ensure_engine()
    q4 = build_gguf(resolve("card:llama-5m"), "gguf-q4_k_m", engine).path
    with ManagedServer(engine, q4, parallel=4, ctx_size=1024, threads=1, log_path=args.out / "llama.log", alias="tiny") as srv:
        res = {"without_log": _round(args.out, srv.url, False, args.requests),
               "with_log": _round(args.out, srv.url, True, args.requests)}
    res["load_average"] = os.getloadavg()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
