"""deployment.yaml: what to run, per deployment (model, variant, device, replicas, batch, throughput)."""
from __future__ import annotations

from llmbench.export.launch import command_line
from llmbench.export.scripts import script_names
from llmbench.export.servers import servers, sidecar_deployments
from llmbench.export.yamlio import dump

_KEYS = ("option", "role", "aliases", "kind", "model", "variant", "device", "hardware", "served_name", "api_base",
         "replicas", "plan_replicas_full_load", "max_batch_size", "load_rps", "capacity_req_s", "expected_throughput_req_s",
         "expected_output_tok_s", "cost_per_month_usd", "cost_per_request_usd", "predicted", "quality", "quality_status", "notes")
_LAUNCH = ("measured", "version", "gguf", "parallel", "ctx_size", "threads", "max_num_seqs", "endpoint", "ports", "api_bases", "reason")


def _engine(s: dict, script: str | None) -> dict:
    """How this deployment is served: the engine, whether that is what was measured, and how to start it."""
    la = s.get("launch") or {}
    doc = {"engine": la.get("engine"), **{k: la[k] for k in _LAUNCH if la.get(k) not in (None, [], {})}}
    if la.get("engine") == "vllm":
        doc["measured"] = False
        doc["note"] = f"not measured here: {la.get('note')}" if la.get("note") else "not measured here"
    if la.get("commands"):
        doc["start"] = {"script": f"deploy/{script}" if script else None, "commands": [command_line(c) for c in la["commands"]]}
    return doc


def not_deployable(rec: dict) -> list[dict]:
    """Measured options no engine serves (they stay measurements): each with its reason."""
    return [{"option": o["id"], "reason": o.get("not_servable_reason")} for o in rec["options"]
            if not o.get("servable", True) and not o.get("base_id")]


_BALANCING = {
    "simple-shuffle": "the gateway picks a replica at random per request; the replicas were planned for random picks",
    "least-busy": "the gateway sends each request to the replica with the fewest requests in flight (per proxy "
                  "instance); the replicas were planned for join-shortest-queue, which that is",
}


def deployment_doc(rec: dict) -> dict:
    """The deployment document (plain data; dumped to YAML by `deployment_yaml`).

    total_cost_per_month_usd is every deployment listed: primaries, their sidecars (embedder,
    compressor) and the one-replica standbys; API models count only where they are a primary.
    """
    srv, fallbacks = servers(rec)
    side = sidecar_deployments(srv)
    scripts = script_names(srv)
    deps = [{**{k: s[k] for k in _KEYS if s.get(k) is not None}, **({"serving": _engine(s, scripts.get(s["option"]))} if s.get("launch") else {})}
            for s in srv] + side
    total = [d["cost_per_month_usd"] for d in deps if d.get("cost_per_month_usd") is not None]
    gw = rec.get("gateway_routing") or {}
    return {
        "run_id": rec["run_id"], "mode": rec["mode"], "answer": rec["choice"]["answer"],
        "target_rps": rec["constraints"].get("rps"), "rps_source": rec["constraints"].get("rps_source"),
        "slo": rec["constraints"].get("slo"), "total_cost_per_month_usd": sum(total) if total else None,
        "load_balancing": {"gateway_strategy": gw.get("litellm_strategy"), "planned_with": gw.get("planner_policy"),
                           "source": gw.get("source"), "note": _BALANCING.get(gw.get("litellm_strategy"), "")} if gw else None,
        "gateway": rec.get("gateway_sizing"),
        "base_port": (rec.get("deploy") or {}).get("base_port"),
        "deployments": deps, "fallbacks": fallbacks, "not_deployable": not_deployable(rec),
    }


def deployment_yaml(rec: dict) -> str:
    """deployment.yaml's text, with a header saying how to read it."""
    header = (f"llmbench deployment plan for run {rec['run_id']} ({rec['mode']}).\n"
              "replicas: servers of this option on consecutive ports (serving.ports), each one entry of the gateway;\n"
              "serving.start: the exact command per replica and the script that runs them all (deploy/serve-*.sh).\n"
              "serving.measured: false means this engine was not measured here (vLLM on a GPU: the run timed torch).\n"
              "not_deployable: measured options no engine serves as an OpenAI-compatible server (measurements only).\n"
              "Fallback self-hosted deployments are one-replica standbys, predicted at the load one replica\n"
              "carries; plan_replicas_full_load is what absorbing all of the traffic would take. Sidecars\n"
              "(embedder, compressor) are sized for the whole load. total_cost_per_month_usd counts them all.\n"
              "gateway: the LiteLLM proxy's own cores at target_rps, from the CPU a request `llmbench verify`\n"
              "measured (verify.json); the same for every option, so outside the total.")
    return dump(deployment_doc(rec), header)
