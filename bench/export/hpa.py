"""deploy/hpa-<name>.yaml: the chosen autoscaling policy as a Kubernetes HorizontalPodAutoscaler.

The manifest is autoscaling/v2 with one `Pods` metric: a tokens policy scales on the prompt +
output tokens per second each pod takes (`llmbench_tokens_per_second`, target AverageValue = the
per-replica token budget), a queue policy on the requests in flight per pod
(`llmbench_requests_in_flight`, target = the depth target). The HPA's desired count is
ceil(sum over pods / target), the simulated controller's ceil(load / budget). Every manifest is
checked before it is written: against the Kubernetes API's OpenAPI schema (kubernetes-validate,
when installed) and against the API server's own rules the schema cannot express (`api_rules`).
"""
from __future__ import annotations

import math
import re

from llmbench.export.yamlio import dump

METRIC = {"tokens": "llmbench_tokens_per_second", "queue": "llmbench_requests_in_flight"}
K8S_VERSION = "1.37"  # the newest API schema kubernetes-validate 1.37.0 ships
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class InvalidManifest(ValueError):
    """A manifest the Kubernetes API would reject."""


def k8s_name(text: str) -> str:
    """A DNS-1123 label (what a Deployment's name must be): lower-case, dashes, at most 63 chars."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower()))[:63].strip("-")
    return name or "llmbench"


def quantity(value: float) -> str:
    """A Kubernetes quantity string for a positive figure, to the milli-unit ('1234.5', '0.125')."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "0") else "0.001"


def target_value(policy: dict) -> float:
    """What one pod is given: the token budget (tokens/s) or the depth target (requests)."""
    return float(policy["token_budget"] if policy["kind"] == "tokens" else policy["depth_target"])


def hpa_doc(policy: dict, name: str) -> dict:
    """The HorizontalPodAutoscaler for `policy` (autoscale.py's figures) scaling Deployment `name`."""
    lo, hi = int(policy["min_replicas"]), int(policy["max_replicas"])
    interval, cooldown = math.ceil(policy["interval_s"]), math.ceil(policy["cooldown_s"])
    step = max(1, hi - lo)  # the simulation jumps straight to the desired count at a tick
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "llmbench"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": lo, "maxReplicas": hi,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": METRIC[policy["kind"]]},
                                                  "target": {"type": "AverageValue",
                                                             "averageValue": quantity(target_value(policy))}}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                            "policies": [{"type": "Pods", "value": step, "periodSeconds": interval}]},
                "scaleDown": {"stabilizationWindowSeconds": cooldown, "selectPolicy": "Max",
                              "policies": [{"type": "Pods", "value": step, "periodSeconds": interval}]},
            },
        },
    }


def api_rules(doc: dict) -> list[str]:
    """What the API server's validation (pkg/apis/autoscaling/validation) rejects beyond the schema."""
    bad = []
    spec = doc.get("spec") or {}
    if not _DNS_LABEL.match(str((doc.get("metadata") or {}).get("name", ""))):
        bad.append("metadata.name is not a DNS-1123 label")
    lo, hi = spec.get("minReplicas", 1), spec.get("maxReplicas", 0)
    if not isinstance(lo, int) or lo < 1:  # 0 only with the alpha HPAScaleToZero gate and an Object/External metric
        bad.append(f"spec.minReplicas must be >= 1, got {lo!r}")
    if not isinstance(hi, int) or hi < 1 or (isinstance(lo, int) and hi < lo):
        bad.append(f"spec.maxReplicas must be >= 1 and >= minReplicas, got {hi!r}")
    for i, m in enumerate(spec.get("metrics") or []):
        target = ((m.get("pods") or {}).get("target") or {}) if m.get("type") == "Pods" else {}
        if m.get("type") == "Pods" and (target.get("type") != "AverageValue" or not _positive(target.get("averageValue"))):
            bad.append(f"spec.metrics[{i}]: a Pods metric needs target type AverageValue with a positive averageValue")
    for way, rules in (spec.get("behavior") or {}).items():
        window = rules.get("stabilizationWindowSeconds", 0)
        if not 0 <= window <= 3600:
            bad.append(f"behavior.{way}.stabilizationWindowSeconds must be in 0..3600, got {window}")
        for p in rules.get("policies") or []:
            if not 1 <= p.get("periodSeconds", 0) <= 1800 or p.get("value", 0) < 1:
                bad.append(f"behavior.{way}.policies: periodSeconds in 1..1800 and value >= 1, got {p}")
    return bad


def _positive(q) -> bool:
    try:
        return float(q) > 0
    except (TypeError, ValueError):
        return False


def check(doc: dict) -> str:
    """Raise InvalidManifest unless `doc` passes the API server's rules and (when kubernetes-validate is
    installed) the Kubernetes API schema, strict: no unknown field; what it was checked against."""
    try:
        import kubernetes_validate
    except ImportError:
        kubernetes_validate = None
    checked = "the API server's rules only (kubernetes-validate is not installed: no schema check)"
    if kubernetes_validate is not None:  # the schema first: its type errors say more than the rules would
        try:
            version = kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(x) for x in e.absolute_path) or "the manifest"
            raise InvalidManifest(f"{where}: {e.message} (Kubernetes {e.version} API schema)") from None
        except kubernetes_validate.SchemaNotFoundError as e:
            raise InvalidManifest(e.message) from None
        checked = (f"the Kubernetes {version} API schema (kubernetes-validate {kubernetes_validate.__version__}, "
                   "strict) and the API server's rules")
    bad = api_rules(doc)
    if bad:
        raise InvalidManifest("; ".join(bad))
    return checked


def hpa_yaml(policy: dict, name: str, plan: dict) -> tuple[dict, str]:
    """(manifest, its YAML text with a header saying where every number came from); checked."""
    doc = hpa_doc(policy, name)
    checked = check(doc)
    tb = plan["token_budget"]
    if policy["kind"] == "tokens":
        what = (f"averageValue {quantity(target_value(policy))} tokens/s per pod = {tb['rate_rps']:.6g} req/s "
                f"({tb['rate_source']}) x {tb['tokens_per_request_mean']:.6g} prompt + output tokens per request "
                f"(the trace's mean) x headroom {policy['headroom']:g}; the simulation measured it over {policy['window_s']:g} s")
        metric = (f"{METRIC['tokens']}: prompt + output tokens per second at the pod, averaged over "
                  f"{policy['window_s']:g} s. From llama-server started with --metrics: rate(llamacpp:prompt_tokens_total"
                  f"[{policy['window_s']:g}s]) + rate(llamacpp:tokens_predicted_total[{policy['window_s']:g}s]) per pod")
    else:
        what = (f"averageValue {quantity(target_value(policy))} requests per pod = {policy['headroom']:g} x the replica's "
                f"{plan['option']['max_batch']} slot(s)")
        metric = (f"{METRIC['queue']}: requests queued or in service at the pod. From llama-server started with "
                  "--metrics: llamacpp:requests_processing + llamacpp:requests_deferred")
    cold = plan.get("cold_start_s")
    header = "\n".join([
        f"Kubernetes HorizontalPodAutoscaler for deployment {name}, written by llmbench plan --autoscale.",
        "NOT RUN HERE: there is no Kubernetes cluster on the measuring machine. Checked against " + checked + ".",
        f"Metric: {metric}.",
        "A metrics adapter (e.g. prometheus-adapter scraping the engine's /metrics, or the gateway's",
        "per-deployment counters) must export it through the custom.metrics.k8s.io API.",
        f"Where the numbers come from (plan {plan.get('plan_file') or 'plans/autoscale-*.json'}, simulated on trace "
        f"{(plan.get('load') or {}).get('path')}):",
        f"  minReplicas {policy['min_replicas']}, maxReplicas {policy['max_replicas']}: the cheapest policy swept that "
        f"meets {plan['attainment_target']:g} SLO attainment ({', '.join(plan['slo'])}); simulated "
        f"{policy['slo_attainment']:.4f}, ${policy['cost_per_month_usd']:,.2f}/month",
        f"  {what}",
        f"  scaleUp periodSeconds {math.ceil(policy['interval_s'])}: the policy's scaling interval (the simulation "
        "decides once per interval; the HPA itself evaluates every sync period, 15 s by default)",
        f"  scaleDown stabilizationWindowSeconds {math.ceil(policy['cooldown_s'])}: the policy's cool-down",
        f"  cold start {'not measured' if cold is None else f'{cold:.3g} s'} ({plan.get('cold_start_source')}): no HPA "
        "field; give the pod a readinessProbe on the engine's /health so a starting replica takes no traffic",
        "The HPA ignores ratios within 10% of the target (its default tolerance); the simulation did not.",
    ])
    return doc, dump(doc, header)


__all__ = ["InvalidManifest", "METRIC", "api_rules", "check", "hpa_doc", "hpa_yaml", "k8s_name", "quantity", "target_value"]
