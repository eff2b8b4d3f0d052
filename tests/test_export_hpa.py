"""The chosen autoscaling policy emitted: deploy/hpa-<name>.yaml (a Kubernetes HorizontalPodAutoscaler,
validated against the API schema by kubernetes-validate) and deployment.yaml's autoscaling block,
on a run folder `llmbench recommend` really wrote (hand-built measurements, no servers)."""
from __future__ import annotations

import copy
import csv
import json
import shutil

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.export.autoscaling import MARK, emit
from llmbench.export.hpa import InvalidManifest, check, hpa_doc
from llmbench.export.yamlio import dump
from test_planner_autoscale import _trace
from test_planner_synth import batch_records, write_run

VARIANT = "gguf-q4_k_m"  # llama.cpp serves it: recommend writes a deployment and its start script
NAME = "tiny-gguf-q4-k-m"  # slug of the served name, as deploy/serve-<name>.sh


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """(run folder, deployment.yaml as recommend wrote it, the trace, the plan JSON) after one
    `plan --trace --autoscale` on a bursty trace that a queue policy serves cheaper than the fixed plan."""
    run = write_run(tmp_path_factory.mktemp("run"), batch_records(model="card:tiny", variant=VARIANT))
    assert CliRunner().invoke(main, ["recommend", str(run), "--rps", "1"]).exit_code == 0
    before = (run / "deployment.yaml").read_text()
    trace = _trace(tmp_path_factory.mktemp("trace") / "burst.csv", 600, burst=(100, 160))
    res = CliRunner().invoke(main, ["plan", str(run), "--trace", str(trace), "--autoscale", "--slo", "e2el_p95=3s",
                                    "--attainment", "0.95", "--no-measure", "--json"])
    assert res.exit_code == 0, res.stderr
    return run, before, trace, json.loads(res.stdout)


def _quantity(text: str) -> float:
    return float(text)  # hpa.quantity writes plain decimals, no SI suffix


def _header(text: str) -> str:
    return "".join(ln for ln in text.splitlines(keepends=True) if ln.startswith("#"))


def test_the_cli_writes_a_valid_queue_hpa_and_the_block(planned):
    run, before, trace, doc = planned
    a = doc["autoscale"]
    assert a["kind"] == "queue" and a["min_replicas"] < a["max_replicas"]
    assert a["cost_per_month_usd"] < doc["fixed"]["cost_per_month_usd"]
    hpa_path = run / "deploy" / f"hpa-{NAME}.yaml"
    assert doc["emitted"]["hpa"] == str(hpa_path) and (run / "deploy" / f"serve-{NAME}.sh").is_file()
    text = hpa_path.read_text()
    m = yaml.safe_load(text)
    assert kubernetes_validate.validate(m, "1.37", strict=True) == "1.37"  # the schema itself, not our wrapper
    s = m["spec"]
    assert (m["apiVersion"], m["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    assert s["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    assert (s["minReplicas"], s["maxReplicas"]) == (a["min_replicas"], a["max_replicas"])
    (metric,) = s["metrics"]
    assert metric["pods"]["metric"]["name"] == "llmbench_requests_in_flight"
    # The depth target recomputed: the replica's slots (the planned batch) x the policy's multiple.
    assert _quantity(metric["pods"]["target"]["averageValue"]) == pytest.approx(doc["option"]["max_batch"] * a["headroom"])
    assert s["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == a["cooldown_s"]
    assert {p["periodSeconds"] for p in s["behavior"]["scaleUp"]["policies"]} == {a["interval_s"]}
    head = _header(text)
    assert "NOT RUN HERE" in head and "llamacpp:requests_processing" in head and "--metrics" in head
    assert "custom.metrics.k8s.io" in head and "kubernetes-validate 1.37.0" in head and str(trace) in head
    # deployment.yaml: every byte recommend wrote, then the block.
    after = (run / "deployment.yaml").read_text()
    assert after.startswith(before) and after[len(before):].startswith(MARK + "\n")
    old, new = yaml.safe_load(before), yaml.safe_load(after)
    b = new.pop("autoscaling")
    assert new == old
    assert (b["kind"], b["min_replicas"], b["max_replicas"]) == ("queue", a["min_replicas"], a["max_replicas"])
    assert b["depth_target_requests"] == a["depth_target"] and b["cooldown_s"] == a["cooldown_s"]
    assert b["interval_s"] == a["interval_s"] and b["trace"] == str(trace) and b["attainment_target"] == 0.95
    assert b["hpa"] == f"deploy/hpa-{NAME}.yaml" and b["deployment"] == NAME
    assert b["cold_start_s"] is None and "not measured" in b["cold_start_source"]
    served = next(d for d in old["deployments"] if d.get("served_name") == NAME)
    assert ("batch_note" in b) == (served["max_batch_size"] != doc["option"]["max_batch"])
    assert json.loads((run / "plans" / "autoscale-trace-burst.json").read_text())["emitted"]["autoscaling"] == b


def test_a_tokens_policy_hpa_carries_the_recomputed_budget(planned, tmp_path):
    run, before, trace, doc = planned
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    tokens = [r for r in doc["tried"] if r["kind"] == "tokens" and r["min_replicas"] < r["max_replicas"]]
    pol = max(tokens, key=lambda r: r["headroom"] != 1.0)  # a budget below the full one
    plan = {**copy.deepcopy(doc), "autoscale": {**pol, "cold_start_s": None}, "plan_file": "plans/x.json"}
    out = emit(folder, plan)
    m = yaml.safe_load((folder / "deploy" / f"hpa-{NAME}.yaml").read_text())
    kubernetes_validate.validate(m, "1.37", strict=True)
    # The budget by hand: one replica's rate at the SLO x the trace's mean prompt + output tokens x headroom.
    rows = list(csv.DictReader(trace.open()))
    mean_tokens = sum(int(r["ContextTokens"]) + int(r["GeneratedTokens"]) for r in rows) / len(rows)
    budget = doc["token_budget"]["rate_rps"] * mean_tokens * pol["headroom"]
    (metric,) = m["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "llmbench_tokens_per_second"
    assert _quantity(metric["pods"]["target"]["averageValue"]) == pytest.approx(budget, abs=5e-4)
    assert (m["spec"]["minReplicas"], m["spec"]["maxReplicas"]) == (pol["min_replicas"], pol["max_replicas"])
    b = yaml.safe_load((folder / "deployment.yaml").read_text())["autoscaling"]
    assert b == out["autoscaling"] and b["kind"] == "tokens"
    assert b["token_budget_tokens_per_s"] == pytest.approx(budget, rel=1e-9) and b["token_window_s"] == pol["window_s"]
    # Re-running replaces the block: one block, the latest, the rest still recommend's bytes.
    text = (folder / "deployment.yaml").read_text()
    assert text.count(MARK) == 1 and text == before + MARK + "\n" + dump({"autoscaling": b})


def test_no_deployment_yaml_keeps_the_block_in_the_plan_only(planned, tmp_path):
    doc = planned[3]
    out = emit(tmp_path, doc)
    assert out["deployment_yaml"] is None and out["hpa"] is None and "no deployment.yaml" in out["note"]
    assert out["autoscaling"]["min_replicas"] == doc["autoscale"]["min_replicas"] and list(tmp_path.iterdir()) == []


def test_an_undeployed_option_removes_the_old_block_and_hpa(planned, tmp_path):
    run, before, _, doc = planned
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    other = {**doc, "option": {**doc["option"], "variant": "gguf-f16"}}
    out = emit(folder, other)
    assert out["hpa"] is None and "deploys no" in out["note"]
    assert (folder / "deployment.yaml").read_text() == before and not list((folder / "deploy").glob("hpa-*"))


POLICY = {"kind": "tokens", "min_replicas": 2, "max_replicas": 5, "interval_s": 15.0, "cooldown_s": 120.0,
          "token_budget": 1234.5678, "depth_target": 0.0}


@pytest.mark.parametrize("break_it, needle", [
    (lambda m: m["spec"].update(minReplicas=0), "minReplicas must be >= 1"),
    (lambda m: m["spec"].update(maxReplicas=1), "maxReplicas must be >= 1 and >= minReplicas"),
    (lambda m: m.update(apiVersion="autoscaling/v9"), "autoscaling/v9"),
    (lambda m: m["spec"].update(maxReplicas="5"), "is not of type"),
    (lambda m: m["spec"].update(bogus=1), "'bogus' was unexpected"),
    (lambda m: m["spec"]["metrics"][0]["pods"]["target"].update(averageValue="0"), "positive averageValue"),
    (lambda m: m["spec"]["behavior"]["scaleDown"].update(stabilizationWindowSeconds=4000), "0..3600"),
    (lambda m: m["metadata"].update(name="Not_A_Name"), "DNS-1123"),
])
def test_an_invalid_manifest_is_rejected(break_it, needle):
    m = hpa_doc(POLICY, "x")
    assert "kubernetes-validate" in check(m)
    break_it(m)
    with pytest.raises(InvalidManifest, match=needle.replace("(", r"\(").replace(".", r"\.")):
        check(m)


def test_the_schema_alone_rejects_a_wrong_type_and_a_wrong_api_version():
    m = hpa_doc(POLICY, "x")
    kubernetes_validate.validate(m, "1.37", strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**m, "spec": {**m["spec"], "minReplicas": "2"}}, "1.37", strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate({**m, "apiVersion": "autoscaling/v9"}, "1.37", strict=True)


def test_without_kubernetes_validate_the_api_rules_still_apply(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "kubernetes_validate", None)  # import fails
    m = hpa_doc(POLICY, "x")
    assert "not installed: no schema check" in check(m)
    m["spec"]["minReplicas"] = 0
    with pytest.raises(InvalidManifest, match="minReplicas must be >= 1"):
        check(m)


def test_recommend_again_drops_the_block_and_its_hpa(planned, tmp_path):
    run, before, _, _ = planned
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    assert list((folder / "deploy").glob("hpa-*.yaml"))
    assert CliRunner().invoke(main, ["recommend", str(folder), "--rps", "1"]).exit_code == 0
    assert not list((folder / "deploy").glob("hpa-*.yaml")) and (folder / "deploy" / f"serve-{NAME}.sh").is_file()
    assert "autoscaling" not in yaml.safe_load((folder / "deployment.yaml").read_text())


def test_a_schedule_policy_is_written_as_a_schedule_not_an_hpa(planned, tmp_path):
    run, _, trace, _ = planned
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    res = CliRunner().invoke(main, ["plan", str(folder), "--trace", str(trace), "--autoscale", "--slo", "e2el_p95=3s",
                                    "--attainment", "0.95", "--no-measure", "--scale-on", "schedule", "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    a = doc["autoscale"]
    assert {t["kind"] for t in doc["tried"]} == {"tokens", "schedule"}  # the fixed plan (kind tokens, min = max) and schedules
    assert a["kind"] == "schedule" and a["min_replicas"] < a["max_replicas"] and a["cooldown_s"] == 0.0
    # The schedule: from the first count, a step wherever the count changes; its steps fall on the ticks.
    steps = a["schedule"]
    assert steps[0]["at_s"] == 0.0 and all(b["replicas"] != c["replicas"] for b, c in zip(steps, steps[1:]))
    assert all(s["at_s"] % a["interval_s"] == pytest.approx(0.0, abs=1e-6) for s in steps)
    assert max(s["replicas"] for s in steps) == a["peak_replicas"] <= a["max_replicas"]
    # The burst (100-160 s of the trace) is scaled for no later than the first step that starts inside it.
    first_up = next(s["at_s"] for s in steps if s["replicas"] > steps[0]["replicas"])
    assert first_up <= -(-100 // a["interval_s"]) * a["interval_s"]
    b = yaml.safe_load((folder / "deployment.yaml").read_text())["autoscaling"]
    assert b["kind"] == "schedule" and b["schedule"] == steps and b["hpa"] is None and "no HPA" in b["hpa_note"]
    assert not list((folder / "deploy").glob("hpa-*.yaml"))  # the earlier queue policy's HPA is gone
    bad = CliRunner().invoke(main, ["plan", str(folder), "--trace", str(trace), "--autoscale", "--scale-on", "cron"])
    assert bad.exit_code == 2 and "--scale-on 'cron'" in bad.stderr
