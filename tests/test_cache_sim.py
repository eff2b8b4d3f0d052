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



@pytest.fixture(scope="module")
def dev_slice(tmp_path_factory) -> Path:
    """The first 240 dev pairs (their vectors stay in the on-disk store between runs)."""
    path = tmp_path_factory.mktemp("pairs") / "dev240.jsonl"
    lines = DEV.read_text(encoding="utf-8").splitlines()[:240]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _by_hand(pairs_path: Path, threshold: float) -> dict:
    """Plain cosine on a pairs file, recomputed with numpy: cache every distinct text_a, serve each
    text_b the nearest entry when its cosine reaches the threshold; an identical cached text is the
    right answer to a repeat (label 1)."""
    import numpy as np

    from llmbench.optimizers.cache.cache import normalise_text
    from llmbench.optimizers.cache.embedder import default_embedder

    rows = [json.loads(line) for line in pairs_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    entries = list(dict.fromkeys(r["text_a"] for r in rows))
    emb = default_embedder()
    ea, eb = emb.embed(entries), emb.embed([r["text_b"] for r in rows])
    sims = eb @ ea.T
    nearest = sims.argmax(axis=1)
    counts = dict.fromkeys(("hits", "false_hits", "wrong_entries", "served", "label1", "label0"), 0)
    norm_entries = [normalise_text(e) for e in entries]
    for i, r in enumerate(rows):
        repeat = normalise_text(r["text_b"]) in norm_entries
        label = 1 if repeat else r["label"]
        counts["label1" if label else "label0"] += 1
        if sims[i, nearest[i]] < threshold:
            continue
        counts["served"] += 1
        right = (norm_entries[nearest[i]] == normalise_text(r["text_b"]) if repeat
                 else entries[nearest[i]] == r["text_a"])
        counts["hits" if label and right else "wrong_entries" if label else "false_hits"] += 1
    return counts


def test_simulate_pairs_json(dev_slice):
    res = run("cache", "simulate", str(dev_slice), "--target-false-hit", "0.05", "--price", "2.5", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # exactly one JSON document, nothing else on stdout
    assert doc["lookups"] == 240 and doc["setting"]["rule"] in ("verifier", "cosine")
    # The cosine baseline, recomputed by hand from the pairs and the same embeddings.
    base = doc["baseline"]
    want = _by_hand(dev_slice, base["threshold"])
    assert (base["hits"], base["false_hits"], base["wrong_entries"], base["served"]) == \
        (want["hits"], want["false_hits"], want["wrong_entries"], want["served"])
    assert base["hit_rate"] == pytest.approx(want["hits"] / want["label1"])
    assert base["false_hit_rate"] == pytest.approx(want["false_hits"] / want["label0"])
    # Per request: everything served over every lookup; wrong answers are false hits plus wrong entries.
    assert base["served_from_cache_rate"] == pytest.approx(want["served"] / 240)
    assert base["wrong_answer_rate"] == pytest.approx((want["false_hits"] + want["wrong_entries"]) / 240)
    assert doc["served_from_cache_rate"] == pytest.approx(doc["api_calls_saved"] / 240)
    assert doc["wrong_answer_rate"] == pytest.approx((doc["false_hits"] + doc["wrong_entries"]) / 240)
    assert doc["hits"] + doc["false_hits"] + doc["wrong_entries"] == doc["api_calls_saved"]
    assert doc["cost_saved"] == pytest.approx(doc["tokens_saved"] * 2.5 / 1e6)
    assert doc["units"] == {"hit_rate": "per_label1_lookup", "false_hit_rate": "per_label0_lookup",
                            "wrong_entry_rate": "per_label1_lookup", "served_from_cache_rate": "per_request",
                            "wrong_answer_rate": "per_request"}
    assert doc["traffic"] == str(dev_slice)
    # The gateway block is the plain-cosine side, in the same units, with measured timings.
    gw = doc["gateway"]
    assert gw["threshold"] == base["threshold"] and gw["served_from_cache_rate"] == base["served_from_cache_rate"]
    assert gw["units"] == doc["units"] and gw["traffic"] == str(dev_slice)
    assert 0.1 < doc["embed_ms_p50"] < 5000 and gw["embed_ms_p50"] == doc["embed_ms_p50"]
    assert doc["lookup_ms_p50"] <= doc["lookup_ms_p99"]
    assert doc["setting"]["dev_note"].startswith("in-sample")


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
    assert json.loads((tmp_path / "result.json").read_text()) == doc  # the file holds what was printed
    hits = [p["hit_rate"] for p in doc["sweep"]["cosine"]]
    assert hits == sorted(hits, reverse=True)  # stricter thresholds never serve more
    # Each sweep point in per-request units too: served over the 240 lookups.
    for point in doc["sweep"]["cosine"]:
        assert point["served_from_cache_rate"] == pytest.approx(point["served"] / 240)
        assert point["wrong_answer_rate"] == pytest.approx((point["false_hits"] + point["wrong_entries"]) / 240)
    at = next(p for p in doc["sweep"]["cosine"] if p["threshold"] == 0.9)
    want = _by_hand(dev_slice, 0.9)
    assert (at["hits"], at["false_hits"], at["wrong_entries"]) == (want["hits"], want["false_hits"],
                                                                     want["wrong_entries"])


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
    # Ratios recomputed from the timings the same document reports.
    assert doc["speedup_vs_faiss_single"] == pytest.approx(doc["faiss_single_ms"] / doc["f32_single_ms"])
    assert doc["speedup_vs_faiss_batch"] == pytest.approx(doc["faiss_batch_ms"] / doc["f32_batch_ms"])
    assert doc["int8_speedup_vs_f32"] == pytest.approx(doc["f32_single_ms"] / doc["int8_single_ms"])
    matrix_bytes = 4000 * 32 * 4
    assert doc["bandwidth_fraction_single"] == pytest.approx(
        matrix_bytes / (doc["f32_single_ms"] / 1e3) / 1e9 / doc["bandwidth_gbs"])
    assert doc["int8_recall_at_10"] >= 0.99 and doc["bandwidth_gbs"] > 0
    # faiss is a test dependency: its absence is a failure here, not a silent skip.
    assert doc["f32_agreement_with_faiss"] is not None, "faiss is not installed"
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


# ---- exact repeats, identical copies, the per-request units (issue 12) -------------------------
def _questions(n: int) -> list[str]:
    seen: list[str] = []
    for line in DEV.read_text(encoding="utf-8").splitlines():
        t = json.loads(line)["text_a"]
        if t not in seen:
            seen.append(t)
        if len(seen) == n:
            return seen
    raise AssertionError("too few dev pairs")


def test_exact_repeats_are_served_at_the_strictest_target(tmp_path):
    """Each question asked twice: every second asking is served, at target 0.01 (it used to be 0 of 12)."""
    qs = _questions(12)
    log = tmp_path / "repeats.jsonl"
    log.write_text("\n".join(json.dumps({"prompt": q}) for q in qs + qs) + "\n", encoding="utf-8")
    res = run("cache", "simulate", str(log), "--target-false-hit", "0.01", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["hits"] == 12 and doc["exact_hits"] >= 12 and doc["served_from_cache_rate"] == 12 / 24
    assert doc["units"]["hit_rate"] == "per_request" and doc["wrong_answer_rate"] is None
    assert doc["gateway"]["hits"] == doc["baseline"]["hits"] and doc["gateway"]["rule"] == "cosine"


def test_an_identical_cached_copy_is_the_right_answer_not_a_false_hit(tmp_path):
    """A text_b word for word another pair's text_a (label 0 against its own text_a): serving the
    identical entry is right; the QQP dev pairs hold 41 such lookups."""
    a, b, c, d = _questions(4)
    rows = [{"text_a": a, "text_b": b, "label": 0}, {"text_a": c, "text_b": a, "label": 0},
            {"text_a": d, "text_b": c, "label": 1}]
    log = tmp_path / "pairs.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    res = run("cache", "simulate", str(log), "--target-false-hit", "0.01", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["repeats"]["lookups"] == 2 and doc["repeats"]["relabelled_from_0"] == 1
    # Both repeats (text_b = a, text_b = c) are served their identical entries: hits, not errors.
    assert doc["hits"] == 2 and doc["false_hits"] == 0 and doc["wrong_entries"] == 0
    assert doc["hit_rate"] == 1.0 and doc["baseline"]["hits"] == 2 and doc["baseline"]["false_hits"] == 0


def test_a_requests_log_without_prompt_text_says_why_and_how(tmp_path):
    rec = {"request_id": 0, "model": "m", "variant": "torch-fp32", "prompt_tokens": 12, "output_tokens": 4,
           "ttft_ms": 10.0, "e2el_ms": 20.0, "prompt_sha256": "ab" * 32, "status": "ok"}
    log = tmp_path / "requests.jsonl"
    log.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    res = run("cache", "simulate", str(log))
    assert res.exit_code == 2 and res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    assert "sha256" in res.stderr and "record_prompts: true" in res.stderr and f"{log}:1" in res.stderr
    # The same records with the text kept (workload.record_prompts): simulated on it.
    q = _questions(1)[0]
    log.write_text("\n".join(json.dumps(rec | {"request_id": i, "prompt": q}) for i in range(3)) + "\n",
                   encoding="utf-8")
    doc = json.loads(run("cache", "simulate", str(log), "--json").stdout)
    assert doc["lookups"] == 3 and doc["hits"] == 2 and doc["tokens_saved"] == 2 * (12 + 4)


def test_verifier_file_is_read_as_named(tmp_path, dev_slice):
    from llmbench.optimizers.cache.profile import profile_path

    mine = tmp_path / "mine"  # no .json: it is the file the user named, not a shipped profile name
    mine.write_bytes(profile_path("default").read_bytes())
    res = run("cache", "simulate", str(dev_slice), "--verifier", str(mine), "--threshold", "0.95", "--json")
    assert res.exit_code == 0, res.stderr
    res = run("cache", "simulate", str(dev_slice), "--verifier", str(tmp_path / "absent"))
    assert res.exit_code == 2 and "does not exist" in res.stderr and "absent.json" not in res.stderr


def test_threshold_with_a_target_below_the_profile_is_one_line(dev_slice):
    res = run("cache", "simulate", str(dev_slice), "--threshold", "0.9", "--target-false-hit", "0.005")
    assert res.exit_code == 2 and res.stdout == "" and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "--target-false-hit 0.005" in res.stderr


def test_cache_stage_on_the_shipped_pairs(tmp_path):
    """The default run's cache stage: the shipped sample pairs, figures recomputed by hand, units named."""
    from types import SimpleNamespace

    from rich.console import Console

    from llmbench.optimizers.cache.stage import cache_stage, sample_pairs

    run_dir = SimpleNamespace(path=tmp_path / "run")
    (run_dir.path / "plots").mkdir(parents=True)
    cache_stage(run_dir, {"config": {"cache": {}}}, {}, Console(quiet=True))
    doc = json.loads((run_dir.path / "cache.json").read_text())
    n = len(sample_pairs().read_text(encoding="utf-8").splitlines())
    assert doc["lookups"] == n and doc["traffic"] == "shipped sample pairs (not your traffic)"
    assert doc["gateway"]["traffic"] == doc["traffic"] and doc["units"]["served_from_cache_rate"] == "per_request"
    base = doc["baseline"]
    want = _by_hand(sample_pairs(), base["threshold"])
    assert (base["hits"], base["false_hits"], base["wrong_entries"]) == (want["hits"], want["false_hits"],
                                                                         want["wrong_entries"])
    assert doc["gateway"]["served_from_cache_rate"] == pytest.approx(want["served"] / n)
    assert doc["gateway"]["wrong_answer_rate"] == pytest.approx((want["false_hits"] + want["wrong_entries"]) / n)
    assert not list((run_dir.path / "plots").glob("*.png"))  # the report draws the sweep; the stage does not duplicate it
