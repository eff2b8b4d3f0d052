"""The gateway's interaction log through a real LiteLLM proxy (`litellm --config`, the emitted config,
llmbench's semantic cache beside it) in front of a real llama-server: every request, streamed or not,
answered, served from the cache or failed, is one line that parses as a RequestRecord, with the
tokens the client received, times within what the client measured, and the cost recomputed from the
config's prices; lines survive rotation exactly once. One proxy run serves the module's tests: the
fixture sends the traffic, stops the proxy (which writes what it holds and says what its hook cost)
and hands over what both sides saw."""
from __future__ import annotations

import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from llmbench.engines.llamacpp.gguf import build_gguf
from llmbench.engines.llamacpp.server import ManagedServer
from llmbench.export.writer import write_exports
from llmbench.models.source import resolve
from llmbench.monitor.gateway_names import CALLBACK, DEFAULT_PATH, PATH_ENV
from llmbench.monitor.log_read import log_files
from llmbench.optimizers.cache.gateway_names import PLUGIN
from llmbench.recommend.engine import recommend
from llmbench.recommend.inputs import load_run
from llmbench.records import RequestRecord
from llmbench.slo import parse_slo
from llmbench.verify.cache_check import HIT_HEADER
from llmbench.verify.proxy import Proxy
from test_gateway_cache import RULE
from test_recommend_runs import make_run, served

MAX_BYTES = 2500  # a few lines a file: the traffic below rotates several times
ALIAS = "llmbench"
DOWN = "primary-down"  # a group whose only server is down, falling back to ALIAS
SYSTEM = "Answer in one short sentence."
# Distinct topics: the semantic cache must serve only the exact repeat.
TOPICS = ["the boiling point of water", "how tides work", "the rules of chess", "baking sourdough bread",
          "the history of Rome", "how vaccines train immunity", "why the sky is blue", "the speed of sound"]


def _request(url: str, headers: dict, body: dict) -> dict:
    """One request as a client sees it: status, usage, whether the cache served it, wall time."""
    stream = bool(body.get("stream"))
    sent, t0 = time.time(), time.perf_counter()
    usage, status, hit = None, None, False
    path = "/chat/completions" if "messages" in body else "/completions"
    with httpx.stream("POST", url + path, json=body, headers=headers, timeout=120) as r:
        status, hit = r.status_code, bool(r.headers.get(HIT_HEADER))
        if stream and status == 200:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    usage = json.loads(line[6:]).get("usage") or usage
        else:
            r.read()
            usage = (r.json() or {}).get("usage") if status == 200 else None
    wall_ms = (time.perf_counter() - t0) * 1e3
    text = body.get("prompt") or "\n".join(m["content"] for m in body["messages"])
    return {"body": body, "text": text, "sha": hashlib.sha256(text.encode()).hexdigest(), "stream": stream, "sent": sent,
            "wall_ms": wall_ms, "status": status, "usage": usage, "hit": hit}


def _traffic() -> list[dict]:
    out = []
    for i, topic in enumerate(TOPICS):
        body: dict = {"model": ALIAS, "max_tokens": 8, "temperature": 0}
        if i % 4 == 3:  # a chat (with a system message) every fourth request
            body["messages"] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Tell me about {topic}."}]
        else:
            body["prompt"] = f"Tell me about {topic}."
        if i % 2:
            body.update(stream=True, stream_options={"include_usage": True})
        out.append(body)
    return out


@pytest.fixture(scope="module")
def logged(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gwlog")
    cells = [served("small", ttft_ms=50, tpot_ms=5), served("big", ttft_ms=200, tpot_ms=20)]
    run = make_run(tmp / "run", cells, params={"small": 5_000_000, "big": 50_000_000})
    write_exports(recommend(load_run(run), parse_slo("e2el_p95=2s"), rps=1.0), tmp / "out")
    path = tmp / "out" / "gateway" / "litellm.yaml"
    cfg = yaml.safe_load(path.read_text())
    assert cfg["litellm_settings"]["callbacks"] == [PLUGIN, CALLBACK]  # the log beside the cache plug-in
    q4 = build_gguf(resolve("card:llama-5m"), "gguf-q4_k_m", engine).path
    with ManagedServer(engine, q4, parallel=2, ctx_size=512, threads=1, log_path=tmp / "llama.log", alias="tiny") as srv:
        for m in cfg["model_list"]:
            m["litellm_params"].update(model="openai/tiny", api_base=srv.url)
        cfg["litellm_settings"]["cache"] = True  # the plug-in's cache on, to see a hit logged
        main = next(m for m in cfg["model_list"] if m["model_name"] == ALIAS)
        cfg["model_list"].append({"model_name": DOWN, "litellm_params": {**main["litellm_params"], "api_base": "http://127.0.0.1:9/v1"},
                                  "model_info": {"id": DOWN, "llmbench_model": "down", "llmbench_variant": "none"}})
        cfg["router_settings"]["fallbacks"].append({DOWN: [ALIAS]})
        cfg["callback_settings"]["llmbench_cache"] = RULE
        cfg["callback_settings"]["llmbench_gateway_log"].update(max_bytes=MAX_BYTES, backups=100)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        keys = sorted({m["litellm_params"]["api_key"].split("/", 1)[1] for m in cfg["model_list"] if "api_key" in m["litellm_params"]})
        proxy = Proxy(path, tmp / "litellm.log", keys).start()
        try:
            url, auth = proxy.url, {"Authorization": f"Bearer {proxy.key}"}
            bodies = _traffic()
            with ThreadPoolExecutor(3) as pool:  # concurrent requests: the writer serialises their lines
                sent = list(pool.map(lambda b: _request(url, auth, b), bodies))
            time.sleep(0.5)  # the streamed answer is stored in the cache after the stream ends
            sent.append(_request(url, auth, dict(bodies[1])))  # an exact repeat: a cache hit
            # Refused, retried, then answered by the fallback: the failed attempts are no lines of their own.
            sent.append(_request(url, auth, {"model": DOWN, "prompt": "Where does this go?", "max_tokens": 8}))
            sent.append(_request(url, auth, {"model": "no-such-model", "prompt": "Which model is this?", "max_tokens": 8}))
            # 2,000 tokens into a 256-token slot: llama-server answers HTTP 400.
            sent.append(_request(url, auth, {"model": ALIAS, "prompt": "word " * 2000, "max_tokens": 8, "stream": True}))
        finally:
            proxy.stop()  # SIGTERM: the log writes what it holds and says what its hook cost
        log = path.parent / DEFAULT_PATH  # relative to where the proxy ran
        files = log_files(log)
        lines = [(f, line) for f in files for line in f.read_text().splitlines()]
        yield {"cfg": cfg, "sent": sent, "files": files, "lines": lines, "records": [RequestRecord.model_validate_json(x) for _, x in lines],
               "proxy_log": (tmp / "litellm.log").read_text(), "server": srv.url, "tmp": tmp}


def _by_sha(g: dict) -> dict[str, list[RequestRecord]]:
    out: dict[str, list[RequestRecord]] = {}
    for r in g["records"]:
        out.setdefault(r.prompt_sha256, []).append(r)
    return out


def _pairs(g: dict) -> list[tuple[dict, RequestRecord]]:
    """Each request with its line: by the prompt's hash, a repeat's lines in the order they were sent."""
    by_sha, seen = _by_sha(g), {}
    out = []
    for s in g["sent"]:
        i = seen[s["sha"]] = seen.get(s["sha"], -1) + 1
        out.append((s, by_sha[s["sha"]][i]))
    return out


def _entry_pairs(cfg: dict) -> dict[tuple[str, str], dict]:
    pairs = {(m["model_info"]["llmbench_model"], m["model_info"]["llmbench_variant"]): m["litellm_params"]
             for m in cfg["model_list"] if m["model_name"] == ALIAS}
    assert list(pairs) == [("small", "gguf-f16")]  # the run's chosen candidate serves the alias
    return pairs


def test_every_request_is_one_record_line(logged):
    g = logged
    assert len(g["sent"]) == 12 and len(g["records"]) == len(g["sent"])
    assert sorted(r.prompt_sha256 for r in g["records"]) == sorted(s["sha"] for s in g["sent"])
    assert {(r.run_id, r.scenario) for r in g["records"]} == {("gateway", "gateway")}
    assert len({r.request_id for r in g["records"]}) == len(g["records"])
    pairs = _entry_pairs(g["cfg"])
    for s, r in _pairs(g):
        assert r.point == (ALIAS if s["body"]["model"] == DOWN else s["body"]["model"])  # the group that answered
        assert s["sent"] <= r.timestamp <= s["sent"] + s["wall_ms"] / 1e3  # when the proxy received it
        if r.point == ALIAS:
            assert (r.model, r.variant) in pairs  # the candidate, from the entry's model_info
        assert r.prompt_length == len(s["text"])
    # The prompt is hashed, never kept (record_prompts is off); its length is the text's.
    assert all(r.prompt is None for r in g["records"])
    assert all('"prompt":null' in line for _, line in g["lines"])


def test_tokens_times_and_cost_are_what_the_client_saw(logged):
    g = logged
    pairs = _entry_pairs(g["cfg"])
    ok = [(s, r) for s, r in _pairs(g) if s["status"] == 200]
    assert len(ok) == 10
    for s, r in ok:
        assert r.status == "ok" and r.http_status == 200 and r.usage_source == "server"
        assert (r.prompt_tokens, r.output_tokens) == (s["usage"]["prompt_tokens"], s["usage"]["completion_tokens"]) != (0, 0)
        assert 0 < r.e2el_ms <= s["wall_ms"] and 0 <= r.queue_ms <= r.e2el_ms
        if s["stream"]:
            assert r.ttft_ms is not None and 0 < r.ttft_ms <= r.e2el_ms
        else:
            assert r.ttft_ms is None and r.tpot_ms is None  # no first token to time in an unstreamed answer
        prices = pairs[(r.model, r.variant)]
        want = 0.0 if s["hit"] else r.prompt_tokens * prices["input_cost_per_token"] + r.output_tokens * prices["output_cost_per_token"]
        assert r.cost == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_a_cache_hit_is_marked(logged):
    g = logged
    hits = [s for s in g["sent"] if s["hit"]]
    assert len(hits) == 1 and hits[0]["stream"]  # the repeat of a streamed request
    first, again = _by_sha(g)[hits[0]["sha"]]
    assert first.cache_hit is False and again.cache_hit is True and again.cost == 0.0
    assert again.request_id > first.request_id
    assert all(r.cache_hit is not True for r in g["records"] if r is not again)


def test_failures_are_lines_with_their_status(logged):
    g = logged
    (s1, r), (s2, overflow) = _pairs(g)[-2:]
    assert [s1["status"], s2["status"]] == [400, 400]
    assert (r.status, r.http_status, r.error_kind, r.point, r.model, r.variant) == \
        ("error", 400, "http_status", "no-such-model", "no-such-model", "unknown")
    assert "no-such-model" in r.error and r.cost == 0 and r.output_tokens == 0 and r.e2el_ms is None
    r = overflow
    assert (r.status, r.http_status, r.error_kind, r.point) == ("error", 400, "http_status", ALIAS)
    assert (r.model, r.variant) in _entry_pairs(g["cfg"]) and "context" in r.error.lower()


def test_a_request_answered_by_the_fallback_is_one_line(logged):
    g = logged
    ((s, r),) = [(s, r) for s, r in _pairs(g) if s["body"]["model"] == DOWN]
    assert s["status"] == 200 and len(_by_sha(g)[s["sha"]]) == 1  # the refused attempts were held, then dropped
    assert (r.status, r.model, r.variant, r.point) == ("ok", "small", "gguf-f16", ALIAS)  # who answered
    assert r.output_tokens == s["usage"]["completion_tokens"] and 0 < r.e2el_ms <= s["wall_ms"]


def test_rotation_keeps_every_line_once_in_order(logged):
    g = logged
    assert [f.name for f in g["files"]][-1] == "requests.jsonl" and len(g["files"]) >= 3
    for f in g["files"][:-1]:  # a rotated file holds whole lines, and no more than max_bytes unless one line is longer
        text = f.read_text()
        assert text.endswith("\n") and (len(text.encode()) <= MAX_BYTES or text.count("\n") == 1)
    ids = [r.request_id for r in g["records"]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == len(g["sent"])  # oldest file first, one writer


def test_the_hook_is_cheap_on_the_request_path(logged):
    m = re.search(r"llmbench gateway log: (\d+) request\(s\) logged to (\S+), (\d+) dropped; "
                  r"hook p50 ([\d.]+) ms, p95 ([\d.]+) ms \(own CPU p50 ([\d.]+) ms, p95 ([\d.]+) ms\) over (\d+) call\(s\)", logged["proxy_log"])
    assert m, logged["proxy_log"][-2000:]
    assert int(m.group(1)) == len(logged["sent"]) and int(m.group(3)) == 0
    assert int(m.group(8)) >= len(logged["sent"])  # a hook per success, per failed attempt and per failed request
    p50, p95, cpu50, cpu95 = (float(m.group(i)) for i in (4, 5, 6, 7))
    print(f"gateway log hook p50 {p50} ms, p95 {p95} ms (own CPU p50 {cpu50}, p95 {cpu95} ms) over {m.group(8)} calls")
    assert 0 < p50 <= p95 and 0 < cpu50 <= cpu95 and cpu50 <= p50 + 0.01 and cpu95 <= p95 + 0.01
    # Its own work is a tenth of a millisecond; the wall time adds waits for the GIL and the CPU on a busy machine.
    assert cpu50 < 1.0 and p50 < 50.0


def test_settings_env_and_bad_values(tmp_path):
    from llmbench.monitor.gateway_log import LogSettings

    s = LogSettings.from_dict(None, env={})
    assert s.path == Path(DEFAULT_PATH).absolute() and (s.max_bytes, s.backups, s.record_prompts) == (64 * 2**20, 10, False)
    s = LogSettings.from_dict({"path": "a/b.jsonl", "record_prompts": True}, env={PATH_ENV: str(tmp_path / "x.jsonl")})
    assert s.path == tmp_path / "x.jsonl" and s.record_prompts is True
    for bad, msg in (({"max_bytes": 10}, ".max_bytes: Input should be greater than or equal to 1024 (got 10)"),
                     ({"backups": "3"}, ".backups: Input should be a valid integer (got '3')"),
                     ({"record_prompts": "yes"}, ".record_prompts: Input should be a valid boolean (got 'yes')"),
                     ({"rotate": 1}, ".rotate: Extra inputs are not permitted (got 1)"),
                     ([1], " must be a mapping")):
        with pytest.raises(ValueError, match="^callback_settings.llmbench_gateway_log" + re.escape(msg)):
            LogSettings.from_dict(bad, env={})


def test_record_prompts_keeps_the_text_in_process(logged):
    """The same callback in LiteLLM's in-process Router (no proxy): with record_prompts the text is kept;
    a failure no proxy hook ends (there is none in process) is held, and written when the log closes."""
    import asyncio

    import litellm

    from llmbench.monitor.gateway_log import InteractionLog, LogSettings

    entry = next(m for m in logged["cfg"]["model_list"] if m["model_name"] == ALIAS)
    path = logged["tmp"] / "in-process" / "requests.jsonl"
    log = InteractionLog(LogSettings(path=path, record_prompts=True))
    saved = {k: list(getattr(litellm, k)) for k in ("callbacks", "_async_success_callback", "_async_failure_callback")}
    litellm.callbacks.append(log)
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": [{"type": "text", "text": "Name a colour."}, {"type": "text", "text": "Just one."}]}]
    try:
        params = {**entry["litellm_params"], "api_key": "unused"}
        router = litellm.Router(model_list=[{**entry, "litellm_params": params},
                                            {**entry, "model_name": DOWN, "litellm_params": {**params, "api_base": "http://127.0.0.1:9/v1"},
                                             "model_info": {"id": DOWN}}], num_retries=0)

        async def ask():
            await router.acompletion(model=ALIAS, messages=messages, max_tokens=4)
            with pytest.raises(litellm.exceptions.InternalServerError):
                await router.atext_completion(model=DOWN, prompt="Anyone there?", max_tokens=4)
            await asyncio.sleep(0.5)  # LiteLLM logs in a task after the answer
            assert log.queued == 1 and len(log._pending) == 1

        asyncio.run(ask())
    finally:
        for k, v in saved.items():
            setattr(litellm, k, v)
        log.close()
    r, down = [RequestRecord.model_validate_json(x) for x in path.read_text().splitlines()]
    text = f"{SYSTEM}\nName a colour.\nJust one."  # the contents joined, a part list's texts too
    assert r.prompt == text and r.prompt_length == len(text) and r.prompt_sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert (r.model, r.variant, r.status) == ("small", "gguf-f16", "ok") and r.output_tokens > 0
    assert (down.status, down.error_kind, down.point, down.variant, down.prompt) == ("error", "connection", DOWN, "unknown", "Anyone there?")
    assert log.hook_ms() is not None and log.queued == 2 and not log._pending


def test_a_bad_setting_stops_the_proxy_with_one_line(tmp_path, monkeypatch):
    from llmbench.verify.deploy import VerifyFailed

    monkeypatch.chdir(tmp_path.parent)  # a config named relative to here, as `llmbench verify results/RUN` names it
    cfg = {"model_list": [{"model_name": ALIAS, "litellm_params": {"model": "openai/tiny", "api_base": "http://127.0.0.1:9/v1",
                                                                    "api_key": "os.environ/LLMBENCH_TEST_KEY"}}],
           "litellm_settings": {"callbacks": [CALLBACK]}, "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
           "callback_settings": {"llmbench_gateway_log": {"max_bytes": 10}}}
    path = tmp_path / "litellm.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(VerifyFailed, match="exited with code 2"):
        Proxy(Path(tmp_path.name) / path.name, tmp_path / "litellm.log", ["LLMBENCH_TEST_KEY"]).start(timeout_s=150)
    log = (tmp_path / "litellm.log").read_text()
    last = [line for line in log.splitlines() if line.strip()][-1]
    assert last == ("llmbench gateway log: callback_settings.llmbench_gateway_log.max_bytes: "
                    "Input should be greater than or equal to 1024 (got 10)")
    assert "Traceback" not in log and not (tmp_path / "gateway-log").exists()
