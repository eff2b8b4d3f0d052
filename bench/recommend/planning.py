"""Capacity for each option at the target load, through the planner of `llmbench.planner`.

The planner (a discrete-event queue model) is called per self-hosted option; API models need no
replicas and cost tokens x price. Where the planner is not importable (an older tree), a plain
throughput estimate stands in and says so.
"""
from __future__ import annotations

import math

from llmbench.hardware_profiles import HardwareProfile
from llmbench.recommend.inputs import RunData
from llmbench.recommend.option import Option
from llmbench.slo import SLO

HOURS_PER_MONTH = 730.0  # the cloud providers' billing convention (8760 h / 12)
DEFAULT_LOAD_SHARE = 0.5  # default target load: half of the best single replica's saturation


def default_rps(data: RunData, given: float | None = None) -> tuple[float | None, str]:
    """The target load and where it came from (the report states it)."""
    if given:
        return float(given), "given on the command line"
    cfg = (data.meta.get("config") or {}).get("plan") or {}
    if cfg.get("rps"):
        return float(cfg["rps"]), "plan.rps of the run config"
    load = (data.plan or {}).get("load") or {}
    if load.get("kind") == "poisson" and load.get("offered_rps"):
        # The plan stage already chose a load for this run: decide at the same one.
        why = data.plan.get("load_source") or "as planned"
        return float(load["offered_rps"]), f"the load of plan.json ({why})"
    # Every measured row counts (as in the plan stage), not only the row kept per batch size.
    rates = [r.get("request_throughput_req_s") for r in data.rows if not r.get("error") and r.get("request_throughput_req_s")]
    if not rates:
        return None, "no self-hosted option measured a throughput"
    best = max(rates)
    rps = round(DEFAULT_LOAD_SHARE * best, 4)
    return rps, f"{DEFAULT_LOAD_SHARE:.0%} of the best single-replica throughput measured ({best:.3g} req/s)"


def _planner():
    try:
        from llmbench.planner.capacity import plan_option
    except ImportError:
        return None
    return plan_option


def hardware_of(data: RunData) -> HardwareProfile:
    hp = data.meta.get("hardware_profile") or {"name": data.summary.get("hardware") or "unknown",
                                                "usd_per_hour": data.summary.get("usd_per_hour") or 0.0}
    return HardwareProfile(**hp)


def _estimate(option: Option, rps: float, usd_per_hour: float) -> dict:
    # Replicas at 80% utilisation of the measured throughput: no queueing model, so the
    # latencies are the measured ones and SLO compliance under load is not predicted.
    cap = option.throughput_req_s or 0.0
    replicas = max(1, math.ceil(rps / (0.8 * cap))) if cap else None
    cost_h = None if replicas is None else replicas * usd_per_hour
    return {
        "replicas": replicas, "max_batch": option.batch_size, "cost_per_hour": cost_h,
        "cost_per_month": None if cost_h is None else cost_h * HOURS_PER_MONTH,
        "predicted": {m: {k: v for k, v in (option.latency.get(m) or {}).items() if k in ("p50", "p95", "p99")} for m in ("ttft_ms", "tpot_ms", "e2el_ms")},
        "saturation_rps": cap or None, "meets_slo": None, "binding": None,
        "notes": ["estimate at 80% utilisation of the measured throughput: the capacity planner (llmbench.planner) is not available, latencies under load not predicted"],
        "source": "estimate",
    }


class Planner:
    """Plans each option once per load (options that share a base and load share the plan)."""

    def __init__(self, data: RunData, slos: list[SLO]):
        self.data, self.slos = data, slos
        self.hardware = hardware_of(data)
        self.plan_option = _planner()
        self._cache: dict[tuple, dict] = {}

    def rows_for(self, option: Option) -> list[dict]:
        return [r for r in self.data.rows if r.get("model") == option.model and r.get("variant") == option.variant and not r.get("error")]

    def plan(self, option: Option, rps: float | None, only=None) -> dict | None:
        """{replicas, max_batch, cost_per_hour, cost_per_month, predicted, meets_slo, binding, notes, source}.

        `only` (a request class) plans on that class's requests alone: a routed deployment sees
        only the prompt lengths routed to it.
        """
        if rps is None:
            return None
        if option.kind == "api":
            cpm = None if option.cost_per_1k_usd is None else option.cost_per_1k_usd / 1000.0 * rps * 3600 * HOURS_PER_MONTH
            return {"replicas": 0, "max_batch": None, "cost_per_hour": None if cpm is None else cpm / HOURS_PER_MONTH,
                    "cost_per_month": cpm, "predicted": option.latency or None, "meets_slo": None, "binding": None,
                    "notes": ["API model: pay per token, no replicas"], "source": "price profile"}
        load = rps * (1.0 - (option.cache or {}).get("hit_rate", 0.0))  # cache hits never reach a replica
        key = (option.model, option.variant, option.batch_size, round(load, 9), getattr(only, "name", None))
        if key not in self._cache:
            self._cache[key] = self._plan_self_hosted(option, load, only)
        plan = dict(self._cache[key])
        if option.compression:
            plan["notes"] = list(plan.get("notes") or []) + ["planned on the uncompressed service times"]
        return plan

    def _plan_self_hosted(self, option: Option, load: float, only=None) -> dict:
        if self.plan_option is None:
            return _estimate(option, load, self.hardware.usd_per_hour * self.hardware.devices)
        if load <= 0:
            return {"replicas": 0, "cost_per_hour": 0.0, "cost_per_month": 0.0, "notes": ["every request is a cache hit"], "source": "planner"}
        records = [r for r in self.data.records if r.model == option.model and r.variant == option.variant
                   and (only is None or only.holds(r.prompt_tokens))]
        try:
            got = dict(self.plan_option(self.rows_for(option), self.hardware, self.slos, rps=load, max_batch=option.batch_size,
                                        records=records))
        except Exception as exc:  # one option the planner cannot fit must not sink the others
            got = _estimate(option, load, self.hardware.usd_per_hour * self.hardware.devices)
            got["notes"] = [f"the planner failed on this option ({type(exc).__name__}: {exc}); " + got["notes"][0]]
            return got
        got.setdefault("source", "planner")
        return got
