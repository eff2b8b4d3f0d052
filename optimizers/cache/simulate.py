"""Replay traffic through the semantic cache and report what it would save, and what it would get wrong.

Entry points (all return one JSON-ready dict):
  simulate_pairs(path, target_false_hit=0.05, ...)   labelled pairs: cache every text_a, look up every text_b
  simulate_prompts(prompts, ...)                     a prompt stream: look up each, cache it on a miss
  simulate_log(path, ...)                            either, by the log's kind
  sweep_pairs(path, ...)                             hit rate against false-hit rate over thresholds
Every result carries `baseline`: the same figures for plain cosine, its threshold chosen for the
same target false-hit rate on the same dev pairs as the shipped verifier, and `gateway`: whichever
of the two is plain cosine (what LiteLLM's semantic cache can run).

Units (also written into every result as `units`): `hit_rate` is per label-1 lookup in a labelled
pairs file and per request in a prompt log; `false_hit_rate` is per label-0 lookup;
`served_from_cache_rate` and `wrong_answer_rate` are per request (lookup) whatever the log.

Labelled pairs, protocol: every distinct text_a is cached, then every text_b is looked up. A
text_b whose normalised text equals a cached prompt is a repeat: the identical entry is the right
answer to it, whatever the pair's label says (the label compares text_b with its own text_a, not
with the identical copy already cached), so such lookups count as label 1 with the identical entry
as the right one; `repeats` says how many there were and how many were relabelled from 0. Other
labels are taken as given: label noise in them (QQP has some) is not corrected.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from llmbench.optimizers.cache.cache import SemanticCache, normalise_text
from llmbench.optimizers.cache.chooser import Outcomes, curve, rates
from llmbench.optimizers.cache.decision import CosineRule, DecisionRule
from llmbench.optimizers.cache.embedder import Embedder, default_embedder
from llmbench.optimizers.cache.figures import (SAMPLE_TRAFFIC, UNITS_PAIRS, UNITS_PROMPTS,  # noqa: F401
                                               embed_latency_ms, gateway_block, per_request)
from llmbench.optimizers.cache.logs import PairsLog, PromptLog, read_log
from llmbench.optimizers.cache.profile import CacheProfile, load_profile

Progress = Callable[[str, int, int], None]  # (stage, done, total)
CHARS_PER_TOKEN = 4.0  # rule of thumb for English when a log has no token counts


def _estimate_tokens(text: str) -> int:
    return max(1, int(round(len(text) / CHARS_PER_TOKEN)))


def _embed(embedder: Embedder, texts: list[str], tokens: bool, progress: Progress | None, stage: str):
    """Embed texts (from the on-disk store where possible); returns vectors, token vectors, ms per fresh text."""
    missing = embedder.missing(texts, tokens=tokens) if hasattr(embedder, "missing") else len(texts)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(stage, done[0], missing)

    if progress:
        progress(stage, 0, missing)
    t0 = time.perf_counter()
    kwargs = {"progress": tick} if hasattr(embedder, "missing") else {}
    if tokens:
        vecs, toks = embedder.embed_with_tokens(texts, **kwargs)  # type: ignore[attr-defined]
    else:
        vecs, toks = embedder.embed(texts, **kwargs), None
    elapsed = time.perf_counter() - t0
    if progress:
        progress(stage, missing, missing)
    return vecs, toks, (elapsed * 1e3 / missing if missing else None)


def _rules(profile: CacheProfile, target_false_hit: float, threshold: float | None) -> tuple[DecisionRule, CosineRule]:
    baseline = profile.cosine_rule(target_false_hit)
    main = CosineRule(float(threshold)) if threshold is not None else profile.verifier_rule(target_false_hit)
    return main, baseline


def _setting(main: DecisionRule, profile: CacheProfile, target: float, fixed: bool) -> dict:
    """What ran: the rule and threshold, and for the shipped setting which one and its dev figures."""
    s = profile.setting_for(target)
    out = {"rule": main.name, "threshold": main.threshold, "target_false_hit": target,
           "candidates": profile.candidates, "source": "--threshold" if fixed else "cache profile"}
    if fixed:
        return out
    out.update({"verifier": s.verifier, "dev_target": s.target, "dev_in_sample": s.dev,
                "dev_note": "in-sample: chosen on the dev pairs the profile was fitted on, so its false-hit "
                            "rate sits at the target by construction; held-out figures: fit --check",
                "fitted_on": profile.meta.get("fitted_on"), "fitted_sha256": profile.meta.get("sha256")})
    if s.verifier in profile.verifiers:
        out["cosine_floor"] = profile.verifiers[s.verifier].floor
    return out


Price = float | tuple[float, float] | None  # USD per 1M tokens: one figure, or (input, output)


def _split_price(price: Price) -> tuple[float, float] | None:
    if price is None:
        return None
    if isinstance(price, (tuple, list)):
        return float(price[0]), float(price[1])
    return float(price), float(price)


def _savings(served: np.ndarray, prompt_tokens: Sequence[int], output_tokens: Sequence[int],
             costs: Sequence[float | None], price: Price) -> dict:
    """Calls, tokens and cost the served lookups avoid: a log's own costs where every record has one,
    else tokens at the given price, else no cost."""
    ptok = int(sum(t for t, s in zip(prompt_tokens, served) if s))
    otok = int(sum(t for t, s in zip(output_tokens, served) if s))
    split = _split_price(price)
    if len(costs) and all(c is not None for c in costs):
        cost = float(sum(c for c, s in zip(costs, served) if s))
    elif split is not None:
        cost = (ptok * split[0] + otok * split[1]) / 1e6
    else:
        cost = None
    return {"api_calls_saved": int(np.sum(served)), "tokens_saved": ptok + otok, "cost_saved": cost}


def simulate_pairs(log: str | Path | PairsLog, target_false_hit: float = 0.05, threshold: float | None = None,
                   price_per_1m: Price = None, embedder: Embedder | None = None,
                   profile: CacheProfile | None = None, progress: Progress | None = None,
                   keep_outcomes: bool = False, traffic: str | None = None) -> dict:
    """Cache every text_a, look up every text_b; hit, false-hit and wrong-entry rates for the rule and the baseline.

    The rule is the shipped verifier at the setting chosen for `target_false_hit`, or plain cosine
    at `threshold` when one is given. Token savings are estimated from text length (pairs carry no
    counts); cost_saved needs `price_per_1m`: USD per million tokens, one figure or (input, output).
    `traffic` says whose traffic the log is (default: its path).
    """
    pairs = log if isinstance(log, PairsLog) else read_log(log)
    if not isinstance(pairs, PairsLog):
        raise ValueError(f"{log}: not a labelled pairs file")
    profile = profile or load_profile()
    main, baseline = _rules(profile, target_false_hit, threshold)
    embedder = embedder or default_embedder()
    need_tokens = main.needs_tokens

    entries = list(dict.fromkeys(pairs.texts_a))  # a cache holds each distinct prompt once
    vec_a, tok_a, ms_a = _embed(embedder, entries, need_tokens, progress, "embed cached prompts")
    vec_b, tok_b, ms_b = _embed(embedder, pairs.texts_b, need_tokens, progress, "embed lookups")

    cache = SemanticCache(rule=main, candidates=profile.candidates, dim=vec_a.shape[1])
    ids = cache.insert_many(entries, vec_a, tokens=tok_a)
    cache.store.warm_up()  # a first-call compile is not lookup latency
    id_of_text = dict(zip(entries, ids))

    same_text: dict[str, set[int]] = {}
    for text, entry_id in id_of_text.items():
        same_text.setdefault(normalise_text(text), set()).add(entry_id)

    n = len(pairs.texts_b)
    labels = np.asarray(pairs.labels).copy()
    repeats = relabelled = 0
    main_scores, main_ok = np.full(n, -np.inf), np.zeros(n, bool)
    base_scores, base_ok = np.full(n, -np.inf), np.zeros(n, bool)
    for i, (a, b) in enumerate(zip(pairs.texts_a, pairs.texts_b)):
        tb = tok_b[i] if tok_b is not None else None
        res = cache.lookup_vector(b, vec_b[i], tb)
        right = same_text.get(normalise_text(b))  # a repeat: the identical entry is the right answer
        if right:
            repeats += 1
            relabelled += int(labels[i] == 0)
            labels[i] = 1
        else:
            right = {id_of_text[a]}
        if res.candidate_id is not None:
            main_scores[i] = res.score
            main_ok[i] = res.candidate_id in right
        cands = res.candidates or cache.candidates_for(vec_b[i])  # the nearest entries, judged by plain cosine
        j, score = baseline.best(b, tb, cands)
        if j is not None:
            base_scores[i] = score
            base_ok[i] = cands[j].entry_id in right
        if progress and (i % 200 == 0 or i == n - 1):
            progress("lookups", i + 1, n)

    est_tokens = [_estimate_tokens(t) for t in pairs.texts_b]
    no_costs, no_output = [None] * n, [0] * n
    mo, bo = Outcomes(main_scores, main_ok, labels), Outcomes(base_scores, base_ok, labels)
    result = rates(mo, main.threshold)
    result.update(_savings(mo.scores >= main.threshold, est_tokens, no_output, no_costs, price_per_1m))
    result.update(per_request(result))
    result.update({"log": str(pairs.path), "kind": "pairs", "entries": len(entries),
                   "units": UNITS_PAIRS, "traffic": traffic or str(pairs.path),
                   "repeats": {"lookups": repeats, "relabelled_from_0": relabelled,
                               "rule": "a lookup whose normalised text is cached counts as label 1, "
                                       "the identical entry being its right answer"},
                   "tokens_estimated": True, "price_per_1m": price_per_1m,
                   "lookup_ms_p50": cache.stats.latency_ms(50), "lookup_ms_p99": cache.stats.latency_ms(99),
                   "exact_hits": cache.stats.exact_hits,
                   "embed_ms_p50": embed_latency_ms(embedder, pairs.texts_b, need_tokens),
                   "embed_ms_per_text": _mean_ms(ms_a, ms_b, len(entries), n),
                   "embedder": embedder.name, "setting": _setting(main, profile, target_false_hit, threshold is not None)})
    base = rates(bo, baseline.threshold)
    base.update(per_request(base))
    base.update(_savings(bo.scores >= baseline.threshold, est_tokens, no_output, no_costs, price_per_1m))
    base.update({"rule": "cosine", "threshold": baseline.threshold})
    result["baseline"] = base
    result["hit_rate_vs_baseline"] = (result["hit_rate"] / base["hit_rate"]
                                      if result["hit_rate"] is not None and base["hit_rate"] else None)
    result["gateway"] = gateway_block(result, cache.stats.latency_ms(50))
    if keep_outcomes:
        result["_outcomes"] = {"rule": mo, "baseline": bo}
    return result


def _mean_ms(ms_a: float | None, ms_b: float | None, na: int, nb: int) -> float | None:
    vals = [m for m in (ms_a, ms_b) if m is not None]
    return float(np.mean(vals)) if vals else None


def simulate_prompts(prompts: Sequence[str], prompt_tokens: Sequence[int | None] | None = None,
                     output_tokens: Sequence[int | None] | None = None, costs: Sequence[float | None] | None = None,
                     target_false_hit: float = 0.05, threshold: float | None = None,
                     price_per_1m: Price = None, embedder: Embedder | None = None,
                     profile: CacheProfile | None = None, progress: Progress | None = None,
                     source: str = "prompts", traffic: str | None = None) -> dict:
    """Replay prompts in order: look each up, cache it on a miss. Hit rate and what the hits save.

    Token counts and costs per prompt are used where given (a run's requests.jsonl has them);
    missing prompt counts are estimated from text length. Without labels there are no false-hit
    figures: those keys are None.
    """
    if not prompts:
        raise ValueError("no prompts to replay")
    profile = profile or load_profile()
    main, baseline = _rules(profile, target_false_hit, threshold)
    embedder = embedder or default_embedder()
    vecs, toks, ms = _embed(embedder, list(prompts), main.needs_tokens, progress, "embed prompts")
    n = len(prompts)
    ptok = [p if p is not None else _estimate_tokens(t) for p, t in
            zip(prompt_tokens or [None] * n, prompts)]
    otok = [o or 0 for o in (output_tokens or [None] * n)]
    cost_list = list(costs) if costs is not None else [None] * n

    def replay(rule: DecisionRule, stage: str) -> tuple[np.ndarray, SemanticCache]:
        cache = SemanticCache(rule=rule, candidates=profile.candidates, dim=vecs.shape[1])
        cache.store.warm_up()
        served = np.zeros(n, bool)
        for i, text in enumerate(prompts):
            tv = toks[i] if (toks is not None and rule.needs_tokens) else None
            res = cache.lookup_vector(text, vecs[i], tv)
            served[i] = res.hit
            if not res.hit:
                cache.insert_many([text], vecs[i:i + 1], tokens=[tv] if tv is not None else None)
            if progress and (i % 200 == 0 or i == n - 1):
                progress(stage, i + 1, n)
        return served, cache

    served, cache = replay(main, "replay")
    base_served, base_cache = replay(baseline, "replay baseline")
    unlabelled = {"false_hit_rate": None, "wrong_entry_rate": None, "precision": None, "false_hits": None,
                  "wrong_entries": None}
    result = {"log": source, "kind": "prompts", "lookups": n, "served": int(served.sum()), "hits": int(served.sum()),
              "hit_rate": float(served.mean()), **unlabelled, "entries": len(cache),
              "units": UNITS_PROMPTS, "traffic": traffic or source, "exact_hits": cache.stats.exact_hits,
              **_savings(served, ptok, otok, cost_list, price_per_1m),
              "tokens_estimated": prompt_tokens is None or any(p is None for p in prompt_tokens),
              "price_per_1m": price_per_1m,
              "lookup_ms_p50": cache.stats.latency_ms(50), "lookup_ms_p99": cache.stats.latency_ms(99),
              "embed_ms_p50": embed_latency_ms(embedder, list(prompts), main.needs_tokens),
              "embed_ms_per_text": ms, "embedder": embedder.name,
              "setting": _setting(main, profile, target_false_hit, threshold is not None)}
    result.update(per_request(result))
    base = {"rule": "cosine", "threshold": baseline.threshold, "lookups": n, "served": int(base_served.sum()),
            "hits": int(base_served.sum()), "hit_rate": float(base_served.mean()), **unlabelled,
            **_savings(base_served, ptok, otok, cost_list, price_per_1m)}
    base.update(per_request(base))
    result["baseline"] = base
    result["hit_rate_vs_baseline"] = result["hit_rate"] / base["hit_rate"] if base["hit_rate"] else None
    gw_cache = cache if result["setting"]["rule"] == "cosine" else base_cache
    result["gateway"] = gateway_block(result, gw_cache.stats.latency_ms(50))
    return result


def simulate_log(path: str | Path, **kwargs) -> dict:
    """`simulate_pairs` or `simulate_prompts`, by what the log holds."""
    log = read_log(path)
    if isinstance(log, PairsLog):
        return simulate_pairs(log, **kwargs)
    assert isinstance(log, PromptLog)
    kwargs.pop("keep_outcomes", None)
    return simulate_prompts(log.prompts, log.prompt_tokens, log.output_tokens, log.costs, source=str(path),
                            **kwargs)


COSINE_GRID = np.round(np.arange(0.50, 1.0001, 0.01), 4)
PROB_GRID = np.round(np.arange(0.0, 1.0001, 0.02), 4)


def sweep_pairs(log: str | Path | PairsLog, target_false_hit: float = 0.05, plot_path: str | Path | None = None,
                **kwargs) -> dict:
    """Hit rate against false-hit rate over thresholds, for plain cosine and for the verifier.

    Returns the simulate_pairs result for the shipped setting plus `sweep` = {"cosine": [...],
    "verifier": [...]} (one `rates` dict per threshold); writes a PNG when plot_path is given.
    """
    result = simulate_pairs(log, target_false_hit=target_false_hit, keep_outcomes=True, **kwargs)
    outcomes = result.pop("_outcomes")
    cos_curve = curve(outcomes["baseline"], COSINE_GRID)
    ver_curve = curve(outcomes["rule"], PROB_GRID) if result["setting"]["rule"] == "verifier" else []
    result["setting"]["sweep_note"] = ("verifier curve: its probability threshold swept at the shipped "
                                       "setting's floor; cosine curve: the nearest entry's cosine swept")
    for point in cos_curve + ver_curve:
        point.update(per_request(point))
    result["sweep"] = {"cosine": cos_curve, "verifier": ver_curve}
    if plot_path is not None:
        from llmbench.optimizers.cache.plot import plot_sweep

        plot_sweep(result, Path(plot_path))
        result["plot"] = str(plot_path)
    return result
