"""The whole check: start the deployments and the proxy, send the load through the proxy, then the
same schedule straight to the servers, then the fallback drill; stop everything; verify.json.
A routed plan too wide for this machine sends each phase's load one deployment at a time (scale.py).

Whatever happens (an error, Ctrl-C, SIGTERM) the servers and the proxy are stopped in `finally`, and
each also dies with this process (PDEATHSIG). Logs go to RUN/verify-logs/.
"""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Callable

import numpy as np

from llmbench import __version__
from llmbench.errors import BadInput
from llmbench.export.servers import MAIN_ALIAS
from llmbench.results import write_json
from llmbench.verify import compare as cmp
from llmbench.verify.deploy import Fleet, VerifyFailed, check_inputs
from llmbench.verify.drill import COMPLETIONS_NOTE, KILL_AT, analyse, chat_probe, drill_target
from llmbench.verify.load import (Arrival, LoadResult, Targets, make_backend, poisson_schedule, run_in_turn, run_load,
                                  synthetic_prompts, tokenizer_for, trace_schedule, warm_up)
from llmbench.verify.gateway import proxy_config
from llmbench.verify.proxy import Proxy
from llmbench.verify.load_speed import at_load_speed
from llmbench.verify.refit import LOG as REFIT_LOG, refit_document, refit_models
from llmbench.verify.scale import scale_to_machine
from llmbench.verify.spec import VerifySpec, read_spec
from llmbench.verify.workload import run_prompts

DEFAULT_DURATION_S = 30.0
DEFAULT_TIMEOUT_S = 30.0
LOG_DIR = "verify-logs"
DRILL_MIN_S, DRILL_MAX_S = 6.0, 20.0


def parse_load(spec: VerifySpec, load: str) -> tuple[float, Path | None]:
    """(rate, trace file or None) from --load planned | RPS | TRACE; BadInput otherwise."""
    if load == "planned":
        if not spec.target_rps:
            raise BadInput(f"{spec.run_dir}: the recommendation plans no load (no target_rps): give --load RPS")
        return float(spec.target_rps), None
    try:
        rps = float(load)
    except ValueError:
        path = Path(load)
        if not path.is_file():
            raise BadInput(f"--load {load!r}: not 'planned', a rate in requests/s, or a trace file") from None
        if not spec.target_rps:
            raise BadInput(f"--load {load}: a trace is scaled to the planned rate, and {spec.run_dir} plans none")
        return float(spec.target_rps), path
    if not math.isfinite(rps) or rps <= 0:
        raise BadInput(f"--load {load}: a rate must be a finite number of requests/s above 0")
    return rps, None


def _route(spec: VerifySpec) -> Callable:
    return (lambda p: spec.route(len(p.ids))) if spec.classes else (lambda p: MAIN_ALIAS)


def _thin(arrivals: list[Arrival], keep: Callable[[str], float], seed: int) -> list[Arrival]:
    """Keep each arrival with probability keep(alias) (a thinned Poisson stream is Poisson)."""
    if all(keep(a.alias) >= 1.0 for a in arrivals):
        return arrivals
    rng = np.random.default_rng(seed + 7)
    return [a for a in arrivals if rng.random() < keep(a.alias)]


def schedule(spec: VerifySpec, rps: float, trace: Path | None, duration_s: float, tokenizer, seed: int,
             share: Callable[[str], float], fill_window: bool = True) -> tuple[list[Arrival], dict]:
    """The arrivals of this machine's share: at rps x the largest share, thinned per alias to its own.
    A trace shorter than one pass is scaled to the planned rate over the window (`fill_window`); an
    autoscaling replay keeps the whole trace's scale, whose bursts and lulls are its point."""
    aliases = [c.alias for c in spec.classes] or [MAIN_ALIAS]
    top = max(share(a) for a in aliases)
    keep = lambda alias: share(alias) / top
    if trace is None:
        arr = poisson_schedule(run_prompts(spec, tokenizer), rps * top, duration_s, _route(spec), seed)
        return _thin(arr, keep, seed), {"kind": "poisson", "rps": rps, "prompts": "the run's workload (its seed)"}
    from llmbench.planner.trace import load_trace

    tr = load_trace(trace)
    slot = min((d.slot_tokens for d in spec.primaries if d.slot_tokens), default=None)
    arr, facts = trace_schedule(tr, rps * top, duration_s, synthetic_prompts(tokenizer, seed), _route(spec), slot,
                                fill_window)
    return _thin(arr, keep, seed), {"kind": "trace", "rps": rps, "trace": str(trace), "trace_requests": len(tr.requests), **facts}


def _targets(spec: VerifySpec, aliases: set[str], url_of: Callable[[str], list[tuple[str, str]]], tok, timeout_s: float) -> Targets:
    return Targets({a: [make_backend(u, m, tok, timeout_s) for u, m in url_of(a)] for a in aliases},
                   policy="least-busy" if spec.strategy == "least-busy" else "random")


def _send(spec: VerifySpec, arrivals: list[Arrival], targets: Targets, headers: dict, timeout_s: float,
          in_turn: bool) -> LoadResult:
    """The schedule sent at once, or `in_turn`: each deployment's part alone, one after another."""
    if not in_turn:
        return run_load(arrivals, targets, headers, timeout_s)
    groups = {}
    for a in arrivals:
        groups.setdefault(spec.by_alias(a.alias).option, []).append(a)
    return run_in_turn(list(groups.values()), targets, headers, timeout_s)


def verify(run_dir: str | Path, load: str = "planned", duration_s: float = DEFAULT_DURATION_S,
           timeout_s: float = DEFAULT_TIMEOUT_S, drill: bool = True, budget: bool = True, refit_s: float | None = None,
           progress: Callable[[str], None] = lambda s: None) -> dict:
    """Run the check on a results folder and write RUN/verify.json; the document."""
    spec = read_spec(run_dir)
    rps, trace = parse_load(spec, load)
    scale = scale_to_machine(spec)
    dropped = scale.dropped_ports(spec)
    spec = scale.apply(spec)
    startable = [d for d in spec.deployments if d.startable]
    check_inputs(startable)
    logs = spec.run_dir / LOG_DIR
    config, gw_notes, cache_off = proxy_config(spec.gateway, spec.gateway_cfg, dropped)

    def opt_share(option: str) -> float:
        """The part of a deployment's load sent here: its replicas here, less its cache hits when the cache is off."""
        d = next(x for x in spec.deployments if x.option == option)
        return scale.share(option) * ((1.0 - d.cache_share) if cache_off else 1.0)
    share = lambda alias: opt_share(spec.by_alias(alias).option)
    # verify's own traffic is logged with verify's logs, not into the gateway folder a user deploys from.
    proxy = Proxy(config, logs / "litellm.log", spec.key_envs(),  # BadInput when litellm is missing
                  interaction_log=logs / "litellm-requests.jsonl")
    fleet = Fleet(spec.deployments, logs)
    tok = tokenizer_for(spec.model_ref(spec.primaries[0]))
    seed = int((spec.meta.get("config") or {}).get("seed") or 0)
    arrivals, load_doc = schedule(spec, rps, trace, duration_s, tok, seed, share)
    if not arrivals:
        raise BadInput(f"--duration {duration_s:g} s at {rps:g} req/s schedules no request: give a longer duration")
    aliases = {a.alias for a in arrivals}
    headers = {}
    try:
        progress(f"starting {sum(len(d.replicas) for d in startable)} llama-server replica(s)")
        fleet.start()
        progress(f"starting the LiteLLM proxy on port {proxy.port}")
        proxy.start()
        headers = {"Authorization": f"Bearer {proxy.key}", **_cache_bypass(spec)}
        via_proxy = _targets(spec, aliases, lambda a: [(proxy.url, a)], tok, timeout_s)
        direct = _targets(spec, aliases, lambda a: [(u, spec.by_alias(a).served_name) for u in fleet.urls(spec.by_alias(a).option)],
                          tok, timeout_s)
        prompts = [a.prompt for a in arrivals[:8]]
        if warm_up(via_proxy, prompts, headers, timeout_s) == 2 * len(aliases):
            raise VerifyFailed(f"every warm-up request through the proxy failed (log {proxy.log_path}); last lines:\n{proxy.tail()}")
        warm_up(direct, prompts, {}, timeout_s)
        # Last before the load, so that the refit sees the machine as the load will.
        models, cells = refit_models(spec, fleet.urls, run_prompts(spec, tok), tok, timeout_s, logs / REFIT_LOG, progress,
                                      refit_s, scale.in_turn) if refit_s else ({}, {})
        progress(f"sending {len(arrivals)} requests over {duration_s:g} s through the proxy, then straight to the servers"
                 + (", each deployment's part in turn" if scale.in_turn else ""))
        cpu0 = proxy.cpu_seconds()
        proxied = _send(spec, arrivals, via_proxy, headers, timeout_s, scale.in_turn)
        progress("waiting until the servers and the proxy have finished what the load left with them")
        settled = fleet.wait_idle(timeout_s + duration_s, cpu=proxy.cpu_seconds)
        proxy_cpu = (proxy.cpu_seconds() or 0.0) - (cpu0 or 0.0)  # with what it did for the load after it
        straight = _send(spec, arrivals, direct, {}, timeout_s, scale.in_turn)
        cache_doc = _cache_check(spec, proxy, headers, timeout_s, progress)
        budget_doc = _budget(spec, config, logs, [a.prompt for a in arrivals], tok, timeout_s, progress) if budget else \
            {"skipped": True, "reason": "turned off (--no-budget)"}
        fallback = _drill(spec, fleet, via_proxy, headers, rps, duration_s, timeout_s, tok, seed, share, progress) if drill else \
            {"skipped": True, "reason": "turned off (--no-drill)"}
    finally:
        proxy.stop()
        fleet.stop()
    doc = _document(spec, {**load_doc, "between_phases": settled}, duration_s, timeout_s, arrivals, proxied, straight,
                    fallback, fleet, proxy, proxy_cpu, scale, opt_share)
    doc["notes"] = gw_notes + doc["notes"]
    doc["cache"] = cache_doc
    doc["budget"] = budget_doc
    doc["at_load_speed"] = _secondary(lambda: at_load_speed(spec, arrivals, proxied, straight, duration_s, opt_share))
    doc["refit"] = _secondary(lambda: refit_document(spec, models, cells, arrivals, proxied, straight, duration_s,
                                                     opt_share)) if refit_s else \
        {"skipped": True, "reason": "not asked for (--refit)"}
    write_json(spec.run_dir / "verify.json", doc)
    return doc


def _secondary(analysis: Callable[[], dict]) -> dict:
    """A re-reading of the measurements already taken: when it fails, verify.json still carries the
    measurements and says why that block is missing (minutes of load are not lost to one analysis)."""
    try:
        return analysis()
    except Exception as exc:  # noqa: BLE001 - any failure of the analysis, reported in its block
        return {"skipped": True, "reason": f"the analysis failed: {type(exc).__name__}: {exc}"}


def _cache_bypass(spec: VerifySpec) -> dict:
    """The header that sends the plan check's load past llmbench's cache (its prompts repeat; the plan
    sized the servers for the misses), when the gateway runs that cache."""
    from llmbench.optimizers.cache.gateway_names import OPT_OUT_HEADER
    from llmbench.verify.cache_check import plugin_on

    return {OPT_OUT_HEADER: "off"} if plugin_on(spec.gateway_cfg) is not None else {}


def _cache_check(spec: VerifySpec, proxy: Proxy, headers: dict, timeout_s: float, progress: Callable[[str], None]) -> dict:
    """Labelled pairs through the proxy's cache, against the simulation (bench/verify/cache_check.py)."""
    from llmbench.verify import cache_check

    if cache_check.plugin_on(spec.gateway_cfg) is not None:
        progress(f"cache check: {cache_check.DEFAULT_PAIRS} labelled query pairs through the proxy's semantic cache")
    return cache_check.for_verify(spec, proxy.url, headers, timeout_s)


def _budget(spec: VerifySpec, config: Path, logs: Path, prompts: list, tok, timeout_s: float,
            progress: Callable[[str], None]) -> dict:
    """The gateway's rpm/tpm budgets driven past on a second proxy (bench/verify/budget.py)."""
    from llmbench.verify import budget

    alias = sorted(spec.primaries, key=lambda d: -(d.load_rps or 0.0))[0].aliases[0]
    return budget.check(config, alias, spec.key_envs(), logs / "litellm-budget.log", prompts, tok, timeout_s,
                        _cache_bypass(spec), progress)


def _drill(spec, fleet, via_proxy, headers, rps, duration_s, timeout_s, tok, seed, share, progress) -> dict:
    target, fbs = drill_target(spec)
    if target is None:
        return {"skipped": True, "reason": fbs}
    span = min(DRILL_MAX_S, max(DRILL_MIN_S, duration_s / 2))
    arrivals, _ = schedule(spec, rps, None, span, tok, seed + 1, share)
    progress(f"fallback drill: {len(arrivals)} requests over {span:g} s; {target.option}'s servers killed at {span * KILL_AT:.1f} s")
    killed = {"deployment": target.option, "pids": []}
    res = run_load(arrivals, via_proxy, headers, timeout_s,
                   events=[("kill", span * KILL_AT, lambda: killed["pids"].extend(fleet.kill(target.option)))])
    doc = {"skipped": False, "fallbacks": fbs, "duration_s": span, "api": "completions",
           **analyse(res, len(arrivals), timeout_s, killed)}
    doc["chat_probe"] = chat_probe(via_proxy.backends[next(iter(via_proxy.backends))][0].endpoint.url,
                                   next(iter(via_proxy.backends)), headers, timeout_s)
    if doc["after_kill"]["requests"] and not doc["after_kill"]["succeeded"]:
        doc["note"] = COMPLETIONS_NOTE
    return doc


def _document(spec, load_doc, duration_s, timeout_s, arrivals, proxied, straight, fallback, fleet, proxy, proxy_cpu, scale,
              opt_share) -> dict:
    from llmbench.verify.figures import per_deployment

    figs = per_deployment(spec, arrivals, proxied, straight, duration_s, opt_share,
                          planned=load_doc["kind"] == "poisson" and load_doc["rps"] == spec.target_rps)
    deps, overall, notes = figs.deployments, figs.overall, figs.notes
    if scale.in_turn:
        notes.append(f"the primaries' servers need more than this machine's {scale.cores} cores less the client's: each "
                     "deployment's part of the load was sent alone, one after another, in both phases (as on machines "
                     "of their own); each phase took --duration once per deployment, its outcomes put back on one clock")
    if scale.scaled:
        notes.append(f"scaled to this machine ({scale.cores} cores): " + "; ".join(
            f"{o}: {scale.started[o]} of {scale.planned[o]} replicas, {scale.share(o):.3g} of its load"
            for o in scale.planned if scale.started[o] < scale.planned[o]))
    settled = load_doc["between_phases"]
    if settled["idle"] is False:
        notes.append(f"{settled['waited_s']:.0f} s after the proxied phase, {settled['busy_slots']} slot(s) or the proxy "
                     "were still busy with its requests: the figures straight to the servers include that backlog")
    window = proxied.span_s + settled["waited_s"]
    busy = proxy_cpu / window if window > 0 else None
    cpu_ms = 1e3 * proxy_cpu / max(1, len(proxied.outcomes))
    # What the plan leaves out: the gateway's own cores at the offered rate (its CPU a request x rate).
    needed = cpu_ms / 1e3 * len(arrivals) / duration_s
    per_dep = [(d.threads or scale.cores) * len(d.replicas) for d in spec.primaries if d.startable] or [0]
    threads = max(per_dep) if scale.in_turn else sum(per_dep)  # computing at once
    if threads >= scale.cores:
        # Seen: p95 E2EL 12 s through the proxy against 1.7 s straight to the server (BENCHMARKS.md),
        # and 451 of 583 requests timed out at 19 req/s, where the proxy needed 1.5 cores and got 0.75.
        notes.append(f"the proxy shared this machine's {scale.cores} cores with {threads} server threads and kept "
                     f"{busy or 0:.2f} of them busy: the figures through it include that contention, which a gateway "
                     "on cores of its own does not add; the servers alone are measured_direct / error_direct")
    notes.append(f"the proxy used {cpu_ms:.1f} ms of CPU a request: at the offered {len(arrivals) / duration_s:.3g} req/s "
                 f"the gateway needs {needed:.2f} cores of its own, which the plan does not count")
    line, detail = cmp.verdict(overall)
    planned_cost = sum((d.cost_per_request or 0.0) * (d.load_rps or 0.0) for d in spec.primaries) / \
        (sum(d.load_rps or 0.0 for d in spec.primaries) or 1.0) if any(d.cost_per_request for d in spec.primaries) else None
    by_alias = {a: spec.by_alias(a).prices for a in {o.alias for o in proxied.outcomes}}
    return {
        "run_id": spec.run_id, "run_dir": str(spec.run_dir), "llmbench_version": __version__,
        "verified_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "mode": spec.mode,
        "scale": scale.describe(),
        "load": {**load_doc, "duration_s": duration_s, "requests": len(arrivals), "offered_rps": len(arrivals) / duration_s,
                 "timeout_s": timeout_s, "arrivals": "open loop: each request sent at its scheduled time"},
        "units": {"ttft": "ms", "e2el": "ms", "queue": "ms", "throughput": "requests/s", "money": "USD per request",
                  "error": "(measured - predicted) / predicted"},
        "overall": overall, "deployments": deps,
        "gateway": {**cmp.gateway(figs.direct, figs.measured),
                    "proxy_cpu_s": proxy_cpu, "proxy_cpu_ms_per_request": cpu_ms, "proxy_cores_needed": needed,
                    "proxy_cores_busy": busy, "server_threads_here": threads, "shares_server_cores": threads >= scale.cores},
        "money": cmp.money(proxied.outcomes, planned_cost, by_alias.get),
        "fallback": fallback,
        "verdict": line, "verdict_detail": detail,
        "started": {"servers": [{"deployment": o, "command": c} for o, cs in fleet.commands().items() for c in cs],
                    "proxy": {"command": proxy.command, "config": str(proxy.config), "log": str(proxy.log_path)}},
        "notes": notes,
    }

