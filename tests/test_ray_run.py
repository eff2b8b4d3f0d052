"""`llmbench run --ray`: a real Ray cluster of several nodes on this machine, inside a private network namespace.

Each case runs a script under `unshare --net` (loopback up, nothing else reachable: Ray would
otherwise rewrite 127.0.0.1 to the machine's address and probe cloud metadata addresses). The
script drives the real CLI; Ray's nodes are real raylets with 1 CPU and a small object store each.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

LLMBENCH = str(Path(sys.executable).with_name("llmbench"))
REQUESTS = 6
KILL_REQUESTS = 200  # a cell of several seconds even on an idle machine: the kill lands inside it

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="a private network namespace needs root and unshare")


def _config(tmp: Path, variants: list[str], requests: int = REQUESTS) -> Path:
    # precision_pct null: each cell sends exactly `requests` (a time-capped cell's count depends on speed).
    cfg = tmp / "c.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        candidates:
          - card: llama-5m
            variants: [{', '.join(variants)}]
        workload: {{prompt_tokens: 32, output_tokens: 8, requests: {requests}}}
        scenarios: [single-stream]
        precision_pct: null
        quality: null
        """))
    return cfg


def _in_netns(script: str, timeout: float = 400) -> subprocess.CompletedProcess:
    """Run a Python script in a fresh network namespace with only loopback up."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "LLMBENCH": LLMBENCH}
    return subprocess.run(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable, script],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _folder(out: Path) -> tuple[dict, list[dict]]:
    meta = json.loads((out / "run.json").read_text())
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines() if line.strip()]
    return meta, records


def test_matrix_lands_on_three_nodes_with_every_record(tmp_path):
    cfg = _config(tmp_path, ["torch-fp32", "onnx-fp32", "onnx-int8"])
    out = tmp_path / "ray"
    script = f"""
import os, subprocess, sys
p = subprocess.run([os.environ["LLMBENCH"], "run", {str(cfg)!r}, "--ray", "local:3", "--out", {str(out)!r}, "--json"],
                   capture_output=True, text=True, timeout=380)
sys.stderr.write(p.stderr[-3000:]); sys.exit(p.returncode)
"""
    p = _in_netns(script)
    assert p.returncode == 0, p.stderr
    meta, records = _folder(out)
    # 3 variants x 1 single-stream cell x 6 requests, every one ok, ids given once each by the driver.
    assert len(records) == 3 * REQUESTS
    assert Counter(r["variant"] for r in records) == {"torch-fp32": 6, "onnx-fp32": 6, "onnx-int8": 6}
    assert all(r["status"] == "ok" for r in records)
    assert sorted(r["request_id"] for r in records) == list(range(18))
    assert len(meta["completed_cells"]) == 3
    nodes = {cell["ray_node_id"] for cell in meta["cells"].values()}
    assert len(nodes) == 3 and nodes <= set(meta["ray"]["nodes"])  # one node each: the hw resource has capacity 1
    assert all(cell["ray_attempt"] == 1 and cell["ray_cpu_count"] >= 1 for cell in meta["cells"].values())
    # the same files a local run writes: a summary with the three rows, the report
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["rows"]) == 3
    assert (out / "report.html").is_file()
    # Each node's own figures: its read bandwidth measured there, its hw: resource; the roofline of a
    # row divides by its node's bandwidth, and the plan says which node measured each option.
    for cell in meta["cells"].values():
        node = meta["ray"]["nodes"][cell["ray_node_id"]]
        assert cell["ray_hw"] == node["hw"] == "hw:cpu-2core"
        assert cell["ray_bandwidth_gbs"] == node["bandwidth_gbs"] and node["bandwidth_gbs"] > 0.1
    for row in summary["rows"]:
        assert row["roofline_bandwidth_gbs"] == row["ray_bandwidth_gbs"]
    p = subprocess.run([LLMBENCH, "plan", str(out), "--rps", "1", "--slo", "e2el_p95=60s"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    plan = json.loads((out / "plans" / "plan-rps1.json").read_text())
    for option in plan["options"]:
        cell = meta["cells"][f"card:llama-5m|{option['variant']}|single-stream|single"]
        assert [n["ray_node_id"] for n in option["nodes"]] == [cell["ray_node_id"]]
        assert option["nodes"][0]["bandwidth_gbs"] == cell["ray_bandwidth_gbs"]
        assert option["measured_on"].startswith(f"Ray node {cell['ray_node_id'][:12]} on ")


def test_unplaceable_cell_refused_before_submission(tmp_path):
    cfg = _config(tmp_path, ["torch-fp32"])
    out = tmp_path / "never"
    # A cluster whose only node offers another hardware profile: no node can ever place a cpu-2core cell.
    script = f"""
import os, shutil, subprocess, sys, tempfile
from ray.cluster_utils import Cluster
temp = tempfile.mkdtemp(prefix="llmb-t-")
# Ray writes its address file under $TMPDIR/ray whatever temp_dir says; make test's fresh $TMPDIR lacks it.
os.makedirs(os.path.join(tempfile.gettempdir(), "ray"), exist_ok=True)
c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, resources={{"hw:gpu-box": 1}}, temp_dir=temp,
            object_store_memory=80 * 2**20, include_dashboard=False, node_ip_address="127.0.0.1"))
try:
    p = subprocess.run([os.environ["LLMBENCH"], "run", {str(cfg)!r}, "--ray", c.address, "--out", {str(out)!r}],
                       capture_output=True, text=True, timeout=120)
finally:
    c.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
sys.stderr.write(p.stderr); sys.exit(p.returncode)
"""
    p = _in_netns(script, timeout=200)
    assert p.returncode == 2, p.stderr
    line = [ln for ln in p.stderr.splitlines() if "no Ray node can place it" in ln]
    assert line and "card:llama-5m torch-fp32 single-stream" in line[0] and "hw:cpu-2core=1" in line[0]
    assert "hw:gpu-box=1" in line[0]  # what the cluster does have
    assert "Traceback" not in p.stderr
    assert not out.exists()  # refused before the results folder was written


def test_worker_killed_mid_cell_is_retried_on_another_node(tmp_path):
    cfg = _config(tmp_path, ["torch-fp32", "onnx-fp32"], requests=KILL_REQUESTS)
    out = tmp_path / "ray"
    # The torch worker is SIGKILLed from outside a second into its cell (its process title names the
    # cell it measures); the driver must resubmit that variant's cell to the idle third node.
    script = f"""
import os, signal, subprocess, sys, time
import psutil
p = subprocess.Popen([os.environ["LLMBENCH"], "run", {str(cfg)!r}, "--ray", "local:3", "--out", {str(out)!r}],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
killed, deadline = None, time.monotonic() + 240
while killed is None and time.monotonic() < deadline and p.poll() is None:
    for proc in psutil.process_iter(["cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        if title.startswith("ray::llmbench:card:llama-5m|torch-fp32 measuring"):
            time.sleep(0.5)
            proc.send_signal(signal.SIGKILL); killed = proc.pid; break
    time.sleep(0.2)
err = p.communicate(timeout=300)[1]
sys.stderr.write(err[-4000:]); print(killed)
sys.exit(p.returncode)
"""
    p = _in_netns(script)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() not in ("", "None"), "no worker was found to kill"
    meta, records = _folder(out)
    assert len(records) == 2 * KILL_REQUESTS and all(r["status"] == "ok" for r in records)
    attempts = [a for a in meta["ray"]["attempts"] if a["variant"] == "card:llama-5m|torch-fp32"]
    failed = [a for a in attempts if "error" in a]
    started = [a for a in attempts if "pid" in a]
    assert len(failed) == 1 and len(started) == 2, attempts
    assert str(started[0]["pid"]) == p.stdout.strip()  # the worker killed was the first attempt's
    assert started[1]["ray_node_id"] != started[0]["ray_node_id"]
    cell = meta["cells"]["card:llama-5m|torch-fp32|single-stream|single"]
    assert cell["ray_attempt"] == 2 and cell["ray_node_id"] == started[1]["ray_node_id"]


def test_ctrl_c_keeps_completed_cells_and_resume_finishes_on_ray(tmp_path):
    cfg = _config(tmp_path, ["onnx-fp32", "onnx-int8", "torch-fp32"])
    out = tmp_path / "ray"
    # One node: the variants run one after the other. SIGINT once the first cell is in run.json (the
    # second, a short one, may end before the signal lands on a loaded machine: torch's never does);
    # every process the run started (raylet, GCS, workers) must be gone when it exits; then --resume.
    script = f"""
import json, os, signal, subprocess, sys, time
import psutil
def run(*args):
    return subprocess.Popen([os.environ["LLMBENCH"], "run", *args, "--ray", "local:1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
p = run({str(cfg)!r}, "--out", {str(out)!r})
deadline, children = time.monotonic() + 240, []
while time.monotonic() < deadline and p.poll() is None:
    try:
        if json.load(open({str(out / "run.json")!r})).get("completed_cells"):
            break
    except (OSError, ValueError):
        pass
    children = psutil.Process(p.pid).children(recursive=True) or children
    time.sleep(0.2)
children = psutil.Process(p.pid).children(recursive=True)
p.send_signal(signal.SIGINT)
err = p.communicate(timeout=120)[1]
time.sleep(2)
left = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
print(json.dumps({{"rc1": p.returncode, "children": len(children), "left": left}}))
after_interrupt = open({str(out / "requests.jsonl")!r}).read().count("\\n")
q = run("--resume", {str(out)!r})
err2 = q.communicate(timeout=300)[1]
print(json.dumps({{"rc2": q.returncode, "after_interrupt": after_interrupt}}))
sys.stderr.write(err[-2000:] + err2[-2000:])
"""
    p = _in_netns(script, timeout=500)
    first, second = (json.loads(line) for line in p.stdout.splitlines()[-2:])
    assert first["rc1"] == 130, p.stderr
    assert first["children"] >= 3 and first["left"] == [], first  # a raylet, the GCS, a worker at least
    assert second["after_interrupt"] in (REQUESTS, 2 * REQUESTS)  # the completed cells' records, kept
    assert second["rc2"] == 0, p.stderr
    meta, records = _folder(out)
    assert len(records) == 3 * REQUESTS and all(r["status"] == "ok" for r in records)
    assert sorted(r["request_id"] for r in records) == list(range(3 * REQUESTS))
    assert len(meta["completed_cells"]) == 3
    assert all(cell.get("ray_node_id") for cell in meta["cells"].values())


def test_node_removed_mid_cell_its_cell_finishes_on_the_other_node(tmp_path):
    cfg = _config(tmp_path, ["torch-fp32"], requests=KILL_REQUESTS)
    out = tmp_path / "ray"
    # A cluster of our own: a head without the hardware resource (so the driver's node survives) and
    # two nodes with it. The node whose worker measures the cell is removed (its raylet and workers killed).
    script = f"""
import json, os, shutil, subprocess, sys, tempfile, time
import psutil
from ray.cluster_utils import Cluster
temp = tempfile.mkdtemp(prefix="llmb-t-", dir="/tmp")  # Ray's session folder: ours, short (socket paths), removed at the end
os.makedirs(os.path.join(tempfile.gettempdir(), "ray"), exist_ok=True)  # where the head writes its address
args = dict(num_cpus=1, object_store_memory=80 * 2**20, node_ip_address="127.0.0.1", temp_dir=temp)
c = Cluster(initialize_head=True, head_node_args=dict(include_dashboard=False, **args))
nodes = [c.add_node(resources={{"hw:cpu-2core": 1}}, **args) for _ in range(2)]
c.wait_for_nodes(timeout=120)
removed = None
try:
    p = subprocess.Popen([os.environ["LLMBENCH"], "run", {str(cfg)!r}, "--ray", c.address, "--out", {str(out)!r}],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while removed is None and time.monotonic() < deadline and p.poll() is None:
        for proc in psutil.process_iter(["cmdline", "ppid"]):
            if " ".join(proc.info["cmdline"] or []).startswith("ray::llmbench:card:llama-5m|torch-fp32 measuring"):
                for n in nodes:
                    if any(x.process.pid == proc.info["ppid"] for x in n.all_processes.get("raylet", [])):
                        time.sleep(0.5)
                        c.remove_node(n, allow_graceful=False); removed = n.node_id
                break
        time.sleep(0.2)
    err = p.communicate(timeout=300)[1]
finally:
    c.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
print(json.dumps({{"rc": p.returncode, "removed": removed}}))
sys.stderr.write(err[-4000:])
"""
    p = _in_netns(script)
    result = json.loads(p.stdout.splitlines()[-1])
    assert result["removed"], p.stderr
    assert result["rc"] == 0, p.stderr
    meta, records = _folder(out)
    assert len(records) == KILL_REQUESTS and all(r["status"] == "ok" for r in records)
    started = [a for a in meta["ray"]["attempts"] if "pid" in a]
    failed = [a for a in meta["ray"]["attempts"] if "error" in a]
    assert len(failed) == 1, (meta["ray"]["attempts"], result, p.stderr[-3000:])
    assert [a["ray_node_id"] for a in started][0] == result["removed"] == failed[0]["ray_node_id_failed"]
    assert len(started) == 2 and started[1]["ray_node_id"] != result["removed"]
    assert meta["cells"]["card:llama-5m|torch-fp32|single-stream|single"]["ray_node_id"] == started[1]["ray_node_id"]


@pytest.mark.parametrize("address", ["local:0", "local:17", "local3", "head-node", "head:port", "  "])
def test_a_wrong_ray_address_is_bad_input(address):
    from llmbench.distributed.cluster import parse_address
    from llmbench.errors import BadInput

    with pytest.raises(BadInput, match="--ray"):
        parse_address(address)


def test_addresses_and_placement_by_node():
    from llmbench.distributed.cluster import local_gpus, parse_address
    from llmbench.distributed.placement import fitting_nodes, group_needs

    assert parse_address("local:3") == ("local", 3)
    assert parse_address("auto") == ("connect", 0) and parse_address("10.0.0.5:6379") == ("connect", 0)
    assert group_needs("cpu", "cpu-2core") == {"CPU": 1.0, "hw:cpu-2core": 1.0}
    assert group_needs("cuda:0", "h100")["GPU"] == 1.0
    nodes = [{"NodeID": "a", "Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},  # no hw resource
             {"NodeID": "b", "Alive": True, "Resources": {"CPU": 1.0, "hw:h100": 1.0}},  # no GPU
             {"NodeID": "c", "Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0, "hw:h100": 1.0}},  # dead
             {"NodeID": "d", "Alive": True, "Resources": {"CPU": 2.0, "GPU": 2.0, "hw:h100": 1.0}}]
    # every need on one alive node: the cluster's totals would wrongly say a, b together can place it
    assert [n["NodeID"] for n in fitting_nodes(group_needs("cuda", "h100"), nodes)] == ["d"]
    assert fitting_nodes(group_needs("cuda", "h100"), nodes[:3]) == []
    assert local_gpus(3, 1) == [1, 0, 0] and local_gpus(1, 0) == [0]  # one GPU is never offered twice


def test_each_option_is_planned_with_its_own_nodes_figures():
    from llmbench.planner.nodes import apply
    from llmbench.roofline import add_roofline

    meta = {"ray": {"nodes": {"n-a": {"hostname": "a", "cpu_count": 8, "bandwidth_gbs": 40.0, "hw": "hw:big"},
                              "n-b": {"hostname": "b", "cpu_count": 2, "bandwidth_gbs": 10.0, "hw": "hw:small"}}}}
    rows = [{"model": "m", "variant": "v1", "ray_node_id": "n-a", "ray_bandwidth_gbs": 40.0, "ray_hw": "hw:big"},
            {"model": "m", "variant": "v2", "ray_node_id": "n-b", "ray_bandwidth_gbs": 10.0, "ray_hw": "hw:small"}]
    one, two = {}, {}
    apply(one, rows[:1], meta)
    apply(two, rows[1:], meta)
    assert one["nodes"][0]["bandwidth_gbs"] == 40.0 and one["nodes"][0]["cpu_count"] == 8 and "notes" not in one
    assert two["measured_on"] == "Ray node n-b on b (hw:small, 2 logical cores, 10 GB/s read)"
    both = {}
    apply(both, rows, meta)  # a retry that moved a variant's cells: said, never averaged into one figure
    assert [n["hostname"] for n in both["nodes"]] == ["a", "b"] and "mix their speeds" in both["notes"][0]
    local = {}
    apply(local, [{"model": "m", "variant": "v1"}], meta)
    assert local == {}  # a local run's option: the run's machine, as before
    # the roofline: 1e9 bytes per token over each node's own bandwidth (40 and 10 tok/s), not the driver's 99 GB/s
    rows = [dict(r, scenario="single-stream", point="single", tpot_ms={"p50": 200.0}) for r in rows]
    add_roofline(rows, 99.0, {("m", "v1"): 10**9, ("m", "v2"): 10**9})
    assert [r["roofline_tok_s"] for r in rows] == [40.0, 10.0]


def test_sigkill_of_the_run_leaves_no_ray_process(tmp_path):
    cfg = _config(tmp_path, ["torch-fp32"], requests=KILL_REQUESTS)
    # SIGKILL gives llmbench no chance to stop its local cluster: the watchdog it started does.
    script = f"""
import json, os, signal, subprocess, sys, time
import psutil
p = subprocess.Popen([os.environ["LLMBENCH"], "run", {str(cfg)!r}, "--ray", "local:2", "--out", {str(tmp_path / "k")!r}],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 240
while time.monotonic() < deadline and p.poll() is None:
    kids = psutil.Process(p.pid).children(recursive=True)
    if any(" ".join(k.cmdline()).startswith("ray::llmbench") for k in kids if k.is_running()):
        break
    time.sleep(0.3)
kids = psutil.Process(p.pid).children(recursive=True)
temp = [a for k in kids for a in k.cmdline() if os.path.basename(a).startswith("llmb-ray-") and os.path.isdir(a)]
p.send_signal(signal.SIGKILL); p.wait()
time.sleep(6)
left = [" ".join(k.cmdline())[:60] for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
for k in kids:
    if k.is_running(): k.kill()  # never leave them to the rest of the suite, even when this test fails
print(json.dumps({{"kids": len(kids), "left": left, "temp": temp[-1:]}}))
"""
    p = _in_netns(script, timeout=300)
    result = json.loads(p.stdout.splitlines()[-1])
    assert result["kids"] >= 5, result  # the GCS, raylets, agents, the worker, the watchdog
    assert result["left"] == [], result
    assert result["temp"] and not Path(result["temp"][0]).exists()  # the session folder is gone too
