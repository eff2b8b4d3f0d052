"""What the plug-in's one lock costs: hit and miss latency through a real LiteLLM proxy (llmbench's
cache in it, the shipped verifier setting) in front of a real llama-server, 1 at a time vs 8 at once.

Usage: nice -n 10 .venv/bin/python tests/benchmarks/bench_gateway_cache.py OUT_DIR
"""
from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from llmbench.engines.llamacpp import ensure_engine
from llmbench.engines.llamacpp.gguf import build_gguf
from llmbench.engines.llamacpp.server import ManagedServer
from llmbench.models.source import resolve
from llmbench.optimizers.cache.gateway_names import PLUGIN
from llmbench.optimizers.cache.logs import read_log
from llmbench.optimizers.cache.stage import sample_pairs
from llmbench.verify import cache_check
from llmbench.verify.proxy import Proxy

RULE = {"verifier": "floor0.90", "threshold": 0.725011, "profile": "default"}


def pct(xs, q):
    return round(float(np.percentile(xs, q)), 1) if xs else None


def summary(outs):
    hits = [o["ms"] for o in outs if o["hit"]]
    misses = [o["ms"] for o in outs if not o["hit"]]
    return {"n": len(outs), "hits": len(hits), "misses": len(misses), "failed": sum(not o["ok"] for o in outs),
            "hit_p50": pct(hits, 50), "hit_p95": pct(hits, 95), "miss_p50": pct(misses, 50), "miss_p95": pct(misses, 95)}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    engine = ensure_engine()
    q4 = build_gguf(resolve("card:llama-5m"), "gguf-q4_k_m", engine).path
    pairs = read_log(sample_pairs())
    texts = list(dict.fromkeys(pairs.texts_a))
    seed, fresh1, fresh8 = texts[:48], texts[48:64], texts[64:112]
    with ManagedServer(engine, q4, parallel=8, ctx_size=2048, threads=1, log_path=out / "llama.log", alias="tiny") as srv:
        cfg = {"model_list": [{"model_name": "llmbench", "litellm_params": {"model": "openai/tiny", "api_base": srv.url,
                                                                             "api_key": "os.environ/LLMBENCH_TEST_KEY"}}],
               "litellm_settings": {"cache": True, "cache_params": {"type": "local", "supported_call_types": ["atext_completion", "text_completion"]},
                                    "callbacks": [PLUGIN]},
               "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
               "callback_settings": {"llmbench_cache": RULE}}
        path = out / "litellm.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        proxy = Proxy(path, out / "litellm.log", ["LLMBENCH_TEST_KEY"]).start()
        try:
            auth = {"Authorization": f"Bearer {proxy.key}"}
            send = lambda p: cache_check.send(proxy.url, "llmbench", auth, p, 60)
            for p in texts[112:116]:
                send(p)  # warm: model loads, first-request paths
            seeded = [send(p) for p in seed]
            res = {}
            res["c1_hits"] = summary([send(p) for p in seed[:16]])
            res["c1_misses"] = summary([send(p) for p in fresh1])
            with ThreadPoolExecutor(8) as pool:
                res["c8_hits"] = summary(list(pool.map(send, seed)))
                res["c8_misses"] = summary(list(pool.map(send, fresh8)))
            res["seed"] = summary(seeded)
        finally:
            proxy.stop()
    print(json.dumps(res, indent=1))
    (out / "result.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
