"""The exports: a LiteLLM config that LiteLLM's own Router loads and routes through, a deployment
file with every figure a deployment needs, and YAML floats that read back as floats."""
from __future__ import annotations

import os
import re

import pytest
import yaml

from llmbench.export.litellm import PLUGIN
from llmbench.monitor.gateway_names import CALLBACK as LOG_CALLBACK, DEFAULT_PATH as LOG_PATH

from llmbench.export.writer import write_exports
from llmbench.export.yamlio import dump, float_text
from llmbench.recommend.engine import recommend
from llmbench.recommend.inputs import load_run
from llmbench.slo import parse_slo
from test_recommend_runs import cache_doc, make_run, served

# Routing mode: small serves short prompts, big the long ones and is small's fallback.
CELLS = [served("small", ttft_ms=200, tpot_ms=1), served("big", ttft_ms=25, tpot_ms=8), served("big", batch=4, ttft_ms=40, tpot_ms=12)]
# 1 of 4 duplicates served, 3 of 100 distinct prompts served by mistake.
CACHE = cache_doc([0.9] + [0.5] * 3 + [0.88] * 3 + [0.4] * 97, [1] * 4 + [0] * 100, threshold=0.87, baseline_threshold=0.92)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    run = make_run(tmp / "run", CELLS, params={"small": 5_000_000, "big": 50_000_000}, extra_files={"cache.json": CACHE})
    rec = recommend(load_run(run), parse_slo("e2el_p95=320ms"), rps=40.0)
    write_exports(rec, tmp / "out")
    return rec, tmp / "out"


@pytest.fixture(scope="module")
def gateway(exported):
    _, out = exported
    return yaml.safe_load((out / "gateway" / "litellm.yaml").read_text())


def _key_refs(cfg: dict) -> list[str]:
    return [m["litellm_params"]["api_key"] for m in cfg["model_list"] if "api_key" in m["litellm_params"]]


def test_litellm_config_has_costs_limits_fallbacks_and_cache(exported, gateway):
    rec, out = exported
    assert rec["mode"] == "routing"
    names = {m["model_name"] for m in gateway["model_list"]}
    assert {"llmbench", "llmbench-short", "llmbench-long"} <= names
    assert sum("api_base" in m["litellm_params"] for m in gateway["model_list"]) >= 2  # small, big (no embedder entry)
    for m in gateway["model_list"]:
        p = m["litellm_params"]
        assert isinstance(p["input_cost_per_token"], float) and isinstance(p["output_cost_per_token"], float)
        if m["model_name"] != "llmbench-embedding" and "api_base" in p:  # a self-hosted server (API models have none)
            assert p["model"].startswith("openai/") and re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", p["api_base"])
            assert isinstance(p["rpm"], int) and p["rpm"] > 0 and p["tpm"] > p["rpm"]
    # The proxy enforces those budgets (without the check LiteLLM only weighs its picks by them).
    assert gateway["router_settings"]["optional_pre_call_checks"] == ["enforce_model_rate_limits"]
    # The strategy the replicas were planned with: the default plan policy is random picks (simple-shuffle).
    assert rec["gateway_routing"]["planner_policy"] == "random"
    assert gateway["router_settings"]["routing_strategy"] == "simple-shuffle"
    fallbacks = {k: v for d in gateway["router_settings"]["fallbacks"] for k, v in d.items()}
    assert fallbacks["llmbench-short"] and all(f in names for f in fallbacks["llmbench-short"])
    ls = gateway["litellm_settings"]
    # The cache is on only when every deployed option has it; its threshold is the simulation's either way.
    deployed = [o for o in rec["options"] if o["id"] in {e["option"] for e in rec["routing"]["classes"]}]
    assert ls["cache"] is all(o["cache"] for o in deployed)
    # The cache is one switch for all traffic: the routed classes share the chosen option's setting.
    assert {bool(o["cache"]) for o in deployed} == {bool(rec["recommended"]["cache"])} == {ls["cache"]}
    # By default llmbench's own cache runs inside the proxy: LiteLLM's local cache, the plug-in as its
    # storage, the run's fitted rule and threshold stated in callback_settings.
    assert ls["cache_params"]["type"] == "local" and ls["callbacks"] == [PLUGIN, LOG_CALLBACK]
    # The interaction log beside it, writing next to where the proxy runs; each entry names its candidate.
    assert gateway["callback_settings"]["llmbench_gateway_log"] == {"path": LOG_PATH, "max_bytes": 64 * 2**20, "backups": 10,
                                                                    "record_prompts": False}
    opts = {o["id"]: o for o in rec["options"]}
    for m in gateway["model_list"]:
        o = opts[m["model_info"]["llmbench_option"]]
        assert (m["model_info"]["llmbench_model"], m["model_info"].get("llmbench_variant")) == (o["model"], o.get("variant"))
    assert list(ls) == ["cache", "cache_params", "callbacks"]  # the cache exists before the plug-in is imported
    setting = rec["cache"]["setting"]
    want = setting["verifier"] if setting["rule"] == "verifier" else "cosine"
    assert gateway["callback_settings"]["llmbench_cache"]["verifier"] == want
    assert gateway["callback_settings"]["llmbench_cache"]["threshold"] == setting["threshold"]
    assert "llmbench-embedding" not in {m["model_name"] for m in gateway["model_list"]}


def test_no_secret_only_environment_references(exported, gateway):
    _, out = exported
    text = (out / "gateway" / "litellm.yaml").read_text()
    assert all(re.fullmatch(r"os\.environ/[A-Z][A-Z0-9_]*", k) for k in _key_refs(gateway))
    assert not re.search(r"sk-[A-Za-z0-9]{8,}", text)


def test_litellm_router_loads_the_config_and_prices_with_the_deployments_own_cost(exported, gateway, monkeypatch):
    rec, _ = exported
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    for ref in _key_refs(gateway):
        monkeypatch.setenv(ref.split("/", 1)[1], "test-only-key")
    router = litellm.Router(model_list=gateway["model_list"], **gateway["router_settings"])
    listed = router.registry().deployments() if hasattr(router, "registry") else router.get_model_list()
    assert {m["model_name"] for m in listed} == {m["model_name"] for m in gateway["model_list"]}
    # The per-token prices, recomputed from the plan without the exporter: the short class's server
    # costs its replicas' hour over the requests it takes in that hour, split between prefill (the
    # TTFT share of E2EL, over prompt tokens) and decode (the rest, over output tokens).
    short = next(e for e in rec["routing"]["classes"] if e["class"]["name"].startswith("short"))
    opt = next(o for o in rec["options"] if o["id"] == short["option"])
    plan = rec["routing"]["plans"][short["option"]]
    load = 40.0 * sum(e["class"]["share"] for e in rec["routing"]["classes"] if e["option"] == short["option"])
    per_request = plan["replicas"] * 1.0 / (load * 3600.0)  # usd_per_hour 1.0 in make_run
    prefill = opt["latency"]["ttft_ms"]["p50"] / opt["latency"]["e2el_ms"]["p50"]
    want_in = per_request * prefill / opt["prompt_tokens_mean"]
    want_out = per_request * (1 - prefill) / opt["output_tokens_mean"]
    assert want_in != pytest.approx(want_out, rel=0.1)  # a swap of prompt and output counts would show
    params = next(m["litellm_params"] for m in gateway["model_list"] if m["model_name"] == "llmbench-short")
    assert params["input_cost_per_token"] == pytest.approx(want_in, rel=1e-5)
    assert params["output_cost_per_token"] == pytest.approx(want_out, rel=1e-5)
    # LiteLLM applies exactly those prices: 7 prompt and 3 completion tokens (a mock answer's usage).
    msgs = [{"role": "user", "content": "How many replicas do I need?"}]
    resp = router.completion(model="llmbench-short", messages=msgs, mock_response="three")
    u = resp.usage
    assert resp._hidden_params["response_cost"] == pytest.approx(u.prompt_tokens * want_in + u.completion_tokens * want_out, rel=1e-5)
    # A failing primary falls back to the configured deployment: the answer comes from one of the
    # fallback's replicas (here big also serves the long class, so the alias reaches all its replicas).
    fb = router.completion(model="llmbench-short", messages=msgs, mock_response="x", mock_testing_fallbacks=True)
    fb_alias = f"llmbench-fallback-{short['fallbacks'][0].split('/')[0]}-gguf-f16"
    fb_ids = {m["model_info"]["id"] for m in gateway["model_list"] if m["model_name"] == fb_alias}
    assert fb._hidden_params["model_id"] in fb_ids and all(i.startswith(f"{fb_alias}/{short['fallbacks'][0]}") for i in fb_ids)


def test_deployment_yaml_says_what_to_run(exported):
    rec, out = exported
    doc = yaml.safe_load((out / "deployment.yaml").read_text())
    primaries = [d for d in doc["deployments"] if d["role"] == "primary"]
    assert {d["option"] for d in primaries} == {e["option"] for e in rec["routing"]["classes"]}
    for d in primaries:
        for key in ("model", "variant", "device", "replicas", "max_batch_size", "expected_throughput_req_s"):
            assert d.get(key) is not None, key
        assert d["replicas"] >= 1
    assert doc["target_rps"] == 40.0
    assert sum(d["load_rps"] for d in primaries) == pytest.approx(40.0)  # the classes' shares of the load


def test_floats_read_back_as_floats():
    for v in (1e-7, 2.5e-12, 1e20, 0.25, 3.0, 123456.0):
        assert yaml.safe_load(f"x: {float_text(v)}")["x"] == v
    assert yaml.safe_load(dump({"a": 1e-07, "b": [5e-9]})) == {"a": 1e-07, "b": [5e-9]}


def test_the_gateway_gets_plain_cosine_when_the_simulation_ran_the_verifier(tmp_path):
    # LiteLLM compares cosines only: a verifier's probability threshold must never reach the gateway,
    # and the options the plan prices must carry what the gateway will actually do.
    doc = cache_doc([0.9] + [0.5] * 3 + [0.88] * 3 + [0.4] * 97, [1] * 4 + [0] * 100, threshold=0.87, baseline_threshold=0.89)
    doc["setting"].update({"rule": "verifier", "threshold": 0.757})
    del doc["gateway"]  # a cache.json without its own gateway block: the cosine baseline is the gateway's
    doc["sweep"]["verifier"] = doc["sweep"]["cosine"]
    doc["deploy"] = {"gateway": "qdrant", "qdrant_url": "http://127.0.0.1:6333", "qdrant_api_key_env": "MY_QDRANT_KEY"}
    run = make_run(tmp_path / "run", CELLS, params={"small": 5_000_000, "big": 50_000_000}, extra_files={"cache.json": doc})
    rec = recommend(load_run(run), parse_slo("e2el_p95=320ms"), rps=40.0)
    write_exports(rec, tmp_path / "out")
    text = (tmp_path / "out" / "gateway" / "litellm.yaml").read_text()
    assert yaml.safe_load(text)["litellm_settings"]["cache_params"]["similarity_threshold"] == 0.89
    assert "plain cosine >= 0.89" in text and "0.757" not in text
    params = yaml.safe_load(text)["litellm_settings"]["cache_params"]
    assert params["qdrant_api_base"] == "http://127.0.0.1:6333" and params["qdrant_api_key"] == "os.environ/MY_QDRANT_KEY"
    cached = [o for o in rec["options"] if o["id"].endswith("+cache")]
    # 0.89 serves the one exact duplicate of 104 pairs: 1 of 208 requests served, none wrongly.
    assert cached and all(o["cache"]["served_from_cache_rate"] == pytest.approx(1 / 208) for o in cached)
    assert all(o["cache"]["wrong_answer_rate"] == 0.0 for o in cached)


def test_a_custom_cache_profile_reaches_the_proxy_plugin(tmp_path, monkeypatch):
    # cache.verifier: mine.json in a run config: cache.json's deploy entry keeps the file's absolute
    # path, the gateway config points the plug-in at it, and the plug-in's loader runs that profile.
    import json

    from llmbench.optimizers.cache.decision import VerifierRule
    from llmbench.optimizers.cache.deploy import deploy_entry
    from llmbench.optimizers.cache.profile import profile_path
    from llmbench.optimizers.cache.litellm_plugin import GatewaySettings

    prof = json.loads(profile_path().read_text())
    prof["verifiers"] = {"mine": prof["verifiers"]["floor0.90"]}  # a name only this file has
    prof["settings"] = [{**s, "verifier": "mine"} for s in prof["settings"] if s["verifier"] == "floor0.90"]
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mine.json").write_text(json.dumps(prof))
    doc = cache_doc([0.9] + [0.5] * 3 + [0.88] * 3 + [0.4] * 97, [1] * 4 + [0] * 100, threshold=0.87, baseline_threshold=0.92)
    doc["setting"].update({"rule": "verifier", "verifier": "mine", "threshold": 0.6125})
    monkeypatch.chdir(tmp_path / "cfg")  # the run config's relative path, resolved where the run was made
    doc["deploy"] = deploy_entry(doc, {"verifier": "mine.json"})
    monkeypatch.chdir(tmp_path)
    mine = str(tmp_path / "cfg" / "mine.json")
    assert doc["deploy"]["profile"] == mine
    run = make_run(tmp_path / "run", CELLS, params={"small": 5_000_000, "big": 50_000_000}, extra_files={"cache.json": doc})
    write_exports(recommend(load_run(run), parse_slo("e2el_p95=320ms"), rps=40.0), tmp_path / "out")
    text = (tmp_path / "out" / "gateway" / "litellm.yaml").read_text()
    settings = yaml.safe_load(text)["callback_settings"]["llmbench_cache"]
    assert settings == {"verifier": "mine", "threshold": 0.6125, "profile": mine, "candidates": 1}
    assert f"verifier mine (cache profile {mine}) probability >= 0.6125" in text
    rule, candidates = GatewaySettings.from_dict(settings).rule()
    assert isinstance(rule, VerifierRule) and rule.threshold == 0.6125 and candidates == prof["candidates"]
    # The same settings with the profile gone, or not a profile: one line naming the file.
    for broken in ("missing", "garbage"):
        if broken == "missing":
            os.remove(mine)
        else:
            (tmp_path / "cfg" / "mine.json").write_text('{"verifiers": {}}')
        with pytest.raises(ValueError) as err:
            GatewaySettings.from_dict(settings).rule()
        msg = str(err.value)
        assert "\n" not in msg and mine in msg and msg.startswith("callback_settings.llmbench_cache.profile: ")
        assert ("does not exist" if broken == "missing" else "is not a readable cache profile") in msg
