"""The cache that is priced is the one deployed: the +cache options take the figures of the rule and
threshold that cache.json's deploy entry names (what the gateway config's plug-in runs), not plain
cosine's, and the recommendation, the gateway config and the report say which rule that is."""
from __future__ import annotations

import pytest
import yaml

from llmbench.export.writer import write_exports
from llmbench.optimizers.cache.deploy import deploy_entry
from llmbench.recommend.engine import recommend
from llmbench.recommend.facts import cache_facts
from llmbench.recommend.inputs import load_run
from llmbench.slo import parse_slo
from test_recommend_runs import cache_doc, make_run, served

TWO = [served("small", ttft_ms=50, tpot_ms=5), served("big", ttft_ms=200, tpot_ms=20)]
PARAMS = {"small": 5_000_000, "big": 50_000_000}
# 104 labelled lookups (208 requests). The verifier's figures: the 0.9 duplicate and the three 0.88
# strangers served (4 of 208 requests, 3 of them wrongly); plain cosine at 0.89 serves only the 0.9.
SCORES, LABELS = [0.9] + [0.5] * 3 + [0.88] * 3 + [0.4] * 97, [1] * 4 + [0] * 100


def verifier_doc() -> dict:
    """cache.json whose fitted setting is a verifier: its figures differ from plain cosine's."""
    doc = cache_doc(SCORES, LABELS, threshold=0.87, baseline_threshold=0.89)
    doc["setting"].update({"rule": "verifier", "verifier": "floor0.90", "threshold": 0.757, "candidates": 1})
    doc["gateway"] = {**doc["baseline"], "embed_ms_p50": 15.0, "lookup_ms_p50": 0.1}  # the cosine side, as simulate writes it
    doc["lookup_ms_p50"] = 0.4  # the verifier's lookups cost more than cosine's
    return doc


def _rec(tmp_path, doc: dict):
    run = make_run(tmp_path / "run", TWO, params=PARAMS, extra_files={"cache.json": doc})
    return recommend(load_run(run), parse_slo("e2el_p95=2s"), rps=1.0)


def _opt(rec, oid):
    return next(o for o in rec["options"] if o["id"] == oid)


@pytest.mark.parametrize("written", [True, False], ids=["deploy-entry", "older-file"])
def test_cache_option_is_priced_on_the_deployed_verifier(tmp_path, written):
    doc = verifier_doc()
    if written:  # as the cache stage writes it now; an older cache.json has no deploy entry
        doc["deploy"] = deploy_entry(doc, {})
    rec = _rec(tmp_path, doc)
    base, cached = _opt(rec, "small/gguf-f16/cpu/bs1"), _opt(rec, "small/gguf-f16/cpu/bs1+cache")
    # By hand: the verifier serves 4 of 208 requests, 3 wrongly; every request pays MiniLM (15 ms)
    # and the verifier's lookup (0.4 ms) on a $1/h machine.
    served, wrong, extra_ms = 4 / 208, 3 / 208, 15.0 + 0.4
    assert cached["cache"]["served_from_cache_rate"] == pytest.approx(served)
    assert cached["cache"]["wrong_answer_rate"] == pytest.approx(wrong)
    assert cached["cache"]["hit_rate"] == pytest.approx(1 / 4) and cached["cache"]["false_hit_rate"] == pytest.approx(3 / 100)
    assert cached["cost_per_1k_usd"] == pytest.approx(base["cost_per_1k_usd"] * (1 - served) + 1000 * extra_ms / 1e3 / 3600)
    saving = base["cost_per_1k_usd"] - cached["cost_per_1k_usd"]
    assert saving == pytest.approx(base["cost_per_1k_usd"] * 4 / 208 - 15.4 / 3600)
    # Plain cosine's figures (1 of 208 served, none wrongly) would have priced it differently.
    assert cached["cost_per_1k_usd"] != pytest.approx(base["cost_per_1k_usd"] * (1 - 1 / 208) + 15.1 / 3600)
    assert cached["quality"] == pytest.approx(1 - wrong)
    assert cached["latency"]["ttft_ms"]["p50"] == pytest.approx(base["latency"]["ttft_ms"]["p50"] + extra_ms)
    # Which rule: in the option, its note, and the recommendation's cache block.
    assert (cached["cache"]["rule"], cached["cache"]["verifier"], cached["cache"]["threshold"]) == ("verifier", "floor0.90", 0.757)
    assert any("verifier floor0.90 (cache profile default) probability >= 0.757" in n for n in cached["notes"])
    assert rec["cache"]["gateway"]["rule"] == "verifier" and rec["cache"]["deploy"]["verifier"] == "floor0.90"


def test_the_gateway_config_runs_the_priced_rule_and_says_so(tmp_path):
    doc = verifier_doc()
    doc["deploy"] = deploy_entry(doc, {})
    rec = _rec(tmp_path, doc)
    write_exports(rec, tmp_path / "out")
    text = (tmp_path / "out" / "gateway" / "litellm.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert cfg["callback_settings"]["llmbench_cache"] == {"verifier": "floor0.90", "threshold": 0.757, "profile": "default",
                                                          "candidates": 1}
    assert "verifier floor0.90 (cache profile default) probability >= 0.757" in text
    assert "The plan priced this same rule's figures (1.9% of requests served from cache, 1.4% answered wrongly" in text


def test_qdrant_deploys_and_prices_plain_cosine(tmp_path):
    doc = verifier_doc()
    doc["deploy"] = deploy_entry(doc, {"gateway": "qdrant", "qdrant_url": "http://127.0.0.1:6333"})
    assert (doc["deploy"]["rule"], doc["deploy"]["threshold"]) == ("cosine", 0.89)
    rec = _rec(tmp_path, doc)
    cached = _opt(rec, "small/gguf-f16/cpu/bs1+cache")
    # Cosine at 0.89 serves the duplicate alone: 1 of 208 requests, none wrongly; its lookup 0.1 ms.
    assert cached["cache"]["served_from_cache_rate"] == pytest.approx(1 / 208) and cached["cache"]["wrong_answer_rate"] == 0.0
    assert cached["cache"]["rule"] == "cosine" and cached["cache"]["lookup_ms_p50"] == pytest.approx(0.1)
    write_exports(rec, tmp_path / "out")
    cfg = yaml.safe_load((tmp_path / "out" / "gateway" / "litellm.yaml").read_text())
    assert cfg["litellm_settings"]["cache_params"]["similarity_threshold"] == 0.89 and "llmbench_cache" not in cfg["callback_settings"]
    assert cfg["litellm_settings"]["callbacks"] == ["llmbench.monitor.gateway_log.interaction_log"]  # the log, no plug-in


def test_report_names_the_deployed_rule():
    from llmbench.report.content import _cache_note

    doc = verifier_doc()
    doc["deploy"] = deploy_entry(doc, {})
    note = _cache_note(cache_facts(doc))
    assert "verifier floor0.90 (cache profile default) probability >= 0.757, the rule the gateway config deploys" in note
    assert "hit rate 25.0%, false hits 3.0%" in note and "a check in your application" not in note


def test_the_cache_stage_writes_one_deploy_entry_that_pricing_and_the_plugin_read(tmp_path):
    """The run's cache stage on labelled pairs: the deploy entry names the fitted setting
    and carries its own figures; the recommender's `gateway` figures and the plug-in's settings are it."""
    import json
    from types import SimpleNamespace

    from rich.console import Console

    from llmbench.export.litellm import plugin_settings
    from llmbench.optimizers.cache.stage import cache_stage

    from llmbench.optimizers.cache.stage import sample_pairs

    run_dir = SimpleNamespace(path=tmp_path / "run")
    (run_dir.path / "plots").mkdir(parents=True)
    log = tmp_path / "pairs.jsonl"  # 40 of the shipped pairs: the stage's path, kept quick
    log.write_text("".join(sample_pairs().read_text(encoding="utf-8").splitlines(keepends=True)[:40]))
    cache_stage(run_dir, {"config": {"cache": {"log": str(log)}}}, {}, Console(quiet=True))
    doc = json.loads((run_dir.path / "cache.json").read_text())
    dep, setting = doc["deploy"], doc["setting"]
    assert dep["gateway"] == "llmbench" and dep["profile"] == "default"
    assert (dep["rule"], dep["threshold"]) == (setting["rule"], setting["threshold"])
    if setting["rule"] == "verifier":
        assert dep["verifier"] == setting["verifier"]
    for k in ("hit_rate", "false_hit_rate", "served_from_cache_rate", "wrong_answer_rate", "lookup_ms_p50", "embed_ms_p50"):
        assert dep["figures"][k] == doc[k], k  # the fitted rule's own figures, not the cosine baseline's
    facts = cache_facts(doc)
    assert facts["gateway"]["served_from_cache_rate"] == doc["served_from_cache_rate"]
    assert plugin_settings({"cache": facts})["verifier"] == dep["verifier"]
    assert plugin_settings({"cache": facts})["threshold"] == dep["threshold"]
