"""Precision and cost of the streaming client against the scripted server (not a timed test).

    .venv/bin/python tests/benchmarks/bench_client.py [--streams 1 16 64] [--transport aiohttp httpx]
        [--llama-server BUILD/bin/llama-server --gguf MODEL.gguf]

The scripted server (tests/served_fixture.py) runs in its own process and writes down when it
received each request and when it sent each content chunk (perf_counter: CLOCK_MONOTONIC, one
clock for both processes). So the client's error is measured against what really happened, not
only against the nominal schedule (which the server's own timer granularity blurs by ~1 ms):
- TTFT error: client TTFT (its `sent`, the request's write timed by an aiohttp trace -> first
  content chunk read) minus the true TTFT (bytes written to the socket -> the first chunk's bytes
  written by the server). The server's lag in reading the request is the server's, shown apart.
  httpx has no hook at the write: its `sent` is the call, so its error includes the send overhead.
- ITL error: client gap between two chunks minus the server's gap between writing them.
- delay: when the client read a chunk minus when the server wrote it.
- CPU: the client process's CPU time (user + system) per streamed token.
Two layouts: `staggered` (each stream's chunks on its own phase) and `lockstep` (every stream's
chunk on one global d-ms tick, as a continuously batching server emits a step: the client then
reads N chunks at once and the last one waits for the others).
On Python 3.11 aiohttp writes a request's body from a task of its own (eagerly started only from
3.12 on), so a request leaves one event-loop iteration after the call: with many streams in
flight that iteration is long ("send"). The client's TTFT starts at the write, so it leaves that
overhead out.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from served_fixture import Script, ScriptedServer  # noqa: E402

from llmbench.served.client import StreamClient  # noqa: E402
from llmbench.served.loop import run as run_loop  # noqa: E402


async def _run(url: str, streams: int, requests_per_stream: int, tokens: int, d_ms: float, t0_ms: float,
               align: bool, transport: str, seed: int) -> tuple[list, float, float]:
    rng = random.Random(seed)
    results = []
    client = StreamClient(streams, timeout_s=60, transport=transport)
    counter = iter(range(10**9))

    async def one(tag: str, n: int) -> None:
        t0 = t0_ms if align else t0_ms + rng.uniform(0, d_ms)  # staggered: each request its own phase
        body = {"model": f"t0={t0:.3f},d={d_ms},align={int(align)}", "prompt": tag, "max_tokens": n, "stream": True}
        res = await client.stream(f"{url}/completions", body, chat=False, asked=n)
        if not tag.startswith("warm"):
            results.append((tag, res))

    async def stream_loop(s: int) -> None:
        for _ in range(max(requests_per_stream, -(-32 // streams))):  # at least 32 requests per level
            await one(f"s{s}-r{next(counter)}", tokens)

    await asyncio.gather(*(one(f"warm{i}", 2) for i in range(streams)))  # open the pool's connections
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(stream_loop(s) for s in range(streams)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await client.aclose()
    return results, cpu, wall


def _errors(results: list, log: dict, d_ms: float, t0_ms: float, align: bool) -> dict:
    ttft_err, send, read_lag, itl_err, delay, itl_nominal, tokens, failed = [], [], [], [], [], [], 0, 0
    for tag, res in results:
        entry = log[tag]
        if not res.ok or len(res.chunk_times) != len(entry["sends"]):
            failed += 1
            continue
        sends, got = entry["sends"], res.chunk_times
        tokens += res.output_tokens
        # The true TTFT runs from the request's bytes entering the socket to the first chunk's bytes
        # leaving the server. The client takes `sent` in aiohttp's trace, which fires right before
        # that write, so its error is its delay in reading the first chunk. The server's lag in
        # reading the request ("server read") is inside the true TTFT: a slow server is slow.
        # "send" is the client's overhead between the call and the write, which its TTFT leaves out.
        send.append((res.sent - res.called) * 1e3)
        read_lag.append((entry["recv"] - res.sent) * 1e3)
        ttft_err.append(((got[0] - res.sent) - (sends[0] - res.sent)) * 1e3)
        delay += [(g - s) * 1e3 for g, s in zip(got, sends)]
        itl_err += [((g2 - g1) - (s2 - s1)) * 1e3 for g1, g2, s1, s2 in zip(got, got[1:], sends, sends[1:])]
        itl_nominal += [(g2 - g1) * 1e3 - d_ms for g1, g2 in zip(got, got[1:])]

    def pct(values, q):
        return float(np.percentile(np.abs(values), q)) if values else float("nan")

    return {"tokens": tokens, "failed": failed, "ttft_p50": pct(ttft_err, 50), "ttft_p99": pct(ttft_err, 99),
            "send_p50": pct(send, 50), "send_p99": pct(send, 99), "read_p50": pct(read_lag, 50),
            "read_p99": pct(read_lag, 99),
            "itl_p50": pct(itl_err, 50), "itl_p99": pct(itl_err, 99), "delay_p50": pct(delay, 50),
            "delay_p99": pct(delay, 99), "itl_sched_p99": pct(itl_nominal, 99)}


def against_llama_server(binary: str, gguf: str, requests: int, tokens: int) -> None:
    """Concurrency 1 against a real llama-server: the client's TTFT/ITL p50 next to the server's own
    `timings` for the same requests (prompt_ms: prefill; predicted_ms over predicted_n tokens)."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "--parallel", "1",
                             "-c", "2048", "-a", "model", "--no-cache-prompt"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        prompt = " ".join(f"word{i}" for i in range(40))

        async def go():
            client = StreamClient(1, timeout_s=120)
            body = {"model": "model", "prompt": prompt, "max_tokens": tokens, "n_predict": tokens, "ignore_eos": True,
                    "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.0}
            out = [await client.stream(f"http://127.0.0.1:{port}/v1/completions", body, chat=False, asked=tokens)
                   for _ in range(requests + 2)]
            await client.aclose()
            return out[2:]  # two warm-up requests

        results = asyncio.run(go())
    finally:
        proc.terminate()
        proc.wait()
    ok = [r for r in results if r.ok and r.server_timings and len(r.chunk_times) == r.server_timings["predicted_n"]]
    # llama.cpp's prompt_ms ends at the first token; predicted_ms runs from the first token to the last
    # (its predicted_per_token_ms divides it by n - 1): the client's first-to-last chunk span is the same span.
    ttft = [(r.first_token - r.sent) * 1e3 for r in ok]
    span = [(r.chunk_times[-1] - r.chunk_times[0]) * 1e3 for r in ok]
    itl = [(b - a) * 1e3 for r in ok for a, b in zip(r.chunk_times, r.chunk_times[1:])]
    per_tok = [r.server_timings["predicted_ms"] / max(1, r.server_timings["predicted_n"] - 1) for r in ok]
    print(f"\nAgainst llama-server ({Path(gguf).name}), concurrency 1, {len(ok)} requests of {tokens} tokens "
          f"(one chunk per token), load average {os.getloadavg()[0]:.2f}:\n")
    print("| figure (p50 over requests) | client ms | server's own ms | client - server |")
    print("|---|---:|---:|---:|")
    rows = (("TTFT vs prompt_ms", ttft, [r.server_timings["prompt_ms"] for r in ok]),
            ("first-to-last chunk vs predicted_ms", span, [r.server_timings["predicted_ms"] for r in ok]),
            ("ITL p50 vs predicted_per_token_ms", itl, per_tok))
    for name, c, s in rows:
        cp, sp = float(np.median(c)), float(np.median(s))
        print(f"| {name} | {cp:.3f} | {sp:.3f} | {cp - sp:+.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--transport", nargs="+", default=["aiohttp"], choices=["aiohttp", "httpx"])
    ap.add_argument("--layout", nargs="+", default=["staggered", "lockstep"], choices=["staggered", "lockstep"])
    ap.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"],
                    help="uvloop: what llmbench's client runs on (llmbench.served.loop)")
    ap.add_argument("--requests", type=int, default=4, help="requests per stream")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--d-ms", type=float, default=10.0)
    ap.add_argument("--t0-ms", type=float, default=20.0)
    ap.add_argument("--llama-server", help="also compare with a real llama-server binary (needs --gguf)")
    ap.add_argument("--gguf", help="the GGUF model for --llama-server")
    args = ap.parse_args()
    go = run_loop if args.loop == "uvloop" else asyncio.run
    rows = []
    with ScriptedServer(Script()) as server:
        for transport in args.transport:
            for layout in args.layout:
                for n in args.streams:
                    align = layout == "lockstep"
                    results, cpu, wall = go(_run(server.url, n, args.requests, args.tokens, args.d_ms,
                                                          args.t0_ms, align, transport, seed=n))
                    log = {e["body"]["prompt"]: e for e in server.log()}
                    e = _errors(results, log, args.d_ms, args.t0_ms, align)
                    rows.append((transport, layout, n, e, cpu, wall))
                    print(f"  {transport} {layout} {n}: done", file=sys.stderr)
    print(f"\nClient precision against the scripted server (separate process), {args.tokens} tokens per request, "
          f"one chunk every {args.d_ms:g} ms, first after {args.t0_ms:g} ms; Python {sys.version.split()[0]}, "
          f"{args.loop} loop; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores. Errors are |client - server| in ms.\n")
    print("| transport | layout | streams | tokens | TTFT err p50 / p99 | send (left out) p50 / p99 "
          "| server read p50 / p99 | ITL err p50 / p99 | chunk delay p50 / p99 | ITL vs schedule p99 "
          "| client CPU per token | failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for transport, layout, n, e, cpu, wall in rows:
        per_tok = 1e6 * cpu / e["tokens"] if e["tokens"] else float("nan")
        print(f"| {transport} | {layout} | {n} | {e['tokens']} | {e['ttft_p50']:.3f} / {e['ttft_p99']:.3f} | "
              f"{e['send_p50']:.3f} / {e['send_p99']:.3f} | {e['read_p50']:.3f} / {e['read_p99']:.3f} | "
              f"{e['itl_p50']:.3f} / {e['itl_p99']:.3f} | {e['delay_p50']:.3f} / {e['delay_p99']:.3f} | "
              f"{e['itl_sched_p99']:.3f} | {per_tok:.1f} us | {e['failed']} |")
    if args.llama_server:
        against_llama_server(args.llama_server, args.gguf, 20, args.tokens)


if __name__ == "__main__":
    main()
