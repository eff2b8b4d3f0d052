"""The event loop the streaming client runs on: uvloop where it is installed, else asyncio's own.

uvloop halved the client's CPU per streamed token and its p99 timing error at 64 streams on the
2-core VM (tests/benchmarks/bench_client.py --loop; BENCHMARKS.md): the loop's own overhead is what
delays reading a chunk that has already arrived.
"""
from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # e.g. Windows: asyncio's loop, a little less precise
        return asyncio.run(coro)
    return uvloop.run(coro)  # asyncio.Runner on 3.11+, its own equivalent before (requires-python >= 3.10)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a new event loop (as asyncio.run does), uvloop's when available.

    A SIGTERM handler of the process's own (`verify` raises to stop what it started) is kept working:
    uvloop would run it inside one of its callbacks, log what it raises and go on (seen: `verify`
    kept sending after SIGTERM). So while the loop runs it takes SIGTERM itself, cancels `coro`, and
    once that has unwound calls the process's handler, whose exception then propagates as it would
    outside a loop. The default action (kill) and an ignored SIGTERM are left alone."""
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if not callable(previous):
        return _run(coro)
    termed = False

    async def main() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()

        def on_term() -> None:
            nonlocal termed
            termed = True
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_term)
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)  # remove_signal_handler leaves the default action

    try:
        return _run(main())
    finally:
        if termed:
            previous(signal.SIGTERM, None)


async def sleep_until(when: float) -> None:
    """Sleep until time.perf_counter() reaches `when`, never returning before it: uvloop's timers
    count whole milliseconds, so one sleep can wake up to half a millisecond early."""
    while (left := when - time.perf_counter()) > 0:
        await asyncio.sleep(left)
