"""Drift: production requests (an interaction log) against what the last run measured and the plan predicted.

Per deployment (model, variant) and per time window of the log, each figure is compared with the
run's own requests of that deployment:
- latency (TTFT, E2EL, TPOT), tokens per request (prompt, output) and cost per request, over the
  successful requests: a Mann-Whitney U test (the whole distribution, no normality assumed);
- the error rate: Fisher's exact test on (failed, succeeded) counts.
A figure drifted when the difference is large enough to matter (the median changed by at least
`min_change`, 20% by default; an error rate by at least 5 points) AND beyond the noise: p < ALPHA
after the Benjamini-Hochberg correction over every figure of every window (a day of 5-minute
windows is thousands of comparisons). Both are needed: with thousands of requests a 2% change is
"significant", and with five requests a 2x change can be luck.

Strata: where the log's requests carry a cell the run measured (a log made from a run, or a replay),
each is compared with that cell (a static batch of 4 is not single-stream); the gateway's own
records (scenario "gateway") are compared with every request the run measured of the deployment.
The per-stratum one-sided U tests are combined with Stouffer's method, weighted by the window's
count in the stratum; the change is the median of value / (its stratum's baseline median).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from llmbench.records import RequestRecord

ALPHA = 0.01
MIN_CHANGE = 0.20
MIN_ERROR_CHANGE = 0.05  # absolute: 0% -> 5% of requests failing
MIN_REQUESTS = 5  # fewer in a window: too few to tell, said so
FIGURES = ("ttft_ms", "e2el_ms", "tpot_ms", "prompt_tokens", "output_tokens", "cost")
PLAN_KEYS = {"ttft_ms": "ttft_ms", "e2el_ms": "e2el_ms", "tpot_ms": "tpot_ms"}


def _value(rec: RequestRecord, name: str) -> float | None:
    v = getattr(rec, name)
    return None if v is None else float(v)


@dataclass
class Figure:
    """One figure of one window against its baseline."""

    name: str
    n: int
    p50: float
    p95: float
    base_p50: float
    base_p95: float
    change: float  # relative: +1.0 is twice the baseline (error_rate: the difference of the rates)
    p_value: float | None  # None: the change was too small to test
    drifted: bool
    plan_p95: float | None = None
    p_adjusted: float | None = None  # Benjamini-Hochberg over every figure of the drift run

    def as_dict(self) -> dict:
        # JSON has no infinity: a change from a baseline of 0 is written as null.
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.__dict__.items()}


@dataclass
class Window:
    """One time window of one deployment."""

    start: float
    end: float
    n: int
    figures: list[Figure] = field(default_factory=list)
    note: str | None = None

    @property
    def drifted(self) -> list[Figure]:
        return [f for f in self.figures if f.drifted]

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "requests": self.n, "note": self.note,
                "figures": [f.as_dict() for f in self.figures]}


def _median(a: np.ndarray) -> float:
    return float(np.median(a)) if a.size else math.nan


def _ratio(value: np.ndarray, base: float, base_mean: float) -> np.ndarray:
    # A baseline of 0 (cost on a free endpoint): compare with the mean instead, or call 0 vs 0 no change.
    ref = base if base else base_mean
    if not ref:
        return np.where(value == 0, 1.0, np.inf)
    return value / ref


def u_test(strata: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Two-sided p of "the window's values are shifted from the baseline's", over (window, baseline) strata.

    One stratum: scipy's Mann-Whitney U. Several: each stratum's one-sided U test as a z-score,
    combined by Stouffer's method weighted by sqrt(window count) (a stratified rank test).
    """
    tested = [(w, b) for w, b in strata if np.ptp(np.concatenate([w, b])) > 0]  # all equal: no evidence
    if not tested:
        return 1.0
    if len(tested) == 1:
        return float(stats.mannwhitneyu(*tested[0], alternative="two-sided").pvalue)
    p = np.array([stats.mannwhitneyu(w, b, alternative="greater").pvalue for w, b in tested], dtype=float)
    z = stats.norm.isf(np.clip(p, 1e-300, 1 - 1e-16))
    weights = np.sqrt([w.size for w, _ in tested])
    combined = float((weights * z).sum() / math.sqrt((weights ** 2).sum()))
    return float(min(1.0, 2 * stats.norm.sf(abs(combined))))


def compare_figure(name: str, strata: list[tuple[np.ndarray, np.ndarray]], min_change: float) -> Figure | None:
    """One figure's window values against the baseline, stratum by stratum: (window, baseline) pairs.

    The test runs only when the change is large enough to matter (`p_value` None otherwise): a
    small change is never drift, and most windows of a steady service need no test at all.
    `drifted` here judges this figure alone; `drift` judges it again within the whole family.
    """
    strata = [(w, b) for w, b in strata if w.size and b.size]
    if not strata:
        return None
    ratios = [_ratio(w, _median(b), float(b.mean())) for w, b in strata]
    change = float(np.median(np.concatenate(ratios))) - 1.0
    p = u_test(strata) if abs(change) >= min_change else None
    allw = np.concatenate([w for w, _ in strata])
    allb = np.concatenate([b for _, b in strata])
    return Figure(name, int(allw.size), _median(allw), float(np.percentile(allw, 95)), _median(allb),
                  float(np.percentile(allb, 95)), change, p, p is not None and p < ALPHA)


def compare_errors(window: list[RequestRecord], base: list[RequestRecord]) -> Figure:
    """The window's error rate against the run's, by Fisher's exact test (when at least 5 points apart)."""
    k, n = sum(not r.ok for r in window), len(window)
    kb, nb = sum(not r.ok for r in base), len(base)
    rate, base_rate = k / n, kb / nb
    p = None
    if abs(rate - base_rate) >= MIN_ERROR_CHANGE:
        p = float(stats.fisher_exact([[k, n - k], [kb, nb - kb]]).pvalue)
    return Figure("error_rate", n, rate, rate, base_rate, base_rate, rate - base_rate, p, p is not None and p < ALPHA)


def judge_family(figures: list[Figure]) -> None:
    """Drifted = beyond the noise after Benjamini-Hochberg over every figure compared (the family).

    A log of a day in 5-minute windows makes thousands of comparisons: at p < 0.01 each, dozens
    would "drift" by chance. BH keeps the chance of any false drift, when nothing changed, at
    ALPHA; a figure that was not tested (too small a change) counts in the family with p = 1.
    """
    if not figures:
        return
    raw = np.array([1.0 if f.p_value is None else f.p_value for f in figures])
    adjusted = stats.false_discovery_control(raw, method="bh")
    for f, q in zip(figures, adjusted):
        f.p_adjusted = float(q)
        f.drifted = f.p_value is not None and bool(q < ALPHA)


Deployment = tuple[str, str]


Cells = dict  # (scenario, point) -> the run's values of one figure; None -> all of them


def baseline_cells(base: list[RequestRecord], name: str) -> Cells:
    """One figure's values in the run's successful requests, by cell, and all together (key None)."""
    by_cell: dict[tuple | None, list[float]] = defaultdict(list)
    for r in base:
        v = _value(r, name) if r.ok else None
        if v is not None:
            by_cell[(r.scenario, r.point)].append(v)
    out: Cells = {key: np.asarray(vs) for key, vs in by_cell.items()}
    out[None] = np.asarray([v for vs in by_cell.values() for v in vs])
    return out


def _strata(window: list[RequestRecord], cells: Cells, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    groups: dict[tuple | None, list[float]] = defaultdict(list)
    for r in window:
        v = _value(r, name) if r.ok else None
        if v is not None:
            groups[(r.scenario, r.point) if (r.scenario, r.point) in cells else None].append(v)
    return [(np.asarray(vs), cells[key]) for key, vs in groups.items()]


def compare_window(window: list[RequestRecord], base: list[RequestRecord], start: float, end: float,
                   min_change: float, plan: dict | None = None, cells: dict[str, Cells] | None = None) -> Window:
    """Every figure of one deployment's window against the run's requests of that deployment
    (`cells`: baseline_cells of each figure, computed once per deployment)."""
    out = Window(start, end, len(window))
    if len(window) < MIN_REQUESTS:
        out.note = f"{len(window)} request(s): too few to tell (at least {MIN_REQUESTS})"
        return out
    cells = cells or {name: baseline_cells(base, name) for name in FIGURES}
    for name in FIGURES:
        fig = compare_figure(name, _strata(window, cells[name], name), min_change)
        if fig is not None:
            if plan and name in PLAN_KEYS:
                fig.plan_p95 = ((plan.get("predicted") or {}).get(PLAN_KEYS[name]) or {}).get("p95")
            out.figures.append(fig)
    out.figures.append(compare_errors(window, base))
    return out


def windows_of(records: list[RequestRecord], window_s: float, t0: float | None = None) -> dict[int, list[RequestRecord]]:
    """Records by window index: window k covers [t0 + k*window_s, t0 + (k+1)*window_s); t0 defaults to the first request."""
    t0 = min(r.timestamp for r in records) if t0 is None else t0
    out: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in records:
        out[int((r.timestamp - t0) // window_s)].append(r)
    return dict(sorted(out.items()))


def plan_options(plan_doc: dict | None) -> dict[Deployment, dict]:
    """The plan's option per deployment (its predicted latency and cost), where the run has a plan."""
    out: dict[Deployment, dict] = {}
    for opt in (plan_doc or {}).get("options") or []:
        if isinstance(opt, dict) and opt.get("kind", "self-hosted") != "api":
            out.setdefault((str(opt.get("model")), str(opt.get("variant"))), opt)
    return out


def drift(log: list[RequestRecord], run: list[RequestRecord], window_s: float, min_change: float = MIN_CHANGE,
          plan_doc: dict | None = None) -> dict:
    """Per deployment of the log, its windows compared with the run; deployments the run never measured listed apart."""
    base: dict[Deployment, list[RequestRecord]] = defaultdict(list)
    for r in run:
        base[(r.model, r.variant)].append(r)
    plans = plan_options(plan_doc)
    t0 = min(r.timestamp for r in log)
    by_dep: dict[Deployment, list[RequestRecord]] = defaultdict(list)
    for r in log:
        by_dep[(r.model, r.variant)].append(r)
    deployments, unmeasured = [], []
    for dep, recs in by_dep.items():
        if dep not in base:
            unmeasured.append({"model": dep[0], "variant": dep[1], "requests": len(recs)})
            continue
        wins, cells = [], {name: baseline_cells(base[dep], name) for name in FIGURES}
        # Windows are on the log's clock (t0: the log's first request), the same for every deployment.
        for k, wrecs in windows_of(recs, window_s, t0).items():
            start = t0 + k * window_s
            wins.append(compare_window(wrecs, base[dep], start, start + window_s, min_change, plans.get(dep), cells))
        deployments.append({"model": dep[0], "variant": dep[1], "requests": len(recs), "baseline_requests": len(base[dep]),
                            "drifted": any(w.drifted for w in wins), "windows": wins})
    judge_family([f for d in deployments for w in d["windows"] for f in w.figures])
    for d in deployments:
        d["drifted"] = any(w.drifted for w in d["windows"])
    return {"window_s": window_s, "min_change": min_change, "alpha": ALPHA, "deployments": deployments,
            "unmeasured": unmeasured, "drifted": any(d["drifted"] for d in deployments)}
