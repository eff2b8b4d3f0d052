"""`llmbench plan` and the plan stage on a hand-built results folder (no model is run)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.results import RunDir
from test_planner_synth import batch_records, rate_records, write_run

RATES = (10.0, 20.0, 30.0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    recs = batch_records(model="card:tiny", variant="torch-fp32")
    recs += batch_records(model="card:big", variant="torch-fp32", seed=2)
    for rate in RATES:
        recs += rate_records(rate, model="card:tiny", variant="torch-fp32", start=9000 + rate * 100)
    return write_run(tmp_path_factory.mktemp("run"), recs, rates=RATES)


def _invoke(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_plan_json_for_every_option(run_dir):
    code, out, err = _invoke("plan", str(run_dir), "--rps", "30", "--slo", "e2el_p95=2s", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {(o["model"]) for o in doc["options"]} == {"card:tiny", "card:big"}
    for o in doc["options"]:
        assert o["replicas"] >= 1 and o["cost_per_month"] == pytest.approx(o["cost_per_hour"] * 730)
        assert o["predicted"]["e2el_ms"]["p95"] > 0 and o["saturation_rps"] > 0
    assert doc["best"] is not None and "p95" in json.dumps(doc)
    assert json.loads((run_dir / "plan.json").read_text())["options"] == doc["options"]


def test_prediction_error_reported_from_the_run_s_concurrency_points(run_dir):
    code, out, err = _invoke("plan", str(run_dir), "--rps", "30", "--model", "tiny", "--json")
    assert code == 0, err
    (opt,) = json.loads(out)["options"]
    pe = opt["prediction_error"]
    assert [lv["rate_rps"] for lv in pe["levels"]] == list(RATES)
    # The synthetic concurrency points were made by the same model: replay must agree almost exactly.
    assert pe["max_abs_e2el_p95_error_pct"] < 0.5
    assert all(0 < lv["load_share_of_saturation"] < 1 for lv in pe["levels"])


def test_trace_replay_and_the_table(run_dir, tmp_path):
    trace = tmp_path / "t.csv"
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"2023-11-16 18:15:{i // 10:02d}.{i % 10}000000,{100 + 37 * i % 900},{5 + i % 40}" for i in range(400)]
    trace.write_text("\n".join(lines) + "\n")
    code, out, err = _invoke("plan", str(run_dir), "--trace", str(trace), "--slo", "ttft_p95=800ms", "--variant", "torch-fp32")
    assert code == 0, err
    assert "capacity plan" in out and "replicas" in out and "longer than the longest measured" in out


@pytest.mark.parametrize("args, needle", [
    (["--rps", "1", "--trace", "x.csv"], "exactly one"),
    ([], "exactly one"),
    (["--rps", "1", "--slo", "e2el=5"], "--slo"),
    (["--rps", "1", "--model", "nope"], "no measured option"),
    (["--rps", "1", "--goodput", "1.5"], "goodput"),
    (["--trace", "/no/such/trace.csv"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(run_dir, args, needle):
    code, out, err = _invoke("plan", str(run_dir), *args)
    assert code == 2 and needle in err and "Traceback" not in err and out == ""


def test_not_a_results_folder(tmp_path):
    code, _, err = _invoke("plan", str(tmp_path), "--rps", "1")
    assert code == 2 and "run.json" in err


def test_the_stage_writes_plan_json_at_a_default_load(run_dir):
    from rich.console import Console

    from llmbench.planner.stage import plan_stage
    from llmbench.stages import STAGES

    assert "plan" in [name for name, _ in STAGES]
    rd = RunDir(run_dir)
    (run_dir / "plan.json").unlink(missing_ok=True)
    plan_stage(rd, rd.read_json("run.json"), rd.read_json("summary.json"), Console(file=open("/dev/null", "w")))
    doc = json.loads((run_dir / "plan.json").read_text())
    assert "50% of the best measured throughput" in doc["load_source"]
    assert all(o["replicas"] >= 1 for o in doc["options"])
