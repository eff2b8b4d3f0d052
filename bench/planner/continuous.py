"""Replicas as continuous-batching servers (llama.cpp's llama-server with `--parallel` slots).

A replica has `parallel` slots. A waiting request takes a free slot at the next step boundary
(FIFO; at once when the server is idle). The server runs in steps: each step decodes one token
for every slot that is decoding and processes the prompts of the slots just admitted (up to
`n_batch` prompt tokens per step, the rest in the next steps, as llama-server chunks a long
prompt). A request's first token comes at the end of the step that finishes its prompt, then one
token per step; its slot is free at the end of the step of its last token. The step time is

    step = base(n) + e * kv [+ a + sum over prompt chunks (k*c + q*((s+c)^2 - s^2))]     (ms)

with n the slots decoding (base(0) = 0), kv the tokens the decoding slots hold, and, in a step that
processes prompts, a chunk of c prompt tokens from position s (a, k, q: the fitted prefill, so one
prompt processed alone costs a + k*P + q*P^2). The prompts' fixed cost a is paid beside the
decoding slots' step, not instead of it: with one KV stream per slot (llama-server's default,
kv_unified false) llama.cpp splits a batch that mixes slots into micro-batches of equal tokens per
sequence, so a prompt's tokens past the first run as a micro-batch of their own (BENCHMARKS.md:
"Fitted next to the load it predicts"). Each step is scaled by the machine's speed at that moment:
time is cut into epochs of about one request's length, each drawn from the measured speed ratios
(served_fit.py; weighted by the ratio, since they were measured per request and a slow spell holds
a request longer), seeded per replica so that replica counts are compared on the same luck. Between
admissions, completions, arrivals and epoch ends every step is alike, so the simulator jumps over
them in one go.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from llmbench.planner.queue import POLICIES, Policy, Requests, Scaler, SimResult, poisson_requests
from llmbench.planner.service import ServiceModel

N_BATCH = 2048  # llama-server's default --batch-size: the most prompt tokens one step processes
SATURATION_REQUESTS = 256


@dataclass
class ContinuousModel(ServiceModel):
    """Step times of a continuous-batching server. step_batches are the slot counts measured,
    step_base_ms the step time with that many slots decoding; duration_ratios are the measured
    speed ratios (measured / modelled time of each request's decode), drawn per epoch of epoch_s."""

    epoch_s: float = 0.5
    n_batch: int = N_BATCH
    continuous = True  # class attribute: queue.simulate hands such a model to simulate_continuous

    def base_ms(self, n: int) -> float:
        """The decoding slots' part of a step with n of them (0 when none is decoding)."""
        return 0.0 if n == 0 else self.step_ms(n)

    def chunk_ms(self, start: float, count: float) -> float:
        """Cost of prompt tokens start .. start+count-1 inside a step."""
        end = start + count
        return self.prefill_ms_per_token * count + self.prefill_ms_per_token2 * (end * end - start * start)

    def describe(self) -> dict:
        doc = super().describe()
        doc.update({
            "engine_model": "continuous batching (llama-server): slots admit FIFO at step boundaries; one token per "
                            "decoding slot per step; prompts processed inside steps, n_batch tokens at most",
            "formula": "step = base(n decoding) + e*kv [+ a + sum over prompt chunks (k*c + q*((s+c)^2 - s^2)) when it "
                       "processes prompts]; base(0) = 0",
            "step_ms_by_slots": {str(b): v for b, v in zip(self.step_batches, self.step_base_ms)},
            "speed_epoch_s": self.epoch_s, "n_batch": self.n_batch,
        })
        return doc


class _Replica:
    """One server's slots, waiting line and clock (plain Python: this runs once per event)."""

    def __init__(self, model: ContinuousModel, slots: int, prompt: list, out: list, rng, rec: dict):
        self.m, self.slots, self.prompt, self.out, self.rec = model, slots, prompt, out, rec
        self.queue: deque = deque()
        self.dec: list[list] = []  # [request, tokens still to emit]
        self.pre: list[list] = []  # [request, prompt tokens done]
        self.kv = 0.0
        self.now = 0.0
        self.busy_s = 0.0
        self.last_end = -math.inf
        self.last_done = 0  # requests that finished at last_end
        # The ratios were measured per request (per amount of work): a slow spell holds its requests
        # longer, so a stretch of wall time is slow with probability in proportion to its ratio.
        self._ratios = np.asarray(model.duration_ratios, dtype=float)
        self._cum = np.cumsum(self._ratios)
        self._rng = rng
        self._factors: list[float] = []

    def load(self, t: float) -> int:
        """Requests queued or in service at time t (those ending with a step past t still count)."""
        return len(self.queue) + len(self.dec) + len(self.pre) + (self.last_done if self.last_end > t else 0)

    def _factor(self, t: float) -> tuple[float, float]:
        e = int(t / self.m.epoch_s) if t > 0 else 0
        if e >= len(self._factors):
            self._draw_until(e)
        return self._factors[e], (e + 1) * self.m.epoch_s

    def _draw_until(self, e: int) -> None:
        # Drawn in blocks, not one epoch per call (a long idle spell skips thousands of epochs): the
        # generator gives the same numbers either way, so epoch j gets the same factor whatever the block.
        k = max(e + 1, 2 * len(self._factors), 256) - len(self._factors)
        if not self._ratios.size:
            self._factors.extend([1.0] * k)
            return
        pick = np.searchsorted(self._cum, self._rng.random(k) * self._cum[-1], side="right")
        self._factors.extend(self._ratios[np.minimum(pick, self._ratios.size - 1)].tolist())

    def arrive(self, i: int, t: float) -> None:
        if not (self.dec or self.pre or self.queue):
            self.now = max(self.now, t)
        self.queue.append(i)

    def run_until(self, limit: float) -> None:
        """Run every step that starts before `limit` (an arrival at `limit` joins the next one)."""
        m, rec = self.m, self.rec
        while (self.dec or self.pre or self.queue) and self.now < limit:
            while self.queue and len(self.dec) + len(self.pre) < self.slots:
                i = self.queue.popleft()
                rec["queue"][i] = self.now - rec["arr"][i]
                rec["occ"][i] = len(self.dec) + len(self.pre) + 1
                self.pre.append([i, 0.0])
            n = len(self.dec)
            f, epoch_end = self._factor(self.now)
            if self.pre:
                self._prefill_step(n, f)
                continue
            # Decoding only: every step alike but for the KV growth, until something changes.
            d0 = (m.base_ms(n) + m.step_ms_per_kv_token * self.kv) * f / 1e3
            delta = m.step_ms_per_kv_token * n * f / 1e3
            k = min(min(r[1] for r in self.dec), _steps_before(limit - self.now, d0, delta),
                    _steps_before(epoch_end - self.now, d0, delta))
            span = k * d0 + delta * k * (k - 1) / 2
            self._end_steps(span, k)

    def _prefill_step(self, n: int, f: float) -> None:
        m = self.m
        budget = max(1.0, m.n_batch - n)
        ms = m.prefill_fixed_ms + m.base_ms(n) + m.step_ms_per_kv_token * self.kv
        done = []
        for slot in self.pre:
            if budget <= 0:
                break
            i, at = slot
            c = min(self.prompt[i] - at, budget)
            ms += m.chunk_ms(at, c)
            slot[1] = at + c
            budget -= c
            if slot[1] >= self.prompt[i]:
                done.append(slot)
        self._end_steps(ms * f / 1e3, 1, done)

    def _end_steps(self, span: float, k: int, prefilled=()) -> None:
        end = self.now + span
        self.busy_s += span
        rec, finished = self.rec, 0
        self.kv += len(self.dec) * k
        still = []
        for slot in self.dec:
            slot[1] -= k
            if slot[1] <= 0:
                rec["e2el"][slot[0]] = end - rec["arr"][slot[0]]
                self.kv -= self.prompt[slot[0]] + self.out[slot[0]]
                finished += 1
            else:
                still.append(slot)
        for slot in prefilled:
            i = slot[0]
            self.pre.remove(slot)
            rec["ttft"][i] = end - rec["arr"][i]
            if self.out[i] <= 1:
                rec["e2el"][i] = end - rec["arr"][i]
                finished += 1
            else:
                still.append([i, self.out[i] - 1])
                self.kv += self.prompt[i] + 1
        self.dec = still
        self.now = end
        if finished:
            self.last_end, self.last_done = end, finished


def _steps_before(gap: float, d0: float, delta: float) -> int:
    """How many steps (durations d0, d0+delta, ...) start within `gap` seconds: at least one."""
    if gap <= 0 or d0 <= 0:
        return 1
    if math.isinf(gap):
        return 1 << 62
    if delta <= 1e-15:
        return max(1, math.ceil(gap / d0 - 1e-12))
    # Step j starts at j*d0 + delta*j*(j-1)/2; the count is the first j whose start is >= gap.
    b = d0 - delta / 2
    j = math.ceil((-b + math.sqrt(b * b + 2 * delta * gap)) / delta - 1e-12)
    return max(1, j)


def simulate_continuous(reqs: Requests, model: ContinuousModel, replicas: int = 1, parallel: int = 4,
                        policy: Policy = "jsq", seed: int = 0, scaler: Scaler | None = None) -> SimResult:
    """Run the requests (sorted by arrival) through `replicas` continuous-batching servers of `parallel` slots
    (with a `scaler`, only to the first `scaler.serving(...)` of them: queue.simulate)."""
    if replicas < 1 or parallel < 1:
        raise ValueError("replicas and parallel must be at least 1")
    if policy not in POLICIES:
        raise ValueError(f"unknown routing policy {policy!r} (known: {', '.join(POLICIES)})")
    n = len(reqs)
    # Times from the first arrival: the speed epochs are counted from there.
    arr = (reqs.arrival_s - reqs.arrival_s[0]).tolist() if n else []
    rec = {"arr": arr, "ttft": [0.0] * n, "e2el": [0.0] * n, "queue": [0.0] * n, "occ": [0] * n}
    prompt, out = reqs.prompt_tokens.tolist(), [max(1, int(o)) for o in reqs.output_tokens.tolist()]
    reps = [_Replica(model, parallel, prompt, out, np.random.default_rng([seed, 2, r]), rec) for r in range(replicas)]
    where = [0] * n
    # The same rules as the static queue (queue.simulate): random picks from their own stream,
    # join-shortest-queue with a rotating tie-break, or round robin.
    picks = np.random.default_rng([seed, 1]).random(n).tolist() if policy == "random" else None
    jsq = policy in ("jsq", "least-busy")
    for i in range(n):
        t = arr[i]
        if jsq:
            for rp in reps:
                rp.run_until(t)
        k = replicas if scaler is None else scaler.serving(i, float(reqs.arrival_s[i]), lambda: _depth(reps, t))
        if jsq and k > 1:
            r = min(range(k), key=lambda j: (reps[j].load(t), (j - i) % k))
        else:
            r = int(picks[i] * k) if picks is not None else i % k
            reps[r].run_until(t)
        reps[r].arrive(i, t)
        where[i] = r
    for rp in reps:
        rp.run_until(math.inf)
    e2 = np.array(rec["e2el"]) * 1e3
    tt = np.array(rec["ttft"]) * 1e3
    outs = np.asarray(out, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(outs > 1, (e2 - tt) / (outs - 1), np.nan)
    window = float((np.asarray(arr) + e2 / 1e3).max() - arr[0]) if n else 0.0
    return SimResult(tt, e2, tpot, np.array(rec["queue"]) * 1e3, np.array(rec["occ"]), np.array(where),
                     np.array([rp.busy_s for rp in reps]), window, replicas)


def _depth(reps: list[_Replica], t: float) -> int:
    """Requests queued or in service on all replicas at t (each run up to t first)."""
    for rp in reps:
        rp.run_until(t)
    return sum(rp.load(t) for rp in reps)


def saturation_rps(model: ContinuousModel, prompts: np.ndarray, outputs: np.ndarray, parallel: int,
                   samples: int = SATURATION_REQUESTS, seed: int = 0) -> float:
    """Requests/s one replica completes with every slot kept busy: `samples` requests all waiting at
    once, over the time to the end of the last; beyond this rate the queue grows without bound."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(prompts), size=samples)
    reqs = Requests(np.arange(samples) * 1e-9, np.asarray(prompts, float)[pick], np.asarray(outputs)[pick])
    sim = simulate_continuous(reqs, model, 1, parallel, seed=seed)
    return samples / sim.window_s if sim.window_s > 0 else math.inf


def poisson_at_share(model: ContinuousModel, prompts: np.ndarray, outputs: np.ndarray, parallel: int, share: float,
                     n: int, seed: int = 0) -> tuple[float, Requests]:
    """(rate, requests) of a Poisson load at `share` of one replica's saturation."""
    rate = share * saturation_rps(model, prompts, outputs, parallel, seed=seed)
    return rate, poisson_requests(rate, n, prompts, outputs, seed)
