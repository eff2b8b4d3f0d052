"""The server list (export/servers.py) on hand-built options and recommendation documents: every
figure recomputed here. No model, no planner, no LiteLLM import: these are also the tests the
mutation script runs against servers.py (tests/benchmarks/bench_mutation.py)."""
from __future__ import annotations

import pytest

from llmbench.export.servers import (_per_token_costs, _server, class_alias, deployment_total, served_name, servers,
                                     sidecar_deployments)


def _srv_option(oid="big", **kw) -> dict:
    return {"id": oid, "kind": "self-hosted", "model": f"org/{oid}", "variant": "torch-fp16", "label": oid, "device": "cuda",
            "hardware": "gpu-box", "engine": {"name": "vllm", "model": f"org/{oid}"}, "batch_size": 4,
            "latency": {"ttft_ms": {"p50": 20.0}, "e2el_ms": {"p50": 100.0}}, "prompt_tokens_mean": 200.0,
            "output_tokens_mean": 50.0, "throughput_req_s": 3.0, "cost_per_1k_usd": 5.0, "quality": 0.95,
            "quality_status": "measured", **kw}


API = {"id": "api/gpt-4o", "kind": "api", "model": "gpt-4o", "cost_per_1k_usd": 2.0, "prompt_tokens_mean": 200.0,
       "output_tokens_mean": 50.0, "prices": {"input_usd_per_1m": 2.5, "output_usd_per_1m": 10.0,
                                               "api_key_env": "OPENAI_API_KEY", "litellm_model": "openai/gpt-4o"}}
SIDECAR = {"role": "embedder", "cost_per_hour": 1.0, "replicas": 1, "load_rps": 2.0, "busy_ms_per_request": 5.0,
           "utilisation": 0.01, "cost_per_month": 730.0}


def test_servers_per_token_costs_split_a_request_between_prefill_and_decode():
    o = _srv_option()
    # TTFT is 20 of the 100 ms: 20% of $0.01 over 200 prompt tokens, 80% over 50 output tokens.
    assert _per_token_costs(o, 0.01) == pytest.approx((0.01 * 0.2 / 200, 0.01 * 0.8 / 50))
    slow_first = {**o, "latency": {"ttft_ms": {"p50": 300.0}, "e2el_ms": {"p50": 100.0}}}
    assert _per_token_costs(slow_first, 0.01) == pytest.approx((0.01 / 200, 0.0))  # the share is capped at 1
    assert _per_token_costs({**o, "latency": {}}, 0.01) == pytest.approx((0.0, 0.01 / 50))
    assert _per_token_costs({**o, "prompt_tokens_mean": 0}, 0.01) == pytest.approx((0.0, 0.01 / 50))
    assert _per_token_costs({**o, "output_tokens_mean": None}, 0.01) == pytest.approx((0.01 / 200, 0.0))
    assert _per_token_costs({**o, "output_tokens_mean": 0, "prompt_tokens_mean": 0}, 0.01) == (0.0, 0.0)
    assert _per_token_costs(o, None) == (0.0, 0.0) and _per_token_costs(o, 0.0) == (0.0, 0.0)
    assert _per_token_costs(API, 0.5) == pytest.approx((2.5e-6, 1e-5))  # an API model: its list prices per token
    assert _per_token_costs({**API, "prices": None}, 0.5) == (0.0, 0.0)


def test_servers_one_server_has_the_plans_figures():
    plan = {"replicas": 3, "saturation_rps": 1.5, "cost_per_hour": 4.0, "cost_per_month": 2920.0, "server_cost_per_month": 2190.0,
            "sidecars": [SIDECAR], "max_batch": 8, "predicted": {"e2el_ms": {"p95": 90.0}}, "notes": ["n1", "n2"]}
    s = _server(_srv_option(), "primary", plan, 2.0, 8000)
    cpr = (4.0 - 1.0) / (2.0 * 3600)  # the servers' $3/h (the sidecar's $1/h apart) over 2 req/s
    assert s["cost_per_request_usd"] == pytest.approx(cpr)
    assert (s["input_cost_per_token"], s["output_cost_per_token"]) == pytest.approx((cpr * 0.2 / 200, cpr * 0.8 / 50))
    # The gateway's budget: without an SLO 80% of saturation (1.2 req/s a replica) x 3 replicas x 60 s.
    assert s["capacity_req_s"] == pytest.approx(4.5) and s["rpm"] == 216 and s["tpm"] == 216 * 250
    assert s["budget_rps"] == pytest.approx(3.6)
    at_slo = _server(_srv_option(), "primary", {**plan, "max_sustainable_rps": 0.75}, 2.0, 8000)
    assert at_slo["rpm"] == 135 and at_slo["tpm"] == 135 * 250  # 0.75 req/s at the SLO x 3 x 60
    assert (s["replicas"], s["max_batch_size"], s["load_rps"], s["expected_throughput_req_s"]) == (3, 4, 2.0, 2.0)
    assert s["expected_output_tok_s"] == pytest.approx(100.0) and s["cost_per_month_usd"] == 2190.0
    assert (s["served_name"], s["litellm_model"], s["api_key_env"]) == ("big-torch-fp16", "openai/big-torch-fp16",
                                                                          "LLMBENCH_BIG_TORCH_FP16_API_KEY")
    assert (s["option"], s["role"], s["kind"], s["model"], s["variant"], s["device"], s["hardware"]) == (
        "big", "primary", "self-hosted", "org/big", "torch-fp16", "cuda", "gpu-box")
    assert s["notes"] is None and s["sidecars"] == [SIDECAR] and s["plan_max_batch"] == 8 and s["plan_parallel"] is None
    assert s["predicted"] == plan["predicted"] and (s["quality"], s["quality_status"]) == (0.95, "measured")
    assert s["plan_replicas_full_load"] is None and (s["aliases"], s["fallbacks"]) == ([], [])
    assert s["launch"]["ports"] == [8000, 8001, 8002] and s["api_base"] == "http://127.0.0.1:8000/v1"
    assert s["launch"]["commands"][0][s["launch"]["commands"][0].index("--max-num-seqs") + 1] == "8"
    # No load given: priced per measured request, expected at its capacity; the option's throughput
    # stands in for a plan without a saturation figure; a fallback keeps the plan's first note.
    bare = _server(_srv_option(), "fallback", {"replicas": 2, "cost_per_month": 1460.0, "notes": ["n1", "n2"],
                                               "plan_replicas_full_load": 5}, None, 9000)
    assert bare["cost_per_request_usd"] == pytest.approx(0.005) and bare["capacity_req_s"] == pytest.approx(6.0)
    assert bare["expected_throughput_req_s"] == pytest.approx(6.0) and bare["expected_output_tok_s"] is None
    assert bare["cost_per_month_usd"] == 1460.0 and bare["notes"] == ["n1"] and bare["plan_replicas_full_load"] == 5
    assert bare["launch"]["ports"] == [9000, 9001]
    none = _server(_srv_option(throughput_req_s=None, cost_per_1k_usd=None), "primary", None, None, 8000)
    assert none["capacity_req_s"] is None and none["rpm"] is None and none["tpm"] is None and none["cost_per_request_usd"] is None
    assert none["launch"]["ports"] == [8000]  # a deployment always runs one server
    assert _server(_srv_option(engine={"name": "vllm", "api_key_env": "MY_KEY"}), "primary", None, None, 8000)["api_key_env"] == "MY_KEY"
    # An API model: its key and LiteLLM name from the price list; paid per request when a fallback.
    a = _server(API, "fallback", {"cost_per_month": 99.0}, 1.0, 8000)
    assert (a["replicas"], a["max_batch_size"], a["cost_per_month_usd"], a["api_key_env"], a["litellm_model"]) == (
        None, None, None, "OPENAI_API_KEY", "openai/gpt-4o")
    assert a["cost_per_request_usd"] == pytest.approx(0.002) and "launch" not in a
    assert _server(API, "primary", {"cost_per_month": 99.0}, 1.0, 8000)["cost_per_month_usd"] == 99.0
    assert _server({**API, "prices": {}}, "primary", None, 1.0, 8000)["litellm_model"] == "gpt-4o"
    assert served_name(API) == "gpt-4o"
    assert served_name(_srv_option(engine={"name": "endpoint", "model": "served-x"})) == "served-x"
    assert served_name(_srv_option(label=None, variant=None)) == "big"


def _single_rec(**kw) -> dict:
    small = _srv_option("small", plan={"replicas": 2, "cost_per_hour": 2.0, "cost_per_month": 1560.0,
                                       "server_cost_per_month": 1460.0, "sidecars": [{**SIDECAR, "cost_per_month": 100.0}]},
                        fallbacks=["gone", "big", "big"])  # an option no longer listed is passed over
    return {"options": [small, _srv_option("big"), API], "constraints": {"rps": 10.0}, "deploy": {"base_port": 9000},
            "routing": {"classes": []}, "choice": {"chosen": "small"}, "mode": "single",
            "standbys": {"big": {"replicas": 1, "cost_per_hour": 1.0, "cost_per_month": 730.0, "load_rps": 1.5}}, **kw}


def test_servers_single_mode_primary_with_a_standby_and_the_total():
    srv, fb = servers(_single_rec())
    assert [(s["option"], s["role"], s["aliases"], s["launch"]["ports"]) for s in srv] == [
        ("small", "primary", ["llmbench"], [9000, 9001]), ("big", "fallback", ["llmbench-fallback-big-torch-fp16"], [9002])]
    assert srv[0]["fallbacks"] == ["llmbench-fallback-big-torch-fp16"] and srv[1]["fallbacks"] == []
    assert fb == {"llmbench": ["llmbench-fallback-big-torch-fp16"]}
    assert srv[0]["load_rps"] == 10.0 and srv[1]["load_rps"] == 1.5 and srv[1]["replicas"] == 1
    assert sidecar_deployments(srv) == [{"option": "small", "role": "embedder", "kind": "sidecar", "hardware": "gpu-box",
                                         "replicas": 1, "load_rps": 2.0, "busy_ms_per_request": 5.0, "utilisation": 0.01,
                                         "cost_per_month_usd": 100.0}]
    assert deployment_total(_single_rec()) == pytest.approx(1460.0 + 100.0 + 730.0)
    # Nothing chosen: the closest option is deployed, and says it meets nothing.
    srv, _ = servers(_single_rec(choice={"chosen": None, "closest": "big"}, mode="closest"))
    assert [(s["option"], s["role"]) for s in srv] == [("big", "closest (meets no constraint set)")]
    assert servers(_single_rec(choice={"chosen": None})) == ([], {})
    assert deployment_total(_single_rec(choice={"chosen": None})) is None
    srv, _ = servers(_single_rec(deploy=None))
    assert srv[0]["launch"]["ports"] == [8000, 8001]  # the default first port


def test_servers_routing_mode_one_server_per_option_with_its_classes_share():
    classes = [{"class": {"name": "short (<100)", "share": 0.6}, "option": "small", "fallbacks": ["big"]},
               {"class": {"name": "medium", "share": 0.1}, "option": "small"},
               {"class": {"name": "none", "share": 0.0}, "option": None},
               {"class": {"name": "long (>=100)", "share": 0.3}, "option": "big", "fallbacks": ["api/gpt-4o"]}]
    plans = {"small": {"replicas": 2, "cost_per_hour": 2.0}, "big": {"replicas": 1, "cost_per_hour": 1.0}}
    rec = _single_rec(mode="routing", routing={"classes": classes, "plans": plans}, standbys={})
    srv, fb = servers(rec)
    by = {s["option"]: s for s in srv}
    assert class_alias(classes[0]["class"]) == "llmbench-short"
    assert by["small"]["aliases"] == ["llmbench-short", "llmbench-medium"] and by["small"]["load_rps"] == pytest.approx(7.0)
    assert by["big"]["aliases"] == ["llmbench-long", "llmbench", "llmbench-fallback-big-torch-fp16"]
    assert by["big"]["load_rps"] == pytest.approx(3.0) and by["big"]["role"] == "primary"
    assert by["small"]["cost_per_request_usd"] == pytest.approx(2.0 / (7.0 * 3600))
    assert by["api/gpt-4o"]["role"] == "fallback" and by["api/gpt-4o"]["aliases"] == ["llmbench-fallback-gpt-4o"]
    assert by["small"]["fallbacks"] == ["llmbench-fallback-big-torch-fp16"] and by["big"]["fallbacks"] == ["llmbench-fallback-gpt-4o"]
    assert fb == {"llmbench-short": ["llmbench-fallback-big-torch-fp16"], "llmbench-long": ["llmbench-fallback-gpt-4o"],
                  "llmbench": ["llmbench-fallback-gpt-4o"]}
    assert by["small"]["launch"]["ports"] == [9000, 9001] and by["big"]["launch"]["ports"] == [9002]
    no_rate = servers(_single_rec(mode="routing", routing={"classes": classes, "plans": plans}, standbys={},
                                  constraints={"rps": None}))[0]
    assert all(s["load_rps"] is None for s in no_rate)


def test_servers_kinds_and_roles_read_from_a_document_and_ports_after_an_odd_base():
    api = {**API, "kind": "".join(list("api")), "model": "My.Model"}  # as parsed from JSON: not the interned literal
    assert served_name(api) == "My.Model" and _per_token_costs(api, 0.5) == pytest.approx((2.5e-6, 1e-5))
    # An API model deployed as the closest option is paid like a primary, not like a fallback.
    assert _server(API, "closest (meets no constraint set)", {"cost_per_month": 99.0}, 1.0, 8000)["cost_per_month_usd"] == 99.0
    rec = _single_rec(deploy={"base_port": 8001})
    rec["options"][0]["plan"]["replicas"] = 1
    srv, _ = servers(rec)
    assert [s["launch"]["ports"] for s in srv] == [[8001], [8002]]


def test_servers_defaults_when_a_figure_is_missing():
    assert served_name(_srv_option(engine=None)) == "big-torch-fp16"  # measured only: its own slug
    plan = {"replicas": 1, "saturation_rps": 1.0, "cost_per_hour": 4.0, "sidecars": [{"role": "embedder"}],
            "plan_replicas_full_load": 7}
    s = _server(_srv_option(prompt_tokens_mean=None), "primary", plan, 1.0, 8000)
    assert s["cost_per_request_usd"] == pytest.approx(4.0 / 3600)  # a sidecar without a price costs nothing here
    assert s["tpm"] == 48 * 50  # 48 requests a minute (80% of 1 req/s) of 50 output tokens, no prompt tokens known
    assert s["plan_replicas_full_load"] is None  # only a fallback's plan says what full load would take
    assert _server(_srv_option(), "closest (meets no constraint set)", plan, 1.0, 8000)["plan_replicas_full_load"] is None
    assert servers(_single_rec(choice={"chosen": "ghost"})) == ([], {})  # a choice no option carries deploys nothing


def test_servers_modes_and_roles_as_read_from_a_document():
    parsed = lambda text: "".join(list(text))  # noqa: E731  (equal to the literal, not the same object)
    srv, _ = servers(_single_rec(mode=parsed("single")))
    assert srv[0]["role"] == "primary"
    classes = [{"class": {"name": "all", "share": 1.0}, "option": "big"}]
    srv, _ = servers(_single_rec(mode=parsed("routing"), routing={"classes": classes, "plans": {"big": {"replicas": 1}}}))
    assert [(s["option"], s["aliases"]) for s in srv] == [("big", ["llmbench-all", "llmbench"])]
    plan = {"replicas": 1, "notes": ["n1", "n2"]}
    assert _server(_srv_option(), parsed("fallback"), plan, None, 8000)["notes"] == ["n1"]
    assert _server(_srv_option(), "closest (meets no constraint set)", plan, None, 8000)["notes"] is None
    assert _server(_srv_option(output_tokens_mean=None), "primary", plan, 2.0, 8000)["expected_output_tok_s"] == 0.0


def test_servers_more_strings_from_a_document_and_missing_latencies():
    parsed = lambda text: "".join(list(text))  # noqa: E731
    assert served_name(_srv_option(engine={"name": parsed("endpoint"), "model": "served-x"})) == "served-x"
    plan = {"replicas": 2, "saturation_rps": 1.0, "cost_per_month": 99.0, "plan_replicas_full_load": 5}
    assert _server(_srv_option(), parsed("fallback"), plan, None, 8000)["plan_replicas_full_load"] == 5
    api = _server({**API, "kind": parsed("api")}, parsed("fallback"), plan, 1.0, 8000)
    assert (api["replicas"], api["cost_per_month_usd"], api["max_batch_size"]) == (None, None, None) and "launch" not in api
    assert _per_token_costs(API, 0.5) == pytest.approx((2.5e-6, 1e-5), rel=1e-12)
    o = _srv_option()
    assert _per_token_costs({**o, "latency": {"e2el_ms": {"p50": 100.0}}}, 0.01) == pytest.approx((0.0, 0.01 / 50))
    assert _per_token_costs({**o, "latency": {"ttft_ms": {"p50": 20.0}}}, 0.01) == pytest.approx((0.0, 0.01 / 50))
    # A TTFT below zero (a clock stepped back) charges no prefill rather than a negative one.
    assert _per_token_costs({**o, "latency": {"ttft_ms": {"p50": -20.0}, "e2el_ms": {"p50": 100.0}}}, 0.01) == pytest.approx((0.0, 0.01 / 50))
    no_out = _server(_srv_option(output_tokens_mean=None), "primary", plan, None, 8000)
    assert no_out["rpm"] == 96 and no_out["tpm"] == 96 * 200  # 2 replicas x 0.8 req/s x 60 s, 200 prompt tokens each
