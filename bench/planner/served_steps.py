"""Decode step times of a continuous-batching server, from the timelines of its closed-loop cells.

Request r decodes from its first token to its last, one token per step. While it does, other
requests start and stop decoding (their first and last tokens), and each one admitted puts its
prompt into one of r's steps (a + k*P + q*P^2 more, the prefill fit; continuous.py says why the a).
So r's decode window, less those prompts' time, is cut into segments in which the same n requests
decode; the step time at n slots (linear between the measured slot counts, + e per KV token held)
times the steps spent in each segment adds up to r's m-1 steps. The steps a segment holds depend on
the step time itself (a segment at 4 slots holds fewer steps per second than one at 1 slot), so the
fit is repeated a few times, each time weighting the segments by the steps the previous fit puts
there.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from llmbench.planner.service import _nnls

RATIO_RANGE = (0.2, 5.0)  # measured / modelled decode time a machine's speed can explain
ROUNDS = 3
# Tokens of one step reach the client this close together (a stream read a little later than another).
SAME_STEP_S = 0.002


class Cell(list):
    """One cell's requests as (sent, first token, last token, record), seconds, in order of sending."""

    def index(self) -> "Cell":
        self.sort(key=lambda x: x[0])
        self.starts = [x[0] for x in self]
        self.longest = max(e - s for s, _, e, _ in self)
        return self

    def near(self, lo: float, hi: float) -> list:
        """The requests in flight at some time in [lo, hi]."""
        i0, i1 = bisect.bisect_left(self.starts, lo - self.longest), bisect.bisect_right(self.starts, hi)
        return [x for x in self[i0:i1] if x[0] <= hi and x[2] >= lo]


def timelines(records: list) -> dict[tuple, Cell]:
    """Each cell's (run, scenario, point) requests as a Cell."""
    cells: dict[tuple, Cell] = defaultdict(Cell)
    for r in records:
        t = float(r.timestamp)
        cells[(r.run_id, r.scenario, r.point)].append((t, t + r.ttft_ms / 1e3, t + r.e2el_ms / 1e3, r))
    return {c: rows.index() for c, rows in cells.items()}


@dataclass
class Window:
    """One request's decode: segments (seconds, slots decoding, KV held), its steps, measured ms, others' prompt ms."""

    segments: list[tuple[float, float, float]]
    steps: int
    decode_ms: float
    extra_ms: float


def _server_decode_ms(r) -> float | None:
    """The server's own first-to-last-token time (llama.cpp's timings.predicted_ms), when it sent one:
    the client may read a stream late and get its tokens in one read, which its times cannot tell."""
    v = (getattr(r, "server_timings", None) or {}).get("predicted_ms")
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def windows(cells: dict[tuple, Cell], cap: dict, pre) -> list[Window]:
    """Every request's decode window (2+ tokens); `pre(P)` is the prompt work a step takes on, ms."""
    out = []
    for cell, rows in cells.items():
        for _, f, e, r in rows:
            steps = int(r.output_tokens) - 1
            if steps < 1 or e <= f:
                continue
            # A one-token answer (first token = last) decodes nothing, but its prompt took a step of r's.
            others = rows.near(f, e + SAME_STEP_S)
            # The admitted requests whose prompts took one of r's steps (a first token that came with
            # r's first is in r's TTFT, one with r's last in its last step), and the time they took.
            joined = [(f2, pre(r2.prompt_tokens)) for _, f2, _, r2 in others
                      if r2 is not r and f + SAME_STEP_S < f2 <= e + SAME_STEP_S]
            cut = [(f2 - ms / 1e3, f2) for f2, ms in joined]
            extra = sum(ms for _, ms in joined)
            points = sorted({f, e, *(t for x in others for t in (x[1], x[2]) if f < t < e),
                             *(t for a, _ in cut for t in (a,) if f < t < e)})
            segs = []
            for t0, t1 in zip(points, points[1:]):
                mid = (t0 + t1) / 2
                if any(a < mid < b for a, b in cut):
                    continue
                live = [(f2, e2, r2) for _, f2, e2, r2 in others if f2 < mid <= e2]
                kv = sum(r2.prompt_tokens + 1 + (r2.output_tokens - 1) * (mid - f2) / (e2 - f2) for f2, e2, r2 in live)
                segs.append((t1 - t0, float(min(len(live), cap[cell])), kv))
            if segs:
                out.append(Window(segs, steps, _server_decode_ms(r) or (e - f) * 1e3, extra))
    return out


def interp_weights(n: float, knots: tuple[int, ...]) -> np.ndarray:
    """Linear-interpolation weights of n over the knots (held at the ends)."""
    w = np.zeros(len(knots))
    if n <= knots[0] or len(knots) == 1:
        w[0 if n <= knots[0] else -1] = 1.0
    elif n >= knots[-1]:
        w[-1] = 1.0
    else:
        j = int(np.searchsorted(knots, n)) - 1
        f = (n - knots[j]) / (knots[j + 1] - knots[j])
        w[j], w[j + 1] = 1 - f, f
    return w


def _features(wins: list[Window], knots: tuple[int, ...], base: np.ndarray | None, e: float) -> tuple[np.ndarray, np.ndarray]:
    """Per window: interpolation weights and KV, averaged over its steps (by time before any fit)."""
    W, kv = [], []
    for w in wins:
        ws = np.array([interp_weights(n, knots) for _, n, _ in w.segments])
        kvs = np.array([k for _, _, k in w.segments])
        dur = np.array([d for d, _, _ in w.segments])
        share = dur if base is None else dur / np.maximum(ws @ base + e * kvs, 1e-9)
        share = share / share.sum() if share.sum() > 0 else np.full(len(dur), 1 / len(dur))
        W.append(share @ ws)
        kv.append(float(share @ kvs))
    return np.array(W), np.array(kv)


def _nnls_monotone(X: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    # base(n) = d1 + ... + dj at the j-th slot count with every d >= 0 and e >= 0: a step with more
    # slots decoding, or more context, never takes less time; refitted once without the windows
    # beyond 4 robust sigmas (a stall of the machine).
    d = _nnls(X, y)
    resid = y - X @ d
    mad = np.median(np.abs(resid - np.median(resid))) * 1.4826
    keep = np.abs(resid) <= max(4 * mad, 1e-3 * float(np.median(np.abs(y))))
    if keep.sum() >= X.shape[1] + 1 and not keep.all():
        d = _nnls(X[keep], y[keep])
    return d


def fit_steps(wins: list[Window], knots: tuple[int, ...], notes: list[str]) -> tuple[tuple[float, ...], float, float, tuple]:
    """(step ms per slot count, e per KV token, relative RMS %, speed ratios) from the decode windows."""
    y_all = np.array([(w.decode_ms - w.extra_ms) / w.steps for w in wins])
    # A window the others' prompts seem to fill (their cost taken at the average speed) says nothing
    # about a step: left out of the fit, kept for the speed ratios.
    fit = [w for w, y in zip(wins, y_all) if y > 0] or wins
    y = np.array([(w.decode_ms - w.extra_ms) / w.steps for w in fit])
    C = np.tril(np.ones((len(knots), len(knots))))
    base, e = None, 0.0
    for _ in range(ROUNDS):
        W, kv = _features(fit, knots, base, e)
        X = np.column_stack([W @ C, kv]) if np.ptp(kv) > 0 else W @ C
        d = _nnls_monotone(X, y, len(knots))
        base, e = np.maximum(C @ d[:len(knots)], 1e-6), float(d[len(knots)]) if X.shape[1] > len(knots) else 0.0
    if e == 0:
        notes.append("decode step time did not measurably grow with context: held constant per slot count")
    W, kv = _features(fit, knots, base, e)
    model_step = W @ base + e * kv
    err = float(np.sqrt(np.mean(((y - model_step) / np.maximum(model_step, 1e-9)) ** 2)) * 100)
    ratios, dropped = speed_ratios(wins, knots, base, e)
    if dropped:
        notes.append(f"{dropped} request(s) with a decode time beyond x{RATIO_RANGE[0]:g}..x{RATIO_RANGE[1]:g} "
                     "of the model left out of the speed ratios (read at once by a busy client, or stalled)")
    return tuple(float(b) for b in base), e, err, ratios


def speed_ratios(wins: list[Window], knots: tuple[int, ...], base, e: float) -> tuple[tuple[float, ...], int]:
    """(measured / modelled decode time of each window, how many were left out): the machine's speed
    against the step model (base ms per slot count at `knots`, e ms per KV token)."""
    base = np.asarray(base, float)
    W, kv = _features(wins, knots, base, e)
    modelled = np.array([w.steps for w in wins]) * (W @ base + e * kv) + np.array([w.extra_ms for w in wins])
    ratio = np.array([w.decode_ms for w in wins]) / np.maximum(modelled, 1e-9)
    # A ratio past RATIO_RANGE is a measurement artifact (a stream read at once), not the machine's speed.
    ratios = tuple(float(x) for x in ratio if RATIO_RANGE[0] <= x <= RATIO_RANGE[1])
    return ratios, len(ratio) - len(ratios)
