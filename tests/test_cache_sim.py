"""`cache simulate` and `cache bench` end to end: the real MiniLM embedder on small slices of the shared data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmbench.cli import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cache"
DEV = DATA / "qqp_pairs_dev.jsonl"
KEYS = ("hit_rate", "false_hit_rate", "wrong_entry_rate", "precision", "baseline", "lookups", "hits",
        "api_calls_saved", "tokens_saved", "cost_saved", "lookup_ms_p50", "lookup_ms_p99")



@pytest.fixture(scope="module")
def dev_slice(tmp_path_factory) -> Path:
    """The first 240 dev pairs (their vectors stay in the on-disk store between runs)."""
    path = tmp_path_factory.mktemp("pairs") / "dev240.jsonl"
    lines = DEV.read_text(encoding="utf-8").splitlines()[:240]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_simulate_pairs_json(dev_slice):
    res = run("cache", "simulate", str(dev_slice), "--target-false-hit", "0.05", "--price", "2.5", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # exactly one JSON document, nothing else on stdout
    for key in KEYS:
        assert key in doc
    for key in ("hit_rate", "false_hit_rate", "wrong_entry_rate"):
        assert 0.0 <= doc[key] <= 1.0 and 0.0 <= doc["baseline"][key] <= 1.0
    assert doc["lookups"] == 240 and doc["setting"]["rule"] in ("verifier", "cosine")
    assert doc["baseline"]["threshold"] == pytest.approx(0.9245, abs=0.05)
    assert doc["cost_saved"] == pytest.approx(doc["tokens_saved"] * 2.5 / 1e6)
    assert doc["hits"] + doc["false_hits"] + doc["wrong_entries"] == doc["api_calls_saved"]


def test_simulate_fixed_threshold_and_sweep(dev_slice, tmp_path):
    res = run("cache", "simulate", str(dev_slice), "--threshold", "0.95", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["setting"] == {"rule": "cosine", "threshold": 0.95, "target_false_hit": 0.05, "candidates": 1,
                              "source": "--threshold"}
    res = run("cache", "simulate", str(dev_slice), "--sweep", "--out", str(tmp_path), "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    png = Path(doc["plot"])
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "result.json").exists()
    hits = [p["hit_rate"] for p in doc["sweep"]["cosine"]]
    assert hits == sorted(hits, reverse=True)  # stricter thresholds never serve more


def test_simulate_replays_a_requests_log(tmp_path):
    records = [
        {"prompt": "How do I reset my router password?", "prompt_tokens": 12, "output_tokens": 30, "cost": 0.002},
        {"prompt": "What is the boiling point of water at sea level?", "prompt_tokens": 14, "output_tokens": 20,
         "cost": 0.001},
        {"prompt": "How do I reset my router password?", "prompt_tokens": 12, "output_tokens": 30, "cost": 0.002},
        {"prompt": "Explain photosynthesis to a child.", "prompt_tokens": 9, "output_tokens": 60, "cost": 0.004},
        {"prompt": "How do I reset my router password?", "prompt_tokens": 12, "output_tokens": 30, "cost": 0.002},
    ]
    log = tmp_path / "requests.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    res = run("cache", "simulate", str(log), "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["kind"] == "prompts" and doc["lookups"] == 5
    assert doc["hits"] == 2 and doc["api_calls_saved"] == 2  # the two repeats, nothing else
    assert doc["tokens_saved"] == 84 and doc["cost_saved"] == pytest.approx(0.004)
    assert doc["false_hit_rate"] is None and doc["baseline"]["hits"] == 2


@pytest.mark.parametrize("args, message", [
    (["missing.jsonl"], "does not exist"),
    (["{bad}", "--sweep", "--threshold", "0.9"], "not both"),
    (["{bad}", "--target-false-hit", "2"], "target-false-hit"),
    (["{bad}"], ":2: not valid JSON"),
    (["{bad}", "--profile", "no-such-price-profile"], "neither an API model"),
])
def test_simulate_bad_input_is_one_line_exit_2(tmp_path, args, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text_a": "a", "text_b": "b", "label": 1}\n{oops\n', encoding="utf-8")
    res = run("cache", "simulate", *[a.replace("{bad}", str(bad)) for a in args])
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr


def test_bench_small_json():
    res = run("cache", "bench", "--n", "4000", "--dim", "32", "--queries", "8", "--repeats", "3", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    for key in ("speedup_vs_faiss_single", "speedup_vs_faiss_batch", "int8_speedup_vs_f32", "int8_recall_at_10",
                "bandwidth_gbs", "bandwidth_fraction_single"):
        assert key in doc
    assert doc["int8_recall_at_10"] >= 0.99 and doc["bandwidth_gbs"] > 0
    if doc["f32_agreement_with_faiss"] is not None:
        assert doc["f32_agreement_with_faiss"] >= 0.99


def test_bench_bad_option():
    res = run("cache", "bench", "--n", "0")
    assert res.exit_code == 2 and "--n must be at least 1" in res.stderr


def test_cli_module_imports_nothing_heavy():
    code = ("import sys, llmbench.commands.cache; "
            "print(sorted(m for m in ('numba', 'torch', 'faiss', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


OWN_PRICE = """models:
  - name: our-negotiated-rate
    input_usd_per_1m: 1.5
    output_usd_per_1m: 4.0
    price_date: "2025-07-01"
    price_source: "our contract"
"""


@pytest.mark.parametrize("profile", ["gpt-4o-mini", "{own}"])
def test_simulate_prices_from_the_api_price_list_or_a_price_file(tmp_path, profile):
    from llmbench.prices import api_price, load_api_prices

    own = tmp_path / "own.yaml"
    own.write_text(OWN_PRICE, encoding="utf-8")
    model = api_price("gpt-4o-mini") if profile == "gpt-4o-mini" else load_api_prices(own, include_shipped=False)[0]
    records = [{"prompt": "What is the tallest mountain on Earth?", "prompt_tokens": 10, "output_tokens": 40}] * 3
    log = tmp_path / "prompts.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    res = run("cache", "simulate", str(log), "--profile", profile.replace("{own}", str(own)), "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["hits"] == 2 and doc["tokens_saved"] == 100
    want = (20 * model.input_usd_per_1m + 80 * model.output_usd_per_1m) / 1e6
    assert doc["cost_saved"] == pytest.approx(want)


@pytest.mark.parametrize("text, message", [
    ("usd_per_1m_tokens: 2.5\n", "models: Field required"),  # a spelling llmbench.prices does not read
    (OWN_PRICE.replace("input_usd_per_1m", "usd_per_1m_input"), "models.0.input_usd_per_1m: Field required"),
    (OWN_PRICE.replace("1.5", "cheap"), "models.0.input_usd_per_1m: Input should be a valid number"),
    (OWN_PRICE + OWN_PRICE.split("models:\n")[1].replace("our-negotiated-rate", "another"), "holds one model, this one holds 2"),
])
def test_a_bad_price_file_is_one_line_naming_it(tmp_path, text, message):
    prices = tmp_path / "prices.yaml"
    prices.write_text(text, encoding="utf-8")
    res = run("cache", "simulate", "unread.jsonl", "--profile", str(prices))
    assert res.exit_code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(prices) in lines[0] and message in lines[0], res.stderr


def test_simulate_with_a_profile_fitted_on_your_own_pairs(dev_slice, tmp_path):
    from llmbench.optimizers.cache import fit
    from llmbench.optimizers.cache.profile import load_profile

    own = tmp_path / "own.json"
    assert fit.main(["--pairs", str(dev_slice), "--out", str(own)]) == 0
    prof = load_profile(str(own))
    res = run("cache", "simulate", str(dev_slice), "--verifier", str(own), "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["setting"]["fitted_on"] == "dev240.jsonl"
    assert doc["baseline"]["threshold"] == prof.setting_for(0.05).cosine_threshold
    shipped = json.loads(run("cache", "simulate", str(dev_slice), "--json").stdout)
    assert shipped["setting"]["fitted_on"] == "qqp_pairs_dev.jsonl"

    # The run's cache stage takes the same profile from `cache: {verifier: ...}`.
    from types import SimpleNamespace

    from rich.console import Console

    from llmbench.optimizers.cache.stage import cache_stage

    run_dir = SimpleNamespace(path=tmp_path / "run")
    (run_dir.path / "plots").mkdir(parents=True)
    meta = {"config": {"cache": {"log": str(dev_slice), "verifier": str(own), "target_false_hit": 0.05}}}
    cache_stage(run_dir, meta, {}, Console(quiet=True))
    staged = json.loads((run_dir.path / "cache.json").read_text())
    assert staged["setting"]["fitted_on"] == "dev240.jsonl" and staged["hit_rate"] == doc["hit_rate"]


@pytest.mark.parametrize("content", [None, "{not json", '{"verifiers": {}}'])
def test_simulate_bad_verifier_file_is_exit_2(dev_slice, tmp_path, content):
    path = tmp_path / "v.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    res = run("cache", "simulate", str(dev_slice), "--verifier", str(path))
    assert res.exit_code == 2 and "--verifier" in res.stderr and "Traceback" not in res.stderr
