"""llmbench's semantic cache inside a real LiteLLM proxy (`litellm --config`, the emitted config) in
front of a real llama-server: repeats and paraphrases are served without reaching the server,
unrelated queries are not, and verify's cache check recomputes by hand from its outcomes."""
from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import httpx
import pytest
import yaml

from llmbench.engines.llamacpp.gguf import build_gguf
from llmbench.engines.llamacpp.server import ManagedServer
from llmbench.export.writer import write_exports
from llmbench.monitor.gateway_names import CALLBACK as LOG_CALLBACK
from llmbench.optimizers.cache.cache import normalise_text
from llmbench.optimizers.cache.gateway_names import OPT_OUT_HEADER, PLUGIN
from llmbench.optimizers.cache.logs import read_log
from llmbench.optimizers.cache.stage import sample_pairs
from llmbench.recommend.engine import recommend
from llmbench.recommend.inputs import load_run
from llmbench.slo import parse_slo
from llmbench.verify import cache_check
from llmbench.verify.proxy import Proxy
from test_export import CACHE, CELLS
from test_recommend_runs import make_run
from llmbench.models.source import resolve

# The shipped setting for a 5% false-hit target (profiles/cache/default.json).
RULE = {"verifier": "floor0.90", "threshold": 0.725011, "profile": "default"}


@pytest.fixture(scope="module")
def gateway(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gwcache")
    run = make_run(tmp / "run", CELLS, params={"small": 5_000_000, "big": 50_000_000}, extra_files={"cache.json": CACHE})
    write_exports(recommend(load_run(run), parse_slo("e2el_p95=320ms"), rps=40.0), tmp / "out")
    path = tmp / "out" / "gateway" / "litellm.yaml"
    cfg = yaml.safe_load(path.read_text())
    assert cfg["litellm_settings"]["callbacks"] == [PLUGIN, LOG_CALLBACK] and "callback_settings" in cfg
    q4 = build_gguf(resolve("card:llama-5m"), "gguf-q4_k_m", engine).path
    log = tmp / "llama.log"
    with ManagedServer(engine, q4, parallel=2, ctx_size=512, threads=1, log_path=log, alias="tiny") as srv:
        # The emitted file, with its servers pointed at this llama-server, the cache on, and the rule pinned.
        for m in cfg["model_list"]:
            m["litellm_params"].update(model="openai/tiny", api_base=srv.url)
        cfg["litellm_settings"]["cache"] = True
        cfg["callback_settings"]["llmbench_cache"] = RULE
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        keys = sorted({m["litellm_params"]["api_key"].split("/", 1)[1] for m in cfg["model_list"] if "api_key" in m["litellm_params"]})
        proxy = Proxy(path, tmp / "litellm.log", keys).start()
        try:
            yield {"url": proxy.url, "auth": {"Authorization": f"Bearer {proxy.key}"}, "log": log, "cfg": cfg, "tmp": tmp}
        finally:
            proxy.stop()


def _served(log: Path) -> int:
    return len(re.findall(r"stop processing", log.read_text()))


def _send(g: dict, prompt: str, extra: dict | None = None) -> dict:
    return cache_check.send(g["url"], "llmbench", {**g["auth"], **(extra or {})}, prompt, 60)


def test_repeat_and_paraphrase_are_hits_unrelated_is_a_miss(gateway):
    g = gateway
    n0 = _served(g["log"])
    first = _send(g, "How do I learn Python quickly?")
    assert first["ok"] and not first["hit"] and first["text"]
    time.sleep(0.3)  # the server's log line for the request
    assert _served(g["log"]) == n0 + 1
    again = _send(g, "How do I learn Python quickly?")
    para = _send(g, "What is the fastest way to learn Python?")
    assert again["hit"] and para["hit"] and again["ok"] and para["ok"]
    # A hit is replayed as text-completion chunks with the stored text (not chat deltas).
    assert again["text"].replace(" ", "") == first["text"].replace(" ", "")
    other = _send(g, "Which countries border Portugal?")
    assert not other["hit"] and other["ok"]
    time.sleep(0.3)
    assert _served(g["log"]) == n0 + 2  # the repeat and the paraphrase never reached llama-server
    # The opt-out header (verify's plan check) goes past the cache to the server.
    bypass = _send(g, "How do I learn Python quickly?", {OPT_OUT_HEADER: "off"})
    time.sleep(0.3)
    assert not bypass["hit"] and _served(g["log"]) == n0 + 3


def test_cache_check_matches_a_hand_count_and_the_simulation(gateway):
    g = gateway
    pairs = cache_check.sample_pairs(sample_pairs(), 10)
    doc = cache_check.check(g["url"], "llmbench", g["auth"], RULE, sample_pairs(), 60, n=10)
    assert doc["pairs"] == len(pairs.labels) == 10 and doc["gateway"]["failed"] == 0
    looked = [o for o in doc["outcomes"] if o["text"] == "b"]
    cached = {normalise_text(a) for a in pairs.texts_a}
    labels = [1 if normalise_text(b) in cached else y for b, y in zip(pairs.texts_b, pairs.labels)]
    pos = [o["hit"] for o, y in zip(looked, labels) if y == 1]
    neg = [o["hit"] for o, y in zip(looked, labels) if y == 0]
    gw = doc["gateway"]
    assert gw["hit_rate"] == (sum(pos) / len(pos) if pos else None)
    assert gw["false_hit_rate"] == (sum(neg) / len(neg) if neg else None)
    assert gw["hits"] == sum(o["hit"] for o in looked)
    sim = doc["simulation"]
    assert sim["lookups"] == 10
    assert doc["difference"]["hit_rate"] == pytest.approx(gw["hit_rate"] - sim["hit_rate"])
    assert doc["hit_saves_ms"] == pytest.approx(gw["miss_ms_p50"] - gw["hit_ms_p50"])  # a hit skips the model
    print("cache check:", json.dumps({k: doc[k] for k in ("gateway", "simulation", "hit_saves_ms")}))


def _plugin_cfg(profile: str, on: bool = True) -> dict:
    return {"model_list": [{"model_name": "llmbench", "litellm_params": {"model": "openai/tiny", "api_base": "http://127.0.0.1:9/v1",
                                                                          "api_key": "os.environ/LLMBENCH_TEST_KEY"}}],
            "litellm_settings": {"cache": on, "cache_params": {"type": "local", "supported_call_types": ["atext_completion"]},
                                 "callbacks": [PLUGIN]},
            "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
            "callback_settings": {"llmbench_cache": {**RULE, "profile": profile}}}


def test_a_missing_cache_profile_stops_the_proxy_with_one_line(tmp_path):
    from llmbench.verify.deploy import VerifyFailed

    missing = str(tmp_path / "gone" / "mine.json")
    path = tmp_path / "litellm.yaml"
    path.write_text(yaml.safe_dump(_plugin_cfg(missing), sort_keys=False))
    proxy = Proxy(path, tmp_path / "litellm.log", ["LLMBENCH_TEST_KEY"])
    with pytest.raises(VerifyFailed, match="exited with code 2"):
        proxy.start(timeout_s=150)
    log = (tmp_path / "litellm.log").read_text()
    last = [line for line in log.splitlines() if line.strip()][-1]
    assert last == (f"llmbench semantic cache: callback_settings.llmbench_cache.profile: {missing} does not exist "
                    "(a cache profile file written by python -m llmbench.optimizers.cache.fit, or a shipped name)")
    assert "Traceback" not in log


def test_verify_measures_a_cache_the_chosen_option_leaves_off(tmp_path):
    # The default run's choice may have no cache: the gateway config carries the plug-in switched
    # off. verify's copy switches it on (the cache check measures it); the plan check bypasses it.
    from llmbench.verify.gateway import proxy_config

    path = tmp_path / "gateway" / "litellm.yaml"
    path.parent.mkdir()
    cfg = _plugin_cfg("default", on=False)
    assert cache_check.plugin_on(cfg) == cfg["callback_settings"]["llmbench_cache"] and cache_check.left_off(cfg)
    used, notes, bypassed = proxy_config(path, cfg)
    assert used == path.with_name("litellm.verify.yaml") and bypassed
    assert yaml.safe_load(used.read_text())["litellm_settings"]["cache"] is True and cfg["litellm_settings"]["cache"] is False
    assert any("switched on in verify's copy" in n for n in notes) and any(OPT_OUT_HEADER in n for n in notes)
    # On already: the emitted file as it is. LiteLLM's Qdrant cache is not the plug-in's to measure.
    on = _plugin_cfg("default")
    assert proxy_config(path, on)[0] == path and not cache_check.left_off(on)
    qdrant = {**on, "litellm_settings": {**on["litellm_settings"], "cache_params": {"type": "qdrant-semantic"}}}
    assert cache_check.plugin_on(qdrant) is None


def test_verify_reads_the_priced_figures_from_the_deploy_entry(tmp_path):
    from llmbench.optimizers.cache.deploy import deploy_entry
    from test_recommend_cache_rule import verifier_doc

    doc = verifier_doc()
    doc["deploy"] = deploy_entry(doc, {})
    (tmp_path / "cache.json").write_text(json.dumps(doc))
    got = cache_check.priced(tmp_path / "cache.json")
    # The verifier's figures (4 of 208 requests served, 3 wrongly), not plain cosine's.
    assert got["rule"] == "verifier floor0.90 (cache profile default) probability >= 0.757"
    assert got["served_from_cache_rate"] == pytest.approx(4 / 208) and got["wrong_answer_rate"] == pytest.approx(3 / 208)
    assert cache_check.priced(tmp_path / "absent.json") is None
