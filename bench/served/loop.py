"""The event loop the streaming client runs on: uvloop where it is installed, else asyncio's own.

uvloop halved the client's CPU per streamed token and its p99 timing error at 64 streams on the
2-core VM (tests/benchmarks/bench_client.py --loop; BENCHMARKS.md): the loop's own overhead is what
delays reading a chunk that has already arrived.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a new event loop (as asyncio.run does), uvloop's when available."""
    try:
        import uvloop
    except ImportError:  # e.g. Windows: asyncio's loop, a little less precise
        return asyncio.run(coro)
    return uvloop.run(coro)  # asyncio.Runner on 3.11+, its own equivalent before (requires-python >= 3.10)


async def sleep_until(when: float) -> None:
    """Sleep until time.perf_counter() reaches `when`, never returning before it: uvloop's timers
    count whole milliseconds, so one sleep can wake up to half a millisecond early."""
    while (left := when - time.perf_counter()) > 0:
        await asyncio.sleep(left)
