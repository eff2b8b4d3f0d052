"""Fit the continuous-batching model (continuous.py) on a served option's closed-loop measurements.

Each cell is rebuilt as a timeline from its records: request r is in flight from its send time
to its last token and decodes from its first token to its last. Then:

- prefill: the TTFT of every request whose prompt was processed with nothing else in flight
  (single-stream, clients=1, and any such moment of the other cells), against its prompt length:
  a + k*P + q*P^2 (service.py's fit; q once three or more lengths are measured; a prefill sweep's
  points join it);
- decode: served_steps.py: each request's decode window, less the prompts of the requests admitted
  meanwhile, cut into segments of constant busy slots; the step time at each measured slot count
  (the cells' clients: 1, 2, 4 ...), linear between them, + e per KV token, fitted on them;
- speed: each request's measured / modelled decode time is kept as a speed ratio (a shared CPU
  runs at different speeds from one second to the next); the simulator draws one per epoch of
  the median request's length.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from llmbench.errors import BadInput
from llmbench.planner.continuous import ContinuousModel
from llmbench.planner.served import point_slots
from llmbench.planner.served_steps import Window, fit_steps, timelines, windows
from llmbench.planner.service import NOISY_FIT_PCT, BatchObservation, _fit_prefill

MIN_EPOCH_S = 0.05


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _max_in_flight(rows: list) -> int:
    events = sorted([(s, 1) for s, _, _, _ in rows] + [(e, -1) for _, _, e, _ in rows])
    now = top = 0
    for _, d in events:
        now += d
        top = max(top, now)
    return max(1, top)


def _prefill_obs(cells: dict) -> tuple[list[BatchObservation], bool]:
    """TTFTs of prompts processed alone; (all TTFTs, False) when no request ever was."""
    alone, every = [], []
    for rows in cells.values():
        for s, f, _, r in rows:
            o = BatchObservation(batch=1, width=float(r.prompt_tokens), prefill_ms=r.ttft_ms - r.queue_ms, step_ms=None,
                                 steps=0, prompt_min=float(r.prompt_tokens), output_max=int(r.output_tokens))
            every.append(o)
            if not any(_overlap(s, f, s2, e2) > 0 for s2, _, e2, r2 in rows.near(s, f) if r2 is not r):
                alone.append(o)
    return (alone, True) if alone else (every, False)


def fit_continuous(records: Iterable, sweep_obs: list[BatchObservation] | None = None,
                   source: str = "request log") -> ContinuousModel:
    """The continuous-batching model of one served option; BadInput when nothing can be fitted."""
    recs = [r for r in records if r.ok and r.ttft_ms is not None and r.e2el_ms is not None and r.ttft_ms > 0]
    if not recs:
        raise BadInput("no successful served measurements to fit a continuous-batching model on")
    notes: list[str] = []
    cells = timelines(recs)
    # A cell's slot count: its clients (closed loop), else the most requests it had in flight.
    knot_of = {cell: point_slots(cell[2]) or _max_in_flight(rows) for cell, rows in cells.items()}
    knots = tuple(sorted(set(knot_of.values())))
    obs, alone = _prefill_obs(cells)
    if not alone:
        notes.append("no prompt was processed with nothing else in flight: prefill fitted on TTFTs under load (pessimistic)")
    sweep_obs = list(sweep_obs or [])
    a, k, q, prefill_err = _fit_prefill(obs + sweep_obs, notes)

    def pre(p: float) -> float:
        return a + k * p + q * p * p

    wins = windows(cells, knot_of, pre)
    # A prefill sweep's points: one slot decoding at the sweep's prompt length.
    wins += [Window([(o.step_ms * o.steps / 1e3, 1.0, o.width + (o.steps + 1) / 2)], o.steps, o.step_ms * o.steps, 0.0)
             for o in sweep_obs if o.step_ms and o.steps > 0]
    if not wins:
        base, e, step_err, ratios = (max(a + k + q, 1e-3),), 0.0, None, ()
        knots = (1,)
        notes.append("no decode step measured (outputs of one token): step time taken as a one-token prompt's")
    else:
        base, e, step_err, ratios = fit_steps(wins, knots, notes)
    if max(prefill_err, step_err or 0.0) > NOISY_FIT_PCT:
        notes.append(f"the measurements scatter widely around the fit (relative RMS {prefill_err:.0f}% for prefill, "
                     f"{step_err or 0:.0f}% for decode steps; e.g. other work on the machine): modelled as the "
                     "machine's speed varying, drawn from the measured ratios")
    # Speed epochs as long as a typical request: each request then meets about one measured speed.
    lows = [(e2 - s) for cell, rs in cells.items() if knot_of[cell] == knots[0] for s, _, e2, _ in rs]
    epoch = max(MIN_EPOCH_S, float(np.median(lows))) if lows else 0.5
    prompts = [r.prompt_tokens for r in recs]
    measured = {"source": source, "requests": len(recs), "cells": len(cells), "slots_measured": list(knots),
                "batch_sizes": list(knots), "prompt_tokens": [min(prompts), max(prompts + [o.width for o in sweep_obs])],
                "output_tokens": [min(r.output_tokens for r in recs), max(r.output_tokens for r in recs)],
                "kv_tokens_max": max([r.prompt_tokens + r.output_tokens for r in recs]
                                     + [o.width + o.output_max for o in sweep_obs]),
                "prefill_alone_requests": len(obs) if alone else 0,
                "prefill_fit_rel_rms_pct": prefill_err, "step_fit_rel_rms_pct": step_err}
    if sweep_obs:
        measured["prefill_sweep_prompt_tokens"] = sorted({o.width for o in sweep_obs})
    return ContinuousModel(float(a), float(k), knots, base, e, float(q), measured, notes, duration_ratios=ratios,
                           epoch_s=epoch)
