"""The fallback drill: the primary's servers are killed (SIGKILL, a crash) in the middle of a load
sent through the gateway; what happened to every request.

Goal: every request either succeeds (through the fallbacks once the primary is gone) or is
counted failed with its error; none hangs past the client's timeout. Reported: the share that
succeeded (all, and of those that arrived after the kill), each failure kind with an example, the
requests that took longer than the timeout (should be none), the scheduled requests with no result
at all (should be none), and the gap: from the kill to the first good answer to a request that
arrived after it.
"""
from __future__ import annotations

from llmbench.verify.compare import failures_by_kind, latencies
from llmbench.verify.load import LoadResult, make_backend, send_one_by_one
from llmbench.workload import Prompt
from llmbench.verify.spec import VerifySpec

KILL_AT = 1 / 3  # of the drill's duration
HANG_SLACK_S = 1.0  # beyond the client's timeout: a request that took longer hung
CHAT_PROBES = 4
# Seen with litellm[proxy] 1.108.7: a streamed /v1/completions request whose deployment is down
# fails with APIConnectionError and is never sent to the fallback; streamed chat requests are.
COMPLETIONS_NOTE = ("the gateway did not fall back for streamed text completions (/v1/completions, the API the run "
                    "measured with); `chat_probe` shows whether it falls back for streamed chat requests")


def drill_target(spec: VerifySpec):
    """(the primary to kill, its fallback aliases), or (None, why not)."""
    for d in sorted(spec.primaries, key=lambda d: -(d.load_rps or 0.0)):
        fbs = sorted({f for a in d.aliases for f in spec.fallbacks.get(a, [])})
        if fbs and d.startable:
            return d, fbs
    names = ", ".join(d.option for d in spec.primaries)
    return None, f"the recommendation has no fallback for {names}: no drill"


def _pct(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def analyse(result: LoadResult, scheduled: int, timeout_s: float, killed: dict) -> dict:
    """The drill's figures from its load's outcomes (see the module's docstring)."""
    outs = result.outcomes
    kill = result.events.get("kill")
    after = [o for o in outs if kill is not None and o.arrived >= kill]
    in_flight = [o for o in outs if kill is not None and o.arrived < kill and o.res.end > kill]
    ok = [o for o in outs if o.ok]
    took = [o.res.end - o.res.sent for o in outs]
    hung = sum(t > timeout_s + HANG_SLACK_S for t in took)
    good_after = [o.res.end for o in after if o.ok]
    failed_after = [o.arrived for o in outs if not o.ok and kill is not None and o.res.end >= kill]
    lat = latencies(after)
    return {
        "killed": killed, "killed_at_s": None if kill is None else kill - result.start,
        "requests": len(outs), "scheduled": scheduled, "unaccounted": scheduled - len(outs),
        "succeeded": len(ok), "failed": len(outs) - len(ok),
        "success_share": len(ok) / len(outs) if outs else None,
        "after_kill": {"requests": len(after), "succeeded": sum(o.ok for o in after),
                       "success_share": sum(o.ok for o in after) / len(after) if after else None,
                       "e2el_p50_ms": _pct(lat["e2el"], 50), "e2el_p95_ms": _pct(lat["e2el"], 95)},
        "in_flight_at_kill": {"requests": len(in_flight), "succeeded": sum(o.ok for o in in_flight)},
        "errors_by_kind": failures_by_kind(o.res for o in outs),
        "every_failure_has_an_error": all(o.ok or bool(o.res.error_kind and o.res.error) for o in outs),
        "timeout_s": timeout_s, "hung": hung, "max_request_s": max(took) if took else None,
        "gap_s": (min(good_after) - kill) if good_after and kill is not None else None,
        "failures_until_s": (max(failed_after) - kill) if failed_after and kill is not None else 0.0,
    }


def chat_probe(url: str, alias: str, headers: dict[str, str], timeout_s: float) -> dict:
    """A few short streamed chat requests through the gateway once the primary is down: does the
    gateway's fallback serve the chat API (where LiteLLM falls back for streams)?"""
    b = make_backend(url, alias, None, timeout_s, api="chat")
    res = send_one_by_one([b], [Prompt(ids=[], output_tokens=4, text="Say hello.")], headers, timeout_s, CHAT_PROBES)
    return {"api": "chat", "requests": len(res), "succeeded": sum(r.ok for r in res),
            "errors": sorted({r.error for r in res if not r.ok})[:2]}
