"""The client's event loop: uvloop where installed, and sleeps that never end early on it."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import pytest

from llmbench.served.loop import run, sleep_until


def test_runs_on_uvloop_when_installed():
    import uvloop  # a pinned dependency on Linux

    async def kind():
        return type(asyncio.get_running_loop())

    assert run(kind()) is uvloop.Loop


def test_sleep_until_never_wakes_early():
    # uvloop's timers count whole milliseconds: a plain asyncio.sleep(0.0004) on it may return at once.
    rng = random.Random(7)

    async def go():
        late = []
        for _ in range(60):
            when = time.perf_counter() + rng.uniform(0.0001, 0.003)
            await sleep_until(when)
            late.append(time.perf_counter() - when)
        return late

    late = run(go())
    assert min(late) >= 0.0
    assert sorted(late)[len(late) // 2] < 0.002  # and not by much: a schedule stays a schedule


class _Stop(Exception):
    pass


def test_sigterm_reaches_the_processs_handler_after_the_loop_unwinds():
    # uvloop logs and drops what a plain signal handler raises inside the loop: the loop takes SIGTERM,
    # cancels the load, and calls the process's handler once the load has cleaned up.
    order = []

    def on_term(signum, frame):
        order.append("handler")
        raise _Stop()

    async def load():
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(10)
        finally:
            order.append("load cleaned up")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        started = time.perf_counter()
        with pytest.raises(_Stop):
            run(load())
        assert time.perf_counter() - started < 5 and order == ["load cleaned up", "handler"]
        assert signal.getsignal(signal.SIGTERM) is on_term  # the process's handler is back afterwards

        async def fine():
            return 7
        assert run(fine()) == 7 and signal.getsignal(signal.SIGTERM) is on_term
    finally:
        signal.signal(signal.SIGTERM, previous)
