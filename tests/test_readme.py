"""Every command the README shows is run here, on a tiny model and a short workload, and the files
the README says it writes are checked for values derived independently (from requests.jsonl, the
hardware profile, the ONNX graph, ...), not just for existence.

The commands are read from README.md itself: a command added to the README without a check here
fails `test_every_readme_command_is_checked`.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from conftest import SHARED, make_tiny_llama
from llmbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCED = re.compile(r"```(\w*)\n(.*?)```", re.S)
COMMAND = re.compile(r"^(?:\.venv/bin/)?(llmbench \w|python -m llmbench|litellm |pip |make )")

# Commands the README shows that this module does not run, and why (each is covered elsewhere).
NOT_RUN = {
    "make run": "the embedded default end to end (minutes): tests/test_default_run.py runs it through the CLI",
    "make test": "runs this very suite",
    "llmbench run": "the embedded default: tests/test_default_run.py",
    "pip install -c constraints.txt -e '.[gpu]'": "needs a GPU and the network",
    "litellm --config gateway/litellm.yaml": "tests/test_gateway_proxy.py starts a real proxy on the emitted file",
    "llmbench engines --json": "tests/test_engines.py (test_the_real_engine_and_engines_json)",
    "llmbench engines build": "tests/test_engines.py builds a stand-in archive through the same path; make test builds the real one",
    "llmbench serve card:llama-5m --variant gguf-q4_k_m --port 8080 --parallel 2": "tests/test_serve_cli.py (a free port instead of 8080)",
    "llmbench verify RUN_DIR --duration 30 --json": "tests/test_verify.py, through a real LiteLLM proxy (shorter load)",
    "llmbench verify RUN_DIR --load TRACE --autoscale": "tests/test_verify.py (the policy carried out with real replicas)",
    "llmbench feedback import RATINGS.jsonl RUN_DIR": "tests/test_feedback.py (ratings joined by id and by hash)",
    "llmbench run CONFIG --track mlflow": "tests/test_tracking_mlflow.py (a folder store and a real mlflow server)",
    "llmbench run --resume RUN_DIR --track ...": "tests/test_tracking_mlflow.py (after a tracking server that did not answer)",
    "llmbench compare mlflow:RUN_A mlflow:RUN_B --tracking-uri URI": "tests/test_tracking_mlflow.py (same result as the folders)",
    "llmbench guard eval ../shared/data/guard/prompt_injections_train.jsonl": "tests/test_guard_embedding.py (the shipped fit on that file); ../shared/acceptance/13-guard",
    "llmbench guard eval prompts.jsonl --guard rules --json": "tests/test_guard.py (figures by hand on a small labelled file)",
    "python -m llmbench.optimizers.guard.fit": "tests/test_guard_embedding.py (the shipped fit's figures reproduced); refitting takes minutes",
    "python -m llmbench.models.train_reference --data ../shared/data/text/tinyshakespeare.txt":
        "tests/test_reference_model.py (the same training code, a few steps, deterministic); the full recipe takes 20 min",
    "python -m llmbench.models.reference_golden --data ../shared/data/text/tinyshakespeare.txt":
        "tests/test_reference_model.py (the golden items are held out or from the training text)",
    "llmbench recommend RUN_DIR --quality-source feedback --quality-floor 0.5": "tests/test_feedback.py (the floor on win rates)",
    "llmbench drift LOG --against RUN_DIR --window 5m": "tests/test_drift.py, on a real run's records as the log",
    "llmbench drift gateway-log/requests.jsonl --against RUN_DIR": "tests/test_drift.py (gateway-style records as the log)",
    "llmbench run CONFIG --ray local:3": "tests/test_ray_run.py, inside a private network namespace (Ray's nodes on loopback only)",
    "llmbench run --resume RUN_DIR --ray ...": "tests/test_ray_run.py (Ctrl-C, then --resume on a fresh local cluster)",
}


def _normal(cmd: str) -> str:
    return " ".join(cmd.replace(".venv/bin/", "").split())


def readme_commands() -> set[str]:
    """Shell commands in the README: lines of bash blocks (comments dropped) and code spans that
    start with a command, written without the `.venv/bin/` prefix and with single spaces."""
    found = set()
    for lang, body in FENCED.findall(README):
        if lang == "bash":
            found |= {_normal(line.split(" #")[0]) for line in body.splitlines() if line.split(" #")[0].strip()}
    prose = FENCED.sub("", README)
    for span in re.findall(r"`([^`]+)`", prose):
        span = _normal(span)
        if COMMAND.match(span):
            found.add(span)
    return found


# The README command -> the test below that runs it.
CHECKED = {
    "llmbench run my-run.yaml --out results/my-run": "test_run_writes_a_summary_that_matches_its_records",
    "llmbench run --resume results/my-run": "test_resume_of_a_complete_run_measures_nothing_twice",
    "llmbench hardware": "test_hardware_reports_this_machine",
    "llmbench compress PROMPTS --rate 0.5 --out short.txt --json": "test_compress_writes_the_shorter_prompt",
    "llmbench cache simulate LOG --target-false-hit 0.05 --out DIR --json": "test_cache_simulate_writes_what_the_readme_says",
    "llmbench cache bench": "test_cache_bench_agrees_with_numpy",
    "llmbench plan RUN_DIR --rps 2": "test_plan_at_a_rate",
    "llmbench recommend RUN_DIR --slo ttft_p95=500ms --quality-floor 0.99": "test_recommend_writes_the_decision_files",
    "llmbench report RUN_DIR": "test_report_from_the_command_line",
    "llmbench compare RUN_A RUN_B": "test_compare_a_run_with_itself_flags_nothing",
    "llmbench quantize MODEL --to int4 --out DIR": "test_quantize_int4_writes_a_graph_with_4_bit_matmuls",
    "python -m llmbench.optimizers.cache.fit --pairs mine.jsonl --out mine.json --check": "test_fit_and_simulate_with_your_own_verifier",
    "llmbench cache simulate LOG --verifier mine.json": "test_fit_and_simulate_with_your_own_verifier",
}


def test_every_readme_command_is_checked():
    assert readme_commands() == set(CHECKED) | set(NOT_RUN)
    assert (ROOT / "tests" / "test_default_run.py").is_file()  # where `make run`'s command is run
    assert all(callable(globals().get(name)) for name in CHECKED.values())
    # The plan row's second form is an option pair, not a command of its own: it is run too.
    assert "`--trace azure.csv --slo e2el_p95=60s`" in README


def _writes(command_prefix: str) -> list[str]:
    """The file names the README's stage table says a command writes (`<x>` stands for any text)."""
    for line in README.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and f"`{command_prefix}" in cells[1]:
            return re.findall(r"`([^`\s]+\.\w+)`", cells[2])
    raise AssertionError(f"no row of the stage table shows {command_prefix!r}")


# ---- one tiny run, made the way the README says ----------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def shell(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    # `run` holds its results folder's lock until the process ends: each run is its own process,
    # as when a user types the command.
    exe = Path(sys.executable).with_name("llmbench")
    return subprocess.run([str(exe), *shlex.split(cmd)], cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A working folder holding ./models/my-llama (a tiny Llama) and my-run.yaml: the README's own
    example config with its first candidate (a local folder) and a short workload."""
    base = tmp_path_factory.mktemp("readme")
    make_tiny_llama(base / "models" / "my-llama")
    block = next(body for lang, body in FENCED.findall(README) if lang == "yaml" and "# my-run.yaml" in body)
    cfg = yaml.safe_load(block)
    assert cfg["candidates"][0] == {"model": "./models/my-llama", "variants": ["torch-fp32", "gguf-q4_k_m"]}
    cfg["candidates"] = cfg["candidates"][:1]  # the hub id and the 8B card are not on a test machine
    cfg["workload"] = {"prompt_tokens": 24, "output_tokens": 6, "requests": 8}
    (base / "my-run.yaml").write_text(yaml.safe_dump(cfg))
    res = shell("run my-run.yaml --out results/my-run", base)
    return {"base": base, "run": base / "results" / "my-run", "cfg": cfg, "res": res}


@pytest.fixture
def at(ws, monkeypatch):
    monkeypatch.chdir(ws["base"])
    return ws


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "requests.jsonl").read_text().splitlines() if line.strip()]


def test_run_writes_a_summary_that_matches_its_records(at):
    assert at["res"].returncode == 0, at["res"].stderr[-2000:]
    run, cfg = at["run"], at["cfg"]
    recs = _records(run)
    rows = json.loads((run / "summary.json").read_text())["rows"]
    # One row per scenario point of the README's scenarios and variant, each counting its own
    # records; static batches have no meaning for the served GGUF variant, so it has none.
    sc = {s if isinstance(s, str) else s["kind"]: s for s in cfg["scenarios"]}
    served_points = 1 + len(sc["concurrency"]["clients"])
    assert len(rows) == 2 * served_points + len(sc["batch"]["batch_sizes"])
    assert {r["scenario"] for r in rows if r["variant"] == "gguf-q4_k_m"} == {"single-stream", "concurrency"}
    assert {r["usage_source"] for r in recs} == {"engine", "server"}
    per_cell = Counter((r["variant"], r["scenario"], r["point"]) for r in recs)
    ok_cell = Counter((r["variant"], r["scenario"], r["point"]) for r in recs if not r.get("error"))
    for row in rows:
        cell = (row["variant"], row["scenario"], row["point"])
        # `requests` counts the successes, `failed` the rest: together every record of the cell.
        assert row["requests"] == ok_cell[cell]
        assert row["requests"] + row["failed"] == per_cell[cell] >= cfg["workload"]["requests"]
        ok = [r for r in recs if (r["variant"], r["scenario"], r["point"]) == cell and not r.get("error")]
        assert row["output_tokens_mean"] == pytest.approx(sum(r["output_tokens"] for r in ok) / len(ok), abs=0.05)
    # What the README's results table says each row carries, recomputed where it is a figure.
    # (A served tiny model's tokens can all arrive in one read on a busy machine: TPOT p50 of 0.)
    for single in (r for r in rows if r["scenario"] == "single-stream" and r["tpot_ms"]["p50"]):
        assert single["roofline_share"] == pytest.approx(1e3 / single["tpot_ms"]["p50"] / single["roofline_tok_s"], rel=1e-3)
    for row in rows:
        assert row["failed"] == sum(1 for r in recs if (r["variant"], r["scenario"], r["point"])
                                    == (row["variant"], row["scenario"], row["point"]) and r.get("error"))
        assert row["partial_failure"] is (0 < row["failed"] < row["requests"]) and isinstance(row["unreliable"], bool)
    meta = json.loads((run / "run.json").read_text())
    assert meta["config"]["slo"] == cfg["slo"] and meta["hardware_profile"]["name"] == cfg["hardware"]
    # The summary table's SLO share: requests meeting ttft_p95<=500ms and tpot_p99<=80ms, recounted.
    single = next(r for r in rows if r["scenario"] == "single-stream" and r["variant"] == "torch-fp32")
    mine = [r for r in recs if r["scenario"] == "single-stream" and r["variant"] == "torch-fp32" and not r.get("error")]
    good = [r for r in mine if r["ttft_ms"] <= 500 and (r["e2el_ms"] - r["ttft_ms"]) / max(r["output_tokens"] - 1, 1) <= 80]
    assert single["slo_met_share"] == pytest.approx(len(good) / len(mine), abs=1e-4)


def test_resume_of_a_complete_run_measures_nothing_twice(at):
    before = (at["run"] / "requests.jsonl").read_text()
    res = shell("run --resume results/my-run", at["base"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert (at["run"] / "requests.jsonl").read_text() == before


def test_hardware_reports_this_machine(at):
    res = invoke("hardware", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert os.cpu_count() in [v for v in _leaves(doc) if isinstance(v, int)]
    text = invoke("hardware")
    assert text.exit_code == 0 and str(os.cpu_count()) in text.output


def _leaves(doc):
    if isinstance(doc, dict):
        for v in doc.values():
            yield from _leaves(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _leaves(v)
    else:
        yield doc


def test_compress_writes_the_shorter_prompt(at, tmp_path):
    prompt = SHARED / "data" / "prompts" / "gsm8k_cot_3shot.txt"
    src = tmp_path / "prompt.txt"
    src.write_text(prompt.read_text()[:1500])
    out = tmp_path / "short.txt"
    res = invoke("compress", str(src), "--rate", "0.5", "--out", str(out), "--model", "./models/my-llama", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(at["base"] / "models" / "my-llama")
    n_in, n_out = len(tok(src.read_text())["input_ids"]), len(tok(out.read_text())["input_ids"])
    # The file holds the compressed prompt: about half the tokens, counted here with the tokenizer.
    assert 0.25 < n_out / n_in < 0.75
    found = [v for k, v in doc.items() if "ratio" in k and isinstance(v, (int, float))]
    assert found and found[0] == pytest.approx(n_in / n_out, rel=0.15)
    assert not (at["base"] / "compression.json").exists()  # the run's stage writes that, not this command


def test_cache_simulate_writes_what_the_readme_says(at, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    lines = (SHARED / "data" / "cache" / "qqp_pairs_dev.jsonl").read_text().splitlines()[:120]
    pairs.write_text("\n".join(lines) + "\n")
    labels = [json.loads(x)["label"] for x in lines]
    out = tmp_path / "DIR"
    res = invoke("cache", "simulate", str(pairs), "--target-false-hit", "0.05", "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert _writes("llmbench cache simulate") == ["cache.json", "DIR/result.json", "DIR/sweep-<log>.png"]
    saved = json.loads((out / "result.json").read_text())
    assert saved["hit_rate"] == doc["hit_rate"] and 0 <= saved["false_hit_rate"] <= 1
    # Each labelled pair is one lookup: as many as the file has lines, duplicates at most all.
    assert saved["lookups"] in (len(lines), 2 * len(lines)) and saved["hits"] <= saved["lookups"]
    assert sum(labels) > 0
    res = invoke("cache", "simulate", str(pairs), "--sweep", "--out", str(out))
    assert res.exit_code == 0, res.output
    png = out / "sweep-pairs.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_cache_bench_agrees_with_numpy(at):
    res = invoke("cache", "bench", "--n", "3000", "--dim", "64", "--repeats", "3", "--queries", "8", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    recalls = {k: v for k, v in _flat(doc).items() if "recall" in k}
    assert recalls and all(0.95 <= v <= 1.0 for v in recalls.values()), recalls


def _flat(doc, prefix=""):
    out = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def _best_req_s(run: Path) -> float:
    rows = json.loads((run / "summary.json").read_text())["rows"]
    return max(r["request_throughput_req_s"] for r in rows if r.get("request_throughput_req_s"))


def test_plan_at_a_rate(at):
    res = invoke("plan", "results/my-run", "--rps", "2")
    assert res.exit_code == 0, res.output
    plan = json.loads((at["run"] / "plan.json").read_text())
    opts = [o for o in plan["options"] if not o.get("error")]
    assert {o["variant"] for o in opts} == {"torch-fp32", "gguf-q4_k_m"}
    opt = min(opts, key=lambda o: o["replicas"])
    profile = json.loads((at["run"] / "run.json").read_text())["hardware_profile"]
    # No replica serves more than the best request rate measured on this machine.
    assert opt["replicas"] >= math.ceil(2 / _best_req_s(at["run"]))
    assert opt["cost_per_hour"] == pytest.approx(opt["replicas"] * profile["usd_per_hour"] * profile.get("devices", 1), rel=1e-3)


def test_plan_for_a_trace(at, tmp_path):
    trace = tmp_path / "azure.csv"
    trace.write_text("\n".join((SHARED / "data" / "traces" / "azure_llm_code_2023.csv").read_text().splitlines()[:120]) + "\n")
    res = invoke("plan", "results/my-run", "--trace", str(trace), "--slo", "e2el_p95=60s", "--json")
    assert res.exit_code == 0, res.output
    opts = [o for o in json.loads(res.stdout)["options"] if not o.get("error")]
    assert len(opts) == 2 and all(o["replicas"] >= 1 and o["slo_check"] and o["meets_slo"] in (True, False) for o in opts)


def test_recommend_writes_the_decision_files(at):
    res = invoke("recommend", "results/my-run", "--slo", "ttft_p95=500ms", "--quality-floor", "0.99")
    assert res.exit_code == 0, res.output
    rec = json.loads((at["run"] / "recommendation.json").read_text())
    # The tiny model answers within 500 ms and is its own quality reference: an option fits.
    chosen = rec["choice"]["chosen"]
    assert chosen and "my-llama" in chosen
    opt = next(o for o in rec["options"] if o["id"] == chosen)
    recs = [r for r in _records(at["run"]) if (r["scenario"], r["point"]) == (opt["scenario"], opt["point"]) and not r.get("error")]
    ttft = sorted(r["ttft_ms"] for r in recs)
    assert ttft[math.ceil(0.95 * len(ttft)) - 1] <= 500 * 1.05
    deploy = yaml.safe_load((at["run"] / "deployment.yaml").read_text())
    gateway = yaml.safe_load((at["run"] / "gateway" / "litellm.yaml").read_text())
    assert "my-llama" in json.dumps(deploy)
    assert gateway["model_list"] and all("os.environ/" in str(m["litellm_params"].get("api_key", "os.environ/"))
                                        for m in gateway["model_list"])


def test_report_from_the_command_line(at):
    res = invoke("report", "results/my-run", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    run = at["run"]
    html = (run / "report.html").read_text()
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert sorted(f"{n}.png" for n in got["plots"]) == pngs and len(pngs) >= 4
    assert html.count('src="data:image/png;base64,') == len(pngs)
    # The measured-results table: one line per summary row, with its own request count.
    md = (run / "report.md").read_text()
    rows = json.loads((run / "summary.json").read_text())["rows"]
    for r in rows:
        name = r["variant"].replace("_", "\\_")  # markdown escapes the underscores of gguf-q4_k_m
        line = next(x for x in md.splitlines() if x.startswith(f"| my-llama/{name} | {r['point']} |"))
        assert line.split(" | ")[2] == str(r["requests"])
        units = r["ttft_ms"].get("n_units") or r["requests"]
        assert line.rstrip(" |").endswith(" | -") == (not r.get("unreliable") and not r["failed"] and r["requests"] >= 5
                                                        and units >= 5 and r.get("precision_reached") is not False)
    share = next(r["roofline_share"] for r in rows if r["scenario"] == "single-stream" and r["variant"] == "torch-fp32")
    assert f"| my-llama/torch-fp32 | " in md.split("memory roofline")[1] and f"| {share:.0%} |" in md


def test_compare_a_run_with_itself_flags_nothing(at, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(at["run"], copy)
    res = invoke("compare", "results/my-run", str(copy))
    assert res.exit_code == 0, res.output
    rows = json.loads((at["run"] / "summary.json").read_text())["rows"]
    assert f"0 change(s) larger than the noise across {len(rows)} matching cell(s)" in res.output


def test_quantize_int4_writes_a_graph_with_4_bit_matmuls(at, tmp_path):
    out = tmp_path / "int4"
    res = invoke("quantize", "./models/my-llama", "--to", "int4", "--out", str(out))
    assert res.exit_code == 0, res.output
    import onnx

    graphs = list(out.rglob("*.onnx"))
    assert graphs
    ops = Counter(n.op_type for g in graphs for n in onnx.load(str(g), load_external_data=False).graph.node)
    # Every linear layer of the 2-layer model (q, k, v, o, gate, up, down) and the lm_head.
    assert ops["MatMulNBits"] >= 2 * 7 + 1
    assert str(ops["MatMulNBits"]) in res.output


def test_fit_and_simulate_with_your_own_verifier(at, tmp_path):
    from llmbench.optimizers.cache.fit import main as fit_main

    mine = tmp_path / "mine.jsonl"
    mine.write_text("\n".join((SHARED / "data" / "cache" / "qqp_pairs_dev.jsonl").read_text().splitlines()[:300]) + "\n")
    assert fit_main(["--pairs", str(mine), "--out", str(tmp_path / "mine.json"), "--check", "--splits", "2"]) == 0
    profile = json.loads((tmp_path / "mine.json").read_text())
    assert isinstance(profile, dict) and profile
    res = invoke("cache", "simulate", str(mine), "--verifier", str(tmp_path / "mine.json"), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert 0 <= doc["hit_rate"] <= 1 and doc["lookups"] > 0


def test_readme_links_stay_inside_the_repository():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert "docs/DESIGN.md" in links
    for link in links:
        if "://" in link:
            continue
        target = (ROOT / link).resolve()
        assert target.is_relative_to(ROOT) and target.is_file(), f"README links {link}, which a user's checkout does not have"
    # The design's own metric definitions are the ones the README names.
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    assert "TPOT: (E2EL - TTFT) / (output_tokens - 1)" in design and "../shared/DESIGN.md" not in design
