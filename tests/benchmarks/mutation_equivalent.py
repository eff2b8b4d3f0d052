"""Mutants that cannot change behaviour (equivalent mutants), for bench_mutation.py.

Two kinds, each counted apart from killed and survived, never in the score:
1. Mutants inside a type annotation of a module with `from __future__ import annotations`: the
   annotation is kept as a string and never evaluated (PEP 563), so `str | None` -> `str >> None`
   changes nothing. Skipped before the run (no test is started for them). Modules that use
   pydantic (which evaluates annotations) are left alone.
2. EQUIVALENT: single mutants, matched on the diff cosmic-ray records, each with the reason it
   cannot change behaviour. They are run like any other; a match that survives counts here.
   Only for mutants that are provably equivalent: a real survivor gets a test instead.
"""
from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

# (module[:function], text of the line as it is, text of the mutated line, why the two behave the same)
EQUIVALENT: list[tuple[str, str, str, str]] = [
    ("bench/slo.py", "or float(value) <= 0:", "or float(value) == 0:",
     "the term's regex takes digits only, so the limit is never negative: <= 0 and == 0 agree"),
    ("bench/slo.py", '(1000.0 if unit == "s" else 1.0)', '(1000.0 if unit >= "s" else 1.0)',
     'the unit is "ms" or "s" (regex): "ms" >= "s" is False, "s" >= "s" True, as with =='),
    ("bench/slo.py", 'value = record.tpot_ms if s.metric == "tpot"', 'value = record.tpot_ms if s.metric is "tpot"',
     'both branches read record.tpot_ms (the else branch is getattr(record, "tpot_ms") for tpot)'),
    ("bench/slo.py", "max(record.itl_ms, default=0.0)", "max(record.itl_ms, default= -1.0)",
     "a request without gaps meets any limit either way: limits are positive (parse_slo), 0 and -1 are both under"),
    ("bench/stats.py", "if n_units > 1:", "if n_units != 1:", "n_units is at least 1 (describe returns early without values): > 1 and != 1 agree"),
    ("bench/stats.py", "step = max(1, 4_000_000 // max(1, n))", "step = max(",
     "the chunk size only bounds memory: each resample is computed alone, so any step >= 1 gives the same estimates"),
    ("bench/stats.py", "(int(total.max()) + 1)", "(int(total.max()) * 1)",
     "each row's cumulative counts lie in [0, total] <= max total: an offset of max total keeps rows sorted and apart"),
    ("bench/stats.py", "(int(total.max()) + 1)", "(int(total.max()) << 1)",
     "an offset of twice the largest total keeps the rows laid end to end sorted and apart as max + 1 does"),
    ("bench/stats.py", "(int(total.max()) + 1)", "(int(total.max()) | 1)", "max | 1 is max or max + 1: an offset >= max total (see * 1)"),
    ("bench/stats.py", "(int(total.max()) + 1)", "(int(total.max()) ** 1)", "max ** 1 is max: an offset of max total (see * 1)"),
    ("bench/stats.py", "(int(total.max()) + 1)", "(int(total.max()) + 0)", "max + 0 is max: an offset of max total (see * 1)"),
    ("bench/stats.py", "(int(total.max()) + 1)", "(int(total.max()) / 1)", "max / 1 is max (as a float): an offset of max total (see * 1)"),
    ("bench/stats.py", "(int(total.max()) + 1)", "(int(total.max()) // 1)", "max // 1 is max: an offset of max total (see * 1)"),
    ("bench/stats.py", "(int(total.max()) + 1)", "(int(total.max()) + 2)", "any offset >= max total keeps the rows sorted and apart"),
    ("bench/stats.py", "if arr.size > 1 else 0.0", "if arr.size != 1 else 0.0", "describe has at least one value here: > 1 and != 1 agree"),
    ("bench/stats.py", "return bootstrap_cis(values, [q], seed, level, units)[0]", "return bootstrap_cis(values, [q], seed, level, units)[ -1]",
     "one percentile asked, one interval returned: [0] and [-1] are the same"),
    ("bench/metrics.py", "bool(ok) and len(ok) < len(records)", "bool(ok) and len(ok) != len(records)",
     "ok is a subset of records, so len(ok) <= len(records): < and != agree"),
    ("bench/metrics.py", 'if tpot and tpot["n_units"] > 1 else None', 'if tpot and tpot["n_units"] != 1 else None',
     "describe's n_units is at least 1: > 1 and != 1 agree"),
    ("bench/recommend/choose.py", "elif chosen is not None and o.id == chosen.id:", "elif chosen is not None and o.id is chosen.id:",
     "chosen is one of the options themselves and option ids are unique (naming.model_labels): == and is agree"),
    ("bench/export/servers.py", 'if o["kind"] == "api":', 'if o["kind"] <= "api":',
     'an option\'s kind is "api" or "self-hosted" (recommend/option.py): only "api" is <= "api"'),
    ("bench/export/servers.py", 'role = "primary" if rec["mode"] == "single"', 'role = "primary" if rec["mode"] >= "single"',
     'past "routing" the mode is "single" or "none" (recommend/engine._mode): only "single" is >= "single"'),
    ("bench/planner/capacity.py", 'round(r.get("output_tokens_mean") or 1))', 'round(r.get("output_tokens_mean") or 0))',
     "the max(1, ...) around it turns the 0 back into 1"),
    ("bench/planner/capacity.py", "if sim.window_s > 0 else None", "if sim.window_s >= 0 else None",
     "a plan simulates at least two requests, each taking time: the simulated window is always above 0"),
    ("bench/planner/capacity.py", "if sim.window_s > 0 else None", "if sim.window_s != 0 else None",
     "a plan simulates at least two requests, each taking time: the simulated window is always above 0"),
    ("bench/planner/capacity.py", "if sim.window_s > 0 else None", "if sim.window_s > -1 else None",
     "a plan simulates at least two requests, each taking time: the simulated window is always above 0"),
    ("bench/planner/capacity.py", 'has_rates = any(r.scenario == "concurrency"', 'has_rates = any(r.scenario <= "concurrency"',
     'only concurrency points are named rate=... (batch points are "batch=N")'),
    ("bench/planner/capacity.py", "if (rps is None) == (trace is None):", "if (rps is None) is (trace is None):",
     "both sides are bools, which are singletons: == and is agree"),
    ("bench/planner/capacity.py", "if len(tried) > 1:", "if len(tried) != 1:",
     "at least one batch size is always tried (the given max batch or the measured ones): > 1 and != 1 agree"),
    ("bench/planner/capacity.py", 'has_rates = any(r.scenario == "concurrency"', 'has_rates = any(r.scenario >= "concurrency"',
     'only concurrency points are named rate=... (single-stream and batch points are "single", "batch=N")'),
    ("bench/recommend/options.py", '"batch": 1, "concurrency": 2}', '"batch": 1, "concurrency": 3}',
     "ranks are only compared with each other (and the unranked 9): 0 < 1 < 3 < 9 orders as 0 < 1 < 2 < 9"),
    ("bench/recommend/choose.py", 'd += 1.0 if o.gate == "fail" else far', 'd += 1.0 if o.gate >= "fail" else far',
     'inside `if o.gate in ("fail", "error")`: "error" >= "fail" is False, as "error" == "fail"'),
    ("bench/recommend/choose.py:miss_distance", "o.quality < c.quality_floor:", "o.quality <= c.quality_floor:",
     "at quality == floor the distance it adds is (floor - quality) / floor = 0 either way"),
    ("bench/recommend/choose.py", "any({m for m, _ in f} <= {n}", "any({m for m, _ in f} == {n}",
     "_binding runs only when no option is feasible, so every option misses something: a non-empty set <= {n} is == {n}"),
    ("bench/recommend/choose.py", 'plan.get("meets_slo") is False', 'plan.get("meets_slo") == False',
     "meets_slo is True, False or None (the planner's bool): == False and is False agree"),
    ("bench/recommend/choose.py", '.get("meets_slo") is False else None', '.get("meets_slo") == False else None',
     "meets_slo is True, False or None (the planner's bool): == False and is False agree"),
    ("bench/export/servers.py", 'self_hosted = o["kind"] != "api"', 'self_hosted = o["kind"] > "api"',
     'an option\'s kind is "api" or "self-hosted": only "self-hosted" is > "api", as != "api"'),
    ("bench/metrics.py", "first = records[0]", "first = records[ -1]",
     "the records of one cell share model, variant, scenario and point (its key), all that is read from `first`"),
    ("bench/recommend/options.py", '{"single-stream": 0, "batch": 1', '{"single-stream": -1, "batch": 1',
     "ranks are only compared with each other: -1 < 1 < 2 orders the scenarios as 0 < 1 < 2 does"),
    ("bench/recommend/options.py", 'rank = _SCENARIO_PREFERENCE.get(row.get("scenario"), 9)',
     'rank = _SCENARIO_PREFERENCE.get(row.get("scenario"), 10)',
     "an unranked row (10 instead of 9) still never beats a ranked row (0-2) nor an unranked one (9 < 9 is as false as 10 < 9)"),
    ("bench/recommend/options.py", 'rank < _SCENARIO_PREFERENCE.get(best[key].get("scenario"), 9)',
     'rank < _SCENARIO_PREFERENCE.get(best[key].get("scenario"), 8)',
     "ranks are 0, 1, 2 or 9: none lies in [8, 9), so `rank < 9` and `rank < 8` agree"),
    ("optimizers/cache/cache.py", "return self.insert_many([text], vecs, [response], [meta], toks)[0]",
     "return self.insert_many([text], vecs, [response], [meta], toks)[ -1]",
     "insert_many returns one id per text and is given one text: [0] and [-1] are the same id"),
    ("optimizers/cache/cache.py", "if victim == entry_id:", "if victim >= entry_id:",
     "ids grow with each insert and the policy only holds older entries: a victim is the new entry itself or an older (smaller) id"),
    ("optimizers/cache/cache.py", "if victim == entry_id:", "if victim is entry_id:",
     "a refused entry comes back as the very object passed to policy.on_insert; evicted ids differ in value, so `is` is False as =="),
    ("optimizers/cache/cache.py", "return self.lookup_vector(text, vecs[0], toks[0] if toks else None)",
     "return self.lookup_vector(text, vecs[0], toks[ -1] if toks else None)",
     "one text embedded, so one token-vector entry: [0] and [-1] are the same"),
    ("optimizers/cache/cache.py", "return self.lookup_vector(text, vecs[0], toks[0] if toks else None)",
     "return self.lookup_vector(text, vecs[ -1], toks[0] if toks else None)",
     "one text embedded, so one vector row: [0] and [-1] are the same"),
    ("bench/planner/search.py", "math.floor(min_stable or 1)))", "math.floor(min_stable or 0)))",
     "max(1, min(max_replicas, floor(0))) and max(1, min(max_replicas, floor(1))) are both 1 (max_replicas >= 1)"),
    ("bench/planner/search.py", 'if (slos or goodput is not None) else bool(meets)', 'if (slos or goodput is None) else bool(meets)',
     "they differ only with a goodput and no SLO, where meets is True only if the search found a count whose check is ok"),
    ("bench/planner/search.py", 'if (slos or goodput is not None) else bool(meets)', 'if not (slos or goodput is not None) else bool(meets)',
     "meets is True only at a count whose check is ok (the search's), or without objectives at a stable count, whose check is ok"),
    ("bench/planner/search.py", 'if (slos or goodput is not None) else bool(meets)', 'if (slos and goodput is not None) else bool(meets)',
     "meets is True only at a count whose check is ok (the search's), so `meets and check['ok']` is `meets` in every case"),
    ("bench/planner/search.py", "samples: int = 256, seed: int = 0) -> float:", "seed: int = 1) -> float:",
     "every caller passes seed= (plan_at_batch, planner/validate.py): the default is never read"),
    ("bench/planner/search.py", "if step >= hi:", "if step == hi:",
     "step starts at lo <= hi (callers clamp lo to max_replicas >= 1) and min(hi, 2 * step) never passes hi: >= and == agree"),
    ("bench/planner/search.py", "while lo < hi:", "while lo != hi:",
     "lo (one past the last failed count, or the first count) never exceeds hi (a count that passed), nor does bisection: < and != agree"),
    ("bench/planner/search.py", "min_stable = offered / sat if", "min_stable = offered // sat if",
     "min_stable is only compared with whole replica counts (>= r, < r) or floored, and floor(x) >= r iff x >= r for a whole r"),
    ("bench/planner/search.py", 'min_stable = offered / sat if load["kind"] == "poisson"', 'if load["kind"] <= "poisson"',
     'a load\'s kind is "poisson" or "trace" (capacity._load, plan_run): only "poisson" is <= "poisson"'),
    ("bench/planner/search.py", "        elif replicas > 1:", "        elif replicas != 1:",
     "replicas comes from fewest(lo >= 1, ...), so it is at least 1: != 1 and > 1 agree"),
    ("bench/planner/search.py", "goodput: float | None, min_stable: float | None, seed: int = 0):", "seed: int = 1):",
     "both callers (plan_at_batch, Search.rechecked) pass seed: the default is never read"),
    ("bench/planner/search.py", "meets, replicas = False, max_replicas", "meets, replicas = True, max_replicas",
     "fewest found no count, so the check at max_replicas failed: `meets and check['ok']` is False either way"),
    ("bench/planner/search.py", 'if max_replicas == 1 else f"', 'if max_replicas <= 1 else f"',
     "max_replicas is at least 1 (capacity.validate_limits): <= 1 and == 1 agree"),
    ("bench/planner/search.py", 'if max_replicas == 1 else f"', 'if max_replicas is 1 else f"',
     "1 is a small int, one object in CPython: `max_replicas is 1` is `== 1`"),
    ("bench/quality.py", "if precision_bits(v) == 32]", "if precision_bits(v) >= 32]",
     "no variant name implies more than 32 bits (_PRECISION's largest): >= 32 and == 32 agree"),
    ("bench/quality.py", "if precision_bits(v) == 32]", "if precision_bits(v) is 32]",
     "precision_bits returns one of _PRECISION's small int literals or 0, each one object in CPython: `is 32` is `== 32`"),
    ("bench/quality.py", "    seconds: float = 0.0", "    seconds: float =",
     "every Outputs the stage builds is given its seconds (collect, quality_served.collect_greedy): the default is never read"),
    ("bench/quality.py", "trust_remote_code: bool = False, log=lambda s: None) -> dict:", "trust_remote_code: bool = True,",
     "run_quality, measure_candidate's only caller, always passes trust_remote_code"),
    ("bench/quality.py", "if len(t) > 1:", "if len(t) >= 1:",
     "a text of 0 or 1 tokens has no target: t[1:] and the row's [pad:] slice of the width - 1 columns are both empty, so entering the branch for it changes nothing"),
    ("bench/quality.py", "if len(t) > 1:", "if len(t) != 1:",
     "a text of 0 or 1 tokens has no target: t[1:] and the row's [pad:] slice of the width - 1 columns are both empty, so entering the branch for it changes nothing"),
    ("bench/quality.py", "if len(t) > 1:", "if len(t) is not 1:",
     "a text of 0 or 1 tokens has no target: t[1:] and the row's [pad:] slice of the width - 1 columns are both empty, so entering the branch for it changes nothing"),
    ("bench/quality.py", "if len(t) > 1:", "if len(t) > 0:",
     "a text of 0 or 1 tokens has no target: t[1:] and the row's [pad:] slice of the width - 1 columns are both empty, so entering the branch for it changes nothing"),
    ("bench/quality.py", ".sum(-1).clamp(min=0.0)", ".sum(+1).clamp",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", ".sum(-1).clamp(min=0.0)", ".sum(1).clamp",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", "ref_lp.gather(-1, tgt[:, None])", "ref_lp.gather(+1,",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", "ref_lp.gather(-1, tgt[:, None])", "ref_lp.gather(1,",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", "var_lp.gather(-1, tgt[:, None])", "var_lp.gather(+1,",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", "var_lp.gather(-1, tgt[:, None])", "var_lp.gather(1,",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", "(ref_lp.argmax(-1) == var_lp.argmax(-1))", "argmax(+1)",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", "(ref_lp.argmax(-1) == var_lp.argmax(-1))", "argmax(1)",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", "entropy = -(lp.exp() * lp).sum(-1)", "lp).sum(+1)",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", "entropy = -(lp.exp() * lp).sum(-1)", "lp).sum(1)",
     "the log-probabilities are 2-D here (valid positions x vocabulary), so dimension 1 is dimension -1"),
    ("bench/quality.py", 'if q.get("role") == "reference":', 'if q.get("role") is "reference":',
     "the role is the literal set by measure_candidate in the same process (quality_stage never reads it back from a file): "
     "one interned string, so `is` matches as =="),
    ("bench/quality.py", "time.perf_counter() - t", "time.perf_counter() % t",
     "now % t is now - t while less than t seconds pass, and perf_counter's t counts from boot on Linux (hours, against seconds)"),
    ("bench/quality.py", "while n < min(len(a), len(b)) and", "while n != min(len(a), len(b)) and",
     "n counts up from 0 by one and stops at min(len(a), len(b)) at the latest: n < m and n != m agree"),
    ("bench/quality.py", "        if variant == ref_name:", "        if variant is ref_name:",
     "ref_name is the very string taken from `variants` (reference_variant returns a listed element), so `is` and == agree"),
    ("bench/quality.py", "others = [v for v in cand[\"variants\"] if v != ref_name]", "if v is not ref_name]",
     "ref_name is the very string taken from the candidate's variants (reference_variant returns a listed element)"),
]


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) (line, column) of every annotation that is never evaluated; [] where they may be."""
    if "from __future__ import annotations" not in source or "pydantic" in source:
        return []
    spans = []
    for node in ast.walk(ast.parse(source)):
        notes: list[ast.expr | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            notes += [x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x is not None]
            notes.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        spans += [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in notes if n is not None]
    return spans


def skip_annotation_mutants(db: Path, module_path: Path) -> int:
    """Mark the mutants inside never-evaluated annotations as skipped in a cosmic-ray session; how many."""
    spans = annotation_spans(module_path.read_text())
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT job_id, start_pos_row, start_pos_col, end_pos_row, end_pos_col FROM mutation_specs").fetchall()
        done = {j for (j,) in con.execute("SELECT job_id FROM work_results")}
        hit = [job for job, sr, sc, er, ec in rows if job not in done
               and any(a <= (sr, sc) and (er, ec) <= b for a, b in spans)]
        con.executemany("INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id) "
                        "VALUES ('SKIPPED', 'equivalent: inside a type annotation (never evaluated)', NULL, NULL, ?)",
                        [(j,) for j in hit])
        con.commit()
    finally:
        con.close()
    return len(hit)


def equivalent_reason(module: str, diff: str | None, function: str | None = None) -> str | None:
    """The EQUIVALENT entry's reason when this surviving mutant's diff (in `function`) is one of them."""
    lines = (diff or "").splitlines()
    old = [x[1:] for x in lines if x.startswith("-") and not x.startswith("---")]
    new = [x[1:] for x in lines if x.startswith("+") and not x.startswith("+++")]
    for mod, before, after, why in EQUIVALENT:
        if mod in (module, f"{module}:{function}") and any(before in x for x in old) and any(after in x for x in new):
            return why
    return None
