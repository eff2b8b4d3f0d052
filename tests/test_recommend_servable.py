"""Servability: only what an engine serves as an OpenAI-compatible server becomes a deployment.

ONNX exports, ONNX Runtime GenAI models and torch on a CPU stay measurements (with their reason);
llama.cpp serves gguf-* variants, an endpoint is its own URL, and on a GPU vLLM serves torch."""
from __future__ import annotations

import json

import pytest
import yaml

from llmbench.export.writer import write_exports
from llmbench.recommend.engine import recommend
from llmbench.recommend.inputs import load_run
from llmbench.slo import parse_slo
from test_recommend_runs import cell, make_run, served

# The ONNX export is the fastest and cheapest of all: the one a cost ranking would pick.
MIXED = [cell("small", "onnx-int4", ttft_ms=10, tpot_ms=1), served("small", "gguf-q4_k_m", ttft_ms=40, tpot_ms=4),
         served("big", "gguf-f16", ttft_ms=120, tpot_ms=12)]
ONNX = "small/onnx-int4/cpu/bs1"


def _rec(tmp_path, cells, slo="e2el_p95=2s", rps=2.0, config=None, device="cpu", **kw):
    run = make_run(tmp_path / "run", cells, params={"small": 5_000_000, "big": 50_000_000}, config=config, device=device)
    return recommend(load_run(run), parse_slo(slo) or None, rps=rps, **kw), run


def _deployed_ids(rec: dict) -> set[str]:
    ids = {rec["choice"]["chosen"], rec["choice"]["closest"], *rec["standbys"]}
    for e in rec["routing"]["classes"]:
        ids |= {e.get("option"), *(e.get("fallbacks") or [])}
    for o in rec["options"]:
        ids |= set(o["fallbacks"])
    return ids - {None}


def test_the_cheapest_onnx_export_is_measured_but_never_deployed(tmp_path):
    rec, _ = _rec(tmp_path, MIXED)
    onnx = next(o for o in rec["options"] if o["id"] == ONNX)
    assert onnx["servable"] is False and onnx["not_servable_reason"] == "no OpenAI-compatible server for an ONNX export"
    assert onnx["engine"] is None and onnx["pareto"]  # still on the measured frontier (the report shows it)
    assert rec["choice"]["chosen"] == "small/gguf-q4_k_m/cpu/bs1"
    verdict = next(v for v in rec["choice"]["verdicts"] if v["id"] == ONNX)
    assert verdict["status"] == "not servable" and "ONNX export" in verdict["reasons"][0]
    assert ONNX not in _deployed_ids(rec)
    gguf = next(o for o in rec["options"] if o["id"] == "small/gguf-q4_k_m/cpu/bs1")
    assert gguf["servable"] and gguf["engine"]["name"] == "llama.cpp" and gguf["engine"]["measured"] is True
    write_exports(rec, tmp_path / "out")
    dep = yaml.safe_load((tmp_path / "out" / "deployment.yaml").read_text())
    assert ONNX not in {d["option"] for d in dep["deployments"]}
    assert dep["not_deployable"] == [{"option": ONNX, "reason": "no OpenAI-compatible server for an ONNX export"}]
    gw = yaml.safe_load((tmp_path / "out" / "gateway" / "litellm.yaml").read_text())
    assert ONNX not in {m["model_info"].get("llmbench_option") for m in gw["model_list"]}


def test_when_only_the_onnx_export_meets_the_slo_the_closest_is_a_servable_one(tmp_path):
    # ~60 ms E2EL p95 for ONNX; the gguf variants need ~190 ms and more.
    rec, _ = _rec(tmp_path, MIXED, slo="e2el_p95=100ms")
    assert rec["choice"]["chosen"] is None and rec["choice"]["closest"] == "small/gguf-q4_k_m/cpu/bs1"
    assert ONNX not in _deployed_ids(rec) and rec["choice"]["binding"] == ["e2el_p95<=100ms"]


def test_nothing_servable_says_so_and_deploys_nothing(tmp_path):
    cells = [cell("small", "onnx-int4"), cell("small", "genai-int4"), cell("small")]  # torch-fp32 on a CPU
    rec, _ = _rec(tmp_path, cells)
    assert rec["mode"] == "none" and rec["choice"]["chosen"] is None and rec["choice"]["closest"] is None
    assert all(not o["servable"] for o in rec["options"]) and rec["measured"]["servable_options"] == 0
    answer = rec["choice"]["answer"]
    assert answer.startswith("nothing measured can be deployed as a self-hosted server")
    for why in ("ONNX export", "ONNX Runtime GenAI", "in-process torch on a CPU"):
        assert why in answer
    out = tmp_path / "out"
    (out / "deploy").mkdir(parents=True)
    (out / "deploy" / "serve-old.sh").write_text("#!/bin/bash\n")  # an earlier decision's script
    (out / "gateway").mkdir()
    (out / "gateway" / "litellm.yaml").write_text("model_list: []\n")
    write_exports(rec, out)
    dep = yaml.safe_load((out / "deployment.yaml").read_text())
    assert dep["deployments"] == [] and dep["answer"] == answer and len(dep["not_deployable"]) == 3
    assert not (out / "gateway" / "litellm.yaml").exists() and not list((out / "deploy").glob("serve-*.sh"))


def test_an_api_model_may_still_be_chosen_when_nothing_self_hosted_is_servable(tmp_path):
    rec, _ = _rec(tmp_path, [cell("small", "onnx-int4")], slo="", api=["gpt-4o-mini"])
    assert rec["choice"]["chosen"] == "api/gpt-4o-mini" and rec["mode"] == "single"
    write_exports(rec, tmp_path / "out")
    gw = yaml.safe_load((tmp_path / "out" / "gateway" / "litellm.yaml").read_text())
    assert [m["model_info"]["llmbench_option"] for m in gw["model_list"] if m["model_name"] == "llmbench"] == ["api/gpt-4o-mini"]
    assert not (tmp_path / "out" / "deploy").exists()


def test_torch_on_a_gpu_is_served_by_vllm_marked_not_measured(tmp_path):
    cells = [cell("small", "torch-fp16", ttft_ms=30, tpot_ms=3), cell("small", "onnx-fp16", ttft_ms=10, tpot_ms=1)]
    rec, run = _rec(tmp_path, cells, config={"candidates": [{"model": "org/small-model", "name": "small"}]}, device="cuda")
    summary = json.loads((run / "summary.json").read_text())
    assert {r["device"] for r in summary["rows"]} == {"cuda"}
    assert rec["choice"]["chosen"] == "small/torch-fp16/cuda/bs1"
    assert next(o for o in rec["options"] if o["variant"] == "onnx-fp16")["servable"] is False
    write_exports(rec, tmp_path / "out")
    dep = yaml.safe_load((tmp_path / "out" / "deployment.yaml").read_text())
    d = next(d for d in dep["deployments"] if d["option"] == "small/torch-fp16/cuda/bs1")
    assert d["serving"]["engine"] == "vllm" and d["serving"]["measured"] is False and "not measured here" in d["serving"]["note"]
    slots = rec["recommended"]["plan"]["max_batch"]
    assert d["serving"]["start"]["commands"][0] == (f"vllm serve org/small-model --host 127.0.0.1 --port 8000 --max-num-seqs {slots} "
                                                    "--served-model-name small-torch-fp16 --dtype float16 --max-model-len 208")
    text = (tmp_path / "out" / "deploy" / "serve-small-torch-fp16.sh").read_text()
    assert "NOT MEASURED HERE" in text and 'CUDA_VISIBLE_DEVICES=0 "$VLLM" serve "$MODEL"' in text


def test_torch_on_a_cpu_profile_is_not_served(tmp_path):
    rec, _ = _rec(tmp_path, [cell("small", "torch-fp16"), served("small")])
    torch = next(o for o in rec["options"] if o["variant"] == "torch-fp16")
    assert torch["servable"] is False and "torch on a CPU" in torch["not_servable_reason"]
    assert rec["choice"]["chosen"] == "small/gguf-f16/cpu/bs1"


def test_an_endpoint_is_deployed_at_its_measured_url_with_no_script(tmp_path):
    url = "http://127.0.0.1:8765/v1"
    cand = {"endpoint": {"url": url, "model": "served-llama", "api": "completions", "api_key_env": "MY_KEY"}}
    cells = [cell("served-llama", "http", ttft_ms=20, tpot_ms=2), served("small", ttft_ms=200, tpot_ms=20)]
    rec, _ = _rec(tmp_path, cells, config={"candidates": [cand, {"model": "small"}]})
    ep = next(o for o in rec["options"] if o["variant"] == "http")
    assert ep["servable"] and ep["engine"] == {"name": "endpoint", "measured": True, "url": url, "model": "served-llama",
                                               "api": "completions", "api_key_env": "MY_KEY"}
    assert rec["choice"]["chosen"] == ep["id"]
    write_exports(rec, tmp_path / "out")
    gw = yaml.safe_load((tmp_path / "out" / "gateway" / "litellm.yaml").read_text())
    main = [m["litellm_params"] for m in gw["model_list"] if m["model_name"] == "llmbench"]
    assert main == [pytest.approx({**main[0], "api_base": url, "model": "openai/served-llama", "api_key": "os.environ/MY_KEY"})]
    scripts = [p.name for p in (tmp_path / "out" / "deploy").glob("*.sh")]
    assert scripts == ["serve-small-gguf-f16.sh"]  # the standby only: an endpoint runs elsewhere
    # The endpoint takes no port: the standby's one replica is on the base port.
    assert "--port 8000 " in (tmp_path / "out" / "deploy" / scripts[0]).read_text()
