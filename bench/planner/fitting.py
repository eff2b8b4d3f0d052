"""The service model of one option, fitted on its measurements: which model, on which requests.

In-process options (torch, ONNX Runtime) run static batches: service.py's model, fitted on their
queue-free batches (single-stream, batch), plus a prefill sweep's long prompts where there is one.
Served options (llama.cpp's gguf-* on llama-server, an http endpoint) batch continuously over
their --parallel slots: continuous.py's model, fitted on their closed-loop cells (single-stream,
clients=N) by served_fit.py; their rate points are left to check the prediction against.
"""
from __future__ import annotations

import numpy as np

from llmbench.planner.idle import fit_idle_penalty
from llmbench.planner.served import fit_records, served_fit_rows, served_records, served_row
from llmbench.planner.served_fit import fit_continuous
from llmbench.planner.service import ServiceModel, fit_rows, fit_service, observations_from_records, observations_from_rows
from llmbench.planner.sweep import observations as sweep_observations


def is_served(rows: list[dict], records: list) -> bool:
    """Whether an option (its summary rows and request records) was measured through a server."""
    return any(served_row(r) for r in rows) or served_records(records)


def option_rows(rows: list[dict], records: list) -> list[dict]:
    """The rows to fit on: a served option's closed-loop rows, else the queue-free ones (service.fit_rows)."""
    return served_fit_rows(rows) if is_served(rows, records) else fit_rows(rows)


def _sweep_facts(prefill_sweep: dict, overlap: list, scale: float) -> dict:
    return {"prompt_tokens": [p["prompt_tokens"] for p in prefill_sweep["points"]],
            "prefill_ms_median": [float(np.median(p["prefill_ms"])) for p in prefill_sweep["points"]],
            "overlap_prompt_tokens": [p["prompt_tokens"] for p in overlap], "scale_to_run": scale,
            "measured_at": prefill_sweep.get("measured_at"), "reused": prefill_sweep.get("reused"),
            "not_measured_over_budget": prefill_sweep.get("not_measured_over_budget") or []}


def _scale(service: ServiceModel, prefill_sweep: dict) -> tuple[list, float]:
    # The sweep contributes the shape, the run the level: scale by the median of run fit / sweep
    # over the overlap lengths (inside the run's measured range).
    overlap = [p for p in prefill_sweep["points"] if p.get("overlap")] or prefill_sweep["points"][:1]
    ratios = [service.prefill_ms(1, p["prompt_tokens"]) / t for p in overlap for t in p["prefill_ms"] if t > 0]
    return overlap, float(np.median(ratios)) if ratios else 1.0


def _open_loop_fit(records: list) -> ServiceModel:
    service = fit_continuous(records, source="request log (open-loop points only)")
    service.fit_notes.append("no closed-loop cell (single-stream, clients=N) measured: fitted on open-loop rate points, "
                             "whose TTFTs include waits for a free slot (pessimistic)")
    return service


def fit_option(rows: list[dict], records: list, prefill_sweep: dict | None = None) -> tuple[ServiceModel, list, dict | None]:
    """(service model, the records it was fitted on, prefill-sweep facts or None) for one option.

    `rows` are the option's rows to fit on (option_rows), `records` all its successful requests.
    """
    if is_served(rows, records):
        recs = fit_records(records)
        # Only open-loop points measured: fitted on them (their TTFTs include waits for a slot).
        service = fit_continuous(recs) if recs else _open_loop_fit(records)
        recs = recs or [r for r in records if r.ok]
        if prefill_sweep and prefill_sweep.get("points"):
            overlap, scale = _scale(service, prefill_sweep)
            service = fit_continuous(recs, sweep_observations(prefill_sweep, scale), "request log + prefill sweep")
            return service, recs, _sweep_facts(prefill_sweep, overlap, scale)
        return service, recs, None
    scenarios = {r.get("scenario") for r in rows}
    recs = [r for r in records if r.scenario in scenarios and r.point in {x.get("point") for x in rows}]
    if not recs:
        return fit_service(observations_from_rows(rows), "summary rows"), recs, None
    obs = observations_from_records(recs)
    service = fit_service(obs, "request log")
    facts = None
    if prefill_sweep and prefill_sweep.get("points"):
        overlap, scale = _scale(service, prefill_sweep)
        service = fit_service(obs + sweep_observations(prefill_sweep, scale), "request log + prefill sweep")
        facts = _sweep_facts(prefill_sweep, overlap, scale)
    service.idle_penalty = fit_idle_penalty(service, records)
    return service, recs, facts
