"""The exported gateway config loaded by a real LiteLLM proxy (`litellm --config`), on loopback.

The proxy reads litellm_settings and general_settings, which the in-process Router never sees; it
is started by the test in its own process group and stopped by it. The model servers behind it
are a minimal OpenAI-compatible HTTP server in this process (fixed usage: 7 prompt and 3
completion tokens), so that the costs the proxy reports can be recomputed by hand.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from llmbench.export.writer import write_exports
from llmbench.recommend.engine import recommend
from llmbench.recommend.inputs import load_run
from llmbench.slo import parse_slo
from loopback import serve_in_thread
from test_recommend_runs import make_run, served

LITELLM = Path(sys.executable).with_name("litellm")
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


class _Server(BaseHTTPRequestHandler):
    usage = USAGE

    def do_POST(self):  # noqa: N802 - http.server's hook
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        out = json.dumps({"id": "t", "object": "chat.completion", "created": 1, "model": body.get("model"), "usage": self.usage,
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": f"served by {body.get('model')}"}}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, key: str, payload: dict | None = None) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url, data=None if payload is None else json.dumps(payload).encode(),
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def _exported_config(tmp: Path, ttft_ms: float, tpot_ms: float, rps: float) -> tuple[dict, dict]:
    """(recommendation, gateway config) of a two-model run: a primary and its standby fallback."""
    cells = [served("small", ttft_ms=ttft_ms, tpot_ms=tpot_ms), served("big", ttft_ms=4 * ttft_ms, tpot_ms=4 * tpot_ms)]
    run = make_run(tmp / "run", cells, params={"small": 5_000_000, "big": 50_000_000})
    rec = recommend(load_run(run), parse_slo("e2el_p95=2s"), rps=rps)
    write_exports(rec, tmp / "out")
    cfg = yaml.safe_load((tmp / "out" / "gateway" / "litellm.yaml").read_text())
    shutil.rmtree(tmp / "out", ignore_errors=True)
    return rec, cfg


def _point_at(cfg: dict, port_of_role: dict[str, int]) -> None:
    for m in cfg["model_list"]:
        if "api_base" in m["litellm_params"]:
            m["litellm_params"]["api_base"] = f"http://127.0.0.1:{port_of_role[m['model_info']['llmbench_role']]}/v1"


@contextmanager
def _litellm(cfg: dict, tmp: Path):
    """`litellm --config` on the config, in its own process group; stopped (and checked gone) at exit."""
    if not LITELLM.exists():
        pytest.fail(f"{LITELLM} is missing: install the test extra (litellm[proxy], see constraints.txt)")
    (tmp / "litellm.yaml").write_text(yaml.safe_dump(cfg))
    key = "sk-" + secrets.token_hex(24)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_MASTER_KEY": key,
           **{m["litellm_params"]["api_key"].split("/", 1)[1]: "test-only" for m in cfg["model_list"] if "api_key" in m["litellm_params"]}}
    port = _free_port()
    log = open(tmp / "proxy.log", "wb")
    proc = subprocess.Popen([str(LITELLM), "--config", str(tmp / "litellm.yaml"), "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(tmp))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the proxy exited ({proc.returncode}): {(tmp / 'proxy.log').read_text()[-800:]}")
            try:
                if urllib.request.urlopen(f"{base}/health/liveliness", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the proxy did not answer within 120 s")
        yield {"base": base, "key": key, "proc": proc}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        time.sleep(0.5)
        with pytest.raises(ProcessLookupError):  # no process of the proxy's group outlives the test
            os.killpg(proc.pid, 0)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy")
    rec, cfg = _exported_config(tmp, ttft_ms=50, tpot_ms=5, rps=1.0)
    # The primary's server is down (nothing listens on its port); its standby is up.
    with serve_in_thread(_Server) as up:
        _point_at(cfg, {"primary": _free_port(), "fallback": up})
        with _litellm(cfg, tmp) as p:
            yield {**p, "rec": rec, "cfg": cfg}


def test_the_proxy_loads_the_config_falls_back_and_prices_with_its_costs(proxy):
    status, headers, body = _call(f"{proxy['base']}/v1/chat/completions", proxy["key"],
                                  {"model": "llmbench", "messages": [{"role": "user", "content": "How many replicas?"}]})
    assert status == 200, body
    standby = proxy["rec"]["recommended"]["fallbacks"][0]
    entry = next(m for m in proxy["cfg"]["model_list"] if m["model_info"]["llmbench_option"] == standby)
    # The primary is down: the configured fallback (router_settings) answered.
    assert body["choices"][0]["message"]["content"] == f"served by {entry['litellm_params']['model'].split('/', 1)[1]}"
    assert int(headers["x-litellm-attempted-fallbacks"]) == 1
    # The cost the proxy reports is 7 prompt x input price + 3 completion x output price.
    p = entry["litellm_params"]
    assert float(headers["x-litellm-response-cost"]) == pytest.approx(7 * p["input_cost_per_token"] + 3 * p["output_cost_per_token"])


def test_the_proxy_reads_litellm_settings_and_general_settings(proxy):
    # The cache is off as the chosen option has none: the proxy built no cache from litellm_settings.
    assert proxy["cfg"]["litellm_settings"]["cache"] is False
    status, _, body = _call(f"{proxy['base']}/cache/ping", proxy["key"])
    assert status == 503 and "Cache not initialized" in json.dumps(body)
    # general_settings.master_key: a request with another key is refused.
    status, _, body = _call(f"{proxy['base']}/v1/chat/completions", "sk-wrong",
                            {"model": "llmbench", "messages": [{"role": "user", "content": "hi"}]})
    # (without a database the proxy answers 400 "No connected db" for an unknown key: still refused)
    assert 400 <= status < 500 and "choices" not in body, body


def test_the_proxy_enforces_the_emitted_token_budgets_then_falls_back_then_refuses(tmp_path):
    # A slow model whose plan needs two replicas at 0.2 req/s: small budgets, reachable in a few requests.
    _, cfg = _exported_config(tmp_path, ttft_ms=250, tpot_ms=30, rps=0.2)
    entries = [m for m in cfg["model_list"] if "api_base" in m["litellm_params"]]
    primaries = [m for m in entries if m["model_info"]["llmbench_role"] == "primary"]
    standby = next(m for m in entries if m["model_info"]["llmbench_role"] == "fallback")
    assert len(primaries) >= 2 and cfg["router_settings"]["optional_pre_call_checks"] == ["enforce_model_rate_limits"]
    # Every answer reports twice the tokens the budget assumed a request takes, so the token budget
    # binds first: a replica takes requests while its minute's tokens are below its tpm.
    p0 = primaries[0]["litellm_params"]
    per_request = 2 * p0["tpm"] // p0["rpm"]

    class Big(_Server):
        usage = {"prompt_tokens": per_request - 5, "completion_tokens": 5, "total_tokens": per_request}

    takes = lambda m: min(m["litellm_params"]["rpm"], -(-m["litellm_params"]["tpm"] // per_request))  # noqa: E731
    budget = {m["model_info"]["id"]: takes(m) for m in primaries + [standby]}
    assert all(takes(m) < m["litellm_params"]["rpm"] for m in primaries)  # the tpm, not the rpm, is what stops them
    sent = sum(budget.values()) + 2
    outcomes, seen = [], []
    with serve_in_thread(Big) as up:
        _point_at(cfg, {"primary": up, "fallback": up})
        with _litellm(cfg, tmp_path) as p:
            if 60 - time.gmtime().tm_sec < 15:  # LiteLLM counts per UTC minute: stay inside one
                time.sleep(61 - time.gmtime().tm_sec)
            for i in range(sent):
                status, headers, body = _call(f"{p['base']}/v1/chat/completions", p["key"],
                                              {"model": "llmbench", "messages": [{"role": "user", "content": f"request {i}"}]})
                outcomes.append((status, headers.get("x-litellm-model-id") if status == 200 else body["error"]["type"]))
                seen.append(headers)
    served = {d: sum(o == (200, d) for o in outcomes) for d in budget}
    # No deployment took more than its budget. LiteLLM checks the replica it picked: one past its
    # budget sends the request to the fallbacks (and cools down), so the first replica refused had
    # taken exactly its budget, and the standby, which then takes the overflow, its own.
    assert all(served[d] <= budget[d] for d in budget), (served, budget)
    assert any(served[m["model_info"]["id"]] == budget[m["model_info"]["id"]] for m in primaries), (served, budget)
    assert served[standby["model_info"]["id"]] == budget[standby["model_info"]["id"]], (served, budget)
    # Past every budget the proxy refuses with 429: every request has an answer or an error.
    assert outcomes[-1][0] == 429 and all(o[0] in (200, 429) for o in outcomes), outcomes
    # What the proxy counted, from the emitted figures and the usage the server reported: each group's
    # limit is its entries' emitted tpm/rpm summed, and its remaining tokens fall by the tokens of each
    # request it admitted (per_request), never below zero.
    groups = {"llmbench": primaries, "fallback": [standby]}
    by_standby = lambda o: o[1] == standby["model_info"]["id"]  # noqa: E731
    admitted = {g: [h for o, h in zip(outcomes, seen) if o[0] == 200 and by_standby(o) == (g == "fallback")] for g in groups}
    for g, hs in admitted.items():
        tpm, rpm = (sum(m["litellm_params"][k] for m in groups[g]) for k in ("tpm", "rpm"))
        assert {(int(h["x-ratelimit-limit-tokens"]), int(h["x-ratelimit-limit-requests"])) for h in hs} == {(tpm, rpm)}, g
        assert [int(h["x-ratelimit-remaining-tokens"]) for h in hs] == [tpm - per_request * k for k in range(1, len(hs) + 1)]
        assert tpm - per_request * len(hs) >= 0
    # Rerouted: exactly the standby's answers went through a fallback, as many as its emitted tpm allows.
    rerouted = [int(h["x-litellm-attempted-fallbacks"]) for h in admitted["fallback"]]
    assert rerouted == [1] * -(-standby["litellm_params"]["tpm"] // per_request)
    assert all(h["x-litellm-attempted-fallbacks"] == "0" for h in admitted["llmbench"])
    # Refused: at least what is past every budget, and only once the fallback's budget was spent.
    refused = [i for i, o in enumerate(outcomes) if o[0] == 429]
    assert len(refused) >= sent - sum(budget.values()) == 2
    assert min(refused) > max(i for i, o in enumerate(outcomes) if o[0] == 200 and by_standby(o))
