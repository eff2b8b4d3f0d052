"""Benchmark: three default runs back to back; p50 TPOT per cell within 5% of each other.

    .venv/bin/python tests/benchmarks/bench_repeatability.py [--runs 3] [--out /tmp/repeat]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default="/tmp/llmbench-repeat")
    ap.add_argument("config", nargs="?")
    args = ap.parse_args()
    tpot: dict[str, list[float]] = {}
    for i in range(args.runs):
        out = Path(args.out) / f"run{i}"
        cmd = [sys.executable, "-m", "llmbench", "run", "--out", str(out), "--json"] + ([args.config] if args.config else [])
        summary = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        for row in summary["rows"]:
            if row.get("tpot_ms"):
                tpot.setdefault(f"{row['model']} {row['variant']} {row['point']}", []).append(row["tpot_ms"]["p50"])
    spread = {cell: round(100 * (max(v) - min(v)) / min(v), 2) for cell, v in tpot.items()}
    print(json.dumps({"p50_tpot_ms": tpot, "spread_pct": spread, "max_spread_pct": max(spread.values())}, indent=1))


if __name__ == "__main__":
    main()
