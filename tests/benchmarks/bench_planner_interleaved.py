"""Benchmark: the continuous-batching model against open-loop load, fitted on cells measured just before it.

    .venv/bin/python tests/benchmarks/bench_planner_interleaved.py --rate 2.2 [--cycles 5] [--seconds 15]
        [--trace ../shared/data/traces/azure_llm_code_2023.csv] [--model card:llama-50m] [--variant gguf-q4_k_m]
        [--parallel 4] [--ctx 1300] [--prompts MEDIAN,SIGMA,MIN,MAX,ABOVE] [--json OUT]

bench_planner_served.py fits the model once, then measures minutes later; on a shared VM whose speed
moves 3x within a minute, that compares the model with the machine's drift. Here one llama-server of
PARALLEL slots gets CYCLES cycles of, back to back: a closed loop of 1 client (SECONDS/2 s), one of
PARALLEL clients (SECONDS s), then open-loop arrivals at RATE req/s (SECONDS s): Poisson, or with
--trace the trace's next RATE x SECONDS requests, their gaps scaled to RATE on average (bursts and
lulls kept), lengths that do not fit a slot scaled down to fit as `llmbench verify` does. Each
cycle's model is fitted (served_fit.fit_continuous, as the planner fits a run) on that cycle's two
closed-loop cells only, and replays the open-loop block's own arrivals and lengths
(simulate_continuous, 10 speed draws). Pooled: every open-loop request of the run against the
pooled draws of the cycles' own models (one block's p95 rests on its 2-4 slowest requests).
llama-server's own prefill ms per token is printed per block: it moves with the machine's speed.

The requests are token ids (a prompt of P tokens is exactly P), lognormal P as the default workload
(mean 96, sigma 0.5, 16-384; --prompts for another, e.g. a routed plan's long class: 160,1,16,1024,177
with --ctx 4288), 32 tokens out with ignore_eos, streamed from llama-server's /completion.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import numpy as np

OUTPUT_TOKENS = 32
DRAWS = 10
CTX = 1300
PROMPTS = "84.72,0.5,16,384,0"  # median 84.72: mean 96 (the default workload)


class Load:
    """Streams requests to one llama-server and keeps (block, send time, TTFT, E2EL, prompt, timings)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, seed: int, vocab: int, prompts: list[float]):
        self.session, self.base, self.rng, self.vocab = session, base, random.Random(seed), vocab
        self.median, self.sigma, self.lo, self.hi, self.above = prompts
        self.rows: list[dict] = []

    def prompt_len(self) -> int:
        """A lognormal length clipped to [lo, hi] (as workload.py draws), redrawn until past `above` (a routed class)."""
        while True:
            n = int(min(self.hi, max(self.lo, self.rng.lognormvariate(np.log(self.median), self.sigma))))
            if n > self.above:
                return n

    async def one(self, block: str, n: int | None = None, out: int = OUTPUT_TOKENS) -> None:
        n = n or self.prompt_len()
        body = {"prompt": [self.rng.randrange(100, self.vocab) for _ in range(n)], "n_predict": out,
                "ignore_eos": True, "stream": True, "cache_prompt": False}
        t0, ttft, timings = time.time(), None, None
        async with self.session.post(self.base + "/completion", json=body) as resp:
            resp.raise_for_status()
            async for line in resp.content:
                if line.startswith(b"data: "):
                    obj = json.loads(line[6:])
                    ttft = ttft if ttft is not None else time.time() - t0
                    timings = obj.get("timings") or timings
        self.rows.append({"block": block, "t0": t0, "ttft": ttft, "e2el": time.time() - t0, "prompt": n, "output": out,
                          "timings": timings})

    async def closed(self, block: str, clients: int, seconds: float) -> None:
        end = time.time() + seconds

        async def client() -> None:
            while time.time() < end:
                await self.one(block)
        await asyncio.gather(*(client() for _ in range(clients)))

    async def open_loop(self, block: str, schedule: list[tuple[float, int | None, int]]) -> None:
        """Each (seconds from now, prompt tokens or None for the workload's, output tokens) sent on time."""
        start, tasks = time.time(), []
        for at, n, out in schedule:
            await asyncio.sleep(max(0.0, start + at - time.time()))
            tasks.append(asyncio.create_task(self.one(block, n, out)))
        await asyncio.gather(*tasks)


def poisson(rng: random.Random, rate: float, seconds: float) -> list[tuple[float, None, int]]:
    """Poisson arrivals at `rate` over `seconds`, the workload's prompt lengths."""
    at, out = 0.0, []
    while (at := at + rng.expovariate(rate)) < seconds:
        out.append((at, None, OUTPUT_TOKENS))
    return out


def trace_stretch(path: Path, rate: float, seconds: float, cycle: int, slot_tokens: int) -> list[tuple[float, int, int]]:
    """The cycle-th stretch of rate x seconds consecutive trace requests, gaps scaled to the trace's mean
    rate = `rate` (the trace's bursts and lulls kept); lengths fitted to a slot."""
    from llmbench.planner.trace import load_trace
    from llmbench.verify.load import fit_to_slot

    r = load_trace(path).requests
    times = r.arrival_s * (r.mean_rps / rate)
    n = max(2, round(rate * seconds))
    lo = (cycle * n) % max(1, len(times) - n)
    out = []
    for t, p, o in zip(times[lo:lo + n], r.prompt_tokens[lo:lo + n], r.output_tokens[lo:lo + n]):
        out.append((float(t - times[lo]), *fit_to_slot(int(p), max(1, int(o)), slot_tokens)))
    return out


def _record(row: dict, point: str) -> SimpleNamespace:
    """A row as the fit reads a request record."""
    return SimpleNamespace(ok=True, ttft_ms=row["ttft"] * 1e3, e2el_ms=row["e2el"] * 1e3, timestamp=row["t0"], run_id="bench",
                           scenario="concurrency", point=point, prompt_tokens=row["prompt"], output_tokens=row["output"],
                           queue_ms=0.0, server_timings=row["timings"])


def _block(rows: list[dict]) -> dict:
    e2el = np.array([r["e2el"] for r in rows]) * 1e3
    span = max(r["t0"] + r["e2el"] for r in rows) - min(r["t0"] for r in rows)
    return {"requests": len(rows), "throughput": len(rows) / span, "in_flight": sum(r["e2el"] for r in rows) / span,
            "e2el_p50": float(np.median(e2el)), "e2el_p95": float(np.percentile(e2el, 95)),
            "decode_ms_per_token": float(np.median([r["timings"]["predicted_per_token_ms"] for r in rows])),
            "prefill_ms_per_token": float(np.median([r["timings"]["prompt_per_token_ms"] for r in rows]))}


def analyse(rows: list[dict], parallel: int) -> tuple[list[dict], dict]:
    """(per cycle: the three blocks' figures and the open block predicted by the cycle's own fit, pooled figures)."""
    from llmbench.planner.continuous import simulate_continuous
    from llmbench.planner.queue import Requests
    from llmbench.planner.served_fit import fit_continuous

    cycles = sorted({int(r["block"].split("-")[1]) for r in rows})
    out, pooled_sims = [], [[] for _ in range(DRAWS)]
    for c in cycles:
        blocks = {k: [r for r in rows if r["block"] == f"{k}-{c}"] for k in ("c1", f"c{parallel}", "open")}
        model = fit_continuous([_record(r, "clients=1") for r in blocks["c1"]]
                               + [_record(r, f"clients={parallel}") for r in blocks[f"c{parallel}"]])
        arrivals = sorted(blocks["open"], key=lambda r: r["t0"])
        t = np.array([r["t0"] for r in arrivals])
        reqs = Requests(t - t[0], np.array([r["prompt"] for r in arrivals]), np.array([r["output"] for r in arrivals]))
        sims = [simulate_continuous(reqs, model, 1, parallel, seed=s) for s in range(DRAWS)]
        for pool, s in zip(pooled_sims, sims):
            pool.extend(s.e2el_ms.tolist())
        pred = {"e2el_p50": float(np.mean([np.median(s.e2el_ms) for s in sims])),
                "e2el_p95": float(np.mean([np.percentile(s.e2el_ms, 95) for s in sims])),
                "throughput": float(np.mean([len(arrivals) / s.window_s for s in sims]))}
        figures = {k: _block(v) for k, v in blocks.items()}
        meas = figures["open"]
        out.append({"cycle": c, "blocks": figures, "predicted": pred,
                    "error_pct": {k: 100 * (pred[k] - meas[k]) / meas[k] for k in pred},
                    "step_ms_by_slots": dict(zip(model.step_batches, model.step_base_ms))})
    measured = np.array([r["e2el"] for r in rows if r["block"].startswith("open-")]) * 1e3
    pooled = {"requests": int(measured.size),
              "measured": {"e2el_p50": float(np.median(measured)), "e2el_p95": float(np.percentile(measured, 95))},
              "predicted": {"e2el_p50": float(np.mean([np.median(p) for p in pooled_sims])),
                            "e2el_p95": float(np.mean([np.percentile(p, 95) for p in pooled_sims]))}}
    pooled["error_pct"] = {k: 100 * (pooled["predicted"][k] - v) / v for k, v in pooled["measured"].items()}
    return out, pooled


async def measure(a: argparse.Namespace) -> list[dict]:
    from llmbench.engines.llamacpp import ensure_engine
    from llmbench.engines.llamacpp.gguf import build_gguf
    from llmbench.engines.llamacpp.server import ManagedServer
    from llmbench.models.source import resolve

    engine = ensure_engine()
    gguf = build_gguf(resolve(a.model), a.variant, engine, log=print)
    server = ManagedServer(engine, gguf.path, parallel=a.parallel, ctx_size=a.ctx, threads=a.threads,
                           extra_args=["--seed", "0", "--no-cache-prompt", "--cache-ram", "0"]).start()
    try:
        # llama-server closes a connection after each streamed answer: a fresh one per request.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            load = Load(session, f"http://127.0.0.1:{server.port}", a.seed, a.vocab, [float(x) for x in a.prompts.split(",")])
            await load.closed("warmup", 1, 3)
            for c in range(a.cycles):
                await load.closed(f"c1-{c}", 1, a.seconds / 2)
                await load.closed(f"c{a.parallel}-{c}", a.parallel, a.seconds)
                await asyncio.sleep(1)  # the closed loop's last answers out before the first arrival
                schedule = (trace_stretch(a.trace, a.rate, a.seconds, c, a.ctx // a.parallel) if a.trace
                            else poisson(load.rng, a.rate, a.seconds))
                await load.open_loop(f"open-{c}", schedule)
                await asyncio.sleep(1)
            return [r for r in load.rows if r["block"] != "warmup"]
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, required=True, help="open-loop arrivals, req/s")
    ap.add_argument("--trace", type=Path, help="an Azure-format trace to replay instead of Poisson arrivals")
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--model", default="card:llama-50m")
    ap.add_argument("--variant", default="gguf-q4_k_m")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ctx", type=int, default=CTX, help="llama-server's --ctx-size (all slots)")
    ap.add_argument("--prompts", default=PROMPTS, help="prompt lengths: MEDIAN,SIGMA,MIN,MAX,ABOVE (lognormal, clipped to "
                    "[MIN, MAX], only those over ABOVE: a routed class)")
    ap.add_argument("--vocab", type=int, default=1000, help="prompt token ids are drawn below this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rows = asyncio.run(measure(a))
    cycles, pooled = analyse(rows, a.parallel)
    print("| cycle | closed 1: decode ms/tok | closed N: req/s | open: in flight | prefill ms/tok (closed 1 / open) "
          "| p95 E2EL measured | predicted | err | throughput err |")
    for cy in cycles:
        b, p = cy["blocks"], cy["blocks"]["open"]
        print(f"| {cy['cycle']} | {b['c1']['decode_ms_per_token']:.1f} | {b[f'c{a.parallel}']['throughput']:.2f} | "
              f"{p['in_flight']:.2f} | {b['c1']['prefill_ms_per_token']:.2f} / {p['prefill_ms_per_token']:.2f} | "
              f"{p['e2el_p95']:.0f} | {cy['predicted']['e2el_p95']:.0f} | {cy['error_pct']['e2el_p95']:+.0f}% | "
              f"{cy['error_pct']['throughput']:+.0f}% |")
    m, p, e = pooled["measured"], pooled["predicted"], pooled["error_pct"]
    print(f"pooled, {pooled['requests']} requests: E2EL p50 {m['e2el_p50']:.0f} measured, {p['e2el_p50']:.0f} predicted "
          f"({e['e2el_p50']:+.0f}%); p95 {m['e2el_p95']:.0f} measured, {p['e2el_p95']:.0f} predicted ({e['e2el_p95']:+.0f}%)")
    if a.json:
        a.json.write_text(json.dumps({"at": started, "args": {k: str(v) for k, v in vars(a).items()}, "cycles": cycles,
                                      "pooled": pooled, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
