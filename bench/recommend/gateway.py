"""The gateway's own cores: the LiteLLM proxy's CPU a request, as `llmbench verify` measured it, at the
planned load.

The engines' replicas are planned from the run; the proxy in front of them is not measured there. It
is not free: on this project's 2-core machine it used 77 ms of CPU a request, 1.5 cores at 19 req/s,
and starved beside the server it fronted (BENCHMARKS.md). `verify` writes that figure into the
results folder (verify.json `gateway.proxy_cpu_ms_per_request`); the next `recommend` sizes the
gateway from it. It is the same for every option (it follows the request rate, not the engine), so
it does not change the choice and is listed beside the deployments' total, not in it.
"""
from __future__ import annotations

import math

HOW_TO_MEASURE = ("not measured: `llmbench verify RUN_DIR` measures the proxy's CPU a request through a real "
                  "LiteLLM proxy, and the next `llmbench recommend RUN_DIR` sizes the gateway from it")


def gateway_sizing(verify: dict | None, rps: float | None) -> dict:
    """{cpu_ms_per_request, cores_needed, whole_cores, ...} at `rps` from a verify.json; else why not."""
    g = (verify or {}).get("gateway") or {}
    ms = g.get("proxy_cpu_ms_per_request")
    if not isinstance(ms, (int, float)) or ms <= 0:
        return {"cores_needed": None, "note": HOW_TO_MEASURE}
    if not rps:
        return {"cpu_ms_per_request": ms, "cores_needed": None, "note": "no target load to size the gateway at"}
    needed = ms / 1e3 * rps
    load = verify.get("load") or {}
    return {
        "cpu_ms_per_request": ms, "at_rps": rps, "cores_needed": needed, "whole_cores": max(1, math.ceil(needed)),
        "source": f"verify.json of {verify.get('verified_at') or 'an earlier verify'}: the proxy's CPU over "
                  f"{load.get('requests', '?')} requests at {load.get('offered_rps') or 0:.3g} req/s",
        "note": "cores for the LiteLLM proxy alone, beside the engines' (a proxy sharing the engines' cores slows "
                "both); not priced, and not in total_cost_per_month_usd",
    }
