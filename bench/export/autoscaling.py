"""The chosen autoscaling policy written where a user deploys from: deployment.yaml's `autoscaling:`
block and deploy/hpa-<name>.yaml (hpa.py).

deployment.yaml is edited as text: the block is appended at the end (an earlier one cut out first),
so every other byte, its header comment included, stays as `llmbench recommend` wrote it; the
result is read back and must equal the old document plus the block, or nothing is written.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from llmbench.export.hpa import METRIC, hpa_yaml, k8s_name, quantity, target_value
from llmbench.export.writer import DEPLOY_DIR
from llmbench.export.yamlio import dump
from llmbench.results import write_atomic

KEY = "autoscaling"
MARK = "# autoscaling: the policy `llmbench plan --trace FILE --autoscale` chose (re-running it replaces this block)"
_TOP = re.compile(r"^[^\s#-]")  # a top-level key of a block-style YAML mapping


def block(plan: dict, deployment: dict | None, hpa: str | None) -> dict | None:
    """The `autoscaling:` block for the plan's chosen policy (None when no policy met the attainment)."""
    p = plan.get("autoscale")
    if p is None:
        return None
    fixed = p["min_replicas"] == p["max_replicas"]
    out = {"deployment": (deployment or {}).get("served_name"), "option": (deployment or {}).get("option"),
           "model": plan["option"]["model"], "variant": plan["option"]["variant"],
           "kind": "fixed" if fixed else p["kind"], "min_replicas": p["min_replicas"], "max_replicas": p["max_replicas"]}
    if not fixed and p["kind"] == "tokens":
        out.update(token_budget_tokens_per_s=p["token_budget"], token_window_s=p["window_s"], headroom=p["headroom"],
                   metric=METRIC["tokens"])
    elif not fixed and p["kind"] == "schedule":
        out.update(token_budget_tokens_per_s=p["token_budget"], headroom=p["headroom"], schedule=p.get("schedule"),
                   schedule_note="replicas by time from the trace's start; apply with a CronJob or KEDA's cron scaler, "
                                 "not an HPA (learnt from this trace: an optimistic bound for a repeating profile)")
    elif not fixed:
        out.update(depth_target_requests=p["depth_target"], slots_per_replica=plan["option"]["max_batch"], metric=METRIC["queue"])
    out.update(interval_s=p["interval_s"], cooldown_s=p["cooldown_s"], cold_start_s=plan["cold_start_s"],
               cold_start_source=plan["cold_start_source"],
               trace=(plan.get("load") or {}).get("path"), attainment_target=plan["attainment_target"],
               slo=plan["slo"], simulated_slo_attainment=p["slo_attainment"], cost_per_month_usd=p["cost_per_month_usd"],
               fixed_replicas=plan["fixed"]["replicas"], fixed_cost_per_month_usd=plan["fixed"]["cost_per_month_usd"],
               plan=plan.get("plan_file"), hpa=hpa,
               hpa_note=None if hpa else ("min = max: a fixed count needs no autoscaler" if fixed
                                          else "a schedule scales by the clock, not on a metric: no HPA written"
                                          if p["kind"] == "schedule" else "no deployment.yaml deployment of this option: no HPA written"))
    batch = (deployment or {}).get("max_batch_size")
    if batch is not None and batch != plan["option"]["max_batch"]:
        # recommend sized the deployment at its own load; the policy was simulated at the trace plan's batch.
        out["batch_note"] = (f"simulated with {plan['option']['max_batch']} request(s) per replica at once (the trace plan's "
                             f"batch); this deployment serves {batch}: serve it at {plan['option']['max_batch']} for these figures")
    return out


def strip_block(text: str) -> str:
    """deployment.yaml's text without an autoscaling block (its marker comment included)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip("\n") == MARK or ln.startswith(f"{KEY}:")), None)
    if start is None:
        return text
    body = start + 1 if lines[start].startswith(f"{KEY}:") else start + 2
    end = next((i for i in range(body, len(lines)) if _TOP.match(lines[i])), len(lines))
    return "".join(lines[:start] + lines[end:])


def with_block(text: str, autoscaling: dict | None) -> str:
    """deployment.yaml's text with `autoscaling` as its last key (none: the old block removed)."""
    base = strip_block(text)
    if base and not base.endswith("\n"):
        base += "\n"
    new = base if autoscaling is None else base + MARK + "\n" + dump({KEY: autoscaling})
    old, got = yaml.safe_load(base) or {}, yaml.safe_load(new) or {}
    if {k: v for k, v in got.items() if k != KEY} != {k: v for k, v in old.items() if k != KEY} or got.get(KEY) != autoscaling:
        raise RuntimeError("deployment.yaml: adding the autoscaling block would change other keys (a bug)")
    return new


def deployment_of(dep: dict, plan: dict) -> dict | None:
    """deployment.yaml's entry serving the plan's option (its model and variant; the primary and the
    planned batch size first), or None."""
    o = plan["option"]
    cands = [d for d in dep.get("deployments") or [] if d.get("kind") != "sidecar"
             and (d.get("model"), d.get("variant")) == (o["model"], o["variant"])]
    cands.sort(key=lambda d: (d.get("role") != "primary", d.get("max_batch_size") != o["max_batch"]))
    return cands[0] if cands else None


def hpa_name(d: dict) -> str:
    """The Kubernetes name for a deployment: its start script's (deploy/serve-<name>.sh), else its served name."""
    script = ((d.get("serving") or {}).get("start") or {}).get("script") or ""
    m = re.fullmatch(r"deploy/serve-(.+)\.sh", script)
    return k8s_name(m.group(1) if m else str(d.get("served_name") or d.get("option")))


def emit(folder: Path, plan: dict) -> dict:
    """Write the chosen policy into folder's deployment.yaml and deploy/hpa-<name>.yaml where there is
    a deployment.yaml; what was written and the block (also returned when nothing was written)."""
    dep_path, deploy = Path(folder) / "deployment.yaml", Path(folder) / DEPLOY_DIR
    if not dep_path.is_file():
        return {"autoscaling": block(plan, None, None), "deployment_yaml": None, "hpa": None,
                "note": "no deployment.yaml in the run folder (run `llmbench recommend` first): the block is here only"}
    text = dep_path.read_text()
    d = deployment_of(yaml.safe_load(text) or {}, plan)
    p, hpa_rel, manifest = plan.get("autoscale"), None, None
    if d is not None and p is not None and p["min_replicas"] < p["max_replicas"] and p["kind"] != "schedule":
        name = hpa_name(d)
        manifest, hpa_text = hpa_yaml(p, name, plan)
        hpa_rel = f"{DEPLOY_DIR}/hpa-{name}.yaml"
        write_atomic(Path(folder) / hpa_rel, hpa_text)
    for old in deploy.glob("hpa-*.yaml") if deploy.is_dir() else []:  # an earlier choice's autoscaler
        if f"{DEPLOY_DIR}/{old.name}" != hpa_rel:
            old.unlink(missing_ok=True)
    b = block(plan, d, hpa_rel) if d is not None else None
    write_atomic(dep_path, with_block(text, b))
    note = None if d is not None else (f"deployment.yaml deploys no {plan['option']['model']} {plan['option']['variant']}: "
                                       "nothing written there (an earlier autoscaling block removed)")
    return {"autoscaling": b if d is not None else block(plan, None, None), "deployment_yaml": str(dep_path) if d else None,
            "hpa": str(Path(folder) / hpa_rel) if hpa_rel else None, "hpa_manifest": manifest, "note": note}


__all__ = ["KEY", "MARK", "block", "deployment_of", "emit", "hpa_name", "quantity", "strip_block", "target_value", "with_block"]
