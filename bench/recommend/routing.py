"""A routing policy: each request class goes to the cheapest option meeting that class's
constraints, with a fallback to a stronger option; and what that saves against one option for all."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from llmbench.recommend.choose import Constraints, failures
from llmbench.recommend.classes import RequestClass
from llmbench.recommend.inputs import RunData
from llmbench.recommend.option import LATENCY_METRICS, Option
from llmbench.stats import describe


def _cell_records(data: RunData) -> dict[tuple, list]:
    cells: dict[tuple, list] = defaultdict(list)
    for r in data.records:
        if r.ok:
            cells[r.cell].append(r)
    return cells


def class_view(o: Option, cls: RequestClass, cells: dict[tuple, list], rows: dict[tuple, dict]) -> Option:
    """The option as it serves this class: latency and cost from that class's own requests."""
    if o.kind == "api":
        from llmbench.recommend.options import api_cost_per_1k

        prices = o.prices or {}
        cost = api_cost_per_1k(cls.prompt_tokens_mean, cls.output_tokens_mean, prices.get("input_usd_per_1m") or 0.0,
                               prices.get("output_usd_per_1m") or 0.0)
        return replace(o, cost_per_1k_usd=cost)
    # A served request whose stream carried tokens but no text (llama.cpp withholds partial UTF-8,
    # common on random weights) has no token times: it counts as served but has no latency here.
    recs = [r for r in cells.get(o.cell, []) if r.e2el_ms is not None]
    mine = [r for r in recs if cls.holds(r.prompt_tokens)]
    view = replace(o, notes=list(o.notes), latency=dict(o.latency))
    if not mine or not recs:
        view.notes.append(f"no request of class {cls.name!r} measured: overall figures used")
        return view
    stats = {"ttft_ms": describe([r.ttft_ms for r in mine]), "tpot_ms": describe([r.tpot_ms for r in mine]),
             "e2el_ms": describe([r.e2el_ms for r in mine])}
    # The class's own figures, with the option's additions (cache lookup, compression) on top:
    # the option's latency minus its base row's latency is what the setting adds or removes.
    base_row = rows.get(o.cell, {})
    for m, s in stats.items():
        if s and m in LATENCY_METRICS:
            added = {k: (o.latency.get(m) or {}).get(k, 0.0) - ((base_row.get(m) or {}).get(k) or 0.0)
                     for k in s if isinstance(s.get(k), float) and (k.startswith("p") or k == "mean")}
            view.latency[m] = {k: (max(0.0, v + added[k]) if k in added else v) for k, v in s.items()}
    # A class's share of a self-hosted machine is its share of busy time: cost scales with E2EL.
    if o.cost_per_1k_usd is not None:
        view.cost_per_1k_usd = o.cost_per_1k_usd * float(np.mean([r.e2el_ms for r in mine])) / float(np.mean([r.e2el_ms for r in recs]))
    return view


def _deployment(o: Option) -> tuple:
    # Cache and compression settings of one model run on the same servers: a fallback must be
    # another deployment to help when the first one is down or overloaded.
    return (o.model, o.variant, o.device)


def _root(o: Option, by_id: dict[str, Option]) -> Option:
    # A standby is a server: the plain option under any cache or compression setting.
    while o.base_id and o.base_id in by_id:
        o = by_id[o.base_id]
    return o


def pick_fallbacks(primary: Option, views: list[Option], c: Constraints, limit: int = 2) -> tuple[list[str], bool]:
    """(fallback option ids, whether the first is stronger): other deployments, stronger ones first
    (Option.strength: verified quality, then precision, then size), then other feasible ones; one
    per deployment (two batch sizes of one server are no fallback), as plain servers."""
    by_id = {v.id: v for v in views}
    stronger = [v for v in views if _deployment(v) != _deployment(primary) and v.strength() > primary.strength()
                and v.cost_per_1k_usd is not None]
    stronger.sort(key=lambda v: (bool(failures(v, None, c)), v.cost_per_1k_usd, v.id))
    others = sorted((v for v in views if _deployment(v) != _deployment(primary) and v not in stronger
                     and v.cost_per_1k_usd is not None and not failures(v, None, c)), key=lambda v: (v.cost_per_1k_usd, v.id))
    out, seen = [], {_deployment(primary)}
    for v in stronger + others:
        if _deployment(v) not in seen:
            seen.add(_deployment(v))
            out.append(_root(v, by_id).id)
    return out[:limit], bool(stronger)


def route(data: RunData, options: list[Option], classes: list[RequestClass], c: Constraints,
          single_best: Option | None) -> dict:
    """{classes: [{class, share, option, cost_per_1k_usd, fallbacks, why}], saving: {...}}."""
    cells = _cell_records(data)
    rows = {(r["model"], r["variant"], r["scenario"], r["point"]): r for r in data.rows if "model" in r}
    if single_best is not None:
        # The gateway's semantic cache is one switch for all traffic: classes cannot mix options
        # with and without it, so they route among options with the chosen one's setting.
        options = [o for o in options if bool(o.cache) == bool(single_best.cache)]
    class_c = Constraints(slos=c.slos, quality_floor=c.quality_floor)  # the budget applies to the whole plan
    out, routed_cost = [], 0.0
    for cls in classes:
        views = [class_view(o, cls, cells, rows) for o in options]
        ok = sorted((v for v in views if not failures(v, None, class_c)),
                    key=lambda v: (v.cost_per_1k_usd, v.p95_ms if v.p95_ms is not None else float("inf")))
        entry: dict = {"class": cls.to_dict()}
        if not ok:
            entry.update(option=None, why="no option meets this class's SLO and quality floor", fallbacks=[])
            out.append(entry)
            routed_cost = float("nan")
            continue
        primary = ok[0]
        fallbacks, stronger = pick_fallbacks(primary, views, class_c)
        misses = [f for f in fallbacks if failures(next(v for v in views if v.id == f), None, class_c)]
        entry.update(option=primary.id, cost_per_1k_usd=primary.cost_per_1k_usd, p95_ms=primary.p95_ms, quality=primary.quality,
                     why=f"cheapest of {len(ok)} options meeting this class's constraints", fallbacks=fallbacks,
                     fallback_note=("stronger option" if stronger else ("another feasible deployment" if fallbacks else "none available"))
                     + (f"; {', '.join(misses)} miss this class's constraints (kept for availability)" if misses else ""))
        out.append(entry)
        routed_cost += cls.share * primary.cost_per_1k_usd
    return {"classes": out, "routed_cost_per_1k_usd": None if np.isnan(routed_cost) else routed_cost,
            "saving": _saving(data, options, classes, cells, rows, routed_cost, single_best, c)}


def _saving(data, options, classes, cells, rows, routed: float, single_best: Option | None, c: Constraints) -> dict:
    """Routed cost against serving every class with one option: the chosen one and the strongest."""
    def all_traffic(o: Option) -> float | None:
        costs = [(cls.share, class_view(o, cls, cells, rows).cost_per_1k_usd) for cls in classes]
        return None if any(v is None for _, v in costs) else sum(s * v for s, v in costs)

    slo_ok = [o for o in options if not failures(o, None, Constraints(slos=c.slos)) and o.cost_per_1k_usd is not None]
    strongest = max(slo_ok or [o for o in options if o.cost_per_1k_usd is not None], key=lambda o: o.strength(), default=None)
    out: dict = {}
    for label, ref in (("vs_single_best", single_best), ("vs_strongest", strongest)):
        base = all_traffic(ref) if ref is not None else None
        if base is None or np.isnan(routed) or base <= 0:
            out[label] = {"option": ref.id if ref else None, "saving_pct": None, "note": "not computed (no reference option, or a class no option serves)"}
            continue
        out[label] = {"option": ref.id, "cost_per_1k_usd": base, "routed_cost_per_1k_usd": routed,
                      "saving_pct": round(100.0 * (base - routed) / base, 2)}
    return out
