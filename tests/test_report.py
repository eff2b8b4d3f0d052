"""The report: plots, report.md, and a self-contained report.html whose images really render
in a browser (headless Chromium, installed by the test set-up); the run-end stages."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from rich.console import Console

from llmbench.report.build import build_report
from llmbench.results import RunDir
from test_recommend_runs import cache_doc, cell, compression_doc, compression_entry, make_run, prompt_cache_doc, served

CELLS = [cell("small", ttft_ms=50, tpot_ms=5), cell("small", batch=4, ttft_ms=80, tpot_ms=8),
         cell("small", "onnx-int8", ttft_ms=30, tpot_ms=3), cell("big", ttft_ms=200, tpot_ms=20)]
QUALITY = {("small", "onnx-int8"): {"greedy_agreement": 0.96, "top1_agreement": 0.98, "kl_mean": 0.01, "gate": "fail"},
           ("small", "torch-fp32"): {"role": "reference", "gate": "reference", "ppl": 12.5}}
# Duplicates and distinct prompts at spread cosines, so the threshold sweep draws a curve.
LOOKUPS = [0.97, 0.95, 0.93, 0.91, 0.9, 0.89, 0.86, 0.8, 0.7, 0.6] + [0.92, 0.89, 0.85, 0.8, 0.75] + [0.5] * 15
EXTRA = {"cache.json": cache_doc(LOOKUPS, [1] * 10 + [0] * 20, threshold=0.88, baseline_threshold=0.9),
         "compression.json": compression_doc(compression_entry("small", 0.5, 1.9, 0.9, 4.0, -1e-6),
                                             compression_entry("small", 0.33, 2.8, 0.8, 6.0, -2e-6))}
# What the run-end stages deploy: a variant an engine serves (torch on a CPU is measured, never deployed).
SERVED_CELLS = [served("small", ttft_ms=50, tpot_ms=5), served("small", batch=4, ttft_ms=80, tpot_ms=8)]
IMG = re.compile(r'<img[^>]*src="data:image/png;base64,')


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("rep") / "run", CELLS, quality=QUALITY, extra_files=EXTRA,
                   params={"small": 5_000_000, "big": 50_000_000})
    return run, build_report(run)


def test_every_plot_is_drawn_when_every_stage_ran(full_report):
    run, got = full_report
    expected = {"latency_throughput", "ttft_tpot", "cost_per_1k", "pareto", "capacity_plan", "quality", "cache", "compression"}
    assert set(got["plots"]) == expected, got["skipped"]
    html = (run / "report.html").read_text()
    assert len(IMG.findall(html)) == len(expected)
    # Self-contained: every src is an embedded data URI, nothing refers outside the file.
    srcs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert len(srcs) == len(expected) and all(v.startswith("data:image/png;base64,") for v in srcs)
    assert "<link" not in html and "<script" not in html
    md = (run / "report.md").read_text()
    for name in expected:
        assert f"(plots/{name}.png)" in md and (run / "plots" / f"{name}.png").stat().st_size > 1000
    assert "| option |" in md and "Routing policy" in md and "Capacity plan" in md


def test_missing_stages_are_said_not_measured(tmp_path):
    run = make_run(tmp_path / "run", CELLS[:2], random_weights=True)
    got = build_report(run)
    assert {"cache", "compression", "quality"} <= set(got["skipped"])
    assert len(got["plots"]) >= 4
    md, html = (run / "report.md").read_text(), (run / "report.html").read_text()
    assert md.count("not measured in this run") >= 3 and html.count("not measured in this run") >= 3
    # No quality gate ran and the cells carry random weights: both halves of that are said.
    assert "Quality gate: not measured in this run; quality is taken as the reference (1.0); the models carry random weights" in md


def test_html_images_render_in_headless_chromium(full_report, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: the test set-up installs it (apt-get install -y chromium)")
    run, _ = full_report
    # The report has no script of its own; a copy gets one that counts decoded images into the DOM.
    probe = ("<script>addEventListener('load',function(){var a=[].slice.call(document.images);"
             "var ok=a.filter(function(i){return i.complete&&i.naturalWidth>0}).length;"
             "var d=document.createElement('div');d.id='probe';d.textContent=ok+'/'+a.length;document.body.appendChild(d)})</script>")
    page = tmp_path / "probe.html"
    page.write_text((run / "report.html").read_text().replace("</body>", probe + "</body>"))
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=10000", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'id="probe">(\d+)/(\d+)<', out.stdout)
    assert m, f"chromium printed no probe result (rc {out.returncode}): {out.stderr[-500:]}"
    ok, total = int(m.group(1)), int(m.group(2))
    assert total >= 4 and ok == total


def test_run_end_stages_write_the_decision_and_the_report(tmp_path):
    from llmbench.recommend.stage import recommend_stage
    from llmbench.report.stage import report_stage
    from llmbench.stages import STAGES

    names = [n for n, _ in STAGES]
    assert names.index("recommend") < names.index("report")
    run = make_run(tmp_path / "run", SERVED_CELLS, config={"plan": {"rps": 1.5, "trace": None, "slo": "e2el_p95=2s"}})
    console = Console(file=open(tmp_path / "log.txt", "w"))
    recommend_stage(RunDir(run), {}, {}, console)
    report_stage(RunDir(run), {}, {}, console)
    for f in ("recommendation.json", "deployment.yaml", "gateway/litellm.yaml", "report.md", "report.html"):
        assert (run / f).stat().st_size > 0
    md = (run / "report.md").read_text()
    assert "1.5 req/s" in md and "plan.rps of the run config" in md and "recommendation.json in this folder" in md


def test_a_cache_replay_without_labels_says_false_hits_not_measured(tmp_path):
    from llmbench.recommend.stage import recommend_stage

    cache = prompt_cache_doc([False, False, True, False, True], threshold=0.9)
    run = make_run(tmp_path / "run", SERVED_CELLS, extra_files={"cache.json": cache})
    recommend_stage(RunDir(run), {}, {}, Console(file=open(tmp_path / "log.txt", "w")))
    got = build_report(run)
    # Unknown false hits: no cache option to weigh against quality, the gateway's cache left off.
    assert not any(o["id"].endswith("+cache") for o in json.loads((run / "recommendation.json").read_text())["options"])
    assert yaml.safe_load((run / "gateway" / "litellm.yaml").read_text())["litellm_settings"]["cache"] is False
    assert "no false-hit rate" in got["skipped"]["cache"]
    assert "hit rate 40.0%, false hits not measured" in (run / "report.md").read_text()
