"""verify's arithmetic on hand-made outcomes: figures, errors, the gateway's difference, money, the
drill's accounting, the schedules (Poisson count, a trace scaled to the planned rate)."""
from __future__ import annotations

import numpy as np
import pytest

from llmbench.planner.trace import load_trace
from llmbench.served.client import StreamResult
from llmbench.verify import compare as cmp
from llmbench.verify.drill import analyse
from llmbench.verify.load import LoadResult, Outcome, poisson_schedule, trace_schedule
from llmbench.workload import Prompt


def _out(arrived: float, ttft: float, e2el: float, alias: str = "llmbench", ok: bool = True, prompt_ms: float | None = None,
         cost: float | None = None, tokens: tuple[int, int] = (10, 4), sent: float | None = None) -> Outcome:
    sent = arrived if sent is None else sent
    if ok:
        res = StreamResult(sent=sent, chunk_times=[arrived + ttft, arrived + (ttft + e2el) / 2, arrived + e2el],
                           end=arrived + e2el + 0.001, prompt_tokens=tokens[0], output_tokens=tokens[1],
                           server_timings=None if prompt_ms is None else {"prompt_ms": prompt_ms * 1e3})
    else:
        res = StreamResult(sent=sent, end=arrived + e2el, error_kind="http_status", error="HTTP 500: down", http_status=500)
    res.first_token = res.chunk_times[0] if res.chunk_times else None
    return Outcome(alias, "u", arrived, res, cost)


def test_measured_figures_recomputed_by_hand():
    # 4 requests over a 2 s window: TTFT 10..40 ms, E2EL 100..400 ms; one failure.
    outs = [_out(0.1 * i, 0.01 * (i + 1), 0.1 * (i + 1), prompt_ms=0.004) for i in range(4)] + [_out(0.5, 0, 0.2, ok=False)]
    m = cmp.measured(outs, 0.0, 2.0)
    assert m["ttft_p50"] == pytest.approx(25.0) and m["ttft_p95"] == pytest.approx(np.percentile([10, 20, 30, 40], 95))
    assert m["e2el_p50"] == pytest.approx(250.0) and m["e2el_p95"] == pytest.approx(np.percentile([100, 200, 300, 400], 95))
    assert m["queue_p50"] == pytest.approx(21.0)  # TTFT - 4 ms of prompt time
    assert m["throughput"] == pytest.approx(4 / 2.0) and (m["requests"], m["ok"], m["failed"]) == (5, 4, 1)
    assert m["errors_by_kind"] == {"http_status": 1}
    # A backlog that outlasts the window lowers the rate: the span runs to the last response.
    late = cmp.measured([_out(1.9, 0.1, 3.0)], 0.0, 2.0)
    assert late["throughput"] == pytest.approx(1 / (1.9 + 3.001))


def test_a_simulated_loads_throughput_is_counted_over_the_window_the_measurement_uses():
    # A routed load of 10 s: 6 short requests answered within it, 4 long ones whose last answer comes
    # at 15 s. Measured: 10 requests over 15 s. The prediction, with a simulation that ends where the
    # servers did, must say the same, not 6/10 + 4/15 (each class over its own window, 0.87 req/s).
    outs = [_out(1.0 * i, 0.01, 0.5) for i in range(6)] + [_out(2.0 * i, 0.1, 15.0 - 2.0 * i - 0.001) for i in range(4)]
    assert cmp.measured(outs, 0.0, 10.0)["throughput"] == pytest.approx(10 / 15)
    assert cmp.simulated_throughput(10, 10.0, [5.5, 15.0]) == pytest.approx(10 / 15)
    # Answers within the load's duration: its duration is the window; no simulation: the same.
    assert cmp.simulated_throughput(10, 10.0, [5.5, None]) == cmp.simulated_throughput(10, 10.0, []) == 1.0


def test_compare_errors_and_the_direct_figures():
    pred = {"ttft_p50": 20.0, "ttft_p95": 40.0, "e2el_p50": 200.0, "e2el_p95": 400.0, "queue_p50": 0.0, "queue_p95": 5.0,
            "throughput": 2.0}
    meas = {"ttft_p50": 30.0, "ttft_p95": 40.0, "e2el_p50": 180.0, "e2el_p95": 440.0, "queue_p50": None, "queue_p95": None,
            "throughput": 1.8, "requests": 4, "ok": 4, "failed": 0, "errors_by_kind": {}}
    direct = {**meas, "e2el_p95": 380.0, "queue_p50": 1.0, "queue_p95": 10.0}
    c = cmp.compare(pred, meas, direct)
    assert c["ttft_p50"]["error"] == pytest.approx(0.5) and c["e2el_p50"]["error"] == pytest.approx(-0.1)
    assert c["e2el_p95"]["error"] == pytest.approx(0.1) and c["e2el_p95"]["error_direct"] == pytest.approx(-0.05)
    assert c["queue_p50"]["error"] is None  # a prediction of 0 has no relative error
    assert c["queue_p95"]["measured"] == 10.0 and c["queue_p95"]["error"] == pytest.approx(1.0)
    line, detail = cmp.verdict(c)
    # +10% on p95 E2EL and -10% on throughput: within the rule (<= +10%, >= -15%), nothing failed.
    assert detail["held"] is True and line.startswith("the plan held") and "+10.0%" in line
    c["e2el_p95"]["error"] = 0.11
    assert cmp.verdict(c)[1]["held"] is False


def test_each_measured_percentile_carries_its_sampling_interval_and_the_errors_at_its_ends():
    from llmbench.stats import bootstrap_cis

    e2el = [0.05 * (i + 1) for i in range(40)]  # 50..2000 ms, one request a 0.1 s
    outs = [_out(0.1 * i, 0.01, e) for i, e in enumerate(e2el)]
    m = cmp.measured(outs, 0.0, 4.0)
    ms = [1e3 * e for e in e2el]
    assert m["e2el_p95_ci"] == pytest.approx(list(bootstrap_cis(ms, (50, 95))[1]))
    lo, hi = m["e2el_p95_ci"]
    assert min(ms) <= lo <= m["e2el_p95"] <= hi <= max(ms) and hi - lo > 0
    assert m["queue_p95_ci"] is None  # no server timings: nothing measured, no interval
    assert cmp.measured(outs[:1], 0.0, 4.0)["e2el_p95_ci"] is None  # one request has no spread to draw
    # Ten times the requests from the same spread: a narrower interval.
    many = cmp.measured([_out(0.01 * i, 0.01, 0.005 * (i % 400 + 1)) for i in range(400)], 0.0, 4.0)
    assert many["e2el_p95_ci"][1] - many["e2el_p95_ci"][0] < (hi - lo) / 2
    pred = {"e2el_p95": 1600.0, "throughput": 10.0}
    c = cmp.compare(pred, m, m)["e2el_p95"]
    assert c["error_ci"] == pytest.approx([lo / 1600 - 1, hi / 1600 - 1]) and c["error_direct_ci"] == c["error_ci"]
    assert c["measured_ci"] == [lo, hi] and lo / 1600 - 1 <= c["error"] <= hi / 1600 - 1
    assert cmp.compare(pred, m, m)["throughput"]["error_ci"] is None
    assert f"[95% CI {lo / 1600 - 1:+.0%}..{hi / 1600 - 1:+.0%}]" in cmp.verdict(cmp.compare(pred, m, m))[0]


def test_gateway_difference_and_money():
    direct = cmp.measured([_out(0, 0.010, 0.1), _out(1, 0.020, 0.2)], 0, 2)
    proxied = cmp.measured([_out(0, 0.050, 0.14), _out(1, 0.070, 0.25)], 0, 2)
    g = cmp.gateway(direct, proxied)
    assert g["ttft_p50_added_ms"] == pytest.approx(45.0) and g["ttft_p95_added_ms"] == pytest.approx(
        np.percentile([50, 70], 95) - np.percentile([10, 20], 95))
    prices = {"input_cost_per_token": 1e-8, "output_cost_per_token": 3e-8}
    exact = 10 * 1e-8 + 4 * 3e-8
    outs = [_out(0, 0.01, 0.1, cost=exact), _out(1, 0.01, 0.1, cost=exact * 1.5), _out(2, 0, 0.1, ok=False)]
    m = cmp.money(outs, 2e-7, lambda alias: prices)
    assert m["reported_usd_per_request"] == pytest.approx(exact * 1.25) and m["requests_with_cost"] == 2
    assert m["error"] == pytest.approx(exact * 1.25 / 2e-7 - 1)
    assert m["max_rel_diff_from_gateway_prices"] == pytest.approx(0.5)


def test_failures_are_counted_by_kind_with_the_first_message_as_example():
    res = [StreamResult(sent=0.0, error_kind="timeout", error="no answer in 30 s"), StreamResult(sent=0.0, chunk_times=[1.0]),
           StreamResult(sent=0.0, error_kind="http_status", error="HTTP 500: down", http_status=500),
           StreamResult(sent=0.0, error_kind="timeout", error="no answer in 31 s"), StreamResult(sent=0.0, error_kind="", error="odd")]
    assert cmp.failures_by_kind(res) == {"timeout": {"count": 2, "example": "no answer in 30 s"},
                                         "http_status": {"count": 1, "example": "HTTP 500: down"},
                                         "unknown": {"count": 1, "example": "odd"}}
    assert cmp.failures_by_kind(res[1:2]) == {}


def test_drill_accounting():
    kill = 2.0
    outs = [_out(0.5, 0.01, 0.1), _out(1.9, 0.01, 0.3),  # before; the second was in flight at the kill
            _out(2.1, 0, 0.05, ok=False), _out(2.4, 0, 0.05, ok=False), _out(3.0, 0.02, 0.2), _out(3.5, 0.02, 0.2)]
    res = LoadResult(outs, 0.0, 4.0, {"kill": kill})
    d = analyse(res, scheduled=7, timeout_s=5.0, killed={"deployment": "p", "pids": [1]})
    assert d["unaccounted"] == 1 and d["requests"] == 6 and d["succeeded"] == 4 and d["failed"] == 2
    assert d["after_kill"] == {**d["after_kill"], "requests": 4, "succeeded": 2, "success_share": 0.5}
    assert d["in_flight_at_kill"] == {"requests": 1, "succeeded": 1}
    assert d["gap_s"] == pytest.approx(3.0 + 0.201 - kill)  # the first good answer to a request after the kill
    assert d["failures_until_s"] == pytest.approx(2.4 - kill)
    assert d["errors_by_kind"]["http_status"]["count"] == 2 and d["every_failure_has_an_error"] is True
    assert d["hung"] == 0
    hung = analyse(LoadResult([_out(0, 0.01, 7.0)], 0.0, 8.0, {}), 1, timeout_s=5.0, killed={})
    assert hung["hung"] == 1


def test_poisson_schedule_sends_exactly_the_planned_count():
    prompts = [Prompt(ids=[1] * n, output_tokens=4) for n in (5, 9)]
    arr = poisson_schedule(prompts, 7.5, 4.0, lambda p: "a" if len(p.ids) < 8 else "b", seed=3)
    assert len(arr) == 30 and all(0 <= a.at < 4.0 for a in arr)
    assert [a.at for a in arr] == sorted(a.at for a in arr)
    assert [a.alias for a in arr[:4]] == ["a", "b", "a", "b"]
    assert [a.at for a in arr] == [a.at for a in poisson_schedule(prompts, 7.5, 4.0, lambda p: "a", seed=3)]


def test_a_trace_is_scaled_to_the_planned_rate_and_fitted_to_a_slot(tmp_path):
    # 5 requests 10 s apart: 0.1 req/s. At 2 req/s the gaps become 0.5 s.
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [f"2023-11-16 18:00:{10 * i:02d}.0000000,{p},{o}"
                                                         for i, (p, o) in enumerate([(20, 5), (300, 100), (30, 5), (40, 8), (10, 2)])]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    made = []

    def make(p: int, o: int) -> Prompt:
        made.append((p, o))
        return Prompt(ids=[0] * p, output_tokens=o)
    arr, facts = trace_schedule(load_trace(tmp_path / "t.csv"), 2.0, 3.0, make, lambda p: "x", slot_tokens=108)
    assert [round(a.at, 6) for a in arr] == [0.5, 1.0, 1.5, 2.0, 2.5]
    assert facts["time_scale"] == pytest.approx(20.0) and facts["scaled_to_fit_slot"] == 1
    assert made[1] == (75, 25)  # 300 + 100 scaled by (108 - 8) / 400
    arr, facts = trace_schedule(load_trace(tmp_path / "t.csv"), 2.0, 5.0, make, lambda p: "x", slot_tokens=None)
    assert len(arr) == 9 and facts["repeats"] == 2  # the trace repeats to fill the duration
    # The trace ends 0.5 s before the next round's first request would: one round, not two.
    arr, facts = trace_schedule(load_trace(tmp_path / "t.csv"), 2.0, 2.5 + 0.25, make, lambda p: "x", slot_tokens=None)
    assert len(arr) == 5 and facts["repeats"] == 1


def test_a_trace_answer_keeps_its_length_while_it_takes_at_most_half_the_slot():
    from llmbench.verify.load import fit_to_slot

    # The Azure code trace's first request in a 304-token slot (296 after the margin): the
    # 10-token answer stays, the prompt takes the rest (proportional, the answer would be 1 token).
    assert fit_to_slot(4808, 10, 304) == (286, 10)
    assert fit_to_slot(200, 88, 304) == (200, 88)  # fits: untouched
    assert fit_to_slot(300, 60, 108) == (83, 16)  # 60 > 100 / 2: both cut by 100 / 360
    assert fit_to_slot(4808, 10, None) == (4808, 10)


def test_a_window_shorter_than_the_trace_is_filled_at_the_planned_rate(tmp_path):
    # A lull, then four requests a second apart: 4 / 53 = 0.075 req/s over the whole trace.
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [f"2023-11-16 18:00:{t:02d}.0000000,20,5" for t in (0, 50, 51, 52, 53)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    make = lambda p, o: Prompt(ids=[0] * p, output_tokens=o)  # noqa: E731
    trace = load_trace(tmp_path / "t.csv")
    # 2 s at 2 req/s: scaled by the whole trace's mean, the window holds the first request only.
    arr, facts = trace_schedule(trace, 2.0, 2.0, make, lambda p: "x", slot_tokens=None)
    assert len(arr) == 1 and facts["scaled_to"] == "the whole trace's mean rate"
    # Filled: the 4th and 5th arrivals (52, 53 s) straddle the end, so 1.5 s / 52.5 s scales every gap.
    arr, facts = trace_schedule(trace, 2.0, 2.0, make, lambda p: "x", slot_tokens=None, fill_window=True)
    assert [round(a.at, 6) for a in arr] == [round(0.5 + t * 1.5 / 52.5, 6) for t in (0, 50, 51, 52)]
    assert facts["time_scale"] == pytest.approx(52.5 / 1.5) and facts["repeats"] == 1 and "first 4 requests" in facts["scaled_to"]
    # A window that holds a whole pass or more keeps the whole trace's mean (and repeats it).
    arr, facts = trace_schedule(trace, 2.0, 5.0, make, lambda p: "x", slot_tokens=None, fill_window=True)
    assert facts["scaled_to"] == "the whole trace's mean rate" and facts["time_scale"] == pytest.approx(2.0 / (4 / 53))


def test_a_synthetic_trace_prompt_reads_back_as_at_most_its_length():
    # Random tokens decoded to text tokenise again into more tokens; what the server reads must fit.
    from llmbench.verify.load import synthetic_prompts, tokenizer_for

    tok = tokenizer_for("card:llama-5m")
    make = synthetic_prompts(tok, 0)
    for length in (8, 224):
        for _ in range(20):
            p = make(length, 5)
            again = tok(p.text, add_special_tokens=False)["input_ids"]
            assert again == p.ids and 1 <= len(p.ids) <= length and p.output_tokens == 5
    assert len(make(224, 5).ids) >= 0.8 * 224  # cut by what the text grew, not emptied


def test_the_runs_synthetic_prompts_are_sent_as_texts_that_read_back_as_their_ids(tmp_path):
    # The run sends llama-server token ids; verify sends text, and random ids decoded read back about
    # 12% longer: the servers then processed more prompt than the prediction simulated.
    from types import SimpleNamespace

    from llmbench.config import Workload
    from llmbench.verify.load import tokenizer_for
    from llmbench.verify.workload import _as_read_back, run_prompts
    from llmbench.workload import Prompt, build_prompts

    tok = tokenizer_for("card:llama-5m")
    workload = {"prompt_tokens": {"dist": "lognormal", "mean": 160, "sigma": 1.0, "min": 16, "max": 1024},
                "output_tokens": 8, "requests": 60}
    spec = SimpleNamespace(meta={"config": {"workload": workload, "seed": 3}}, run_dir=tmp_path)
    built = build_prompts(Workload.model_validate(workload), tok, 3)

    def read_back(p) -> list[int]:
        return tok(p.text, add_special_tokens=False)["input_ids"]
    grown = [len(read_back(p)) / len(p.ids) for p in built]
    assert sum(grown) / len(grown) > 1.05  # what the fix is for: as built, the texts read longer
    sent = run_prompts(spec, tok)
    assert len(sent) == len(built)
    for p, b in zip(sent, built):
        assert read_back(p) == p.ids and len(p.ids) <= len(b.ids) and p.output_tokens == b.output_tokens
    assert sum(len(p.ids) for p in sent) >= 0.9 * sum(len(b.ids) for b in built)  # cut by the growth, no more
    # A prompt made from text (a dataset's, a template's: its ids carry the BOS) is sent as it is.
    text = "Summarise the following paragraph in one sentence."
    made = Prompt(ids=tok(text)["input_ids"], output_tokens=8, text=text)
    assert _as_read_back(tok, made) is made


def test_two_deployments_share_the_cores_instead_of_each_taking_them_all(tmp_path):
    from llmbench.verify.scale import scale_to_machine
    from llmbench.verify.spec import LLAMA_CPP, Deployment, Replica, VerifySpec

    def dep(option: str, replicas: int, threads: int | None, engine: str | None = LLAMA_CPP, role: str = "primary") -> Deployment:
        argv = ["llama-server", "--parallel", "2"] + (["--threads", str(threads)] if threads else [])
        return Deployment(option, role, option, [option], engine, [Replica(8000 + i, argv) for i in range(replicas)],
                          None, None, None, "m")

    def spec(*deps: Deployment) -> VerifySpec:
        return VerifySpec(tmp_path, "r", "routing", 1.0, None, list(deps), [], {}, tmp_path / "g.yaml", {}, {}, [])

    # One deployment of 1-thread replicas: as many as the 8 cores hold less the client's and the
    # gateway's core (7), never more than planned.
    assert scale_to_machine(spec(dep("a", 5, 1)), cores=8).started == {"a": 5}
    assert scale_to_machine(spec(dep("a", 12, 1)), cores=8).started == {"a": 7}
    # Two primaries: 3 of the 7 cores each, so 3 and 1 replicas; an endpoint (no engine) takes no
    # core, nor does a standby (it takes load only when a primary is down), which gets a primary's share too.
    two = scale_to_machine(spec(dep("a", 12, 1), dep("b", 12, 2), dep("api", 1, None, engine=None)), cores=8)
    assert two.started == {"a": 3, "b": 1} and two.share("a") == pytest.approx(3 / 12) and two.share("b") == pytest.approx(1 / 12)
    assert scale_to_machine(spec(dep("a", 12, 1), dep("s", 12, 1, role="fallback")), cores=8).started == {"a": 7, "s": 7}
    assert scale_to_machine(spec(dep("a", 12, 1), dep("b", 12, 1), dep("s", 12, 1, role="fallback")), cores=8).started == \
        {"a": 3, "b": 3, "s": 3}
    # On 2 cores one serves: a 1-thread deployment starts once, as do two (they then share it, as
    # verify's note says), and so does a replica wider than its share.
    assert scale_to_machine(spec(dep("a", 3, 1)), cores=2).started == {"a": 1}
    # verify then runs the two in turn (each alone on the serving core); on 8 cores they fit side by side.
    routed = scale_to_machine(spec(dep("a", 3, 1), dep("b", 3, 1)), cores=2)
    assert routed.started == {"a": 1, "b": 1} and routed.in_turn and routed.describe()["in_turn"]
    assert not two.in_turn and not scale_to_machine(spec(dep("a", 3, 1), dep("s", 3, 1, role="fallback")), cores=2).in_turn
    assert scale_to_machine(spec(dep("a", 3, 2), dep("b", 3, 2)), cores=2).started == {"a": 1, "b": 1}
    assert not scale_to_machine(spec(dep("a", 3, 2)), cores=2).in_turn  # one deployment: nothing to take turns with
    # Without --threads a replica uses every serving core.
    assert scale_to_machine(spec(dep("a", 3, None)), cores=2).started == {"a": 1}


def test_a_routed_plans_overall_percentile_is_the_mixtures_not_a_mean_of_percentiles():
    # Two uniform distributions, 0-1 s for 70 requests and 0-4 s for 30 (their percentiles): the
    # mixture's CDF is 0.7 min(x/1000, 1) + 0.3 x/4000. p95: 0.7 + 0.3 x/4000 = 0.95 -> 3333.3 ms
    # (a request-weighted mean of the p95s would say 0.7 x 950 + 0.3 x 3800 = 1805 ms);
    # p50: 0.775 x/1000 = 0.5 -> 645.2 ms.
    uni = lambda top: {f"p{q}": top * q / 100 for q in (50, 90, 95, 99)}  # noqa: E731
    parts = [(70, {"e2el_ms": uni(1000.0), "ttft_ms": uni(100.0)}), (30, {"e2el_ms": uni(4000.0), "ttft_ms": uni(400.0)})]
    out = cmp.blend(parts)
    assert out["e2el_p95"] == pytest.approx(1e4 / 3, rel=1e-9) and out["e2el_p50"] == pytest.approx(500 / 0.775, rel=1e-9)
    assert out["ttft_p95"] == pytest.approx(1e3 / 3, rel=1e-9)
    assert out["queue_p50"] is None
    # One part: its own percentiles back.
    assert cmp.mixture_percentile([(5, uni(4000.0))], 95) == pytest.approx(3800.0, rel=1e-9)


def test_a_routed_plans_simulated_requests_are_pooled_where_each_deployment_carries_them():
    # A long-tailed class (lognormal, 30 of 100 requests) holds the mix's slowest twentieth. Rebuilt
    # from p50/p90/p95/p99 with straight lines between them, its CDF runs below the true one between
    # p50 and p90, so the mixture's p95 comes out high; the pooled samples give the exact one.
    rng = np.random.default_rng(0)
    short, long = rng.uniform(100, 300, 70_000), rng.lognormal(np.log(2000), 0.8, 30_000)

    def part(x: np.ndarray, samples: bool) -> tuple:
        pred = {f"{m}_ms": {f"p{q}": float(np.percentile(x, q)) for q in (50, 90, 95, 99)} for m in ("ttft", "e2el", "queue")}
        if samples:
            pred["samples_ms"] = {m: x for m in ("ttft", "e2el", "queue")}
        return (len(x), pred)
    exact = float(np.percentile(np.concatenate([short, long]), 95))  # the 83rd percentile of the long class
    pooled = cmp.blend([part(short, True), part(long, True)])
    assert pooled["e2el_p95"] == pytest.approx(exact, rel=1e-9)
    rebuilt = cmp.blend([part(short, False), part(long, True)])  # one part without its requests: the mixture
    assert rebuilt["e2el_p95"] > 1.04 * exact
