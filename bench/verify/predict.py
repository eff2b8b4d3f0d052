"""Predictions for a load other than the planned one (`--load RPS` or a trace).

The plan predicted its own load (Poisson at the planned rate). For another load, the planner's
own model of the deployment (fitted on the run's request log, as the plan was) is simulated on
exactly the requests verify sends to that deployment: the same arrivals and token lengths, the
deployed replicas and slots, the gateway's balancing policy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from llmbench.verify.load import Arrival
from llmbench.verify.spec import Deployment


class _RunCache:
    data = None


def _run(run_dir: Path):
    from llmbench.recommend.inputs import load_run

    if _RunCache.data is None or _RunCache.data.path != Path(run_dir):
        _RunCache.data = load_run(run_dir)
    return _RunCache.data


def fitted_service(run_dir: Path, dep: Deployment):
    """The planner's model of `dep`, fitted on the run's rows and records as the plan was; None without rows."""
    from llmbench.planner.fitting import fit_option
    from llmbench.planner.service import fit_rows

    data = _run(run_dir)
    rows = fit_rows([r for r in data.rows if r.get("model") == dep.model and r.get("variant") == dep.variant
                     and not r.get("error")])
    records = [r for r in data.records if r.model == dep.model and r.variant == dep.variant and r.ok]
    return fit_option(rows, records, None)[0] if rows else None


def requests_of(arrivals: list[Arrival]):
    """The planner's Requests for a schedule: its arrival times and token lengths."""
    from llmbench.planner.queue import Requests

    return Requests(np.array([a.at for a in arrivals]), np.array([len(a.prompt.ids) for a in arrivals], float),
                    np.array([max(1, a.prompt.output_tokens) for a in arrivals]))


def predict_schedule(run_dir: Path, dep: Deployment, arrivals: list[Arrival], strategy: str | None,
                     service=None) -> tuple[dict | None, str]:
    """(predicted figures as the plan writes them, how) for `arrivals` sent to `dep`; (None, why) if it cannot.
    `service`: the model to simulate (refit.py's); by default the one fitted on the run."""
    if len(arrivals) < 2:
        return None, "fewer than two requests: nothing to simulate"
    try:
        from llmbench.planner.capacity import prediction
        from llmbench.planner.queue import policy_for_strategy, simulate
        from llmbench.planner.search import check_slos

        service = service or fitted_service(run_dir, dep)
        if service is None:
            return None, f"no measured rows of {dep.option} to fit the planner's model on"
        sim = simulate(requests_of(arrivals), service, replicas=max(1, len(dep.replicas)), max_batch=dep.parallel,
                       policy=policy_for_strategy(strategy))
        # span_s: from the load's start to the last simulated answer, as the measured throughput counts it.
        # samples_ms: every simulated request, so that a routed plan's overall percentiles are the
        # pooled simulation's (compare.blend), not a mixture rebuilt from four percentiles each.
        pred = {**prediction(sim, check_slos(sim, [], None)), "span_s": float(arrivals[0].at + sim.window_s),
                "samples_ms": {"ttft": sim.ttft_ms, "e2el": sim.e2el_ms, "queue": sim.queue_ms}}
    except Exception as exc:  # noqa: BLE001 - no prediction is reported as such, the measurement still stands
        return None, f"the planner could not predict this load ({type(exc).__name__}: {str(exc)[:200]})"
    return pred, (f"the planner's model of {dep.option} simulated on the {len(arrivals)} requests sent to it "
                  f"({len(dep.replicas)} replica(s), {dep.parallel} slot(s) each)")
