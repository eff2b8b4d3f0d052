"""The budget check's arithmetic: scaling a gateway config's budgets, and reading what the proxy did."""
from __future__ import annotations

import math

from llmbench.served.client import StreamResult
from llmbench.verify.budget import PER_REPLICA, analyse, scaled_config


def _entry(name: str, id_: str, role: str, rpm: int | None, tpm: int | None) -> dict:
    params = {"model": f"openai/{id_}", **({"rpm": rpm} if rpm else {}), **({"tpm": tpm} if tpm else {})}
    return {"model_name": name, "litellm_params": params, "model_info": {"id": id_, "llmbench_role": role}}


CFG = {"model_list": [_entry("llmbench", "p1", "primary", 600, 72_000), _entry("llmbench", "p2", "primary", 900, 108_000),
                      _entry("llmbench-fallback-b", "fb", "fallback", 150, 30_000), _entry("other", "o", "primary", 40, 400),
                      _entry("llmbench-embedding", "emb", "embedder", None, None)],
       "router_settings": {"fallbacks": [{"llmbench": ["llmbench-fallback-b"]}],
                           "optional_pre_call_checks": ["enforce_model_rate_limits"]}}


def test_every_budget_is_divided_by_one_factor_that_leaves_the_tightest_primary_a_few_requests():
    doc, factor, budgets = scaled_config(CFG, "llmbench")
    assert factor == 600 / PER_REPLICA == 200.0
    assert set(budgets) == {"p1", "p2", "fb"}  # what 'llmbench' reaches: its replicas, then its fallback's
    assert budgets["p1"] == {"role": "primary", "emitted_rpm": 600, "emitted_tpm": 72_000, "rpm": 3, "tpm": 360}
    assert (budgets["p2"]["rpm"], budgets["p2"]["tpm"]) == (math.floor(900 / 200), math.floor(108_000 / 200)) == (4, 540)
    assert (budgets["fb"]["rpm"], budgets["fb"]["tpm"]) == (1, 150)  # 150 / 200 rounds down, to at least 1
    params = {m["model_info"]["id"]: m["litellm_params"] for m in doc["model_list"]}
    assert (params["o"]["rpm"], params["o"]["tpm"]) == (1, 2)  # the whole copy is scaled, alias or not
    assert "rpm" not in params["emb"] and CFG["model_list"][0]["litellm_params"]["rpm"] == 600  # the input is untouched
    # A budget already this small is not scaled up; an alias without budgets has no check.
    assert scaled_config(CFG, "other")[1] == 40 / PER_REPLICA
    tiny = {"model_list": [_entry("llmbench", "p", "primary", 2, 20)], "router_settings": {}}
    assert scaled_config(tiny, "llmbench")[1] == 1.0
    assert scaled_config(CFG, "llmbench-embedding") is None and scaled_config(CFG, "nobody") is None


def _ok(by: str, tokens: int) -> StreamResult:
    return StreamResult(sent=0.0, prompt_tokens=tokens - 4, output_tokens=4, served_by=by)


def _failed(status: int | None, kind: str = "http_status", error: str | None = "HTTP 429: limit") -> StreamResult:
    return StreamResult(sent=0.0, http_status=status, error_kind=kind, error=error)


def test_analysis_counts_who_served_what_and_flags_a_deployment_admitted_past_its_budget():
    budgets = {"p1": {"role": "primary", "rpm": 3, "tpm": 250}, "fb": {"role": "fallback", "rpm": 2, "tpm": None}}
    results = [_ok("p1", 100), _ok("p1", 100), _ok("p1", 100), _ok("fb", 50), _ok("fb", 50), _failed(429), _failed(429),
               _failed(None, "timeout", "no answer in 30 s"), _ok("ghost", 10)]
    out = analyse(results, {k: dict(v) for k, v in budgets.items()}, "llmbench", {1})
    # p1 admitted a third request at 200 tokens (< 250): within budget although it ended at 300.
    assert out["budgets"]["p1"] == {"role": "primary", "rpm": 3, "tpm": 250, "served": 3, "tokens": 300, "past_budget": False}
    assert (out["served_by_primary"], out["served_by_fallback"], out["served_by_unknown"], out["refused_429"]) == (3, 2, 1, 2)
    assert out["other_failures"] == {"timeout": {"count": 1, "example": "no answer in 30 s"}}
    assert out["past_budget"] == [] and out["enforced"] is True and out["every_failure_has_an_error"] is True
    assert out["sent"] == 9 and out["one_minute"] is True
    # A fourth request admitted at 300 tokens (>= 250), or more requests than the rpm: past its budget.
    past = analyse([*results[:3], _ok("p1", 100)], {k: dict(v) for k, v in budgets.items()}, "llmbench", {1, 2})
    assert past["past_budget"] == ["p1"] and past["enforced"] is False and past["one_minute"] is False
    by_count = analyse([_ok("fb", 1)] * 3 + [_failed(429)], {k: dict(v) for k, v in budgets.items()}, "llmbench", {1})
    assert by_count["past_budget"] == ["fb"] and by_count["budgets"]["fb"]["served"] == 3
    # Nothing refused: the budgets were never reached, so the check shows no enforcement.
    assert analyse(results[:3], {k: dict(v) for k, v in budgets.items()}, "llmbench", {1})["enforced"] is False
    # A failure without its error text is one lost without an error record.
    assert analyse([_failed(500, "http_status", None)], {k: dict(v) for k, v in budgets.items()}, "x", {1})[
        "every_failure_has_an_error"] is False


def test_a_named_candidates_tokenizer_is_found_through_the_run_config():
    # Results carry a named candidate's name (the default's reference model); its tokenizer is where
    # the config's model points (12-verify failed on the hub lookup of the bare name).
    from types import SimpleNamespace

    from llmbench.verify.spec import VerifySpec

    meta = {"config": {"candidates": [{"name": "shakespeare-4m", "model": "/models/shakespeare-4m"},
                                      {"name": None, "model": "card:llama-50m", "card": "llama-50m"}]}}
    spec = SimpleNamespace(meta=meta)
    ref = lambda model: VerifySpec.model_ref(spec, SimpleNamespace(model=model))  # noqa: E731
    assert ref("shakespeare-4m") == "/models/shakespeare-4m"
    assert ref("card:llama-50m") == "card:llama-50m" and ref("org/other") == "org/other"
