"""`llmbench run --track mlflow[:URI]` and `compare mlflow:RUN`, against MLflow's own stores and server.

Real parts: the CLI measures a tiny model, tracks into MLflow's local file store and into a real
`mlflow server` process on loopback (sqlite backend in tmp), and everything is read back through
MLflow's own client; the server's web UI is opened in headless Chromium.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from llmbench.engines.llamacpp import reaper
from llmbench.engines.llamacpp.server import free_port

LLMB = [sys.executable, "-m", "llmbench"]
MLFLOW = Path(sys.executable).with_name("mlflow")


def llmbench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run([*LLMB, *args], capture_output=True, text=True, timeout=timeout, env=env)


def tracked_run(tmp: Path, model: Path, track: str, batch: bool = True) -> tuple[subprocess.CompletedProcess, Path]:
    """A short run of the tiny model (two cells, or one without `batch`), tracked at `track`: (process, results folder)."""
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "candidates": [{"model": str(model), "name": "tiny"}],
        "workload": {"prompt_tokens": 16, "output_tokens": 4, "requests": 4},
        "scenarios": ["single-stream", {"kind": "batch", "batch_sizes": [2]}] if batch else ["single-stream"],
        "warmup": 1, "cell_time_cap_s": 0.5,
    }))
    out = tmp / "out"
    return llmbench("run", str(cfg), "--out", str(out), "--track", track, "--json"), out


class Server:
    """An `mlflow server` on 127.0.0.1 with its own sqlite store; started at once, waited for on first use."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                 "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=reaper.child_setup(os.getpid()))

    def ready(self, timeout_s: float = 180) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited ({self.proc.returncode}): {self.log.read_text()[-800:]}")
            try:
                if urllib.request.urlopen(f"{self.url}/health", timeout=2).status == 200:
                    return self.url
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"mlflow server did not answer within {timeout_s:.0f} s: {self.log.read_text()[-800:]}")

    def stop(self) -> None:
        reaper.stop_group(self.proc, grace_s=15)
        with pytest.raises(ProcessLookupError):  # nothing of the server's process group outlives the test
            os.killpg(self.proc.pid, 0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, tiny_llama, server):
    # `server` only to start it now: it boots (~20 s on 2 cores) while this run measures.
    tmp = tmp_path_factory.mktemp("tracked-local")
    proc, out = tracked_run(tmp, tiny_llama, f"mlflow:{tmp / 'mlruns'}")
    return proc, out, (tmp / "mlruns").as_uri()


@pytest.fixture(scope="module")
def server_run(tmp_path_factory, tiny_llama, server):
    tmp = tmp_path_factory.mktemp("tracked-server")
    proc, out = tracked_run(tmp, tiny_llama, f"mlflow:{server.ready()}")
    return proc, out, server.url


def _client(uri: str, monkeypatch):
    from mlflow import MlflowClient

    if uri.startswith("file:"):
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.13+ opens a folder store only when asked
    return MlflowClient(tracking_uri=uri)


def _leaves(doc, prefix=""):
    """The config's leaves as MLflow params, computed here independently of llmbench's own flattening."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    out = {}
    for k, v in items:
        if isinstance(v, (dict, list)) and v:
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, str) else json.dumps(v)
    return out


def check_tracked(proc, out: Path, uri: str, monkeypatch) -> tuple:
    """Everything the tracked run must hold, read back through MLflow's client; returns (client, run)."""
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)  # --json: MLflow's own links never reach stdout
    assert re.search(r"^tracked: MLflow run [0-9a-f]{32} ", proc.stderr, re.M), proc.stderr[-800:]
    meta = json.loads((out / "run.json").read_text())
    client = _client(uri, monkeypatch)
    exp = client.get_experiment_by_name("llmbench")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == meta["run_id"] and run.info.status == "FINISHED"
    # metrics: every latency percentile, throughput and cost of every cell, equal to summary.json's
    cells = json.loads(Path(client.download_artifacts(run.info.run_id, "cells.json", str(out.parent / "dl"))).read_text())
    rows = {(r["model"], r["variant"], r["scenario"], r["point"]): r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert len(cells) == len(rows) == len(summary["rows"]) == 2
    expected = {}
    for prefix, cell in cells.items():
        assert re.fullmatch(r"[\w.\- ]+", prefix) and "/" not in prefix
        row = rows[(cell["model"], cell["variant"], cell["scenario"], cell["point"])]
        for lat in ("ttft_ms", "tpot_ms", "e2el_ms"):
            for q in ("p50", "p95", "p99"):
                expected[f"{prefix}/{lat}_{q}"] = row[lat][q]
        for k in ("output_throughput_tok_s", "request_throughput_req_s", "cost_per_request_usd", "cost_per_1m_output_tokens_usd"):
            expected[f"{prefix}/{k}"] = row[k]
        expected[f"{prefix}/requests"] = row["requests"]
        # cost per request recomputed: $/hour over 3600 s, divided by the measured request rate
        assert row["cost_per_request_usd"] == pytest.approx(meta["hardware_profile"]["usd_per_hour"] / 3600 / row["request_throughput_req_s"], rel=1e-6)
    got = run.data.metrics
    assert {k: got.get(k) for k in expected} == pytest.approx(expected, rel=1e-12)
    # params: the resolved config, leaf by leaf
    assert run.data.params == _leaves(meta["config"])
    assert run.data.params["candidates.0.model"] == meta["config"]["candidates"][0]["model"] and run.data.params["workload.requests"] == "4"
    # tags: the commit the run was measured at, hardware, llmbench version, dataset
    commit = meta["environment"]["git_commit"]
    tags = run.data.tags
    assert tags["mlflow.source.git.commit"] == commit.removesuffix("-dirty") and re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"])
    assert tags["llmbench.git_commit"] == commit and tags["llmbench.hardware"] == meta["hardware_profile"]["name"]
    assert tags["llmbench.version"] == meta["environment"]["packages"]["llmbench"] and tags["llmbench.run_id"] == meta["run_id"]
    assert tags["llmbench.dataset"].startswith("none") and tags["llmbench.golden_set"].startswith("default@")
    # artifacts: the report (byte for byte), its plots, the decision files
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "report.html", "summary.json", "run.json", "plan.json", "plots", "cells.json"} <= arts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {f"plots/{p.name}" for p in (out / "plots").glob("*.png")} and plots
    got_md = Path(client.download_artifacts(run.info.run_id, "report.md", str(out.parent / "dl"))).read_bytes()
    assert got_md == (out / "report.md").read_bytes()
    return client, run


def test_a_run_tracked_in_the_local_file_store(local_run, monkeypatch):
    proc, out, uri = local_run
    check_tracked(proc, out, uri, monkeypatch)


def test_a_run_tracked_on_an_mlflow_server(server_run, monkeypatch):
    proc, out, uri = server_run
    check_tracked(proc, out, uri, monkeypatch)


# ---- the MLflow UI, as people would open it ------------------------------------------------------
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--virtual-time-budget=15000", "--window-size=1400,900"]


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium on `url` (the flags test_report.py uses); JS runs for 15 s of virtual time first."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: the test set-up installs it (apt-get install -y chromium)")
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url], capture_output=True, text=True, timeout=120)


def _page_text(url: str, profile: Path) -> str:
    out = _chromium(url, profile, "--dump-dom")
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", out.stdout, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_mlflow_ui_lists_the_run_with_its_metrics_and_report(server_run, monkeypatch, tmp_path):
    proc, out, uri = server_run
    client, run = check_tracked(proc, out, uri, monkeypatch)
    name, exp, rid = run.info.run_name, run.info.experiment_id, run.info.run_id
    listing = _page_text(f"{uri}/#/experiments/{exp}/runs", tmp_path / "profile")
    assert name in listing and "1 matching run" in listing, listing[:1500]
    page = _page_text(f"{uri}/#/experiments/{exp}/runs/{rid}", tmp_path / "profile")
    assert f"Metrics ({len(run.data.metrics)})" in page and f"Parameters ({len(run.data.params)})" in page, page[:1500]
    some = next(k for k in run.data.metrics if k.endswith("/ttft_ms_p95"))
    assert some in page
    # The report artifact opened in the UI's preview: its first heading, rendered from the markdown
    report = _page_text(f"{uri}/#/experiments/{exp}/runs/{rid}/artifacts/report.md", tmp_path / "profile")
    assert f"llmbench report: run {name}" in report and "Decision" in report, report[:1500]
    shot = tmp_path / "mlflow-runs.png"
    done = _chromium(f"{uri}/#/experiments/{exp}/runs", tmp_path / "profile", f"--screenshot={shot}")
    assert shot.is_file(), done.stderr[-500:]
    from PIL import Image

    with Image.open(shot) as im:  # a rendered page, not a blank one: many distinct colours
        assert im.size == (1400, 900) and len(im.convert("RGB").getcolors(1 << 20) or []) > 50


# ---- compare reads tracked runs ----------------------------------------------------------------
def test_compare_reads_a_tracked_run_as_it_reads_its_folder(local_run, monkeypatch):
    proc, out, uri = local_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    folders = llmbench("compare", str(out), str(out), "--json")
    assert folders.returncode == 0, folders.stderr
    want = json.loads(folders.stdout)
    client = _client(uri, monkeypatch)
    mlflow_id = client.search_runs([client.get_experiment_by_name("llmbench").experiment_id])[0].info.run_id
    # by MLflow run id on one side, by llmbench run id on the other: the same comparison as folder vs folder
    both = llmbench("compare", f"mlflow:{mlflow_id}", f"mlflow:{run_id}", "--tracking-uri", uri, "--json")
    assert both.returncode == 0, both.stderr
    got = json.loads(both.stdout)
    assert got["cells"] == want["cells"] and len(got["cells"]) == 2 and got["flagged"] == 0
    assert got["run_a"]["path"] == f"mlflow:{mlflow_id}" and got["run_b"]["run_id"] == run_id
    missing = llmbench("compare", "mlflow:0123456789abcdef", str(out), "--tracking-uri", uri)
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "no MLflow run" in missing.stderr


# ---- failure ------------------------------------------------------------------------------------
def test_a_tracking_uri_that_does_not_answer_keeps_the_results_and_exits_1(tmp_path, tiny_llama, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"  # free right now: nothing listens there
    proc, out = tracked_run(tmp_path, tiny_llama, f"mlflow:{dead}", batch=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    for name in ("run.json", "requests.jsonl", "summary.json", "summary.csv", "report.md", "report.html", "plan.json"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads(proc.stdout)  # the summary is still printed
    assert len(summary["rows"]) == 1 and summary["rows"][0]["failed"] == 0 and summary["rows"][0]["requests"] > 0
    said = [ln for ln in proc.stderr.splitlines() if "mlflow" in ln.lower() or ln.startswith("track")]
    assert len(said) == 1 and said[0].startswith(f"tracking failed: MLflow at {dead}: did not answer"), proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr and str(out.resolve()) in said[0]
    # The retry the message gives: --resume of the finished folder tracks it without measuring again.
    measured = (out / "requests.jsonl").read_bytes()
    again = llmbench("run", "--resume", str(out), "--track", f"mlflow:{tmp_path / 'mlruns'}", "--json")
    assert again.returncode == 0, again.stderr[-1500:]
    assert (out / "requests.jsonl").read_bytes() == measured
    client = _client((tmp_path / "mlruns").as_uri(), monkeypatch)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1 and runs[0].info.run_name == json.loads((out / "run.json").read_text())["run_id"]


@pytest.mark.parametrize("value, says", [("wandb", "unknown tracker 'wandb'"), ("mlflow:", "nothing after 'mlflow:'")])
def test_a_wrong_track_value_is_bad_input_before_measuring(tmp_path, tiny_llama, value, says):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"candidates": [{"model": str(tiny_llama)}]}))
    proc = llmbench("run", str(cfg), "--out", str(tmp_path / "out"), "--track", value)
    assert proc.returncode == 2 and says in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not (tmp_path / "out").exists()  # refused before a results folder was started


# ---- what is sent: keys MLflow accepts, never a secret --------------------------------------------
def test_metric_keys_pass_mlflows_own_validation():
    from mlflow.utils.validation import _validate_metric_name

    from llmbench.experiments.payload import MAX_KEY, cell_prefixes

    rows = [{"model": "/models/a b:c", "variant": "gguf-q4_k_m", "scenario": "concurrency", "point": "rate=2.5"},
            {"model": "/models/a b;c", "variant": "gguf-q4_k_m", "scenario": "concurrency", "point": "rate=2.5"},
            {"model": "..", "variant": ".", "scenario": "x/../y", "point": "π"},
            {"model": "m" * 400, "variant": "onnx-int8", "scenario": "batch", "point": "batch=4"}]
    prefixes = cell_prefixes(rows)
    assert prefixes[0] == "models_a b_c.gguf-q4_k_m.concurrency.rate_2.5"
    assert prefixes[1].startswith("models_a b_c.gguf-q4_k_m.concurrency.rate_2.5-")  # same once cleaned: told apart
    assert prefixes[2] == "_._.x_.._y._" and len(set(prefixes)) == 4
    for p in prefixes:
        for metric in ("ttft_ms_p95", "cost_per_1m_output_tokens_usd", "quality_greedy_agreement"):
            _validate_metric_name(f"{p}/{metric}")  # raises on a key MLflow refuses
            assert len(f"{p}/{metric}") <= MAX_KEY


def test_a_secret_from_the_environment_never_reaches_the_store(tmp_path, monkeypatch):
    from llmbench.experiments.mlflow_track import track_folder
    from llmbench.experiments.spec import parse_track

    secret = "sk-test-" + "7" * 24
    monkeypatch.setenv("LLMBENCH_TEST_API_KEY", secret)
    run = tmp_path / "run"
    (run / "gateway").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": "r1", "config": {"candidates": [{"model": "api", "endpoint": f"http://x/?key={secret}"}]}}))
    (run / "summary.json").write_text(json.dumps({"run_id": "r1", "rows": []}))
    (run / "report.md").write_text("# llmbench report\n")
    (run / "gateway" / "litellm.yaml").write_text(f"model_list: [{{litellm_params: {{api_key: {secret}}}}}]\n")
    store = tmp_path / "mlruns"
    done = track_folder(run, parse_track(f"mlflow:{store}"), failed=False)
    assert "candidates.0.endpoint" in done.withheld and any(w.startswith("gateway") for w in done.withheld)
    written = [p for p in store.rglob("*") if p.is_file()]
    assert any(p.name == "report.md" for p in written) and not any("litellm" in p.name for p in written)
    assert not [p for p in written if secret in p.read_text(errors="replace")]
