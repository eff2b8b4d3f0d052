"""The per-request hook of a run: the config's guardrails run on each measured request's prompt.

A pre-model guard's time is added to the request's TTFT and E2EL (the model could not start
before it), a post-model guard's to E2EL only; the sum is `guard_ms`. Its cost is the machine's
price for that time, added to the request's `cost`. The checks run as each record comes out of
the scenario, on the measuring machine, before the next record is taken: in-process, the next
request waits for them, as it would behind a gateway that checks each request on arrival. Served
(the client's event loop runs in its own thread) the next send does not wait: each record still
gets its own check's time added, and the checks share the machine with the measured server.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class GuardHook:
    """Guards built from `guardrails:`, applied to one record at a time."""

    guards: list
    usd_per_second: float

    @classmethod
    def from_config(cls, specs: list, usd_per_second: float) -> "GuardHook | None":
        """None when the config has no guardrails; otherwise every guard built and warmed (loads are not timed)."""
        if not specs:
            return None
        from llmbench.optimizers.guard.base import build_guard

        guards = [build_guard(s) for s in specs]
        for g in guards:
            g.check("warm-up: hello")
        return cls(guards, usd_per_second)

    def apply(self, rec, text: str | None) -> None:
        """Run every guard on the request's prompt; fold its time into ttft_ms, e2el_ms and cost."""
        if text is None or not rec.ok:
            return
        pre = post = 0.0
        flagged = False
        for g in self.guards:
            s = time.perf_counter()
            v = g.check(text)
            ms = (time.perf_counter() - s) * 1e3
            flagged = flagged or v.flagged is True
            if g.stage == "pre":
                pre += ms
            else:
                post += ms
        total = pre + post
        rec.guard_ms = total
        rec.guard_flagged = flagged
        if rec.ttft_ms is not None:
            rec.ttft_ms += pre
        if rec.e2el_ms is not None:
            rec.e2el_ms += total
        rec.cost += self.usd_per_second * total / 1e3

    def describe(self) -> list[dict]:
        """Each guard's description, for run.json."""
        return [g.describe() for g in self.guards]


def guard_share(records) -> dict | None:
    """What the guardrails added to an option's measured requests (for the plan), or None without them.

    The planner fits its service times from the records' TTFT and E2EL, which already hold the
    guards' time; this says how much of them it was.
    """
    import numpy as np

    g = [r.guard_ms for r in records if r.ok and r.guard_ms is not None]
    if not g:
        return None
    shares = [r.guard_ms / r.ttft_ms for r in records if r.ok and r.guard_ms is not None and r.ttft_ms]
    return {"guard_ms_p50": round(float(np.percentile(g, 50)), 3), "guard_ms_p95": round(float(np.percentile(g, 95)), 3),
            "share_of_ttft_p50": round(float(np.median(shares)), 4) if shares else None,
            "requests": len(g),
            "note": "the run's guardrails ran on every request: their time is inside the measured TTFT and E2EL this "
                    "plan is fitted on (as time a replica is busy), so its replicas and cost include it"}
