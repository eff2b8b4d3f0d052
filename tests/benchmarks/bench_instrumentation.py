"""Benchmark: decode tokens/s with per-token timestamps on and off, same model, one run.

    .venv/bin/python tests/benchmarks/bench_instrumentation.py [--card llama-50m] [--rounds 7]

Alternates timed and untimed generations so that drift on a shared machine hits both alike, and
reports the ratio of medians (goal >= 0.97).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from llmbench.backends.torch_backend import TorchBackend
from llmbench.models.source import resolve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--card", default="llama-50m")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    backend = TorchBackend(resolve(f"card:{args.card}"), "torch-fp32", "cpu", "float32")
    backend.load()
    prompt = [list(range(10, 106))]
    backend.generate(prompt, 8)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for timed in (True, False):
            t = time.perf_counter()
            backend.generate(prompt, args.tokens, timed=timed)
            rates[timed].append(args.tokens / (time.perf_counter() - t))
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(json.dumps({"card": args.card, "tokens": args.tokens, "rounds": args.rounds,
                      "tok_s_instrumented": round(on, 2), "tok_s_plain": round(off, 2), "ratio": round(on / off, 4)}))


if __name__ == "__main__":
    main()
