"""The load verify sends: an open-loop schedule of requests, streamed with the project's HTTP client.

A schedule is Poisson arrivals at a rate over the run's own prompts (the workload it measured, the
same seed), or an Azure-format trace whose arrivals are scaled to the planned rate. Every request is
sent at its scheduled time whatever is in flight (queueing belongs to the servers and the gateway),
through HttpBackend.send on one StreamClient, so the bodies and timings are the measurement's.
Latencies count from the scheduled arrival. LiteLLM's reported cost (the last chunk's usage.cost)
is kept per request.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from llmbench.backends.http_backend import HttpBackend, load_tokenizer
from llmbench.served.client import StreamClient, StreamResult
from llmbench.served.endpoint import EndpointSpec
from llmbench.served.loop import run as run_loop, sleep_until
from llmbench.workload import Prompt, prompt_vocab, text_reading_back

POOL = 256  # connections: an open-loop send must never wait for one
LEAD_S = 0.05  # the first arrival's offset from the moment the schedule starts
SLOT_MARGIN = 8  # tokens a slot keeps free beyond prompt + output (BOS, template)


@dataclass
class Arrival:
    """One scheduled request: when (seconds after the start), what, and the gateway alias it targets."""

    at: float
    prompt: Prompt
    alias: str


@dataclass
class Outcome:
    """One request as sent: where, its scheduled arrival (perf_counter), and what came back."""

    alias: str
    target: str
    arrived: float
    res: StreamResult
    cost: float | None = None
    prompt_tokens: int = 0  # as sent (the step fit reads it: load_speed.py)

    @property
    def ok(self) -> bool:
        return self.res.ok


@dataclass
class LoadResult:
    outcomes: list[Outcome]
    start: float
    span_s: float
    events: dict[str, float] = field(default_factory=dict)  # name -> perf_counter when it fired


def make_backend(url: str, model: str, tokenizer, timeout_s: float, api: str = "completions") -> HttpBackend:
    """An HttpBackend for one OpenAI-compatible URL (the proxy's, or one replica's)."""
    b = HttpBackend(None, "http", "endpoint", "unknown")
    b.endpoint = EndpointSpec(url=url, model=model, api=api, timeout_s=timeout_s)
    b.tokenizer = tokenizer
    return b


class Targets:
    """Where an alias's requests go: one or more backends, picked at random or least-busy."""

    def __init__(self, backends: dict[str, list[HttpBackend]], policy: str = "random", seed: int = 0):
        self.backends, self.policy = backends, policy
        self._rng = random.Random(seed)
        self._busy: dict[int, int] = {}

    def pick(self, alias: str) -> HttpBackend:
        choices = self.backends[alias]
        if self.policy == "least-busy":
            return min(choices, key=lambda b: (self._busy.get(id(b), 0), self._rng.random()))
        return self._rng.choice(choices)


def poisson_schedule(prompts: list[Prompt], rps: float, duration_s: float, route: Callable[[Prompt], str],
                     seed: int = 0) -> list[Arrival]:
    """Poisson arrivals at `rps` for `duration_s`, conditioned on their count: round(rps x duration)
    requests at independent uniform times (what a Poisson process is, given how many arrived), so the
    offered rate is exactly the planned one and a short load's count adds no error. Prompts in turn."""
    n = int(round(rps * duration_s))
    times = np.sort(np.random.default_rng(seed).uniform(0.0, duration_s, size=n))
    return [Arrival(float(t), prompts[i % len(prompts)], route(prompts[i % len(prompts)])) for i, t in enumerate(times)]


def fit_to_slot(prompt: int, output: int, slot_tokens: int | None) -> tuple[int, int]:
    """A trace request's (prompt, output) lengths cut to fit a server slot of `slot_tokens`.

    The answer keeps its length while it needs at most half the slot and the prompt is cut to the
    rest: the Azure code trace's answers (13 tokens at the median, beside 1,469-token contexts) would
    otherwise shrink with their prompts to one token, and a load of one-token answers decodes
    nothing. A longer answer is cut in proportion with its prompt."""
    room = (slot_tokens or 0) - SLOT_MARGIN
    if not slot_tokens or prompt + output <= room:
        return prompt, output
    if output <= room // 2:
        return max(1, room - output), output
    f = room / (prompt + output)
    return max(1, int(prompt * f)), max(1, int(output * f))


def trace_schedule(trace, rps: float, duration_s: float, make_prompt: Callable[[int, int], Prompt],
                   route: Callable[[Prompt], str], slot_tokens: int | None,
                   fill_window: bool = False) -> tuple[list[Arrival], dict]:
    """The trace's arrivals scaled to `rps` (repeated to fill `duration_s`); lengths that do not fit
    a server slot are scaled down to fit (counted). With `fill_window`, a window shorter than one pass
    is scaled so that it holds the planned rate's round(rps x duration) requests, bursts and lulls
    kept: scaled by the whole trace's mean, the window sends what its start happens to hold (seen:
    0.40 req/s of 2.2 planned in the first 30 s of the Azure code trace)."""
    r = trace.requests
    scale = r.mean_rps / rps if np.isfinite(r.mean_rps) else 1.0
    n, over = int(round(rps * duration_s)), "the whole trace's mean rate"
    if fill_window and 2 <= n < len(r.arrival_s) and duration_s > 1.0 / rps and r.arrival_s[n - 1] + r.arrival_s[n] > 0:
        # The n-th and (n+1)-th arrivals straddle the window's end.
        scale = (duration_s - 1.0 / rps) / ((r.arrival_s[n - 1] + r.arrival_s[n]) / 2)
        over = f"the mean rate of its first {n} requests, the window's"
    times = r.arrival_s * scale
    period = float(times[-1]) + 1.0 / rps
    out, fitted, k = [], 0, 0
    while True:
        for i, (t, p, o) in enumerate(zip(times, r.prompt_tokens, r.output_tokens)):
            at = float(t) + k * period + 1.0 / rps
            if at >= duration_s:  # repeats: the rounds that sent a request
                return out, {"time_scale": 1.0 / scale, "scaled_to": over, "repeats": k + 1 if i or not k else k,
                             "scaled_to_fit_slot": fitted}
            fit = fit_to_slot(int(p), int(o), slot_tokens)
            fitted += fit != (int(p), int(o))
            prompt = make_prompt(*fit)
            out.append(Arrival(at, prompt, route(prompt)))
        k += 1


def synthetic_prompts(tokenizer, seed: int = 0) -> Callable[[int, int], Prompt]:
    """A maker of random-token prompts of a given length (as the synthetic workload makes them)."""
    import os

    # The prompts are tokenised before llama-servers are forked: tokenizers' threads would warn in each child.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rng = np.random.default_rng(seed)
    vocab = prompt_vocab(tokenizer)

    def make(length: int, out: int) -> Prompt:
        ids, text = text_reading_back(tokenizer, rng.choice(vocab, size=length).tolist(), length)
        return Prompt(ids=ids, output_tokens=out, text=text)
    return make


def tokenizer_for(model: str):
    """The tokenizer a deployment's model was measured with (a card's, or the model folder's or hub id's)."""
    return load_tokenizer(model)


async def _one(targets: Targets, client: StreamClient, a: Arrival, due: float, out: list[Outcome]) -> None:
    b = targets.pick(a.alias)
    targets._busy[id(b)] = targets._busy.get(id(b), 0) + 1
    try:
        res = await b.send(client, a.prompt)
    finally:
        targets._busy[id(b)] -= 1
    out.append(Outcome(a.alias, b.endpoint.url, due, res, res.reported_cost, len(a.prompt.ids)))


async def _drive(arrivals: list[Arrival], targets: Targets, client: StreamClient,
                 events: list[tuple[str, float, Callable[[], object]]]) -> LoadResult:
    start = time.perf_counter() + LEAD_S
    result = LoadResult([], start, 0.0)

    async def event(name: str, at: float, fn: Callable[[], object]) -> None:
        await sleep_until(start + at)
        result.events[name] = time.perf_counter()
        fn()

    try:
        async with asyncio.TaskGroup() as tg:
            for name, at, fn in events:
                tg.create_task(event(name, at, fn))
            for a in arrivals:
                due = start + a.at
                await sleep_until(due)
                tg.create_task(_one(targets, client, a, due, result.outcomes))
    finally:
        await client.aclose()
    result.span_s = time.perf_counter() - start
    return result


def run_load(arrivals: list[Arrival], targets: Targets, headers: dict[str, str], timeout_s: float,
             events: list[tuple[str, float, Callable[[], object]]] = ()) -> LoadResult:
    """Send the schedule (events fire at their times, e.g. a kill) and wait for every request."""
    client = StreamClient(POOL, timeout_s, headers=headers)
    return run_loop(_drive(arrivals, targets, client, list(events)))


def run_in_turn(groups: list[list[Arrival]], targets: Targets, headers: dict[str, str], timeout_s: float) -> LoadResult:
    """Each group of one schedule sent alone, one after another (each on its own clock, as in the
    schedule), the outcomes moved onto the first group's clock: as if the groups had run side by side
    on machines of their own."""
    parts = [run_load(g, targets, headers, timeout_s) for g in groups if g]
    first = parts[0]
    outcomes = [_moved(o, first.start - p.start) for p in parts for o in p.outcomes]
    return LoadResult(outcomes, first.start, sum(p.span_s for p in parts))  # span: the wall time it took


def _moved(o: Outcome, by: float) -> Outcome:
    r = o.res
    res = replace(r, sent=r.sent + by, called=r.called + by, end=r.end + by,
                  first_token=None if r.first_token is None else r.first_token + by,
                  chunk_times=[t + by for t in r.chunk_times])
    return replace(o, arrived=o.arrived + by, res=res)


def send_one_by_one(backends: list[HttpBackend], prompts: list[Prompt], headers: dict[str, str], timeout_s: float,
                    per_backend: int = 2) -> list[StreamResult]:
    """`per_backend` requests to each backend, one at a time (warm-ups, probes); their results."""
    async def go() -> list[StreamResult]:
        client = StreamClient(4, timeout_s, headers=headers)
        out = []
        try:
            for b in backends:
                for i in range(per_backend):
                    out.append(await b.send(client, prompts[i % len(prompts)]))
        finally:
            await client.aclose()
        return out
    return run_loop(go())


def warm_up(targets: Targets, prompts: list[Prompt], headers: dict[str, str], timeout_s: float) -> int:
    """Two unrecorded requests to every backend (connections, caches); how many failed."""
    backends = [b for bs in targets.backends.values() for b in bs]
    return sum(not r.ok for r in send_one_by_one(backends, prompts, headers, timeout_s))
