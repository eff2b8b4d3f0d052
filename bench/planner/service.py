"""Service-time model of one replica (a static-batching server), fitted from measured latencies.

A static batch of b requests is left-padded to its longest prompt W and decoded for as many steps
as its longest output needs (that is how the backends run a batch). So:

    prefill(b, W)      = a + b * (k * W + q * W^2)          (ms; the first token of every row)
    step(b, kv)        = d(b) + e * b * kv                  (ms; one decode step, kv = tokens held)
    token m of a row   = prefill + sum of steps 1..m-1      (steps see kv = W + j)

a, k and q are fitted on the measured prefills (TTFT minus queueing), errors taken relative to the
fit and no term negative; q is attention's quadratic cost, which dominates long prompts (on llama-5m
ONNX a 2,047-token prefill took 6-7x what a linear fit on 51-184-token prompts predicted). d(b) is
fitted per measured batch size (interpolated between them, linear beyond) and e on how the step
time grows with the KV length. The prefill sweep (sweep.py) measures long prompts so that q rests
on measurements; `extrapolation.py` says how far any figure still goes beyond them.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from llmbench.errors import BadInput

FIT_SCENARIOS = ("single-stream", "batch")
NOISY_FIT_PCT = 25.0  # relative RMS of the fit above which the plan warns that the measurements are noisy  # closed, queue-free measurements; concurrency is for checking


@dataclass(frozen=True)
class BatchObservation:
    """One measured static batch: its size, padded width, prefill and mean decode step."""

    batch: int
    width: float
    prefill_ms: float
    step_ms: float | None
    steps: int
    prompt_min: float
    output_max: int
    source: str = "run"  # "run": a batch of the workload; "sweep": a prefill-sweep measurement (sweep.py)


@dataclass
class ServiceModel:
    """Latency of a static batch as a function of batch size, prompt and output length."""

    prefill_fixed_ms: float
    prefill_ms_per_token: float
    step_batches: tuple[int, ...]
    step_base_ms: tuple[float, ...]
    step_ms_per_kv_token: float = 0.0
    prefill_ms_per_token2: float = 0.0  # q: attention's quadratic prefill term, ms per (batch x W^2)
    measured: dict = field(default_factory=dict)
    fit_notes: list[str] = field(default_factory=list)
    # Measured batch duration / modelled duration, one per measured batch: the simulator draws from
    # these so that service-time variability (which lengthens queues) is part of the prediction.
    duration_ratios: tuple[float, ...] = ()
    # After-idle slowdown (idle.IdlePenalty: factor(idle_s)), where concurrency measurements show one.
    idle_penalty: object | None = None

    def __post_init__(self) -> None:
        self._step_cache: dict[int, float] = {}

    # ---- the model ---------------------------------------------------------------------------
    def prefill_ms(self, batch: int, width: float) -> float:
        """Time to the first token of a batch of `batch` prompts padded to `width` tokens."""
        return self.prefill_fixed_ms + batch * width * (self.prefill_ms_per_token + self.prefill_ms_per_token2 * width)

    def step_ms(self, batch: int) -> float:
        """Decode step time at kv = 0 for a batch size: interpolated, linear beyond the measured sizes."""
        got = self._step_cache.get(batch)
        if got is None:
            xs, ys = self.step_batches, self.step_base_ms
            if len(xs) == 1:
                got = ys[0]
            elif batch <= xs[-1]:
                got = float(np.interp(batch, xs, ys))
            else:  # beyond the largest measured batch: continue the last segment's slope (never downwards)
                slope = max(0.0, (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]))
                got = ys[-1] + slope * (batch - xs[-1])
            got = max(got, 1e-6)
            self._step_cache[batch] = got
        return got

    def serve(self, prompts: Sequence[float], outputs: Sequence[int]) -> tuple[float, list[float], float, float]:
        """One static batch: (TTFT offset, each row's last-token offset, batch duration, step ms), seconds.

        Plain Python on purpose: batches are small and this runs once per simulated batch, where
        numpy's per-call overhead would dominate.
        """
        b = len(prompts)
        width = max(prompts)
        n = max(outputs)
        prefill = self.prefill_fixed_ms + b * width * (self.prefill_ms_per_token + self.prefill_ms_per_token2 * width)
        d = self.step_ms(b)
        eb = self.step_ms_per_kv_token * b
        per = d + eb * width

        def at(m: int) -> float:  # ms from batch start to a row's m-th token
            return prefill + (m - 1) * per + eb * (m - 1) * m * 0.5

        return prefill / 1e3, [at(o) / 1e3 for o in outputs], at(n) / 1e3, per

    def alone_ms(self, prompts: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TTFT and E2EL of each request served alone with no queueing (the floor of any plan)."""
        prompts = np.asarray(prompts, float)
        m = np.asarray(outputs, float)
        ttft = self.prefill_fixed_ms + prompts * (self.prefill_ms_per_token + self.prefill_ms_per_token2 * prompts)
        e = self.step_ms_per_kv_token
        e2el = ttft + (m - 1) * (self.step_ms(1) + e * prompts) + e * (m - 1) * m * 0.5
        return ttft, e2el

    def batch_duration_s(self, prompts: Sequence[float], outputs: Sequence[int]) -> float:
        """Modelled duration of one static batch (no variability)."""
        return self.serve(prompts, outputs)[2]

    def observed_ms(self, o: BatchObservation) -> tuple[float, float]:
        """(measured, modelled) duration of one observed batch, ms."""
        kv = o.width + (o.steps + 1) / 2
        model = self.prefill_ms(o.batch, o.width) + o.steps * (self.step_ms(o.batch) + self.step_ms_per_kv_token * o.batch * kv)
        return o.prefill_ms + o.steps * (o.step_ms or 0.0), model

    @property
    def mean_ratio(self) -> float:
        return float(np.mean(self.duration_ratios)) if self.duration_ratios else 1.0

    def alone_tpot_ms(self, prompts: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """TPOT of each request decoded alone (batch 1): the floor of any plan; NaN for one-token outputs."""
        p = np.asarray(prompts, float)
        m = np.asarray(outputs, float)
        e = self.step_ms_per_kv_token
        with np.errstate(invalid="ignore"):
            return np.where(m > 1, self.step_ms(1) + e * p + e * m * 0.5, np.nan)

    # ---- reporting ---------------------------------------------------------------------------
    def describe(self) -> dict:
        """The fitted coefficients (full precision) and what they were fitted on, for plan.json."""
        return {
            "formula": "prefill = a + b*(k*W + q*W^2); step = d(b) + e*b*kv; token m at prefill + sum of m-1 steps",
            "prefill_fixed_ms": self.prefill_fixed_ms,
            "prefill_ms_per_token": self.prefill_ms_per_token,
            "prefill_ms_per_token_squared": self.prefill_ms_per_token2,
            "step_ms_by_batch": {str(b): v for b, v in zip(self.step_batches, self.step_base_ms)},
            "step_ms_per_kv_token": self.step_ms_per_kv_token,
            "measured": self.measured,
            "fit_notes": self.fit_notes,
            "duration_variability": _ratio_stats(self.duration_ratios),
            "idle_penalty": self.idle_penalty.describe() if self.idle_penalty is not None else None,
        }


# ---- observations ------------------------------------------------------------------------------
def batch_timeline(records: Iterable) -> dict[tuple, list[tuple[float, BatchObservation]]]:
    """Each cell's (run, scenario, point) measured static batches in time order, with their start (s).

    Rows of one batch share its start (send time + queueing); batches run one after another on
    one thread, so starts of different batches lie at least one forward pass apart.
    """
    by_cell: dict[tuple, list] = defaultdict(list)
    for r in records:
        if r.ok and r.ttft_ms is not None and r.e2el_ms is not None:
            by_cell[(r.run_id, r.scenario, r.point)].append((r.timestamp + r.queue_ms / 1e3, r))
    out: dict[tuple, list[tuple[float, BatchObservation]]] = {}
    for cell, rows in by_cell.items():
        rows.sort(key=lambda x: x[0])
        batches, group, first, last = [], [], 0.0, None
        for start, r in rows + [(math.inf, None)]:
            if group and (r is None or start - last > 5e-4):
                batches.append((first, _observe(group)))
                group = []
            if r is not None:
                if not group:
                    first = start
                group.append(r)
                last = start
        out[cell] = batches
    return out


def observations_from_records(records: Iterable) -> list[BatchObservation]:
    """Every measured static batch reconstructed from request records."""
    return [o for batches in batch_timeline(records).values() for _, o in batches]


def _observe(batch: list) -> BatchObservation:
    longest = max(batch, key=lambda r: r.output_tokens)
    prefill = float(np.median([r.ttft_ms - r.queue_ms for r in batch]))
    step = float(np.mean(longest.itl_ms)) if longest.itl_ms else None
    if step is not None and step <= 0:
        step = None  # every token arrived in one read (a served stream under load): no decode step seen
    return BatchObservation(
        batch=max(r.batch_size for r in batch),
        width=float(max(r.prompt_tokens for r in batch)),
        prefill_ms=prefill,
        step_ms=step,
        steps=len(longest.itl_ms),
        prompt_min=float(min(r.prompt_tokens for r in batch)),
        output_max=int(longest.output_tokens),
    )


def observations_from_rows(rows: Iterable[dict]) -> list[BatchObservation]:
    """One observation per summary row: means only (the padded width is taken as the mean prompt)."""
    obs = []
    for row in rows:
        ttft, tpot = row.get("ttft_ms") or {}, row.get("tpot_ms") or {}
        if ttft.get("mean") is None or row.get("prompt_tokens_mean") is None:
            continue
        queue = (row.get("queue_ms") or {}).get("mean") or 0.0
        out = float(row.get("output_tokens_mean") or 1)
        obs.append(BatchObservation(
            batch=int(row.get("batch_size") or 1),
            width=float(row["prompt_tokens_mean"]),
            prefill_ms=float(ttft["mean"]) - float(queue),
            step_ms=tpot.get("mean"),
            steps=max(0, int(round(out)) - 1),
            prompt_min=float(row["prompt_tokens_mean"]),
            output_max=int(round(out)),
        ))
    return obs


def fit_rows(rows: list[dict]) -> list[dict]:
    """The rows to fit on: queue-free scenarios when there are any, else every row."""
    good = [r for r in rows if not r.get("error")]
    closed = [r for r in good if r.get("scenario") in FIT_SCENARIOS]
    return closed or good


# ---- fitting -----------------------------------------------------------------------------------
def _robust_lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares, refitted once without points beyond 4 robust sigmas (a stall on a shared CPU)."""
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    mad = np.median(np.abs(resid - np.median(resid))) * 1.4826
    # The floor keeps rounding-level residuals of near-exact data from counting as outliers.
    keep = np.abs(resid) <= max(4 * mad, 1e-3 * float(np.median(np.abs(y))))
    if keep.sum() >= X.shape[1] + 1 and not keep.all():
        coef, *_ = np.linalg.lstsq(X[keep], y[keep], rcond=None)
    return coef


def _rel_rms(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(((pred - y) / np.maximum(y, 1e-9)) ** 2)) * 100)


def _nnls(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0, by trying each subset of columns (X has 2-3 columns).

    A negative fixed cost or a negative quadratic term would be a fit to noise; the best fit among
    those that keep every term physical is taken instead.
    """
    n = X.shape[1]
    best, best_res = np.zeros(n), float(np.sum(y ** 2))
    for mask in range(1, 2 ** n):
        cols = [i for i in range(n) if mask >> i & 1]
        c, *_ = np.linalg.lstsq(X[:, cols], y, rcond=None)
        if (c < 0).any():
            continue
        full = np.zeros(n)
        full[cols] = c
        res = float(np.sum((X @ full - y) ** 2))
        if res < best_res - 1e-15 * max(1.0, best_res):
            best, best_res = full, res
    return best


def _weighted_nnls(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on errors relative to the fitted value, by reweighting from a plain fit.

    Weighting by the fit (a function of the prompt size) rather than by each measurement keeps
    short and long prompts alike in the fit without pulling it toward the fastest of repeated
    measurements: dividing by the measured value would (on a shared CPU, batches of one size took
    2 ms or 25 ms as other work came and went; 1/y weights fitted the 2 ms ones, an optimistic plan).
    """
    coef = _nnls(X, y)
    floor = 1e-3 * max(float(np.median(np.abs(y))), 1e-12)
    for _ in range(3):
        w = 1.0 / np.maximum(X @ coef, floor)
        coef = _nnls(X * w[:, None], y * w)
    return coef


def _fit_prefill(obs: list[BatchObservation], notes: list[str]) -> tuple[float, float, float, float]:
    """(a, k, q, relative RMS %) of prefill = a + b*(k*W + q*W^2), errors relative to the fit.

    One robust refit drops a batch stalled by other work on the machine (beyond 4 robust sigmas).
    """
    b = np.array([o.batch for o in obs], float)
    w = np.array([o.width for o in obs], float)
    y = np.array([o.prefill_ms for o in obs], float)
    x = b * w
    if np.ptp(x) < 1e-9 * max(1.0, x.max()):
        notes.append("one padded prompt size measured: prefill taken as proportional to tokens (no fixed part)")
        return 0.0, float(y.mean() / x.mean()), 0.0, _rel_rms(np.full_like(y, y.mean()), y)
    # The quadratic term needs at least three prompt widths to be told apart from the linear one.
    X = np.column_stack([np.ones_like(x), x, x * w] if len(np.unique(w)) >= 3 else [np.ones_like(x), x])
    coef = _weighted_nnls(X, y)
    pred = np.maximum(X @ coef, 1e-12)
    resid = (y - pred) / pred
    mad = np.median(np.abs(resid - np.median(resid))) * 1.4826
    keep = np.abs(resid) <= max(4 * mad, 1e-3)
    if keep.sum() >= X.shape[1] + 1 and not keep.all():
        coef = _weighted_nnls(X[keep], y[keep])
    a, k = float(coef[0]), float(coef[1])
    q = float(coef[2]) if len(coef) > 2 else 0.0
    if k == 0 and q == 0:
        a = float(np.median(y))
        notes.append("prefill did not grow with prompt tokens in the measurements: taken as constant")
    return a, k, q, _rel_rms(a + x * (k + q * w), y)


def fit_service(obs: list[BatchObservation], source: str = "records") -> ServiceModel:
    """Fit the service model on measured batches; BadInput when there is nothing to fit."""
    obs = [o for o in obs if o.prefill_ms > 0]
    if not obs:
        raise BadInput("no successful measurements to fit a service-time model on")
    notes: list[str] = []
    a, k, q, prefill_err = _fit_prefill(obs, notes)

    # Decode: d(b) per batch size, plus e * b * kv shared across sizes.
    dec = [o for o in obs if o.step_ms is not None and o.steps > 0]
    if not dec:
        # Single-token outputs only: no decode measured. Assume a step costs what a 1-token prefill does.
        sizes, base, e = (1,), (max(a + k + q, 1e-3),), 0.0
        notes.append("no decode step measured (outputs of one token): step time assumed equal to a one-token prefill")
        step_err = None
    else:
        sizes = tuple(sorted({o.batch for o in dec}))
        col = {b: i for i, b in enumerate(sizes)}
        X = np.zeros((len(dec), len(sizes) + 1))
        for row, o in enumerate(dec):
            X[row, col[o.batch]] = 1.0
            X[row, -1] = o.batch * (o.width + (o.steps + 1) / 2)  # mean KV length over the decode steps
        ys = np.array([o.step_ms for o in dec])
        coef = None
        if np.linalg.matrix_rank(X) == X.shape[1]:
            coef = _robust_lstsq(X, ys)
            if coef[-1] < 0 or (coef[:-1] <= 0).any():
                coef = None
        if coef is None:
            # The KV term is not identifiable (one context length) or came out negative: per-size means.
            coef = np.array([np.median(ys[X[:, i] == 1]) for i in range(len(sizes))] + [0.0])
            notes.append("decode step time did not measurably grow with context: held constant per batch size")
        base, e = tuple(float(c) for c in coef[:-1]), float(coef[-1])
        step_err = _rel_rms(X @ coef, ys)

    widths = [o.width for o in obs]
    measured = {
        "source": source,
        "batches": len(obs),
        "batch_sizes": sorted({o.batch for o in obs}),
        "prompt_tokens": [min(o.prompt_min for o in obs), max(widths)],
        "output_tokens": [min(o.output_max for o in obs), max(o.output_max for o in obs)],
        "kv_tokens_max": max(o.width + o.output_max for o in obs),
        "prefill_fit_rel_rms_pct": prefill_err,
        "step_fit_rel_rms_pct": step_err,
    }
    swept = sorted({o.width for o in obs if o.source == "sweep"})
    if swept:
        measured["prefill_sweep_prompt_tokens"] = swept
    if source == "summary rows":
        notes.append("fitted on summary-row means (no request log): padded prompt width taken as the mean prompt length")
    worst = max(prefill_err, step_err or 0.0)
    if worst > NOISY_FIT_PCT:
        notes.append(f"the measurements scatter widely around the fit (relative RMS {prefill_err:.0f}% for prefill, "
                     f"{step_err or 0:.0f}% for decode steps; e.g. another process on the machine): the plan inherits that noise")
    if len(base) > 1 and any(b2 < b1 * 0.8 for b1, b2 in zip(base, base[1:])):
        notes.append("measured decode step time falls with batch size somewhere (" +
                     ", ".join(f"b={b}: {v:.3g} ms" for b, v in zip(sizes, base)) + "): likely measurement noise")
    model = ServiceModel(float(a), float(k), sizes, base, e, float(q), measured, notes)
    if source == "summary rows":
        notes.append("service-time variability not modelled (no per-batch measurements): tails may be underestimated")
    else:
        # The workload's own batches carry its variability; sweep points are single prompts timed apart.
        pairs = [model.observed_ms(o) for o in obs if (o.step_ms is not None or o.steps == 0) and o.source == "run"]
        model.duration_ratios = tuple(m / p for m, p in pairs if p > 0)
    return model


def _ratio_stats(ratios: tuple[float, ...]) -> dict | None:
    if not ratios:
        return None
    r = np.asarray(ratios)
    p = np.percentile(r, [5, 50, 95])
    return {"batches": len(r), "ratio_p5": float(p[0]), "ratio_p50": float(p[1]),
            "ratio_p95": float(p[2]), "cv_pct": float(r.std() / r.mean() * 100)}
