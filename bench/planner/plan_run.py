"""Plan every measured option of a results folder (or one) and write plan.json: shared by the command and the stage."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.hardware_profiles import HardwareProfile
from llmbench.planner.capacity import DEFAULT_MAX_REPLICAS, HOURS_PER_MONTH, plan_option
from llmbench.planner.trace import Trace, load_trace
from llmbench.planner.validate import rate_max_batch, validate_option
from llmbench.results import RunDir, write_json
from llmbench.slo import SLO

CHECKED_IN = "BENCHMARKS.md"


def _options(rows: list[dict], model: str | None, variant: str | None) -> dict[tuple[str, str], list[dict]]:
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by[(r["model"], r["variant"])].append(r)
    if not by:
        raise BadInput("the results folder's summary has no rows to plan from")
    picked = {k: v for k, v in by.items() if (model is None or model in (k[0], k[0].removeprefix("card:")))
              and (variant is None or variant == k[1])}
    if not picked:
        known = ", ".join(f"{m} {v}" for m, v in by)
        raise BadInput(f"no measured option matches --model {model} --variant {variant} (measured: {known})")
    return picked


def plan_run(run_dir: RunDir, slos: list[SLO], rps: float | None = None, trace: str | Path | Trace | None = None,
             model: str | None = None, variant: str | None = None, max_replicas: int = DEFAULT_MAX_REPLICAS,
             max_batch: int | None = None, policy: str = "jsq", goodput: float | None = None,
             write: bool = True) -> dict:
    """The plan document for a results folder; written to plan.json when `write`."""
    if (rps is None) == (trace is None):
        raise BadInput("give exactly one of --rps or --trace")
    if max_replicas < 1:
        raise BadInput(f"--max-replicas must be at least 1, got {max_replicas}")
    if goodput is not None and not 0 < goodput <= 1:
        raise BadInput(f"--goodput is a share of requests in (0, 1], got {goodput}")
    meta = run_dir.read_json("run.json")
    summary = run_dir.read_json("summary.json")
    hardware = HardwareProfile(**meta["hardware_profile"])
    tr = load_trace(trace) if isinstance(trace, (str, Path)) else trace
    records = run_dir.records()
    batches = rate_max_batch(meta.get("config") or {})
    options = []
    for (m, v), rows in _options(summary.get("rows") or [], model, variant).items():
        recs = [r for r in records if r.model == m and r.variant == v]
        entry: dict = {"model": m, "variant": v}
        if all(r.get("error") for r in rows):
            options.append({**entry, "error": "every measurement of this option failed"})
            continue
        validation = validate_option(recs, batches)
        try:
            entry.update(plan_option(rows, hardware, slos, rps=rps, trace=tr, max_batch=max_batch, records=recs,
                                     max_replicas=max_replicas, goodput=goodput, policy=policy, validation=validation))
        except BadInput as exc:
            entry["error"] = str(exc)
        if validation is None:
            entry["notes"] = [n for n in entry.get("notes", []) if not n.startswith("prediction error")] + [
                f"prediction error: this run has no concurrency rate points to check against; the planner's check "
                f"on this machine is recorded in {CHECKED_IN}"]
        options.append(entry)
    planned = [o for o in options if "error" not in o]
    meeting = [o for o in planned if o["meets_slo"]]
    best = min(meeting, key=lambda o: o["cost_per_month"]) if meeting else None
    doc = {
        # The headline first: readers (and checks) that take the first figure get the answer.
        "best": None if best is None else {k: best[k] for k in ("model", "variant", "replicas", "max_batch", "cost_per_hour", "cost_per_month")}
                | {"e2el_p95_ms": best["predicted"]["e2el_ms"].get("p95"), "ttft_p95_ms": best["predicted"]["ttft_ms"].get("p95")},
        "verdict": _verdict(planned, best, slos),
        "run_id": meta.get("run_id"),
        "hardware": hardware.name,
        "usd_per_hour_per_replica": hardware.usd_per_hour * hardware.devices,
        "load": planned[0]["load"] if planned else ({"kind": "trace", **tr.describe()} if tr else {"kind": "poisson", "offered_rps": rps}),
        "slo": [str(s) for s in slos],
        "goodput": goodput,
        "month_hours": HOURS_PER_MONTH,
        "measured_on": _machine(meta),
        "options": options,
        "prediction": "latencies are a queueing model's prediction from service times measured on this machine, "
                      "not measurements; see each option's prediction_error and notes",
    }
    if write:
        write_json(run_dir.path / "plan.json", doc)
    return doc


def _machine(meta: dict) -> str:
    m = (meta.get("environment") or {}).get("machine") or {}
    gpus = ", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in m.get("gpus") or [])
    cpu = f"{m.get('cpu_model', 'unknown CPU')} ({m.get('cpu_cores_logical', '?')} logical cores)"
    return f"{meta.get('device', 'cpu')}: {gpus or cpu}"


def _verdict(planned: list[dict], best: dict | None, slos: list[SLO]) -> str:
    if best is not None:
        return (f"cheapest option meeting {', '.join(map(str, slos)) or 'the load'}: {best['model']} {best['variant']} "
                f"with {best['replicas']} replica(s), ${best['cost_per_month']:,.2f}/month")
    if not planned:
        return "no option could be planned"
    binding = sorted({str(o["binding"]) for o in planned if o.get("binding")})
    return f"no measured option meets the SLO at this load within the replica cap (binding: {', '.join(binding) or 'unknown'})"
