"""The prefill sweep: a few long prompts measured when a load needs longer prompts than the run did.

A run's workload measures prefill on its own prompt lengths (the default: 16-384 tokens). A trace
can need prompts up to the model's context (the Azure code trace: a median of 2,048), where
attention's quadratic cost dominates: on llama-5m ONNX a 2,047-token prefill took 250-309 ms, a
linear fit on 51-184-token prompts says 41. So `llmbench plan` loads the variant again (the run's
model, variant, device and dtype from run.json) and times single prompts at a few lengths from the
run's range up to the longest the load needs, each generating SWEEP_STEPS tokens (a prefill and
decode steps at that context). The points join the run's batches in the service-model fit.

The machine may be busier or quieter at plan time than during the run: the sweep also measures
prompts of the run's median and longest length (the overlap), and scales its times by the median
of the run's fitted / the sweep's measured prefill there, so the sweep contributes the shape and
the run the level (both recorded; a scale far from 1 is said in the plan).
Results are kept in RUN_DIR/prefill_sweep.json and reused by later plans that need no longer prompts.
The sweeps of one plan share a time budget (TOTAL_BUDGET_S): a length that would not finish within
its option's share (estimated from the last one, quadratically) is left out, recorded and said.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time

import numpy as np

from llmbench.errors import BadInput
from llmbench.planner.context import model_string
from llmbench.planner.service import BatchObservation
from llmbench.results import RunDir, write_json

SWEEP_FILE = "prefill_sweep.json"
SWEEP_STEPS = 4  # tokens generated per point: the prefill and three decode steps at that context
REPEATS = 2  # timings per length (the fit drops outliers; the longest prompts dominate the sweep's time)
LONG_POINTS = 4  # lengths from the run's longest up to the load's longest, geometrically spaced
MIN_REACH = 1.1  # a load within 10% of the longest measured prompt needs no sweep
BUDGET_S = 120.0  # per option: a length whose timings would end past this (quadratic estimate) is not measured
TOTAL_BUDGET_S = 150.0  # for all the options of one `llmbench plan`, model loads included (shared out by plan_run)


def sweep_lengths(run_median: float, run_max: float, needed: float, context: int | None) -> dict[str, list[int]]:
    """{overlap: the run's median and longest prompt, long: LONG_POINTS up to `needed`}; empty when none is needed."""
    top = int(needed if context is None else min(needed, context - SWEEP_STEPS))
    if top <= MIN_REACH * run_max:
        return {"overlap": [], "long": []}
    start = min(max(run_max * 1.25, 2 * run_median), top)
    longs = np.unique(np.round(np.geomspace(start, top, LONG_POINTS)).astype(int)).tolist()
    overlap = sorted({int(round(run_median)), int(round(run_max))})
    return {"overlap": overlap, "long": [x for x in longs if x > run_max]}


def _candidate(meta: dict, label: str) -> dict:
    for cand in (meta.get("config") or {}).get("candidates") or []:
        if isinstance(cand, dict) and label in (cand.get("name"), cand.get("model"), f"card:{cand.get('card')}"):
            return cand
    return {}


def measure(meta: dict, label: str, variant: str, lengths: dict[str, list[int]], seed: int = 0,
            budget_s: float | None = None) -> dict:
    """Load the option's variant as the run did and time each length REPEATS times (plus a warm-up)."""
    from llmbench.backends.registry import backend_for
    from llmbench.models.source import resolve

    cand = _candidate(meta, label)
    # The run's OpenMP wait policy, unless this process already has one: spinning workers on a busy
    # machine would time the sweep under other conditions than the run (llmbench.cli decides it per load).
    recorded = str((meta.get("environment") or {}).get("omp_wait_policy") or "")
    if recorded.upper() in ("PASSIVE", "ACTIVE"):
        os.environ.setdefault("OMP_WAIT_POLICY", recorded.upper())
    source = resolve(model_string(meta, label), where=f"the model of {label}")
    dtype = cand.get("dtype") or (meta.get("config") or {}).get("dtype") or "float32"
    backend = backend_for(variant)(source, variant, meta.get("device") or "cpu", dtype, bool(cand.get("trust_remote_code")))
    t = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - t
    vocab = int(getattr(backend.tokenizer, "vocab_size", None) or len(backend.tokenizer))
    rng = np.random.default_rng(seed)
    points = []
    todo = sorted(set(lengths["overlap"] + lengths["long"]))
    skipped: list[int] = []
    start = time.perf_counter()
    try:
        backend.generate([rng.integers(10, vocab, size=min(todo)).tolist()], SWEEP_STEPS)  # warm-up
        for n in todo:
            if points:  # a big model's longest prompts could take minutes each: stop at the budget
                last = points[-1]
                guess = REPEATS * max(last["prefill_ms"]) / 1e3 * (n / last["prompt_tokens"]) ** 2
                if time.perf_counter() - start + guess > (BUDGET_S if budget_s is None else budget_s):
                    skipped = [x for x in todo if x >= n]
                    break
            ttft, steps = [], []
            for _ in range(REPEATS):
                gen = backend.generate([rng.integers(10, vocab, size=n).tolist()], SWEEP_STEPS)
                times = [gen.start, *gen.token_times]
                ttft.append((times[1] - times[0]) * 1e3)
                steps.append(float(np.mean(np.diff(times[1:]))) * 1e3)
            points.append({"prompt_tokens": n, "prefill_ms": ttft, "step_ms": steps, "overlap": n in lengths["overlap"]})
    finally:
        backend.close()
    return {"measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "load_s": load_s,
            "steps": SWEEP_STEPS, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (spinning)"),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "not_measured_over_budget": skipped, "points": points}


def cached(run_dir: RunDir, label: str, variant: str) -> dict | None:
    """The sweep kept for an option, if any."""
    path = run_dir.path / SWEEP_FILE
    if not path.is_file():
        return None
    return (run_dir.read_json(SWEEP_FILE).get("options") or {}).get(f"{label}|{variant}")


def observations(sweep: dict, scale: float = 1.0) -> list[BatchObservation]:
    """Each timed point as a one-prompt batch (times multiplied by `scale`)."""
    steps = int(sweep.get("steps", SWEEP_STEPS))
    return [BatchObservation(batch=1, width=float(p["prompt_tokens"]), prefill_ms=pf * scale, step_ms=st * scale,
                             steps=steps - 1, prompt_min=float(p["prompt_tokens"]), output_max=steps, source="sweep")
            for p in sweep["points"] for pf, st in zip(p["prefill_ms"], p["step_ms"])]


def _measure_quietly(meta: dict, label: str, variant: str, lengths: dict[str, list[int]], budget_s: float | None) -> dict:
    # Whatever a library prints while building or loading goes to stderr: `plan --json` keeps stdout to its document.
    with contextlib.redirect_stdout(sys.stderr):
        return measure(meta, label, variant, lengths, budget_s=budget_s)


def sweep_for(run_dir: RunDir, meta: dict, label: str, variant: str, lengths: dict[str, list[int]],
              budget_s: float | None = None) -> dict:
    """The option's sweep covering `lengths`: reused from RUN_DIR/prefill_sweep.json or measured and kept there.

    Raises BadInput when the variant cannot be loaded again (the caller plans without it and says so).
    """
    got = cached(run_dir, label, variant)
    if got and max([p["prompt_tokens"] for p in got["points"]] + got.get("not_measured_over_budget", [])) >= max(lengths["long"]):
        return {**got, "reused": True}
    try:
        got = _measure_quietly(meta, label, variant, lengths, budget_s)
    except BadInput:
        raise
    except Exception as exc:  # a model that no longer loads: the plan goes on without the sweep
        raise BadInput(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]) from None
    path = run_dir.path / SWEEP_FILE
    doc = run_dir.read_json(SWEEP_FILE) if path.is_file() else {"about": __doc__.split("\n\n")[0], "options": {}}
    doc.setdefault("options", {})[f"{label}|{variant}"] = got
    write_json(path, doc)
    return {**got, "reused": False}
