"""One endpoint load point measured with 1 and with 2 load generators on a 3-node Ray cluster (not a timed test).

    sudo-capable: .venv/bin/python tests/benchmarks/bench_ray_loadgen.py [--clients 8] [--rate 16] [--requests 64]

The cluster and a llama-server (llama-5m q4_k_m, --parallel 4, 1 thread) run in a private network
namespace, as in tests/test_ray_loadgen.py; each run is the real CLI (`llmbench run --ray ADDRESS`).
Prints, per generator count: the generators' clock offsets and RTTs (run.json), and per point the
requests, TTFT p50, TPOT p50, output tok/s and the generators' start spread.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_ray_loadgen import _HOST, _cli  # noqa: E402  (the test's host and CLI runner, reused)

import yaml  # noqa: E402


@contextlib.contextmanager
def host(gguf: Path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("LLMBENCH_TEST_CLOCK_SKEW", None)
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1" "$2"',
                             sys.executable, _HOST, str(gguf)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rate", type=float, default=16.0)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="1 then 2 generators, this many times (the machine is shared)")
    args = ap.parse_args()
    from llmbench.engines.llamacpp import ensure_engine
    from llmbench.engines.llamacpp.gguf import build_gguf
    from llmbench.models.source import resolve

    gguf = build_gguf(resolve("card:llama-5m"), "gguf-q4_k_m", ensure_engine()).path
    tmp = Path(tempfile.mkdtemp(prefix="llmb-loadgen-"))
    with host(gguf) as h:
        for rnd, k in ((rnd, k) for rnd in range(args.rounds) for k in (1, 2)):
            cfg = tmp / f"c{k}.yaml"
            cfg.write_text(yaml.safe_dump({
                "candidates": [{"endpoint": {"url": h["url"], "model": "tiny", "generators": k}}],
                "workload": {"prompt_tokens": 32, "output_tokens": 16, "requests": args.requests},
                "scenarios": [{"kind": "concurrency", "clients": [args.clients], "rates": [args.rate]}],
                "warmup": 1, "precision_pct": None, "quality": None}))
            out = tmp / f"g{k}-{rnd}"
            t = time.perf_counter()
            p = _cli(h, "run", str(cfg), "--ray", h["address"], "--out", str(out), "--json", timeout=600)
            wall = time.perf_counter() - t
            if p.returncode != 0:
                sys.exit(p.stderr[-3000:])
            meta = json.loads((out / "run.json").read_text())
            summary = json.loads((out / "summary.json").read_text())
            gens = (meta["ray"].get("generators") or {}).get("tiny|http") or []
            print(f"round {rnd}: generators={k} wall {wall:.1f} s; offsets/RTT: "
                  + ("; ".join(f"#{g['index']} {g['offset_ms']:+.3f} ms / {g['rtt_ms']:.3f} ms" for g in gens) or "(one task, no offset)"))
            for r in summary["rows"]:
                cell = meta["cells"][f"tiny|http|concurrency|{r['point']}"]
                print(f"  {r['point']:>10}: n={r['requests']} TTFT p50 {r['ttft_ms']['p50']:.1f} ms, TPOT p50 {r['tpot_ms']['p50']:.2f} ms, "
                      f"{r['output_throughput_tok_s']:.0f} tok/s, {r['request_throughput_req_s']:.1f} req/s, start spread {cell.get('generator_start_spread_ms', '-')} ms, "
                      f"late sends {cell.get('late_sends', '-')}, others' CPU {cell.get('cpu_others_pct')}")


if __name__ == "__main__":
    main()
