"""`llmbench verify RUN --load TRACE --autoscale`: which deployment, which arrivals and which policy the
replay (autoscale_replay.py) carries out, and RUN/verify-autoscale.json.

The trace is scaled to the primary's share of the planned rate, as the plain `verify` scales it; the
policy's max_replicas is capped to the replicas this machine holds side by side (its cores over a
replica's threads), in the simulation as for real. The block's attainment target is what both
sides are judged against.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import yaml

from llmbench.engines.llamacpp.server import usable_cores
from llmbench.errors import BadInput
from llmbench.planner.autoscale import Knobs
from llmbench.results import write_json
from llmbench.slo import SLO, parse_slo
from llmbench.verify.load import tokenizer_for
from llmbench.verify.run import DEFAULT_DURATION_S, DEFAULT_TIMEOUT_S, LOG_DIR, parse_load, schedule
from llmbench.verify.spec import Deployment, read_spec


def read_policy(run_dir: Path, dep: Deployment, cap: int) -> tuple[Knobs, list[SLO], dict]:
    """(the policy's knobs with max_replicas capped to `cap`, its SLOs, the block); BadInput without one."""
    block = (yaml.safe_load((run_dir / "deployment.yaml").read_text()) or {}).get("autoscaling")
    if not block:
        raise BadInput(f"{run_dir / 'deployment.yaml'}: no autoscaling block: run `llmbench plan {run_dir} --trace FILE "
                       f"--autoscale` first")
    if block.get("option") not in (None, dep.option):
        raise BadInput(f"{run_dir / 'deployment.yaml'}: the autoscaling block is for {block.get('option')}, "
                       f"not the primary verify starts ({dep.option})")
    kind = "queue" if block["kind"] == "fixed" else block["kind"]
    knobs = Knobs(kind, int(block["min_replicas"]), int(block["max_replicas"]), float(block["interval_s"]),
                  float(block["cooldown_s"]), float(block.get("headroom") or 1.0), float(block["cold_start_s"] or 0.0),
                  window_s=float(block.get("token_window_s") or 60.0),
                  token_budget=float(block.get("token_budget_tokens_per_s") or 0.0),
                  depth_target=float(block.get("depth_target_requests") or 0.0))
    if knobs.max_replicas > cap:
        knobs = replace(knobs, max_replicas=cap, min_replicas=min(knobs.min_replicas, cap))
    slos = parse_slo(",".join(s.replace("<=", "=") for s in block.get("slo") or []), where="autoscaling.slo")
    return knobs, slos, block


def timeout_note(timeout_s: float, slos: list[SLO]) -> str | None:
    """What to say when the client gives up before the SLO's longest E2EL/TTFT limit (None when it does not)."""
    limit_ms = max((s.limit_ms for s in slos if s.metric in ("e2el", "ttft")), default=0.0)
    if timeout_s * 1e3 >= limit_ms:
        return None
    # A request given up at the timeout fails an SLO it might have met.
    return (f"--timeout {timeout_s:g} s is shorter than the SLO's {limit_ms / 1e3:g} s: requests given up at the timeout "
            "count as missing it; give --timeout above the SLO to judge by the SLO alone")


def verify_autoscale(run_dir: str | Path, load: str, duration_s: float = DEFAULT_DURATION_S,
                     timeout_s: float = DEFAULT_TIMEOUT_S, progress: Callable[[str], None] = lambda s: None) -> dict:
    """`verify --load TRACE --autoscale`: the deployment.yaml policy simulated and carried out with real
    replicas on the replayed trace (bench/verify/autoscale_replay.py); writes RUN/verify-autoscale.json."""
    from llmbench.verify.autoscale_replay import replay

    spec = read_spec(run_dir)
    rps, trace = parse_load(spec, load)
    if trace is None:
        raise BadInput(f"--autoscale replays a trace: give --load TRACE (got --load {load})")
    dep = next(d for d in sorted(spec.primaries, key=lambda d: -(d.load_rps or 0.0)) if d.startable)
    cores = usable_cores()
    cap = max(1, cores // (dep.threads or cores))  # the replicas this machine holds side by side
    knobs, slos, block = read_policy(spec.run_dir, dep, cap)
    tok = tokenizer_for(spec.model_ref(dep))
    seed = int((spec.meta.get("config") or {}).get("seed") or 0)
    share = (dep.load_rps or rps) / (sum(d.load_rps or 0.0 for d in spec.primaries) or rps)
    arrivals, load_doc = schedule(spec, rps * share, trace, duration_s, tok, seed, lambda alias: 1.0, fill_window=False)
    if len(arrivals) < 2:
        raise BadInput(f"--duration {duration_s:g} s of {trace} schedules fewer than two requests: give a longer duration")
    doc = {"run_id": spec.meta.get("run_id"), "deployment": dep.option, "load": load_doc, "duration_s": duration_s,
           **replay(spec.run_dir, dep, arrivals, knobs, slos, spec.strategy, tok, timeout_s, spec.run_dir / LOG_DIR, progress)}
    target = block.get("attainment_target")
    doc["attainment_target"] = target
    for side in ("simulated", "measured"):
        doc[side]["meets_target"] = None if target is None else bool(doc[side]["slo_attainment"] >= float(target))
    if timeout_note(timeout_s, slos):
        doc["timeout_note"] = timeout_note(timeout_s, slos)
    if knobs.max_replicas < int(block["max_replicas"]):
        doc["note"] = (f"max_replicas capped from {block['max_replicas']} to {knobs.max_replicas}: the replicas this machine "
                       "holds side by side; simulated with the same cap")
    write_json(spec.run_dir / "verify-autoscale.json", doc)
    return doc
