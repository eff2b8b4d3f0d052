"""Benchmark: `llmbench verify --refit` at 50/75/90% of the deployed replicas' planned capacity, on
Poisson load and on the Azure code trace (issue 15 point 4's table).

    .venv/bin/python tests/benchmarks/bench_verify_matrix.py [--run RUN_DIR] [--shares 0.5 0.75 0.9]
        [--trace ../shared/data/traces/azure_llm_code_2023.csv] [--workloads poisson trace] [--duration 30]
        [--timeout 300] [--out DIR] [--json OUT]

Without --run, one `llmbench run` of card:llama-50m gguf-q4_k_m (the default workload, single-stream
and 1/2/4 closed-loop clients) makes the plan and its recommendation. For each workload and share,
`llmbench verify RUN --load ... --refit --no-drill --no-budget --json` sends share x the plan's
capacity: the whole plan's rate at which its busiest deployment reaches its planned capacity
(deployment.yaml `capacity_req_s`, over the deployment's part of `target_rps`; a routed
plan has two deployments), Poisson at that rate. The trace's requests are longer than the run's
workload, so its cells take share x the trace's own capacity (`_trace_rate`: the plan's model
serving the requests of that cell's window) and replay the trace scaled to it (verify scales a trace
to the plan's target_rps, so a copy of the run gets that target). Per cell: p95 E2EL and throughput
predicted by the run's model (the plan's) and by the model refitted just before the load, against
what was measured straight to the servers and through the LiteLLM proxy, overall and per deployment;
and the plan's model at the machine's speed during the load (`at_load_speed`: the drift taken out).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "llmbench"
TRACE = ROOT.parent / "shared" / "data" / "traces" / "azure_llm_code_2023.csv"
CONFIG = {"candidates": [{"card": "llama-50m", "variants": ["gguf-q4_k_m"]}],
          "workload": {"prompt_tokens": {"dist": "lognormal", "mean": 96, "sigma": 0.5, "min": 16, "max": 384},
                       "output_tokens": 32, "requests": 60},
          "scenarios": ["single-stream", {"kind": "concurrency", "clients": [1, 2, 4]}],
          "hardware": "cpu-2core", "device": "cpu", "warmup": 2, "seed": 0, "precision_pct": None, "quality": None}


def _calibrate(out: Path) -> Path:
    run = out / "run"
    if not (run / "deployment.yaml").is_file():
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
        with open(out / "run.log", "w") as log:
            subprocess.run([str(CLI), "run", str(out / "run.yaml"), "--out", str(run)], stdout=log,
                           stderr=subprocess.STDOUT, cwd=ROOT)
        if not (run / "deployment.yaml").is_file():
            raise SystemExit(f"the run made no recommendation; see {out / 'run.log'}")
    return run


def _full_rate(run: Path) -> tuple[float, str]:
    """(the whole plan's request rate at which its busiest deployment reaches its planned capacity,
    that deployment). A deployment carries load_rps of the plan's target_rps (all of it, or its
    request class's share when the plan routes), spread over its planned replicas; verify sends
    each deployment the part of that its replicas here carry, so every started replica sees the
    utilisation the whole plan would."""
    dep = yaml.safe_load((run / "deployment.yaml").read_text())
    target = float(dep["target_rps"])
    rates = {d["option"]: d["capacity_req_s"] * target / d["load_rps"]  # capacity_req_s: all its replicas
             for d in dep["deployments"] if d["role"] == "primary" and d.get("load_rps")}
    option = min(rates, key=rates.get)
    return rates[option], option


def _trace_rate(run: Path, trace: Path, duration: float, share: float, guess: float) -> tuple[float, str, dict]:
    """(the trace rate that loads the busiest deployment to `share` of its capacity on the trace's own
    requests, that deployment, per-deployment facts). The run's capacity is its workload's; the Azure
    code trace's requests are longer (and, routed, more of them long), so 50/75/90% of the run's
    capacity overloads it. Here each deployment's capacity is the run's model (the plan's) serving
    the very requests verify's schedule at that rate sends it (the trace's start, scaled to fill the
    window, thinned to the replicas started here), all at once on those replicas; the rate is found
    by fixed-point iteration, since the window, and so its mix, moves with the rate."""
    from llmbench.planner.queue import Requests, policy_for_strategy, simulate
    from llmbench.verify.load import tokenizer_for
    from llmbench.verify.predict import fitted_service
    from llmbench.verify.run import schedule
    from llmbench.verify.scale import scale_to_machine
    from llmbench.verify.spec import read_spec

    spec = read_spec(run)
    scale = scale_to_machine(spec)
    spec = scale.apply(spec)
    tok = tokenizer_for(spec.model_ref(spec.primaries[0]))
    seed = int((spec.meta.get("config") or {}).get("seed") or 0)
    rate, facts, binding = guess * share, {}, ""
    for _ in range(4):
        arrivals, _ = schedule(spec, rate, trace, duration, tok, seed, lambda alias: scale.share(spec.by_alias(alias).option))
        facts = {}
        for d in spec.primaries:
            mine = [a for a in arrivals if a.alias in d.aliases]
            if len(mine) < 2:
                continue
            burst = Requests(np.zeros(len(mine)), np.array([len(a.prompt.ids) for a in mine], float),
                             np.array([max(1, a.prompt.output_tokens) for a in mine]))
            sim = simulate(burst, fitted_service(run, d), replicas=len(d.replicas), max_batch=d.parallel,
                           policy=policy_for_strategy(spec.strategy))
            facts[d.option] = {"requests": len(mine), "capacity_here_rps": len(mine) / sim.window_s,
                               "utilisation": sim.window_s / duration,  # the sent rate over that capacity
                               "prompt_tokens_mean": float(np.mean([len(a.prompt.ids) for a in mine]))}
        binding = max(facts, key=lambda o: facts[o]["utilisation"])
        rate *= share / facts[binding]["utilisation"]
    return rate, binding, facts


def _verify(run: Path, load: str, duration: float, timeout: float) -> dict:
    done = subprocess.run([str(CLI), "verify", str(run), "--load", load, "--duration", f"{duration:g}", "--refit",
                           "--timeout", f"{timeout:g}", "--no-drill", "--no-budget", "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"verify --load {load} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _cell(doc: dict) -> dict:
    o, r, v = doc["overall"], doc["refit"].get("overall") or {}, doc["at_load_speed"].get("overall") or {}
    fig = lambda block, m: {k: block.get(m, {}).get(k) for k in ("predicted", "measured", "error", "measured_direct",  # noqa: E731
                                                                  "error_direct", "error_direct_ci")}
    return {"requests": o["requests"], "ok": o["ok"], "offered_rps": doc["load"]["offered_rps"],
            "plan": {m: fig(o, m) for m in ("e2el_p50", "e2el_p95", "throughput")},
            "refit": {m: fig(r, m) for m in ("e2el_p50", "e2el_p95", "throughput")},
            "at_load_speed": {m: fig(v, m) for m in ("e2el_p50", "e2el_p95", "throughput")},
            "load_slower_than_run": {o: x.get("slower_than_run") for o, x in doc["at_load_speed"].get("speed", {}).items()},
            "refit_step_ms_by_slots": {o: c.get("step_ms_by_slots") for o, c in doc["refit"].get("cells", {}).items()},
            "deployments": {o: {"requests": d["requests"], "plan": fig(d, "e2el_p95"),
                                "refit": fig((doc["refit"].get("deployments") or {}).get(o) or {}, "e2el_p95")}
                            for o, d in doc["deployments"].items() if "e2el_p95" in d}}  # primaries that took requests


def _err(e: float | None) -> str:
    return "n/a" if e is None else f"{e:+.0%}"


def _band(fig: dict) -> str:
    """The 95% interval of a direct error, from the bootstrap interval of the measured percentile."""
    ci = fig.get("error_direct_ci")
    return f" [{ci[0]:+.0%}..{ci[1]:+.0%}]" if ci else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a results folder with a recommendation (default: make one)")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    ap.add_argument("--trace", type=Path, default=TRACE)
    ap.add_argument("--workloads", nargs="+", choices=["poisson", "trace"], default=["poisson", "trace"])
    ap.add_argument("--duration", type=float, default=30.0)
    # A request past verify's timeout is failed and left out of the measured percentiles, while the
    # prediction counts it: a trace's bursts queue past 30 s, so the default here waits longer.
    ap.add_argument("--timeout", type=float, default=300.0, help="verify's per-request timeout, seconds")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_verify_matrix"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    run = a.run or _calibrate(a.out)
    full, binding = _full_rate(run)
    print(f"{run}: the plan reaches its capacity at {full:.3f} req/s in all ({binding} first)", flush=True)
    traced = a.out / "trace-run"
    shutil.rmtree(traced, ignore_errors=True)
    shutil.copytree(run, traced)
    rows = []
    for workload in a.workloads:
        for s in a.shares:
            plan_rps, trace_caps = s * full, None  # verify sends each deployment the share its replicas here carry
            if workload == "trace":
                plan_rps, trace_binding, trace_caps = _trace_rate(run, a.trace, a.duration, s, full)
                print(f"trace at {s:.0%} of its own capacity: {plan_rps:.3f} req/s ({trace_binding} binding): "
                      + "; ".join(f"{o}: {c['requests']} requests, mean prompt {c['prompt_tokens_mean']:.0f} tokens, "
                                  f"{c['utilisation']:.0%} busy" for o, c in trace_caps.items()), flush=True)
            if workload == "poisson":
                target, load = run, f"{plan_rps:.4f}"
            else:
                dep = yaml.safe_load((traced / "deployment.yaml").read_text())
                dep["target_rps"] = plan_rps
                (traced / "deployment.yaml").write_text(yaml.safe_dump(dep, sort_keys=False))
                target, load = traced, str(a.trace)
            started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            row = {"workload": workload, "share": s, "started": started, "load_avg": os.getloadavg()[0],
                   "trace_capacity": trace_caps,
                   **_cell(_verify(target, load, a.duration, a.timeout))}
            rows.append(row)
            p, r, v = row["plan"], row["refit"], row["at_load_speed"]
            print(f"{workload} {s:.0%} ({row['offered_rps']:.2f} req/s, {row['ok']}/{row['requests']} ok): p95 E2EL measured "
                  f"{p['e2el_p95']['measured_direct']:.0f} ms direct / {p['e2el_p95']['measured']:.0f} via proxy; plan "
                  f"{p['e2el_p95']['predicted']:.0f} ({p['e2el_p95']['error_direct']:+.0%}{_band(p['e2el_p95'])} / "
                  f"{p['e2el_p95']['error']:+.0%}), refit {r['e2el_p95']['predicted']:.0f} ({r['e2el_p95']['error_direct']:+.0%}"
                  f"{_band(r['e2el_p95'])} / {r['e2el_p95']['error']:+.0%}), at the load's speed "
                  f"{_err(v['e2el_p95'].get('error_direct'))}{_band(v['e2el_p95'])} (decode x"
                  + ", x".join(f"{x:.2f}" for x in row["load_slower_than_run"].values() if x) + " the run's); "
                  f"throughput {p['throughput']['measured_direct']:.2f} direct / {p['throughput']['measured']:.2f} via proxy vs "
                  f"{p['throughput']['predicted']:.2f}", flush=True)
            if len(row["deployments"]) > 1:
                for option, d in row["deployments"].items():
                    e, f = d["plan"].get("error_direct"), d["refit"].get("error_direct")
                    print(f"    {option}: {d['requests']} requests, p95 E2EL measured {d['plan'].get('measured_direct') or 0:.0f} "
                          f"ms direct; error plan {e if e is None else f'{e:+.0%}'}{_band(d['plan'])}, refit "
                          f"{f if f is None else f'{f:+.0%}'}{_band(d['refit'])}", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"run": str(run), "full_rate_rps": full, "binding": binding, "rows": rows},
                                     indent=1))


if __name__ == "__main__":
    main()
