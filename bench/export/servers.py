"""From a recommendation document to the servers to run and the gateway aliases pointing at them.

Both deployment.yaml and gateway/litellm.yaml are views of this one list, so they cannot disagree.
"""
from __future__ import annotations

from llmbench.export.launch import BASE_PORT, launch
from llmbench.planner.capacity import replica_budget_rps
from llmbench.recommend.naming import env_name, short_model, slug

MAIN_ALIAS = "llmbench"


def served_name(o: dict) -> str:
    """The name a self-hosted OpenAI-compatible server would serve the option under (unique per
    candidate: the option's label is, see naming.model_labels)."""
    if o["kind"] == "api":
        return o["model"]
    endpoint = (o.get("engine") or {}).get("model") if (o.get("engine") or {}).get("name") == "endpoint" else None
    if endpoint:
        return endpoint  # the name the endpoint itself serves, as measured
    return slug(f"{o.get('label') or short_model(o['model'])}-{o.get('variant') or ''}")


def class_alias(cls: dict) -> str:
    return slug(f"{MAIN_ALIAS}-{cls['name'].split(' ')[0]}")


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


def _server(o: dict, role: str, plan: dict | None, load: float | None, first_port: int) -> dict:
    plan = plan or {}
    self_hosted = o["kind"] != "api"
    replicas = plan.get("replicas") if self_hosted else None
    sat = plan.get("saturation_rps") or o.get("throughput_req_s")
    capacity = sat * replicas if (sat and replicas) else None
    # A primary's servers without its sidecars (those are deployments of their own); a standby's
    # plan is already its one replica (recommend.planning.standby_plan); an API fallback is paid
    # per request it takes.
    cost_month = plan.get("server_cost_per_month", plan.get("cost_per_month")) if self_hosted else (
        plan.get("cost_per_month") if role != "fallback" else None)
    side_h = sum(sc.get("cost_per_hour") or 0.0 for sc in plan.get("sidecars") or [])
    server_h = None if plan.get("cost_per_hour") is None else plan["cost_per_hour"] - side_h
    cpr = None
    if self_hosted and load and server_h is not None:
        cpr = server_h / (load * 3600.0)  # at the load this deployment takes (its classes' shares summed)
    elif o.get("cost_per_1k_usd") is not None:
        cpr = o["cost_per_1k_usd"] / 1000.0
    c_in, c_out = _per_token_costs(o, cpr)
    tokens = (o.get("prompt_tokens_mean") or 0) + (o.get("output_tokens_mean") or 0)
    # The gateway's budget: what the replicas carry at the SLO, not their saturation, so that the proxy
    # moves load elsewhere (or refuses it) before a replica is past the latency it was planned for.
    budget_rps = replica_budget_rps({**plan, "saturation_rps": sat})[0] if self_hosted else None
    rpm = int(round(budget_rps * replicas * 60, 6)) if budget_rps and replicas else None  # rounded: no 47.999... -> 47
    out = {
        "option": o["id"], "role": role, "kind": o["kind"], "model": o["model"], "variant": o.get("variant"),
        "device": o.get("device"), "hardware": o.get("hardware"), "served_name": served_name(o),
        "api_key_env": ((o.get("engine") or {}).get("api_key_env") or env_name(served_name(o))) if self_hosted
        else (o.get("prices") or {}).get("api_key_env"),
        "litellm_model": f"openai/{served_name(o)}" if self_hosted else (o.get("prices") or {}).get("litellm_model") or o["model"],
        "replicas": replicas, "plan_replicas_full_load": plan.get("plan_replicas_full_load") if role == "fallback" else None,
        "max_batch_size": o.get("batch_size") if self_hosted else None,
        "load_rps": load, "capacity_req_s": capacity,
        "expected_throughput_req_s": load if load is not None else capacity,
        "expected_output_tok_s": (load * (o.get("output_tokens_mean") or 0)) if load else None,
        "cost_per_month_usd": cost_month, "cost_per_request_usd": cpr,
        "input_cost_per_token": c_in, "output_cost_per_token": c_out,
        "budget_rps": budget_rps * replicas if budget_rps and replicas else None,
        "rpm": rpm, "tpm": int(rpm * tokens) if rpm and tokens else None,
        "predicted": plan.get("predicted"), "quality": o.get("quality"), "quality_status": o.get("quality_status"),
        "notes": [n for n in plan.get("notes") or [] if role == "fallback"][:1] or None,
        "sidecars": plan.get("sidecars") or [], "aliases": [], "fallbacks": [], "plan_max_batch": plan.get("max_batch"), "plan_parallel": plan.get("parallel"),
    }
    if self_hosted:
        out["launch"] = launch(out, o, first_port)
        out["api_base"] = (out["launch"]["api_bases"] or [None])[0]
    return out


def sidecar_deployments(srv: list[dict]) -> list[dict]:
    """The compute beside the primaries (semantic-cache embedder, prompt compressor) as deployments."""
    out = []
    for s in srv:
        for sc in s.get("sidecars") or []:
            out.append({"option": s["option"], "role": sc["role"], "kind": "sidecar", "hardware": s.get("hardware"),
                        "replicas": sc["replicas"], "load_rps": sc["load_rps"], "busy_ms_per_request": sc["busy_ms_per_request"],
                        "utilisation": sc["utilisation"], "cost_per_month_usd": sc["cost_per_month"]})
    return out


def deployment_total(rec: dict) -> float | None:
    """Monthly cost of everything deployment.yaml lists (primaries, sidecars, standbys); None if unknown."""
    srv, _ = servers(rec)
    costs = [d["cost_per_month_usd"] for d in srv + sidecar_deployments(srv) if d.get("cost_per_month_usd") is not None]
    return sum(costs) if costs else None


def servers(rec: dict) -> tuple[list[dict], dict[str, list[str]]]:
    """Each server (self-hosted deployment or API model) with the aliases that reach it, and
    the gateway's fallback map {alias: [fallback aliases]}."""
    opts = {o["id"]: o for o in rec["options"]}
    rps = rec["constraints"].get("rps")
    base = int((rec.get("deploy") or {}).get("base_port") or BASE_PORT)
    out: dict[str, dict] = {}

    def add(oid: str, alias: str, role: str, plan: dict | None, load: float | None) -> dict:
        if oid not in out:  # each deployment's replicas take the next free ports, in the order deployed
            used = sum(len((s.get("launch") or {}).get("ports") or []) for s in out.values())
            out[oid] = _server(opts[oid], role, plan, load, base + used)
        if alias not in out[oid]["aliases"]:
            out[oid]["aliases"].append(alias)
        return out[oid]

    classes = [e for e in rec["routing"]["classes"] if e.get("option")]
    chosen = rec["choice"].get("chosen") or rec["choice"].get("closest")
    fallbacks: dict[str, list[str]] = {}
    if rec["mode"] == "routing":
        share: dict[str, float] = {}
        for e in classes:  # a deployment taking several classes takes the sum of their shares
            share[e["option"]] = share.get(e["option"], 0.0) + e["class"]["share"]
        for e in classes:
            alias = class_alias(e["class"])
            add(e["option"], alias, "primary", rec["routing"]["plans"].get(e["option"]), rps * share[e["option"]] if rps else None)
            fallbacks[alias] = e.get("fallbacks") or []
        main = classes[-1]  # the longest prompts' option also serves the shorter ones within the SLO
        out[main["option"]]["aliases"].append(MAIN_ALIAS)
        fallbacks[MAIN_ALIAS] = main.get("fallbacks") or []
    elif chosen and chosen in opts:
        role = "primary" if rec["mode"] == "single" else "closest (meets no constraint set)"
        add(chosen, MAIN_ALIAS, role, opts[chosen].get("plan"), rps)
        fallbacks[MAIN_ALIAS] = opts[chosen].get("fallbacks") or []
    standbys = rec.get("standbys") or {}
    for alias, fbs in fallbacks.items():
        names = []
        for fid in dict.fromkeys(fbs):
            if fid not in opts:
                continue
            fb_alias = f"{MAIN_ALIAS}-fallback-{slug(served_name(opts[fid]))}"
            sb = standbys.get(fid) or {}
            add(fid, fb_alias, "fallback", sb, sb.get("load_rps"))
            names.append(fb_alias)
        for s in out.values():
            if alias in s["aliases"]:
                s["fallbacks"] = sorted(set(s["fallbacks"]) | set(names))
        fallbacks[alias] = names
    return list(out.values()), {a: f for a, f in fallbacks.items() if f}
