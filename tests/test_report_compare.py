"""`llmbench compare`: a real change is flagged, run-to-run noise is not."""
from __future__ import annotations

import json

from click.testing import CliRunner

from llmbench.cli import main
from llmbench.report.compare import compare_runs
from test_recommend_runs import cell, make_run

N = 40


def _run(path, seed: int, ttft_ms: float = 100.0, run_id: str = "r"):
    # One-length prompts: the noise is the 3% jitter alone, as on a quiet machine.
    return make_run(path, [cell("m", ttft_ms=ttft_ms, n=N, prompt_tokens=(100,))], seed=seed, run_id=run_id)


def test_noise_is_not_flagged(tmp_path):
    for seed in (2, 3, 4):  # several independent repeats of the same machine state
        doc = compare_runs(_run(tmp_path / "a", 1, run_id="a"), _run(tmp_path / f"b{seed}", seed, run_id="b"))
        assert doc["flagged"] == 0, [c["flagged"] for c in doc["cells"]]


def test_a_real_change_is_flagged_with_its_intervals(tmp_path):
    doc = compare_runs(_run(tmp_path / "a", 1, run_id="a"), _run(tmp_path / "b", 2, ttft_ms=130.0, run_id="b"))
    (cell_,) = doc["cells"]
    assert {"ttft_p50", "ttft_p95"} <= set(cell_["flagged"])
    ttft = next(m for m in cell_["metrics"] if m["metric"] == "ttft_p50")
    assert 25 < ttft["change_pct"] < 35 and ttft["a_ci95"][1] < ttft["b_ci95"][0]
    assert "tpot_p50" not in cell_["flagged"]  # TPOT did not change


def test_cli_json_and_cells_present_in_one_run_only(tmp_path):
    a = make_run(tmp_path / "a", [cell("m"), cell("m", batch=4)], run_id="a")
    b = make_run(tmp_path / "b", [cell("m")], run_id="b", seed=5, usd_per_hour=2.0)
    res = CliRunner().invoke(main, ["compare", str(a), str(b), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["cells"]) == 1 and doc["only_in_a"][0]["point"] == "batch=4" and doc["only_in_b"] == []
    assert {"what": "hardware_profile.usd_per_hour", "a": 1.0, "b": 2.0} in doc["context_changes"]
    cost = next(m for m in doc["cells"][0]["metrics"] if m["metric"] == "cost_per_request_usd")
    assert cost["significant"] and 90 < cost["change_pct"] < 110  # twice the price, same speed


def test_cli_bad_folder_exits_2(tmp_path):
    res = CliRunner().invoke(main, ["compare", str(tmp_path), str(tmp_path)])
    assert res.exit_code == 2 and "summary.json" in res.stderr


def test_cli_text_keeps_long_names_whole_with_units_and_no_dicts(tmp_path):
    long = "/models/" + "a-very-long-model-folder-name-" * 3 + "[v2]"
    a = make_run(tmp_path / "a", [cell(long, n=3), cell(long, batch=4, n=8)], run_id="a")
    b = make_run(tmp_path / "b", [cell(long, n=3)], run_id="b", seed=5)
    res = CliRunner().invoke(main, ["compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    out = res.output
    # rich's default width in a pipe is 80 columns; the cell's name is longer and still appears whole.
    assert len(long) > 80 and f"{long} / torch-fp32 / single-stream single" in out
    assert f"only in A: {long} / torch-fp32 / batch batch=4" in out and "{'model'" not in out
    assert "TTFT p50, ms" in out and "cost per request, $" in out
    assert "caution: 3 requests in a run" in out
