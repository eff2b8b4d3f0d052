"""From a recommendation document to the servers to run and the gateway aliases pointing at them.

Both deployment.yaml and gateway/litellm.yaml are views of this one list, so they cannot disagree.
"""
from __future__ import annotations

from llmbench.recommend.naming import env_name, short_model, slug

BASE_PORT = 8000  # placeholder servers: http://localhost:8000/v1, :8001, ... one per deployment
MAIN_ALIAS = "llmbench"


def served_name(o: dict) -> str:
    """The name a self-hosted OpenAI-compatible server would serve the option under."""
    if o["kind"] == "api":
        return o["model"]
    return slug(f"{short_model(o['model'])}-{o.get('variant') or ''}")


def _class_alias(cls: dict) -> str:
    head = cls["name"].split(" ")[0]
    return slug(f"{MAIN_ALIAS}-{head}-{cls['difficulty']}" if cls.get("difficulty") else f"{MAIN_ALIAS}-{head}")


def _per_token_costs(o: dict, cost_per_request: float | None) -> tuple[float, float]:
    # A self-hosted server costs time, not tokens: split a request's cost between its prompt
    # (prefill, ~TTFT) and its output (decode, the rest of E2EL), then per token of each.
    if o["kind"] == "api":
        p = o.get("prices") or {}
        return float(p.get("input_usd_per_1m") or 0) / 1e6, float(p.get("output_usd_per_1m") or 0) / 1e6
    if not cost_per_request:
        return 0.0, 0.0
    lat = o.get("latency") or {}
    ttft, e2el = (lat.get("ttft_ms") or {}).get("p50"), (lat.get("e2el_ms") or {}).get("p50")
    prefill = min(1.0, max(0.0, ttft / e2el)) if ttft and e2el else 0.0
    p_in, p_out = o.get("prompt_tokens_mean") or 0, o.get("output_tokens_mean") or 0
    if not p_in:
        prefill = 0.0
    if not p_out:
        return cost_per_request / p_in if p_in else 0.0, 0.0
    return (cost_per_request * prefill / p_in if p_in else 0.0), cost_per_request * (1 - prefill) / p_out


def _server(o: dict, role: str, plan: dict | None, load: float | None, port: int) -> dict:
    plan = plan or {}
    self_hosted = o["kind"] != "api"
    replicas = plan.get("replicas") if self_hosted else None
    if self_hosted and role == "fallback":
        replicas = 1  # standby; the plan's count is what absorbing all traffic would take
    sat = plan.get("saturation_rps") or o.get("throughput_req_s")
    capacity = sat * replicas if (sat and replicas) else None
    cost_month = plan.get("cost_per_month")
    if self_hosted and role == "fallback":
        cost_month = (plan.get("cost_per_hour") or 0) / max(1, plan.get("replicas") or 1) * 730.0 if plan.get("cost_per_hour") else None
    elif role == "fallback":
        cost_month = None  # an API fallback is paid per request it actually takes
    cpr = None
    if self_hosted and load and plan.get("cost_per_hour") is not None and role != "fallback":
        cpr = plan["cost_per_hour"] / (load * 3600.0)
    elif o.get("cost_per_1k_usd") is not None:
        cpr = o["cost_per_1k_usd"] / 1000.0
    c_in, c_out = _per_token_costs(o, cpr)
    tokens = (o.get("prompt_tokens_mean") or 0) + (o.get("output_tokens_mean") or 0)
    rpm = int(capacity * 60) if capacity else None
    return {
        "option": o["id"], "role": role, "kind": o["kind"], "model": o["model"], "variant": o.get("variant"),
        "device": o.get("device"), "hardware": o.get("hardware"), "served_name": served_name(o),
        "api_base": f"http://localhost:{port}/v1" if self_hosted else None,
        "api_key_env": env_name(served_name(o)) if self_hosted else (o.get("prices") or {}).get("api_key_env"),
        "litellm_model": f"openai/{served_name(o)}" if self_hosted else (o.get("prices") or {}).get("litellm_model") or o["model"],
        "replicas": replicas, "plan_replicas_full_load": plan.get("replicas") if role == "fallback" else None,
        "max_batch_size": o.get("batch_size") if self_hosted else None,
        "load_rps": load, "capacity_req_s": capacity,
        "expected_throughput_req_s": load if load is not None else capacity,
        "expected_output_tok_s": (load * (o.get("output_tokens_mean") or 0)) if load else None,
        "cost_per_month_usd": cost_month, "cost_per_request_usd": cpr,
        "input_cost_per_token": c_in, "output_cost_per_token": c_out,
        "rpm": rpm, "tpm": int(rpm * tokens) if rpm and tokens else None,
        "predicted": plan.get("predicted"), "quality": o.get("quality"), "quality_status": o.get("quality_status"),
        "aliases": [], "fallbacks": [],
    }


def servers(rec: dict) -> tuple[list[dict], dict[str, list[str]]]:
    """Each server (self-hosted deployment or API model) with the aliases that reach it, and
    the gateway's fallback map {alias: [fallback aliases]}."""
    opts = {o["id"]: o for o in rec["options"]}
    rps = rec["constraints"].get("rps")
    out: dict[str, dict] = {}

    def add(oid: str, alias: str, role: str, plan: dict | None, load: float | None) -> dict:
        if oid not in out:
            out[oid] = _server(opts[oid], role, plan, load, BASE_PORT + sum(1 for s in out.values() if s["kind"] != "api"))
        if alias not in out[oid]["aliases"]:
            out[oid]["aliases"].append(alias)
        return out[oid]

    classes = [e for e in rec["routing"]["classes"] if e.get("option")]
    chosen = rec["choice"].get("chosen") or rec["choice"].get("closest")
    fallbacks: dict[str, list[str]] = {}
    if rec["mode"] == "routing":
        for e in classes:
            alias = _class_alias(e["class"])
            add(e["option"], alias, "primary", rec["routing"]["plans"].get(e["option"]), rps * e["class"]["share"] if rps else None)
            fallbacks[alias] = e.get("fallbacks") or []
        main = classes[-1]  # the hardest class's option also meets the easier ones' SLO in practice
        out[main["option"]]["aliases"].append(MAIN_ALIAS)
        fallbacks[MAIN_ALIAS] = main.get("fallbacks") or []
    elif chosen:
        role = "primary" if rec["mode"] == "single" else "closest (meets no constraint set)"
        add(chosen, MAIN_ALIAS, role, opts[chosen].get("plan"), rps)
        fallbacks[MAIN_ALIAS] = [f for e in classes for f in (e.get("fallbacks") or []) if f != chosen][:2] or \
            [e["option"] for e in classes if e["option"] != chosen][:1]
    for alias, fbs in fallbacks.items():
        names = []
        for fid in dict.fromkeys(fbs):
            if fid not in opts:
                continue
            fb_alias = f"{MAIN_ALIAS}-fallback-{slug(served_name(opts[fid]))}"
            add(fid, fb_alias, "fallback", opts[fid].get("plan"), None)
            names.append(fb_alias)
        for s in out.values():
            if alias in s["aliases"]:
                s["fallbacks"] = sorted(set(s["fallbacks"]) | set(names))
        fallbacks[alias] = names
    return list(out.values()), {a: f for a, f in fallbacks.items() if f}
