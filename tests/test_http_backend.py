"""The HTTP backend: endpoint candidates in the config, checks before measuring, and `llmbench run`
against the scripted server (error rates, usage sources, and the API key kept out of every file)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from llmbench.backends.http_backend import HttpBackend
from llmbench.config import Candidate
from llmbench.errors import BadInput
from llmbench.served.client import to_record
from llmbench.served.endpoint import EndpointSpec
from llmbench.served.probe import check_endpoint
from llmbench.workload import Prompt
from served_fixture import Script, ScriptedServer

LLMB = [sys.executable, "-m", "llmbench"]
SENTINEL = "sk-SENTINEL-7f3a9c-do-not-write"


@pytest.fixture(scope="module")
def server():
    with ScriptedServer(Script()) as srv:
        yield srv


@pytest.fixture(scope="module")
def keyed():
    with ScriptedServer(Script(key=SENTINEL)) as srv:
        yield srv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backend(spec: EndpointSpec) -> HttpBackend:
    backend = HttpBackend(None, "http", "cpu", "float32")
    backend.endpoint = spec
    return backend


# ---- config ------------------------------------------------------------------------------------
def test_endpoint_candidate_defaults_and_refusals():
    cand = Candidate(endpoint={"url": "http://127.0.0.1:8080/v1/", "model": "served"})
    assert cand.variants == ["http"] and cand.label == "served" and cand.endpoint.url == "http://127.0.0.1:8080/v1"
    assert cand.endpoint.api == "completions" and cand.endpoint.timeout_s == 60
    assert Candidate.model_validate(cand.model_dump(mode="json")) == cand  # run.json reads back
    for bad, needle in [
        ({"endpoint": {"url": "http://h/v1", "model": "m"}, "card": "llama-5m"}, "exactly one"),
        ({"endpoint": {"url": "http://h/v1", "model": "m"}, "variants": ["torch-fp32"]}, "only variant"),
        ({"card": "llama-5m", "variants": ["http"]}, "needs an 'endpoint:'"),
        ({"endpoint": {"url": "ftp://h/v1", "model": "m"}}, "http:// or https://"),
        ({"endpoint": {"url": "http://u:pw@h/v1", "model": "m"}}, "credentials"),
        ({"endpoint": {"url": "http://h/v1", "model": "m", "api": "responses"}}, "api"),
    ]:
        with pytest.raises(ValidationError, match=needle):
            Candidate.model_validate(bad)
    from llmbench.config import parse_config

    with pytest.raises(BadInput, match="api_key_env") as err:  # a key pasted where its variable's name belongs
        parse_config({"candidates": [{"endpoint": {"url": "http://h/v1", "model": "m", "api_key_env": "sk-abc-123"}}]}, "c.yaml")
    assert "sk-abc-123" not in str(err.value)


# ---- the request -------------------------------------------------------------------------------
def test_request_body_forces_the_output_length():
    backend = _backend(EndpointSpec(url="http://h/v1", model="m", api="chat"))
    body = backend.request_body(Prompt(ids=[1], output_tokens=7, text="hi"))
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["model"] == "m"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == body["min_tokens"] == body["n_predict"] == 7 and body["ignore_eos"] is True
    plain = _backend(EndpointSpec(url="http://h/v1", model="m", force_output=False))
    body = plain.request_body(Prompt(ids=[1], output_tokens=7, text="hi"))
    assert body["prompt"] == "hi" and "ignore_eos" not in body and "min_tokens" not in body


def test_a_prompt_without_text_is_decoded_with_the_tokenizer(server):
    from llmbench.models.tokenizer import load_shipped_tokenizer

    backend = _backend(EndpointSpec(url=server.url, model="t0=2,d=1"))
    backend.load()
    ids = load_shipped_tokenizer()("the quick brown fox")["input_ids"]
    assert backend.prompt_text(Prompt(ids=ids, output_tokens=3)) == "the quick brown fox"
    assert backend.info.device == "endpoint" and backend.info.extra["endpoint_url"] == server.url


def test_send_and_record_through_the_backend(server):
    from llmbench.scenarios.base import CellContext, Point

    backend = _backend(EndpointSpec(url=server.url, model="t0=10,d=2", api="completions"))
    backend.load()
    prompt = Prompt(ids=[5, 6, 7], output_tokens=6, text="backend prompt")

    async def go():
        async with backend.open_client(1) as client:
            return await backend.send(client, prompt)

    res = asyncio.run(go())
    sent = [e for e in server.log() if e["body"].get("prompt") == "backend prompt"][-1]["body"]
    assert sent["max_tokens"] == sent["n_predict"] == sent["min_tokens"] == 6 and sent["ignore_eos"] is True
    ctx = CellContext("r", "m", "http", "single-stream", Point("single"), usd_per_second=1.0)
    rec = to_record(res, prompt, res.sent, ctx)
    assert rec.status == "ok" and rec.output_tokens == 6 and rec.usage_source == "server"
    assert rec.prompt_tokens == len("backend prompt")  # the server's count, not len(ids) == 3
    assert 10 <= rec.ttft_ms < 60 and len(rec.itl_ms) == 5


# ---- checks before measuring -------------------------------------------------------------------
def test_check_endpoint(server, keyed, monkeypatch, tmp_path):
    check_endpoint(EndpointSpec(url=server.url, model="m"))  # answers: no error
    down = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(BadInput, match=f"endpoint {down} does not answer"):
        check_endpoint(EndpointSpec(url=down, model="m"), "candidates[0].endpoint")
    monkeypatch.delenv("LLMB_TEST_KEY", raising=False)
    with pytest.raises(BadInput, match="LLMB_TEST_KEY is not set"):
        check_endpoint(EndpointSpec(url=keyed.url, model="m", api_key_env="LLMB_TEST_KEY"))
    monkeypatch.setenv("LLMB_TEST_KEY", "wrong-" + SENTINEL)
    with pytest.raises(BadInput, match=r"refused the key in \$LLMB_TEST_KEY \(HTTP 401") as err:
        check_endpoint(EndpointSpec(url=keyed.url, model="m", api_key_env="LLMB_TEST_KEY"))
    assert SENTINEL not in str(err.value)
    monkeypatch.setenv("LLMB_TEST_KEY", SENTINEL)
    check_endpoint(EndpointSpec(url=keyed.url, model="m", api_key_env="LLMB_TEST_KEY"))
    with pytest.raises(BadInput, match="not a tokenizer folder"):
        check_endpoint(EndpointSpec(url=server.url, model="m", tokenizer=str(tmp_path)))
    with pytest.raises(BadInput, match="tokenizer"):
        check_endpoint(EndpointSpec(url=server.url, model="m", tokenizer="card:no-such-card"))


# ---- llmbench run ------------------------------------------------------------------------------
def _config(path: Path, endpoints: list[dict], clients=(2,)) -> Path:
    path.write_text(yaml.safe_dump({
        "candidates": [{"endpoint": e, **({"name": e.pop("name")} if "name" in e else {})} for e in endpoints],
        "workload": {"prompt_tokens": 16, "output_tokens": 6, "requests": 6},
        "scenarios": [{"kind": "concurrency", "clients": list(clients)}], "warmup": 1, "quality": None,
        "precision_pct": None}))
    return path


def _llmbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LLMB, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _one_line_exit_2(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_run_refuses_an_endpoint_that_does_not_answer(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    proc = _llmbench("run", str(_config(tmp_path / "c.yaml", [{"url": url, "model": "m"}])), "--out", str(tmp_path / "r"))
    _one_line_exit_2(proc, url, "does not answer")
    assert not (tmp_path / "r" / "requests.jsonl").exists()


def test_run_refuses_a_missing_key_variable_naming_it(tmp_path, keyed):
    cfg = _config(tmp_path / "c.yaml", [{"url": keyed.url, "model": "m", "api_key_env": "LLMB_ABSENT_KEY"}])
    env = {k: v for k, v in os.environ.items() if k != "LLMB_ABSENT_KEY"}
    proc = subprocess.run([*LLMB, "run", str(cfg), "--out", str(tmp_path / "r")], capture_output=True, text=True,
                          timeout=300, env=env)
    _one_line_exit_2(proc, "LLMB_ABSENT_KEY", "not set")


def test_run_measures_endpoints_and_never_writes_the_key(tmp_path, keyed):
    out = tmp_path / "r"
    cfg = _config(tmp_path / "c.yaml", [
        {"url": keyed.url, "model": "t0=8,d=2", "api": "chat", "api_key_env": "LLMB_KEY", "name": "good"},
        {"url": keyed.url, "model": "t0=2,d=1,fail_every=3", "api_key_env": "LLMB_KEY", "name": "flaky"},
        {"url": keyed.url, "model": "mode=nousage,t0=2,d=1", "api_key_env": "LLMB_KEY", "name": "nousage"},
    ])
    proc = _llmbench("run", str(cfg), "--out", str(out), env={"LLMB_KEY": SENTINEL})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert SENTINEL not in proc.stdout + proc.stderr
    for f in out.rglob("*"):  # no file of the results folder holds the key
        if f.is_file():
            assert SENTINEL.encode() not in f.read_bytes(), f
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines() if line.strip()]
    by_model: dict[str, list[dict]] = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    assert {r["usage_source"] for r in by_model["good"]} == {"server"}
    assert {r["usage_source"] for r in by_model["nousage"]} == {"tokenizer"}
    assert all(r["output_tokens"] == 6 and not r["ended_early"] for r in by_model["good"] + by_model["nousage"])
    flaky_failed = [r for r in by_model["flaky"] if r["status"] != "ok"]
    assert flaky_failed and {(r["error_kind"], r["http_status"]) for r in flaky_failed} == {("http_status", 500)}
    rows = {r["model"]: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    good, flaky = rows["good"], rows["flaky"]
    assert good["error_rate"] == 0 and good["errors_by_kind"] == {} and good["ended_early"] == 0
    assert good["ttft_ms"]["p50"] >= 8 and good["itl_ms"]["p50"] > 0
    n = len(by_model["flaky"])
    assert flaky["error_rate"] == pytest.approx(len(flaky_failed) / n) and flaky["errors_by_kind"] == {"http_status": len(flaky_failed)}
    assert flaky["requests"] == n - len(flaky_failed)
