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
SIDECAR_UTILISATION = 0.8  # embedder and compressor machines are sized to be this busy
# How the gateway picks a replica, and the planner policy that models it: the exporter writes the
# strategy, the planner plans with the policy, so the replica counts hold behind that gateway.
GATEWAY_STRATEGY = {"random": "simple-shuffle", "least-busy": "least-busy", "jsq": "least-busy"}
DEFAULT_POLICY = "random"  # LiteLLM's default strategy, simple-shuffle


def plan_policy(data: RunData) -> tuple[str, str, str]:
    """(planner policy, LiteLLM routing_strategy, why): the run config's plan.policy where LiteLLM
    has a matching strategy, else random picks (simple-shuffle), which every LiteLLM proxy does."""
    want = (data.config_section("plan").get("policy") or DEFAULT_POLICY)
    if want in GATEWAY_STRATEGY:
        return want, GATEWAY_STRATEGY[want], f"plan.policy {want!r} of the run config" if data.config_section("plan").get("policy") else "default"
    return DEFAULT_POLICY, GATEWAY_STRATEGY[DEFAULT_POLICY], f"plan.policy {want!r} has no LiteLLM strategy: planned with random picks"
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

    def __init__(self, data: RunData, slos: list[SLO], include_failed: bool = False):
        self.data, self.slos, self.include_failed = data, slos, include_failed
        self.policy, self.strategy, self.policy_source = plan_policy(data)
        self.hardware = hardware_of(data)
        self.plan_option = _planner()
        self._cache: dict[tuple, dict] = {}

    def rows_for(self, option: Option) -> list[dict]:
        return [r for r in self.data.rows if r.get("model") == option.model and r.get("variant") == option.variant and not r.get("error")
                and (self.include_failed or not (r.get("failed") or r.get("partial_failure")))]

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
        # Requests served from cache never reach a replica (per request, not per labelled lookup).
        load = rps * (1.0 - ((option.cache or {}).get("served_from_cache_rate") or 0.0))
        key = (option.model, option.variant, option.batch_size, round(load, 9), getattr(only, "name", None))
        if key not in self._cache:
            self._cache[key] = self._plan_self_hosted(option, load, only)
        plan = dict(self._cache[key])
        plan["load_rps"] = load
        if option.compression:
            plan["notes"] = list(plan.get("notes") or []) + ["planned on the uncompressed service times"]
        return self._with_sidecars(plan, option, rps)

    def _with_sidecars(self, plan: dict, option: Option, rps: float) -> dict:
        """The plan plus the compute beside the servers (embedder, compressor), each sized for the
        whole load at SIDECAR_UTILISATION: its replicas and cost are in the plan's monthly cost."""
        if not option.sidecars:
            return plan
        usd_h = self.hardware.usd_per_hour * self.hardware.devices
        side = []
        for sc in option.sidecars:
            busy = rps * sc["share_of_requests"] * sc["busy_ms_per_request"] / 1e3  # machine-seconds per second
            n = math.ceil(busy / SIDECAR_UTILISATION) if busy > 0 else 0
            side.append({**sc, "load_rps": rps * sc["share_of_requests"], "replicas": n, "utilisation": busy / n if n else 0.0,
                         "cost_per_hour": n * usd_h, "cost_per_month": n * usd_h * HOURS_PER_MONTH})
        plan["server_cost_per_month"] = plan.get("cost_per_month")
        if plan.get("cost_per_month") is not None:
            plan["cost_per_month"] = plan["cost_per_month"] + sum(s["cost_per_month"] for s in side)
            plan["cost_per_hour"] = (plan.get("cost_per_hour") or 0.0) + sum(s["cost_per_hour"] for s in side)
        plan["sidecars"] = side
        return plan

    def one_replica(self, option: Option, load: float) -> dict:
        """The planner's prediction for exactly one replica of `option` at `load` (a standby)."""
        key = ("one", option.model, option.variant, option.batch_size, round(load, 9))
        if key not in self._cache:
            self._cache[key] = self._plan_self_hosted(option, load, None, max_replicas=1)
        return dict(self._cache[key])

    def _plan_self_hosted(self, option: Option, load: float, only=None, max_replicas: int | None = None) -> dict:
        if self.plan_option is None:
            return _estimate(option, load, self.hardware.usd_per_hour * self.hardware.devices)
        if load <= 0:
            return {"replicas": 0, "cost_per_hour": 0.0, "cost_per_month": 0.0, "notes": ["every request is a cache hit"], "source": "planner"}
        # A class plans on its requests' lengths, fitted on whole measured batches (planner prompt_filter).
        records = [r for r in self.data.records if r.model == option.model and r.variant == option.variant]
        try:
            got = dict(self.plan_option(self.rows_for(option), self.hardware, self.slos, rps=load, max_batch=option.batch_size,
                                        records=records, policy=self.policy, prompt_filter=None if only is None else only.holds,
                                        **({"max_replicas": max_replicas} if max_replicas else {})))
        except Exception as exc:  # one option the planner cannot fit must not sink the others
            got = _estimate(option, load, self.hardware.usd_per_hour * self.hardware.devices)
            got["notes"] = [f"the planner failed on this option ({type(exc).__name__}: {exc}); " + got["notes"][0]]
            return got
        got.setdefault("source", "planner")
        return got


def standby_plan(planner: Planner, option: Option, rps: float | None) -> dict | None:
    """A one-replica standby of `option` for a deployment at `rps`: its cost, and its predicted
    latency at the load one replica carries (SIDECAR_UTILISATION of its saturation, or all of
    `rps` if less), never the full load's plan beside a replica count of one."""
    if rps is None:
        return None
    if option.kind == "api":
        return {"replicas": 0, "load_rps": None, "cost_per_hour": None, "cost_per_month": None, "predicted": None,
                "notes": ["API standby: paid per request it takes, nothing while idle"]}
    full = planner.plan(option, rps) or {}
    one = full.get("saturation_rps") or option.throughput_req_s
    load = min(rps, SIDECAR_UTILISATION * one) if one else rps
    at = planner.one_replica(option, load) if planner.plan_option else (planner.plan(option, load) or {})
    usd_h = planner.hardware.usd_per_hour * planner.hardware.devices
    return {"option": option.id, "replicas": 1, "load_rps": load, "cost_per_hour": usd_h, "cost_per_month": usd_h * HOURS_PER_MONTH,
            "predicted": at.get("predicted"), "meets_slo": at.get("meets_slo"), "plan_replicas_full_load": full.get("replicas"),
            "notes": [f"one-replica standby, predicted at {load:.4g} req/s (what one replica carries); taking all "
                      f"{rps:g} req/s would need {full.get('replicas')} replica(s)"]}
