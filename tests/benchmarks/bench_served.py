"""Benchmark: llama.cpp GGUF variants (served by llama-server) against ONNX Runtime int4 (in process).

    .venv/bin/python tests/benchmarks/bench_served.py [--cards llama-50m llama-110m] [--out DIR]

One `llmbench run` measures, on each card, onnx-int4 in process and gguf-q4_k_m / gguf-q4_0 behind
the managed llama-server, single-stream and 4 concurrent clients, with the same prompts (64-token
prompts, 64 output tokens). It prints a markdown table from the run's summary.json: decode speed per
stream (1 / TPOT p50), output throughput of the cell, TTFT p50, and the single-stream roofline share
(the run's measured read bandwidth / weight bytes per token), with the bandwidth and the machine's
load during each cell (`cpu_others_pct`: other work's share of the CPUs; for served cells the
server's own CPU is the cell's, not other load).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = ["onnx-int4", "gguf-q4_k_m", "gguf-q4_0"]


def config(cards: list[str]) -> str:
    cands = "\n".join(f"  - card: {c}\n    variants: [{', '.join(VARIANTS)}]" for c in cards)
    return f"""candidates:
{cands}
workload: {{prompt_tokens: 64, output_tokens: 64, requests: 8}}
scenarios:
  - single-stream
  - {{kind: concurrency, clients: [4]}}
warmup: 2
precision_pct: 2
cell_time_cap_s: 6
quality: null
"""


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def table(summary: dict) -> str:
    bw = (summary.get("roofline_bandwidth") or {}).get("gbs")
    lines = [f"read bandwidth {_f(bw, '.1f')} GB/s", "",
             "| card | variant | point | decode tok/s per stream | output tok/s | TTFT p50 ms | roofline share | other load % |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['variant']} | {r['point']} | failed: {r['error'][:60]} | | | | |")
            continue
        tpot = (r.get("tpot_ms") or {}).get("p50")
        share = r.get("roofline_share") if r["scenario"] == "single-stream" else None
        lines.append(f"| {r['model']} | {r['variant']} | {r['point']} | {_f(1e3 / tpot if tpot else None, '.0f')} | "
                     f"{_f(r.get('output_throughput_tok_s'), '.0f')} | "
                     f"{_f((r.get('ttft_ms') or {}).get('p50'), '.1f')} | {_f(share, '.1%')} | {_f(r.get('cpu_others_pct'), '.0f')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cards", nargs="+", default=["llama-50m", "llama-110m"])
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: a temporary one)")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-served-")) / "run"
    cfg = out.parent / "bench_served.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(config(args.cards))
    llmbench = Path(sys.executable).with_name("llmbench")
    print(f"{dt.datetime.now():%Y-%m-%d %H:%M} load average {os.getloadavg()[0]:.2f}; {llmbench} run {cfg} --out {out}",
          file=sys.stderr)
    subprocess.run([str(llmbench), "run", str(cfg), "--out", str(out), "--json"], check=False,
                   stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    print(table(summary))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
