"""`llmbench drift`: a log made from a real run's records (tiny model, the project's own runner) against that run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.monitor.drift import compare_figure
from llmbench.monitor.log_read import log_files, read_log


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_llama) -> Path:
    tmp = tmp_path_factory.mktemp("drift")
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "candidates": [{"model": str(tiny_llama), "name": "tiny"}],
        "workload": {"prompt_tokens": {"dist": "uniform", "low": 8, "high": 24}, "output_tokens": 6, "requests": 40},
        "scenarios": ["single-stream"], "warmup": 1, "precision_pct": None, "quality": None,
    }))
    out = tmp / "out"
    proc = subprocess.run([sys.executable, "-m", "llmbench", "run", str(cfg), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines() if line.strip()]


def write(path: Path, recs: list[dict], extra_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in recs]
    for at, text in sorted((extra_lines or {}).items()):
        lines.insert(at - 1, text)
    path.write_text("\n".join(lines) + "\n")
    return path


def drift(log: Path, run_dir: Path, *args: str):
    return CliRunner().invoke(main, ["drift", str(log), "--against", str(run_dir), *args])


def test_the_unchanged_log_has_not_drifted(run_dir, tmp_path):
    res = drift(write(tmp_path / "same.jsonl", records(run_dir)), run_dir)
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ok") and "tiny torch-fp32" in lines[0]


def test_latency_twice_as_long_drifts_naming_the_deployment_and_figure(run_dir, tmp_path):
    recs = records(run_dir)
    for r in recs:
        r["ttft_ms"] *= 2
        r["e2el_ms"] *= 2
    res = drift(write(tmp_path / "slow.jsonl", recs), run_dir, "--json")
    assert res.exit_code == 3, res.output
    doc = json.loads(res.output)
    dep = doc["deployments"][0]
    assert (dep["model"], dep["variant"], dep["drifted"]) == ("tiny", "torch-fp32", True)
    figs = {f["name"]: f for f in dep["windows"][0]["figures"]}
    assert figs["e2el_ms"]["drifted"] and figs["ttft_ms"]["drifted"] and figs["tpot_ms"]["drifted"]
    assert not figs["prompt_tokens"]["drifted"] and not figs["cost"]["drifted"] and not figs["error_rate"]["drifted"]
    # Every request doubled: the median of value / baseline median is the ratio of medians.
    base = np.median([r["e2el_ms"] / 2 for r in recs])
    assert figs["e2el_ms"]["base_p50"] == pytest.approx(base)
    assert figs["e2el_ms"]["p50"] == pytest.approx(2 * base)
    assert figs["e2el_ms"]["change"] == pytest.approx(1.0, abs=1e-9)
    assert dep["line"].startswith("DRIFTED  tiny torch-fp32:") and "window" in dep["line"]
    text = drift(tmp_path / "slow.jsonl", run_dir)
    assert text.exit_code == 3 and "DRIFTED" in text.output and "+100%" in text.output


@pytest.mark.parametrize("field", ["cost", "prompt_tokens"])
def test_cost_or_tokens_per_request_twice_as_high_drift(run_dir, tmp_path, field):
    recs = records(run_dir)
    for r in recs:
        r[field] *= 2
    res = drift(write(tmp_path / "dear.jsonl", recs), run_dir, "--json")
    assert res.exit_code == 3, res.output
    dep = json.loads(res.output)["deployments"][0]
    assert [f["name"] for f in dep["windows"][0]["figures"] if f["drifted"]] == [field]
    assert f"{field} p50" in dep["line"] and "+100%" in dep["line"]


def test_thirty_percent_errors_drift(run_dir, tmp_path):
    recs = records(run_dir)
    for r in recs[::10] + recs[3::10] + recs[6::10]:  # 12 of 40
        r.update(status="error", error="HTTP 500", error_kind="http_status", ttft_ms=None, e2el_ms=None, itl_ms=[])
    res = drift(write(tmp_path / "errors.jsonl", recs), run_dir, "--json")
    assert res.exit_code == 3, res.output
    fig = {f["name"]: f for f in json.loads(res.output)["deployments"][0]["windows"][0]["figures"]}["error_rate"]
    assert fig["drifted"] and fig["p50"] == pytest.approx(12 / 40) and fig["base_p50"] == 0.0
    assert fig["n"] == 40


def test_small_changes_and_resamples_stay_within_the_noise(run_dir):
    base = np.array([r["e2el_ms"] for r in records(run_dir)])
    for seed in range(5):  # a fresh sample from the same distribution is not drift
        sample = np.random.default_rng(seed).choice(base, size=30)
        assert not compare_figure("e2el_ms", [(sample, base)], 0.2).drifted
    assert not compare_figure("e2el_ms", [(base * 1.1, base)], 0.2).drifted  # below the minimum change
    assert compare_figure("e2el_ms", [(base * 1.5, base)], 0.2).drifted
    # Half the requests a little slower, half a little faster: the distribution moved, the median did not.
    spread = np.concatenate([base[:20] * 0.7, base[20:] * 1.3])
    assert not compare_figure("e2el_ms", [(spread, base)], 0.2).drifted


def test_bad_lines_are_counted_and_the_first_named(run_dir, tmp_path):
    recs = records(run_dir)
    log = write(tmp_path / "dirty.jsonl", recs, {3: "not json at all", 8: '{"timestamp": "yesterday"}', 12: "[1, 2]"})
    parsed = read_log(log)
    assert parsed.skipped == 3 and len(parsed.records) == len(recs)
    assert parsed.first_bad.startswith(f"{log}:3 ")
    res = drift(log, run_dir)
    assert res.exit_code == 0, res.output
    warning = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "3 line(s)" in warning[0] and f"{log}:3" in warning[0]


def test_a_log_without_a_usable_line_is_bad_input(run_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    res = drift(empty, run_dir)
    assert res.exit_code == 2 and "empty" in res.output and "Traceback" not in res.output
    junk = write(tmp_path / "junk.jsonl", [], {1: "x", 2: '{"a": 1}'})
    res = drift(junk, run_dir)
    assert res.exit_code == 2 and "no usable request record (2 line(s) skipped" in res.output and f"{junk}:1" in res.output
    assert drift(tmp_path / "missing.jsonl", run_dir).exit_code == 2
    assert drift(junk, tmp_path).exit_code == 2  # a folder without requests.jsonl
    res = drift(write(tmp_path / "ok.jsonl", records(run_dir)), run_dir, "--window", "5 fortnights")
    assert res.exit_code == 2 and "--window" in res.output


def test_windows_are_recomputed_by_hand(run_dir, tmp_path):
    recs = records(run_dir)
    t0 = 1_800_000_000.0
    for i, r in enumerate(recs):  # one request every 5 s: 40 requests over 195 s
        r["timestamp"] = t0 + 5 * i
    # Slow only what falls in the third minute: requests 24..35 (120 s <= 5i < 180 s).
    for r in recs[24:36]:
        r["e2el_ms"] *= 3
    res = drift(write(tmp_path / "timed.jsonl", recs), run_dir, "--window", "1m", "--json")
    assert res.exit_code == 3, res.output
    wins = json.loads(res.output)["deployments"][0]["windows"]
    assert [(w["start"] - t0, w["end"] - t0, w["requests"]) for w in wins] == [(0, 60, 12), (60, 120, 12), (120, 180, 12), (180, 240, 4)]
    drifted = [[f["name"] for f in w["figures"] if f["drifted"]] for w in wins]
    assert drifted[0] == drifted[1] == [] and "e2el_ms" in drifted[2]
    assert wins[3]["figures"] == [] and "too few" in wins[3]["note"]
    fig = {f["name"]: f for f in wins[2]["figures"]}["e2el_ms"]
    assert fig["p50"] == pytest.approx(np.median([r["e2el_ms"] for r in recs[24:36]]))
    assert fig["p95"] == pytest.approx(np.percentile([r["e2el_ms"] for r in recs[24:36]], 95))


def test_gateway_records_compare_with_the_whole_deployment_and_unmeasured_ones_are_said_once(run_dir, tmp_path):
    recs = records(run_dir)
    for r in recs:  # as the gateway writes them: its own scenario and the alias as the point
        r.update(run_id="gateway", scenario="gateway", point="chat")
    others = [dict(r, model="elsewhere", variant="api") for r in recs[:7]]
    res = drift(write(tmp_path / "gw.jsonl", recs + others), run_dir)
    assert res.exit_code == 0, res.output
    said = [line for line in res.output.splitlines() if "elsewhere" in line]
    assert said == ["not compared: the run never measured elsewhere api (7 requests)"]


def test_a_rotated_set_is_read_oldest_first(run_dir, tmp_path):
    recs = records(run_dir)
    write(tmp_path / "gw.jsonl.2", recs[:10])
    write(tmp_path / "gw.jsonl.1", recs[10:25])
    write(tmp_path / "gw.jsonl", recs[25:])
    (tmp_path / "gw.jsonl.old").write_text("not part of the set\n")
    assert [f.name for f in log_files(tmp_path / "gw.jsonl")] == ["gw.jsonl.2", "gw.jsonl.1", "gw.jsonl"]
    parsed = read_log(tmp_path / "gw.jsonl")
    assert [r.request_id for r in parsed.records] == [r["request_id"] for r in recs] and parsed.skipped == 0
    assert drift(tmp_path / "gw.jsonl", run_dir).exit_code == 0


def test_a_long_steady_log_raises_no_false_alarm_and_a_late_slowdown_is_found(run_dir, tmp_path):
    # 48 five-minute windows of requests drawn from the run itself: hundreds of comparisons, none
    # should drift (the family is corrected); the same log with its last half hour twice as slow does.
    recs = records(run_dir)
    rng = np.random.default_rng(1)
    t0 = 1_800_000_000.0
    log = [dict(recs[i], timestamp=t0 + k * 7.2) for k, i in enumerate(rng.integers(0, len(recs), 2000))]
    res = drift(write(tmp_path / "steady.jsonl", log), run_dir, "--json")
    assert res.exit_code == 0, res.output
    wins = json.loads(res.output)["deployments"][0]["windows"]
    assert len(wins) == 48 and sum(w["requests"] for w in wins) == 2000
    tested = [f for w in wins for f in w["figures"] if f["p_value"] is not None]
    assert all(f["p_adjusted"] >= f["p_value"] for f in tested)
    late = t0 + 4 * 3600 - 1800
    slow = [dict(r, e2el_ms=2 * r["e2el_ms"]) if r["timestamp"] >= late else r for r in log]
    res = drift(write(tmp_path / "late.jsonl", slow), run_dir, "--json")
    assert res.exit_code == 3, res.output
    wins = json.loads(res.output)["deployments"][0]["windows"]
    hit = [w["start"] - t0 for w in wins if any(f["drifted"] for f in w["figures"])]
    assert hit and min(hit) >= 4 * 3600 - 1800 - 1
