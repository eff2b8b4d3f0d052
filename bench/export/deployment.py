"""deployment.yaml: what to run, per deployment (model, variant, device, replicas, batch, throughput)."""
from __future__ import annotations

from llmbench.export.servers import servers
from llmbench.export.yamlio import dump

_KEYS = ("option", "role", "aliases", "kind", "model", "variant", "device", "hardware", "served_name", "api_base",
         "replicas", "plan_replicas_full_load", "max_batch_size", "load_rps", "capacity_req_s", "expected_throughput_req_s",
         "expected_output_tok_s", "cost_per_month_usd", "cost_per_request_usd", "predicted", "quality", "quality_status")


def deployment_doc(rec: dict) -> dict:
    """The deployment document (plain data; dumped to YAML by `deployment_yaml`)."""
    srv, fallbacks = servers(rec)
    deps = [{k: s[k] for k in _KEYS if s.get(k) is not None} for s in srv]
    total = [s["cost_per_month_usd"] for s in srv if s.get("cost_per_month_usd") is not None]
    return {
        "run_id": rec["run_id"], "mode": rec["mode"], "answer": rec["choice"]["answer"],
        "target_rps": rec["constraints"].get("rps"), "rps_source": rec["constraints"].get("rps_source"),
        "slo": rec["constraints"].get("slo"), "total_cost_per_month_usd": round(sum(total), 2) if total else None,
        "deployments": deps, "fallbacks": fallbacks,
    }


def deployment_yaml(rec: dict) -> str:
    header = (f"llmbench deployment plan for run {rec['run_id']} ({rec['mode']}).\n"
              "replicas: servers of this option behind one load-balanced URL (api_base is a placeholder).\n"
              "Fallback self-hosted deployments are sized as a one-replica standby; plan_replicas_full_load\n"
              "is what absorbing all of the traffic would take.")
    return dump(deployment_doc(rec), header)
