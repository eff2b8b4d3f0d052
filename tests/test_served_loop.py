"""The client's event loop: uvloop where installed, and sleeps that never end early on it."""
from __future__ import annotations

import asyncio
import random
import time

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
