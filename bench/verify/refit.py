"""The model's error apart from the plan's (`verify --refit`).

The plan's predictions rest on a model fitted on the run's measurements. On a machine whose speed
moves (a shared VM's decode went 3x slower between a run and its check, BENCHMARKS.md) a plan misses
by the machine's drift as much as by the model. With --refit, just before the load, verify measures
each primary deployment as the run measured it: closed loops of 1 client, then one client per slot,
on one of its replicas, straight to the server. It fits the planner's continuous-batching model on
those requests alone (served_fit, as the planner fits a run) and simulates exactly the requests the
load then sends. verify.json's `refit` holds that prediction against the same measurement: the
model's own error. `overall` keeps the plan's: the model's error plus the drift since the run.
A routed plan's deployments are measured side by side, as its load runs them, or in turn where the
load runs them in turn (scale.py).
"""
from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from llmbench.results import write_atomic
from llmbench.served.client import StreamClient, to_record
from llmbench.served.loop import run as run_loop
from llmbench.verify import compare as cmp
from llmbench.verify.load import SLOT_MARGIN, Arrival, LoadResult, make_backend
from llmbench.verify.spec import Deployment, VerifySpec

RUN_ID = "verify-refit"
LOG = "refit-requests.jsonl"  # in verify-logs/


async def _closed_loop(backend, prompts: list, clients: int, seconds: float, timeout_s: float) -> list[tuple]:
    """(result, prompt) of every request `clients` closed-loop clients completed in `seconds`."""
    client = StreamClient(clients, timeout_s)
    turn, out = itertools.count(), []
    until = time.perf_counter() + seconds

    async def one() -> None:
        while time.perf_counter() < until:
            prompt = prompts[next(turn) % len(prompts)]
            out.append((await backend.send(client, prompt), prompt))
    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(clients):
                tg.create_task(one())
    finally:
        await client.aclose()
    return out


async def _cells(backend, prompts: list, parallel: int, timeout_s: float, seconds: float) -> list[tuple[int, list]]:
    return [(n, await _closed_loop(backend, prompts, n, span, timeout_s))
            for n, span in ((1, seconds / 2), (parallel, seconds))]


def measure_cells(targets: list[tuple[Deployment, str, list]], tokenizer, timeout_s: float, seconds: float,
                  in_turn: bool = False) -> list[list]:
    """The request records of each (deployment, replica URL, prompts)'s two closed-loop cells: 1
    client for `seconds` / 2, then `parallel` clients for `seconds`; all deployments at once, each
    cell beside the others' same cell, or one deployment after another when the load runs them
    `in_turn`: each as the load will run it. Measured one at a time for a load that runs them side
    by side on the same cores, the long-prompt deployment was predicted 11-38% fast (BENCHMARKS.md)."""
    measure = lambda d, url, prompts: _cells(make_backend(url, d.served_name, tokenizer, timeout_s),  # noqa: E731
                                             prompts, d.parallel, timeout_s, seconds)

    async def every() -> list:
        return await asyncio.gather(*(measure(*t) for t in targets))
    measured = [run_loop(measure(*t)) for t in targets] if in_turn else run_loop(every())
    out = []
    for (d, _, _), cells in zip(targets, measured):
        ids, records = itertools.count(), []
        for clients, done in cells:
            ctx = SimpleNamespace(run_id=RUN_ID, model=d.model, variant=d.variant, scenario="concurrency",
                                  point=SimpleNamespace(label=f"clients={clients}"), next_id=lambda: next(ids),
                                  usd_per_second=0.0)
            records += [to_record(res, prompt, None, ctx) for res, prompt in done]
        out.append(records)
    return out


def refit_models(spec: VerifySpec, url_of: Callable[[str], list[str]], prompts: list, tokenizer, timeout_s: float,
                 log: Path, progress: Callable[[str], None], seconds: float, in_turn: bool = False) -> tuple[dict, dict]:
    """({option: the model fitted on its cells measured now}, {option: what was measured or why not});
    every request record measured goes to `log` (JSONL, as a run's requests.jsonl)."""
    from llmbench.planner.served import fit_records
    from llmbench.planner.served_fit import fit_continuous

    models, facts, targets = {}, {}, []
    for d in spec.primaries:
        urls = url_of(d.option)
        if not urls:
            facts[d.option] = {"skipped": "no replica of it was started"}
            continue
        fits = [p for p in prompts if not d.slot_tokens or len(p.ids) + p.output_tokens + SLOT_MARGIN <= d.slot_tokens]
        targets.append((d, urls[0], fits or prompts))
    if not targets:
        return models, facts
    how = " in turn" if in_turn else " side by side"
    progress(f"refit: {', '.join(d.option for d, _, _ in targets)}: closed loops of 1 client, then one per slot, for "
             f"{seconds / 2:g} + {seconds:g} s on one replica each{how if len(targets) > 1 else ''}")
    measured = measure_cells(targets, tokenizer, timeout_s, seconds, in_turn)
    write_atomic(log, "".join(r.model_dump_json() + "\n" for recs in measured for r in recs))
    for (d, _, _), recs in zip(targets, measured):
        ok = fit_records(recs)
        facts[d.option] = {"seconds": [seconds / 2, seconds], "requests": len(recs), "ok": len(ok), "records": str(log),
                           "side_by_side": [] if in_turn else [o.option for o, _, _ in targets if o is not d],
                           "cells": {f"clients={n}": sum(r.point == f"clients={n}" for r in ok) for n in (1, d.parallel)}}
        try:
            models[d.option] = fit_continuous(ok, source="verify's closed-loop cells, measured just before the load")
        except Exception as exc:  # noqa: BLE001 - no refit is reported as such, the plan's figures still stand
            facts[d.option]["skipped"] = f"no model could be fitted ({type(exc).__name__}: {str(exc)[:200]})"
            continue
        m = models[d.option]
        facts[d.option]["step_ms_by_slots"] = dict(zip(m.step_batches, m.step_base_ms))
    return models, facts


def refit_document(spec: VerifySpec, models: dict, cells: dict, arrivals: list[Arrival], proxied: LoadResult,
                   straight: LoadResult, duration_s: float, share: Callable[[str], float]) -> dict:
    """verify.json's `refit`: the refitted models' predictions of the requests sent, against what was measured."""
    from llmbench.verify.figures import per_deployment

    if not models:
        return {"skipped": True, "reason": "no deployment could be refitted", "cells": cells}
    deps, overall, notes, _, _ = per_deployment(spec, arrivals, proxied, straight, duration_s, share, planned=False,
                                                services=models)
    return {"skipped": False, "cells": cells, "overall": overall, "deployments": deps, "notes": notes,
            "accurate": cmp.verdict(overall)[1]["prediction_accurate"],  # within the verdict's tolerances
            "source": "the planner's model fitted on closed-loop cells measured on this deployment just before the "
                      "load, simulated on the requests sent"}
