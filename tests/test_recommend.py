"""The recommender on hand-built runs whose right answers are known."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.recommend.engine import MIN_ROUTING_SAVING_PCT, ROUTING_RULES, recommend
from llmbench.recommend.inputs import load_run
from llmbench.recommend.option import Option
from llmbench.recommend.pareto import frontier
from llmbench.slo import parse_slo
from llmbench.quality import UNVERIFIED
from test_recommend_runs import cache_doc, compression_doc, compression_entry, make_run, served

# small: fast and cheap per request, but batching at 4 costs it latency.
# big: ten times the parameters, slower.
SPEED = [served("small", ttft_ms=50, tpot_ms=5), served("small", batch=4, ttft_ms=80, tpot_ms=8),
         served("big", ttft_ms=200, tpot_ms=20), served("big", batch=4, ttft_ms=300, tpot_ms=30)]
PARAMS = {"small": 5_000_000, "big": 50_000_000}


def _rec(tmp_path, slo: str | None = None, cells=SPEED, rps: float | None = 0.5, **kw):
    run = make_run(tmp_path / "run", cells, params=PARAMS, **{k: v for k, v in kw.items() if k in ("quality", "random_weights", "extra_files")})
    rest = {k: v for k, v in kw.items() if k in ("quality_floor", "budget")}
    return recommend(load_run(run), parse_slo(slo) or None, rps=rps, **rest)


def _verdict(rec: dict, oid: str) -> dict:
    return next(v for v in rec["choice"]["verdicts"] if v["id"] == oid)


def test_cheapest_option_meeting_the_slo(tmp_path):
    # A loose SLO: batching at 4 is the cheapest per request and still meets it.
    loose = _rec(tmp_path / "a", "e2el_p95=1s")
    assert loose["choice"]["chosen"] == "small/gguf-f16/cpu/bs4"
    # A tight one: batch 4 misses it (about 376 ms at p95); one at a time (about 235 ms) is next cheapest.
    tight = _rec(tmp_path / "b", "e2el_p95=300ms")
    assert tight["choice"]["chosen"] == "small/gguf-f16/cpu/bs1"
    why = _verdict(tight, "small/gguf-f16/cpu/bs4")
    assert why["status"] == "rejected" and "e2el_p95<=300ms" in why["reasons"][0]
    assert _verdict(tight, "big/gguf-f16/cpu/bs1")["status"] == "rejected"
    assert tight["recommended"]["plan"]["replicas"] >= 1 and tight["recommended"]["plan"]["cost_per_month"] > 0


def test_quality_floor_and_gate_exclude_a_damaged_variant(tmp_path):
    cells = SPEED + [served("small", "gguf-q8_0", ttft_ms=20, tpot_ms=2)]  # fastest and cheapest of all
    failing = {("small", "gguf-q8_0"): {"greedy_agreement": 0.80, "top1_agreement": 0.90, "kl_mean": 0.3, "gate": "fail"}}
    rec = _rec(tmp_path / "a", "e2el_p95=1s", cells, quality=failing)
    assert rec["choice"]["chosen"] == "small/gguf-f16/cpu/bs4"
    assert any("quality gate" in r for r in _verdict(rec, "small/gguf-q8_0/cpu/bs1")["reasons"])
    # A passing variant below the floor is excluded by the floor, and chosen once the floor allows it.
    passing = {("small", "gguf-q8_0"): {"greedy_agreement": 0.95, "top1_agreement": 0.97, "gate": "pass"}}
    strict = _rec(tmp_path / "b", "e2el_p95=1s", cells, quality=passing, quality_floor=0.99)
    assert strict["choice"]["chosen"] == "small/gguf-f16/cpu/bs4"
    assert any("floor" in r for r in _verdict(strict, "small/gguf-q8_0/cpu/bs1")["reasons"])
    lenient = _rec(tmp_path / "c", "e2el_p95=1s", cells, quality=passing, quality_floor=0.9)
    assert lenient["choice"]["chosen"] == "small/gguf-q8_0/cpu/bs1"


def test_no_option_meets_the_slo_names_the_binding_constraint(tmp_path):
    rec = _rec(tmp_path, "ttft_p95=10ms")
    assert rec["choice"]["chosen"] is None and not rec["choice"]["meets_all"]
    assert rec["choice"]["binding"] == ["ttft_p95<=10ms"]
    assert "ttft_p95<=10ms" in rec["choice"]["answer"] and rec["choice"]["closest"]
    assert rec["mode"] == "none"


def test_budget_binds_when_it_is_the_only_miss(tmp_path):
    rec = _rec(tmp_path, "e2el_p95=1s", rps=5.0, budget=100.0)  # one replica alone costs $730/month
    assert rec["choice"]["chosen"] is None and rec["choice"]["binding"] == ["budget"]


def test_random_weights_are_flagged_beside_the_choice(tmp_path):
    rec = _rec(tmp_path, "e2el_p95=1s", random_weights=True)
    chosen = _verdict(rec, rec["choice"]["chosen"])
    assert any("unverified: random weights" in r for r in chosen["reasons"])
    assert rec["recommended"]["quality_status"] == "unverified: random weights"


def test_pareto_frontier_drops_dominated_options():
    def opt(i, cost, q, p95):
        return Option(id=i, kind="self-hosted", model=i, cost_per_1k_usd=cost, quality=q, latency={"e2el_ms": {"p95": p95}})
    opts = [opt("a", 1.0, 1.0, 100), opt("b", 2.0, 1.0, 100), opt("c", 0.5, 0.9, 300), opt("d", 3.0, 1.0, 50)]
    assert [o.id for o in frontier(opts)] == ["c", "a", "d"]  # b: a is as good and cheaper


def test_routing_sends_each_length_class_to_its_cheapest_option(tmp_path):
    # small's TTFT grows steeply with the prompt: at 320 ms it meets short prompts (~110 ms) only
    # (long ~350 ms). big meets both (~260 / ~290 ms) at a higher cost. Right answer: route by length.
    cells = [served("small", ttft_ms=200, tpot_ms=1), served("big", ttft_ms=25, tpot_ms=8)]
    rec = _rec(tmp_path / "low", "e2el_p95=320ms", cells, rps=0.5)
    assert rec["choice"]["chosen"] == "big/gguf-f16/cpu/bs1"
    short, long_ = rec["routing"]["classes"]
    assert short["class"]["name"].startswith("short") and short["option"] == "small/gguf-f16/cpu/bs1"
    assert long_["option"] == "big/gguf-f16/cpu/bs1"
    assert short["fallbacks"][0] == "big/gguf-f16/cpu/bs1"  # the stronger (larger) model that meets the SLO
    assert 20 < rec["routing"]["saving"]["vs_single_best"]["saving_pct"] < 35  # per request: (111 + 288) / (258 + 288)
    # At half a request per second two servers cost twice one: the single option wins on whole replicas...
    assert rec["routing"]["saving"]["monthly"]["saving_pct"] < MIN_ROUTING_SAVING_PCT and rec["mode"] == "single"
    # ...at 40 req/s the per-request saving survives rounding to whole replicas.
    busy = _rec(tmp_path / "high", "e2el_p95=320ms", cells, rps=40.0)
    assert busy["routing"]["saving"]["monthly"]["saving_pct"] > 5 and busy["mode"] == "routing"


@pytest.mark.parametrize("rps,rule,mode", [(0.5, "auto", "single"), (0.5, "always", "routing"), (40.0, "never", "single"),
                                           (40.0, "auto", "routing")])
def test_the_routing_rule_decides_whether_a_routed_plan_is_deployed(tmp_path, rps, rule, mode):
    # The classes of the test above: at 0.5 req/s routing costs more a month (two servers for one),
    # yet `--routing always` deploys it (to run and verify it); `never` keeps one option at 40 req/s.
    cells = [served("small", ttft_ms=200, tpot_ms=1), served("big", ttft_ms=25, tpot_ms=8)]
    run = make_run(tmp_path / "run", cells, params=PARAMS)
    res = CliRunner().invoke(main, ["recommend", str(run), "--slo", "e2el_p95=320ms", "--rps", str(rps), "--routing", rule,
                                    "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["mode"] == mode and doc["constraints"]["routing_rule"] == rule
    dep = yaml.safe_load((tmp_path / "o" / "deployment.yaml").read_text())
    primaries = sorted(d["option"] for d in dep["deployments"] if d["role"] == "primary")
    assert dep["mode"] == mode
    if mode == "routing":
        assert primaries == ["big/gguf-f16/cpu/bs1", "small/gguf-f16/cpu/bs1"]
        saving = doc["routing"]["saving"]["monthly"]["saving_pct"]
        assert (saving < MIN_ROUTING_SAVING_PCT) == (rule == "always")
        assert f"{'saves' if saving >= 0 else 'would cost'} {abs(saving):.1f}% per month" in res.stderr.replace("\n", " ")
    else:
        assert primaries == ["big/gguf-f16/cpu/bs1"]


def test_the_cli_offers_the_engines_routing_rules():
    opt = next(p for p in main.commands["recommend"].params if p.name == "routing_rule")
    assert tuple(opt.type.choices) == ROUTING_RULES and opt.default == "auto"


def test_cli_answers_with_exit_0_when_nothing_fits(tmp_path):
    run = make_run(tmp_path / "run", SPEED, params=PARAMS)
    res = CliRunner().invoke(main, ["recommend", str(run), "--slo", "ttft_p95=1ms", "--rps", "1", "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["choice"]["chosen"] is None and "binding: ttft_p95<=1ms" in doc["choice"]["answer"]
    for f in ("recommendation.json", "deployment.yaml", "gateway/litellm.yaml"):
        assert (tmp_path / "o" / f).stat().st_size > 0


@pytest.mark.parametrize("args,needle", [(["--quality-floor", "1.5"], "--quality-floor"), (["--slo", "ttft=5"], "--slo"),
                                         (["--rps", "-1"], "--rps"), (["--rps", "inf"], "--rps"),
                                         (["--budget", "nan"], "--budget"), (["--api", "no-such-api-model"], "no-such-api-model")])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    run = make_run(tmp_path / "run", SPEED[:1])
    res = CliRunner().invoke(main, ["recommend", str(run), *args])
    assert res.exit_code == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_cli_not_a_results_folder_exits_2(tmp_path):
    res = CliRunner().invoke(main, ["recommend", str(tmp_path)])
    assert res.exit_code == 2 and "summary.json" in res.stderr


def test_routing_classes_are_prompt_lengths_only_even_where_the_golden_set_labels_difficulty(tmp_path):
    # A gateway never sees a request's golden-set difficulty: classes are length bands, with shares
    # from the workload's own prompts (half short, half long here), not the golden set's 30/10 mix.
    cells = [served("small"), served("small", "gguf-q8_0", ttft_ms=40, tpot_ms=4)]
    q = {("small", "gguf-q8_0"): {"greedy_agreement": 0.95, "top1_agreement": 0.96, "gate": "pass",
                                  "by_difficulty": {"easy": {"greedy_agreement": 0.99, "top1_agreement": 0.995, "n": 30},
                                                    "hard": {"greedy_agreement": 0.85, "top1_agreement": 0.9, "n": 10}}}}
    rec = _rec(tmp_path, "e2el_p95=1s", cells, quality=q, quality_floor=0.9)
    classes = [e["class"] for e in rec["routing"]["classes"]]
    assert [c["name"].split(" ")[0] for c in classes] == ["short", "long"]
    assert [c["share"] for c in classes] == [0.5, 0.5] and all("difficulty" not in c for c in classes)


def test_random_weight_figures_decide_nothing(tmp_path):
    # On random weights a low agreement is ties on flat logits: neither the floor nor the gate rejects it.
    cells = SPEED + [served("small", "gguf-q4_0", ttft_ms=20, tpot_ms=2)]
    q = {("small", "gguf-q4_0"): {"greedy_agreement": 0.3, "top1_agreement": 0.6, "gate": "unverified", "gate_note": UNVERIFIED}}
    rec = _rec(tmp_path, "e2el_p95=1s", cells, quality=q, random_weights=True, quality_floor=0.99)
    assert rec["choice"]["chosen"] == "small/gguf-q4_0/cpu/bs1"
    assert any("unverified: random weights" in r for r in _verdict(rec, "small/gguf-q4_0/cpu/bs1")["reasons"])


@pytest.mark.parametrize("entry,value,status", [
    ({"greedy_agreement": 0.95, "top1_agreement": 0.97, "gate": "pass"}, 0.95, "measured"),
    ({"greedy_agreement": 0.2, "top1_agreement": 0.5, "gate": "unverified",
      "gate_note": "unverified: near-flat reference logits (entropy 97% of uniform; untrained weights?)"}, 1.0, "unverified: near-flat"),
    ({"gate": "error", "error": "RuntimeError: out of memory"}, 1.0, "not measured (RuntimeError: out of memory)"),
    ({"role": "reference", "gate": "reference", "ppl": 12.5}, 1.0, "reference variant"),
])
def test_quality_of_each_gate_the_quality_stage_writes(entry, value, status):
    from llmbench.recommend.facts import quality_of

    q = quality_of({"quality": {"reference": "torch-fp32", "golden": "default@1", **entry}})
    assert q["value"] == value and q["status"].startswith(status) and q["gate"] == entry["gate"]
