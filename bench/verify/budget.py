"""The budget check: the gateway's per-deployment rpm/tpm, driven past on purpose.

The emitted budgets are what the replicas carry at the SLO for a whole minute (LiteLLM counts per
UTC minute): often thousands of requests, more than this machine pushes through a proxy in a check.
So the check starts a second proxy on a copy of verify's config whose budgets are all divided by
one factor (the smallest primary budget becomes PER_REPLICA requests; ratios kept), and sends
requests one at a time (LiteLLM adds a request's tokens when it ends) until every budget the alias
can reach is spent, plus EXTRA. Reported: which deployment served each request (the proxy's
x-litellm-model-id), any deployment admitted past its budget (should be none), what the fallbacks
took, what was refused with 429, other failures, and whether every failure carries its error.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable

import yaml

from llmbench.export.yamlio import dump
from llmbench.verify.compare import failures_by_kind
from llmbench.verify.load import make_backend, send_one_by_one
from llmbench.verify.proxy import Proxy
from llmbench.workload import Prompt

PER_REPLICA = 3  # requests the tightest primary budget allows in the check
EXTRA = 2  # requests past every budget: each must come back 429
MAX_REQUESTS = 60
MINUTE_MARGIN_S = 20.0  # start in a fresh UTC minute if fewer seconds than this are left in this one
BUDGET_CONFIG = "litellm.verify-budget.yaml"


def _reach(cfg: dict, alias: str) -> list[dict]:
    """The entries a request to `alias` can land on: the alias's own, then its fallbacks'."""
    fallbacks = {k: v for d in (cfg.get("router_settings") or {}).get("fallbacks") or [] for k, v in d.items()}
    names = [alias, *fallbacks.get(alias, [])]
    return [m for n in names for m in cfg.get("model_list") or [] if m.get("model_name") == n]


def scaled_config(cfg: dict, alias: str, per_replica: int = PER_REPLICA) -> tuple[dict, float, dict] | None:
    """(a copy of the config with every rpm/tpm divided by one factor, the factor, the budgets of the
    entries `alias` reaches: id -> role, emitted and applied rpm/tpm); None when the alias has none."""
    reach = [m for m in _reach(cfg, alias) if m["litellm_params"].get("rpm")]
    own = [m for m in reach if m.get("model_name") == alias]
    if not own:
        return None
    factor = max(1.0, min(m["litellm_params"]["rpm"] for m in own) / per_replica)
    doc = copy.deepcopy(cfg)
    for m in doc.get("model_list") or []:
        p = m["litellm_params"]
        for k in ("rpm", "tpm"):
            if p.get(k):
                p[k] = max(1, math.floor(p[k] / factor))
    by_id = {m["model_info"]["id"]: m for m in doc["model_list"]}
    budgets = {m["model_info"]["id"]: {
        "role": m["model_info"].get("llmbench_role"), "emitted_rpm": m["litellm_params"]["rpm"],
        "emitted_tpm": m["litellm_params"].get("tpm"), "rpm": by_id[m["model_info"]["id"]]["litellm_params"]["rpm"],
        "tpm": by_id[m["model_info"]["id"]]["litellm_params"].get("tpm")} for m in reach}
    return doc, factor, budgets


def _fresh_minute() -> None:
    left = 60.0 - time.time() % 60.0
    if left < MINUTE_MARGIN_S:
        time.sleep(left + 0.5)


def analyse(results: list, budgets: dict, alias: str, minutes: set[int]) -> dict:
    """The check's figures from its results, in the order sent (see the module's docstring)."""
    served: dict[str, list[int]] = {i: [] for i in budgets}
    unknown = 0
    for r in results:
        if r.ok:
            if r.served_by in served:
                served[r.served_by].append((r.prompt_tokens or 0) + r.output_tokens)
            else:
                unknown += 1
    refused = sum(not r.ok and r.http_status == 429 for r in results)
    errors = failures_by_kind(r for r in results if r.http_status != 429)
    for i, b in budgets.items():
        tokens = served[i]
        # LiteLLM admits a request while this minute's count is under the rpm and its tokens under the
        # tpm, so the last one admitted may take the tokens past the tpm, never one more.
        b.update(served=len(tokens), tokens=sum(tokens),
                 past_budget=len(tokens) > b["rpm"] or (b["tpm"] is not None and sum(tokens[:-1]) >= b["tpm"]))
    by_role = lambda role: sum(b["served"] for b in budgets.values() if (b["role"] == "fallback") == (role == "fallback"))  # noqa: E731
    return {
        "skipped": False, "alias": alias, "sent": len(results), "budgets": budgets,
        "served_by_primary": by_role("primary"), "served_by_fallback": by_role("fallback"), "served_by_unknown": unknown,
        "refused_429": refused, "other_failures": errors,
        "past_budget": sorted(i for i, b in budgets.items() if b["past_budget"]),
        "every_failure_has_an_error": all(r.ok or bool(r.error_kind and r.error) for r in results),
        "one_minute": len(minutes) == 1,
        "enforced": refused > 0 and not any(b["past_budget"] for b in budgets.values()),
    }


def check(cfg_path: Path, alias: str, key_envs: list[str], log_path: Path, prompts: list[Prompt], tokenizer,
          timeout_s: float, headers: dict[str, str], progress: Callable[[str], None] = lambda s: None) -> dict:
    """Start a proxy on the scaled copy of `cfg_path`, drive `alias` past its budgets, stop it; the figures.
    `headers`: sent with every request besides the proxy's key (the cache bypass, as for the plan check)."""
    cfg = yaml.safe_load(cfg_path.read_text())
    scaled = scaled_config(cfg, alias)
    if scaled is None:
        return {"skipped": True, "reason": f"the gateway config gives '{alias}' no rpm/tpm budget"}
    doc, factor, budgets = scaled
    checks = (doc.get("router_settings") or {}).get("optional_pre_call_checks") or []
    sent = min(MAX_REQUESTS, sum(b["rpm"] for b in budgets.values()) + EXTRA)
    path = cfg_path.with_name(BUDGET_CONFIG)
    path.write_text(dump(doc, f"Written by `llmbench verify` from {cfg_path.name} for the budget check: every rpm/tpm "
                              f"divided by {factor:.6g}, so that this machine reaches them in a few requests."))
    progress(f"budget check: {sent} requests one at a time to '{alias}', budgets divided by {factor:.3g}")
    proxy = Proxy(path, log_path, key_envs, interaction_log=log_path.with_name(log_path.stem + "-requests.jsonl"))
    backend = make_backend(proxy.url, alias, tokenizer, timeout_s)
    try:
        proxy.start()
        _fresh_minute()
        first = int(time.time() // 60)
        results = send_one_by_one([backend], prompts, {**headers, "Authorization": f"Bearer {proxy.key}"}, timeout_s,
                                  per_backend=sent)
        minutes = {first, int(time.time() // 60)}
    finally:
        proxy.stop()
    out = analyse(results, budgets, alias, minutes)
    out.update(divided_by=factor, config=f"gateway/{path.name}", pre_call_checks=checks,
               capped=sent == MAX_REQUESTS and sent < sum(b["rpm"] for b in budgets.values()) + EXTRA)
    return out
