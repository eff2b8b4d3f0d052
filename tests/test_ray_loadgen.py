"""Distributed load generation (`generators: K` on an endpoint, `run --ray`) and plans of a Ray run.

One module-scoped host process, in a private network namespace (loopback only), holds a real
3-node Ray cluster and a real llama-server (the project's managed engine, the tiny llama-5m GGUF);
every case runs the real CLI in that namespace (nsenter) against both. Generator 1's clock is
shifted by +5 s (a test-only variable its Ray workers inherit): the driver must measure it and
take it out of every record.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

LLMBENCH = str(Path(sys.executable).with_name("llmbench"))
SKEW_S = 5.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None,
                                reason="a private network namespace needs root, unshare and nsenter")

_HOST = """
import json, os, shutil, sys, tempfile
from pathlib import Path
from ray.cluster_utils import Cluster
from llmbench.engines.llamacpp import ensure_engine
from llmbench.engines.llamacpp.server import ManagedServer
temp = tempfile.mkdtemp(prefix="llmb-t-", dir="/tmp")
os.makedirs(os.path.join(tempfile.gettempdir(), "ray"), exist_ok=True)
args = dict(num_cpus=1, object_store_memory=80 * 2**20, node_ip_address="127.0.0.1", temp_dir=temp,
            resources={"hw:cpu-2core": 1})
c = Cluster(initialize_head=True, head_node_args=dict(include_dashboard=False, **args))
try:
    for _ in range(2):
        c.add_node(**args)
    c.wait_for_nodes(timeout=120)
    with ManagedServer(ensure_engine(), Path(sys.argv[1]), parallel=4, ctx_size=1024, threads=1, alias="tiny") as srv:
        print(json.dumps({"address": c.address, "url": srv.url, "pid": os.getpid()}), flush=True)
        sys.stdin.read()  # until the tests close stdin (or die: the pipe closes then too)
finally:
    c.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
"""


@pytest.fixture(scope="module")
def host(engine):
    """{address, url, pid}: a 3-node Ray cluster and a llama-server, in a namespace of their own."""
    from llmbench.engines.llamacpp.gguf import build_gguf
    from llmbench.models.source import resolve

    gguf = build_gguf(resolve("card:llama-5m"), "gguf-q4_k_m", engine).path
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "LLMBENCH_TEST_CLOCK_SKEW": f"1:{SKEW_S}"}
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1" "$2"',
                             sys.executable, _HOST, str(gguf)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line, "the cluster host did not start"
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cli(host: dict, *args: str, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real CLI, in the host's network namespace."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    return subprocess.run(["nsenter", f"--net=/proc/{host['pid']}/ns/net", "--", LLMBENCH, *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _config(path: Path, url: str, generators: int) -> Path:
    path.write_text(yaml.safe_dump({
        "candidates": [{"endpoint": {"url": url, "model": "tiny", "generators": generators}}],
        "workload": {"prompt_tokens": 16, "output_tokens": 8, "requests": 16},
        "scenarios": [{"kind": "concurrency", "clients": [4], "rates": [8]}],
        "warmup": 1, "precision_pct": None, "quality": None}))
    return path


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ray_run(host, tmp_path_factory):
    """A 2-generator run on the cluster, and the window it ran in on this (the driver's) clock.

    Generator 1 exits (os._exit) after 3 requests of clients=4's first attempt: a fresh set of two
    measures that cell again and goes on to rate=8 (a second run for that alone would cost ~20 s).
    """
    tmp = tmp_path_factory.mktemp("loadgen")
    out = tmp / "ray"
    t0 = time.time()
    p = _cli(host, "run", str(_config(tmp / "c.yaml", host["url"], 2)), "--ray", host["address"], "--out", str(out), "--json",
             env={"LLMBENCH_TEST_GENERATOR_FAULT": "1:3:clients=4:1"})
    t1 = time.time()
    assert p.returncode == 0, p.stderr[-3000:]
    return out, t0, t1


def test_a_generator_dying_mid_cell_is_replaced_and_the_cell_measured_again(ray_run):
    # The fixture's generator 1 exited after 3 requests of clients=4's first attempt (and the run exited 0).
    out, _, _ = ray_run
    meta, records = json.loads((out / "run.json").read_text()), _records(out)
    # The dead attempt's records are dropped (as a dead worker's unsent cell): exactly 16 per cell, all ok.
    assert all(r["status"] == "ok" for r in records)
    assert {pt: sum(r["point"] == pt for r in records) for pt in ("clients=4", "rate=8")} == {"clients=4": 16, "rate=8": 16}
    assert sorted(r["request_id"] for r in records) == list(range(32))
    cells = meta["cells"]
    assert cells["tiny|http|concurrency|clients=4"]["ray_attempt"] == 2
    assert cells["tiny|http|concurrency|rate=8"]["ray_attempt"] == 1  # a later cell: measured on the live set
    assert sum(s["sent"] for s in cells["tiny|http|concurrency|clients=4"]["generator_shares"]) == 16
    attempts = [a for a in meta["ray"]["attempts"] if a["cell"] == "clients=4"]
    failed = [a for a in attempts if "error" in a]
    assert len(failed) == 1 and failed[0]["attempt"] == 1 and "generator 1 " in failed[0]["error"], attempts
    assert [a["generator_set"] for a in attempts if "generator_set" in a] == [1, 2]
    sets = meta["ray"]["generator_sets"]["tiny|http"]
    assert [s["set"] for s in sets] == [1, 2] and all(s["placement_group"] == "REMOVED" for s in sets)  # read in the run
    assert [g["set"] for g in meta["ray"]["generators"]["tiny|http"]] == [1, 1, 2, 2]


def test_two_generators_measure_their_clocks_and_merge_records_on_one(ray_run):
    out, t0, t1 = ray_run
    meta = json.loads((out / "run.json").read_text())
    gens = [g for g in meta["ray"]["generators"]["tiny|http"] if g["set"] == 2]  # the set that measured both cells
    assert [g["index"] for g in gens] == [0, 1]
    assert len({g["ray_node_id"] for g in gens}) == 2  # one per node (STRICT_SPREAD)
    # Same machine, so the true offsets are 0 and +5 s: measured to within a few ms.
    assert abs(gens[0]["offset_ms"]) < 5 and abs(gens[1]["offset_ms"] - SKEW_S * 1e3) < 5, gens
    assert all(0 < g["rtt_ms"] < 50 for g in gens)
    records = _records(out)
    assert all(r["status"] == "ok" for r in records)
    by_cell = {p: [r for r in records if r["point"] == p] for p in ("clients=4", "rate=8")}
    assert all(len(v) >= 16 for v in by_cell.values())  # each cell's 16 requests at least, shared out
    assert sorted(r["request_id"] for r in records) == list(range(len(records)))
    # On the driver's clock: inside the run's window, and the first cell wholly before the second
    # (generator 1's records, left on its clock, would land 5 s later, inside or past the next cell).
    assert all(t0 <= r["timestamp"] and r["timestamp"] + r["e2el_ms"] / 1e3 <= t1 for r in records)
    first_end = max(r["timestamp"] + r["e2el_ms"] / 1e3 for r in by_cell["clients=4"])
    assert first_end <= min(r["timestamp"] for r in by_cell["rate=8"]) + 0.01
    for point in by_cell:
        cell = meta["cells"][f"tiny|http|concurrency|{point}"]
        assert cell["generators"] == 2
        shares = cell["generator_shares"]
        assert [s["index"] for s in shares] == [0, 1] and sum(s["sent"] for s in shares) == len(by_cell[point])
        assert cell["generator_start_spread_ms"] < 250  # both started at the driver's one moment
    # clients=4 went out as 2 + 2: each generator's share is in the cell's records
    assert [s["sent"] >= 8 for s in meta["cells"]["tiny|http|concurrency|clients=4"]["generator_shares"]] == [True, True]
    summary = json.loads((out / "summary.json").read_text())
    assert {r["point"]: r["generators"] for r in summary["rows"]} == {"clients=4": 2, "rate=8": 2}


def test_plan_and_report_read_a_ray_run_as_a_local_one(host, ray_run, tmp_path):
    out, _, _ = ray_run
    local = tmp_path / "local"
    p = _cli(host, "run", str(_config(tmp_path / "c.yaml", host["url"], 2)), "--out", str(local), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(_records(local)) == len(_records(out)) == 32  # the same request count both ways
    plans = {}
    for name, folder in (("ray", out), ("local", local)):
        q = _cli(host, "plan", str(folder), "--rps", "2", "--slo", "e2el_p95=60s")
        assert q.returncode == 0, q.stderr[-2000:]
        plans[name] = json.loads((folder / "plans" / "plan-rps2.json").read_text())
    (out / "report.html").unlink()  # `run` wrote one: `report` must write it again from the Ray run's files
    r = _cli(host, "report", str(out), "--json")
    assert r.returncode == 0 and (out / "report.html").is_file() and (local / "report.html").is_file(), r.stderr[-2000:]
    assert "tiny" in (out / "report.md").read_text()

    def shape(doc):
        if isinstance(doc, dict):
            return {k: shape(v) for k, v in doc.items() if k not in ("node",)}
        if isinstance(doc, list):
            return [shape(v) for v in doc[:1]]
        return type(doc).__name__ if doc is not None else None

    assert plans["ray"]["verdict"] and plans["ray"]["best"] is not None
    assert [o["model"] for o in plans["ray"]["options"]] == [o["model"] for o in plans["local"]["options"]]
    assert shape(plans["ray"]["options"][0]).keys() == shape(plans["local"]["options"][0]).keys()
    assert shape(plans["ray"]).keys() == shape(plans["local"]).keys()


def test_more_generators_than_nodes_is_refused_before_anything_runs(host, tmp_path):
    out = tmp_path / "never"
    p = _cli(host, "run", str(_config(tmp_path / "c.yaml", host["url"], 4)), "--ray", host["address"], "--out", str(out))
    assert p.returncode == 2, p.stderr[-2000:]
    assert "generators: 4 needs 4 Ray nodes" in p.stderr and "has 3" in p.stderr and "Traceback" not in p.stderr
    assert not out.exists()


def test_a_points_load_is_split_across_generators():
    from llmbench.distributed.loadgen import skew_s, split_int, split_point, thinned
    from llmbench.scenarios.arrivals import arrival_gaps
    from llmbench.scenarios.base import Point

    assert split_int(7, [1, 1, 1]) == [3, 2, 2] and split_int(16, [3, 1]) == [12, 4] and sum(split_int(5, [1] * 4)) == 5
    shares = split_point(Point("clients=5", batch_size=5, clients=5, parallel=5), 2)
    assert [(p.clients, p.parallel, p.label) for p in shares] == [(3, 3, "clients=5"), (2, 2, "clients=5")]
    assert split_point(Point("clients=1", clients=1, parallel=1), 3)[1:] == [None, None]  # no client: no share
    assert [p.rate for p in split_point(Point("rate=3", rate=3.0), 2)] == [3.0, 3.0]  # each thins the whole
    # K generators, each taking every K-th arrival, send exactly the local run's schedule between them.
    full = list(itertools.accumulate(itertools.islice(arrival_gaps("poisson", 5.0, 3), 30)))
    mine = [list(itertools.accumulate(itertools.islice(thinned(arrival_gaps("poisson", 5.0, 3), i, 3), 10)))
            for i in range(3)]
    assert mine[1][:2] == pytest.approx([full[1], full[4]])
    assert sorted(t for m in mine for t in m) == pytest.approx(full)
    os.environ["LLMBENCH_TEST_CLOCK_SKEW"] = "1:2.5"
    try:
        assert skew_s(1) == 2.5 and skew_s(0) == 0.0 and skew_s(11) == 0.0
    finally:
        del os.environ["LLMBENCH_TEST_CLOCK_SKEW"]


_LEFT = """
import json, sys, time
import ray
from ray.util.placement_group import placement_group_table
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + 20
while True:  # a finished job's CPUs come back asynchronously
    pgs = {k: v["state"] for k, v in placement_group_table().items()}
    actors = {k: v["State"] for k, v in ray._private.state.actors().items() if v["ActorClassName"] == "LoadGenerator"}
    free, total = ray.available_resources().get("CPU", 0), ray.cluster_resources().get("CPU", 0)
    if (free == total and all(s == "REMOVED" for s in pgs.values())) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
from llmbench.distributed.genset import GeneratorSet, TooFewNodes
try:  # a retry's set when the cluster has lost nodes: refused before any placement group is made
    GeneratorSet(None, 0, 5, 1).start()
    too_few = None
except TooFewNodes as exc:
    too_few = str(exc)
print(json.dumps({"pgs": pgs, "actors": actors, "free": free, "total": total, "too_few": too_few,
                  "pgs_after": len(placement_group_table())}))
"""


def _faulty_run(host, tmp_path, fault: str):
    out = tmp_path / "ray"
    p = _cli(host, "run", str(_config(tmp_path / "c.yaml", host["url"], 2)), "--ray", host["address"], "--out", str(out),
             "--json", env={"LLMBENCH_TEST_GENERATOR_FAULT": fault})
    return p, out, json.loads((out / "run.json").read_text()), _records(out)


def test_a_cell_whose_retry_dies_too_is_failed_and_later_cells_measured(host, tmp_path):
    p, out, meta, records = _faulty_run(host, tmp_path, "0:2:clients=4:1,2")
    assert p.returncode == 1, p.stderr[-3000:]
    failed = [r for r in records if r["point"] == "clients=4"]
    assert len(failed) == 1 and failed[0]["status"] == "error", failed  # the failure line only: attempts' records dropped
    assert "generator 0 " in failed[0]["error"] and "attempt 2 of 2" in failed[0]["error"]
    later = [r for r in records if r["point"] == "rate=8"]
    assert len(later) == 16 and all(r["status"] == "ok" for r in later)
    cell = meta["cells"]["tiny|http|concurrency|clients=4"]
    assert cell["ray_attempt"] == 2 and len(cell["ray_generator_nodes_tried"]) == 4 and "generator 0 " in cell["ray_error"]
    assert meta["cells"]["tiny|http|concurrency|rate=8"]["ray_attempt"] == 1
    assert [c[3] for c in meta["completed_cells"]] == ["rate=8"]
    sets = meta["ray"]["generator_sets"]["tiny|http"]
    assert [s["set"] for s in sets] == [1, 2, 3] and all(s["placement_group"] == "REMOVED" for s in sets)
    # After the run: no placement group placed, no generator actor alive, every CPU free, no worker left.
    q = subprocess.run(["nsenter", f"--net=/proc/{host['pid']}/ns/net", "--", sys.executable, "-c", _LEFT, host["address"]],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    left = json.loads(q.stdout.splitlines()[-1])
    assert left["pgs"] and set(left["pgs"].values()) == {"REMOVED"}, left
    assert len(left["actors"]) >= 6 and set(left["actors"].values()) == {"DEAD"}, left
    assert left["free"] == left["total"] == 3, left
    assert left["too_few"] == "5 load generators need 5 alive Ray nodes with a CPU, 3 left (2 missing)"
    assert left["pgs_after"] == len(left["pgs"])
    assert not [pr.pid for pr in psutil.process_iter(["cmdline"]) if "LoadGenerator" in " ".join(pr.info["cmdline"] or [])]
