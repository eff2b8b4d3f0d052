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
    own = run_dir / "plan.json"
    own.write_text('{"the run\'s own plan": true}')
    code, out, err = _invoke("plan", str(run_dir), "--rps", "30", "--slo", "e2el_p95=2s", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {(o["model"]) for o in doc["options"]} == {"card:tiny", "card:big"}
    for o in doc["options"]:
        # The test box costs $0.5/h (HARDWARE): replicas x 0.5 x 730 h, by hand.
        assert o["cost_per_hour"] == o["replicas"] * 0.5 and o["cost_per_month"] == o["replicas"] * 0.5 * 730
        assert o["meets_slo"] is (o["predicted"]["e2el_ms"]["p95"] <= 2000)
    meeting = [o for o in doc["options"] if o["meets_slo"]]
    # Equal cost goes to the faster at p95, as the recommender ranks (issue 13 item 7).
    cheapest = min(meeting, key=lambda o: (o["replicas"], o["predicted"]["e2el_ms"]["p95"]))
    assert (doc["best"]["model"], doc["best"]["replicas"]) == (cheapest["model"], cheapest["replicas"])
    assert doc["best"]["e2el_p95_ms"] == cheapest["predicted"]["e2el_ms"]["p95"] <= 2000
    # Issue 13 item 3: an exploratory plan goes beside the run's own and never replaces it.
    assert own.read_text() == '{"the run\'s own plan": true}'
    written = json.loads((run_dir / "plans" / "plan-rps30.json").read_text())
    assert written["options"] == doc["options"] and doc["policy"] == "random"
    assert written["produced_by"]["command"].startswith(f"llmbench plan {run_dir} --rps 30.0")
    assert written["produced_by"]["load"] == "30.0 req/s Poisson"


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
    # Issue 13 item 3, issue 20 items 7 and 10: loads and limits are checked before anything is planned.
    (["--rps", "-3"], "--rps must be a rate of requests/s above 0 and at most 1e+07, got -3.0"),
    (["--rps", "0"], "--rps must be a rate"),
    (["--rps", "inf"], "got inf"),
    (["--rps", "nan"], "got nan"),
    (["--rps", "1", "--max-batch", "1000000"], "--max-batch must be between 1 and 1024, got 1000000"),
    (["--rps", "1", "--max-replicas", "0"], "--max-replicas must be between 1 and 1000000"),
])
def test_bad_input_is_one_line_and_exit_2(run_dir, args, needle):
    before = sorted(p.name for p in run_dir.iterdir())
    code, out, err = _invoke("plan", str(run_dir), *args)
    assert code == 2 and needle in err and "Traceback" not in err and out == ""
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written


@pytest.mark.parametrize("text, needle", [
    ("time,prompt,output\n0,10,5\n1,10,5\n", "t.csv:1: the header 'time,prompt,output' is not the Azure trace format"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,10,5\n2,inf,5\n", "t.csv:3: context tokens 'inf'"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,10,5\nnan,10,5\n", "t.csv:3: timestamp 'nan'"),
])
def test_a_bad_trace_is_one_line_naming_file_and_line(run_dir, tmp_path, text, needle):
    (tmp_path / "t.csv").write_text(text)
    code, out, err = _invoke("plan", str(run_dir), "--trace", str(tmp_path / "t.csv"))
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


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
    assert doc["produced_by"]["command"].startswith("llmbench run (plan stage")
    assert doc["policy"] == "random"  # what the gateway does by default (LiteLLM simple-shuffle)


def test_an_exploratory_plan_never_moves_the_recommendation_s_load(tmp_path):
    # Issue 13 item 3: after `plan --rps 1e6`, `recommend` planned for a million req/s.
    from rich.console import Console

    from llmbench.planner.stage import plan_stage
    from llmbench.recommend.inputs import load_run
    from llmbench.recommend.planning import default_rps

    path = write_run(tmp_path / "r", batch_records(model="card:tiny", variant="torch-fp32"))
    rd = RunDir(path)
    plan_stage(rd, rd.read_json("run.json"), rd.read_json("summary.json"), Console(file=open("/dev/null", "w")))
    own = json.loads((path / "plan.json").read_text())["load"]["offered_rps"]
    before = default_rps(load_run(path))
    code, _, err = _invoke("plan", str(path), "--rps", "1e6", "--max-batch", "8", "--json")
    assert code == 0, err
    assert json.loads((path / "plans" / "plan-rps1e06.json").read_text())["load"]["offered_rps"] == 1e6
    assert default_rps(load_run(path)) == before and before[0] == own != 1e6
