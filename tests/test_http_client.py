"""The streaming client against the scripted server: timings, token counts, and every error shape."""
from __future__ import annotations

import asyncio
import math
import socket
import statistics
import time

import pytest

from llmbench.served.client import StreamClient, StreamResult, _BusyShare, to_record
from llmbench.served.sse import MalformedStream, SSEParser
from served_fixture import TOKEN, Script, ScriptedServer


@pytest.fixture(scope="module")
def server():
    with ScriptedServer(Script()) as srv:
        yield srv


def _stream(url: str, model: str, n: int = 8, chat: bool = False, timeout_s: float = 10.0, headers=None,
            count=None, prompt: str = "hello there"):
    async def go():
        async with StreamClient(2, timeout_s, headers=headers) as client:
            body = {"model": model, "max_tokens": n, "stream": True, "stream_options": {"include_usage": True}}
            body.update({"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt})
            path = "/chat/completions" if chat else "/completions"
            return await client.stream(url + path, body, chat=chat, asked=n, count_tokens=count)

    return asyncio.run(go())


def _entry(server, prompt: str) -> dict:
    return [e for e in server.log() if (e["body"].get("prompt") or e["body"].get("messages", [{}])[-1].get("content")) == prompt][-1]


@pytest.mark.parametrize("chat", [False, True])
def test_ttft_and_itl_follow_the_schedule(server, chat):
    # First content chunk 60 ms after arrival (chat sends a role-only chunk at 0 ms first: it must
    # not count), then one every 15 ms.
    prompt = f"schedule {chat}"
    res = _stream(server.url, "t0=60,d=15", n=12, chat=chat, prompt=prompt)
    assert res.ok, res.error
    ttft_ms = (res.first_token - res.sent) * 1e3
    # Never before the schedule (a role chunk would read ~1 ms), give or take the fixture server's own
    # uvloop timer, which counts whole milliseconds and may fire up to 0.5 ms early.
    assert 60 - 0.5 <= ttft_ms <= 60 + 15, ttft_ms
    gaps = [(b - a) * 1e3 for a, b in zip(res.chunk_times, res.chunk_times[1:])]
    assert len(gaps) == 11
    assert abs(statistics.median(gaps) - 15) < 1.5, gaps
    # Against when the server really wrote each chunk (one monotonic clock for both processes):
    sends = _entry(server, prompt)["sends"]
    errors = sorted(abs(g - (b - a) * 1e3) for g, (a, b) in zip(gaps, zip(sends, sends[1:])))
    assert errors[len(errors) // 2] < 1.0, errors
    assert all(got >= sent for got, sent in zip(res.chunk_times, sends))  # read after written, never before
    assert res.output_tokens == 12 and res.usage_source == "server" and not res.ended_early
    assert res.prompt_tokens == len(prompt)  # the server's usage count (characters here), not the client's


def test_several_tokens_per_chunk(server):
    res = _stream(server.url, "t0=5,d=3,per=3", n=10)
    assert res.ok and res.output_tokens == 10
    assert len(res.chunk_times) == math.ceil(10 / 3)  # one time per chunk; the count comes from usage


def test_without_usage_the_tokenizer_counts(server):
    from llmbench.models.tokenizer import load_shipped_tokenizer

    tok = load_shipped_tokenizer()
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    res = _stream(server.url, "mode=nousage,t0=2,d=1", n=9, count=count)
    assert res.ok and res.usage_source == "tokenizer"
    assert res.output_tokens == count(TOKEN * 9) == 9
    assert res.prompt_tokens is None


def test_early_stop_is_counted_with_its_real_length(server):
    res = _stream(server.url, "mode=early,t0=2,d=1", n=10)
    assert res.ok and res.ended_early and res.output_tokens == 5 and res.finish_reason == "stop"
    full = _stream(server.url, "t0=2,d=1", n=10)
    assert not full.ended_early and full.finish_reason == "length"


@pytest.mark.parametrize("model, kind, status", [
    ("mode=http500", "http_status", 500),
    ("mode=cut,t0=2,d=1", "stream_cut", 200),
    ("mode=malformed,t0=2,d=1", "malformed_sse", 200),
    ("mode=error_event,t0=2,d=1", "http_status", 503),
])
def test_error_shapes_are_recorded_with_their_kind(server, model, kind, status):
    res = _stream(server.url, model, n=8)
    assert not res.ok and res.error_kind == kind and res.http_status == status, res.error
    assert res.usage_source == "none" and not res.ended_early


def test_a_connection_the_server_closed_is_not_an_error(server):
    # The second request goes out on the pooled connection the server is about to close (as
    # llama-server closes every connection after a stream): it is sent again on a new one.
    async def go():
        async with StreamClient(1, 10.0) as client:
            body = {"model": "mode=close,t0=1,d=1", "max_tokens": 3, "stream": True, "prompt": "stale"}
            return [await client.stream(server.url + "/completions", body, chat=False, asked=3) for _ in range(3)]

    first, second, third = asyncio.run(go())
    assert first.ok and second.ok and third.ok, (second.error, third.error)
    assert (first.reconnects, second.reconnects, third.reconnects) == (0, 1, 0)
    # After the first stale connection the client asks the server to close: none is reused stale again.
    assert [e["connection"] for e in server.log() if e["body"].get("prompt") == "stale"][-1] == "close"


def test_timeout(server):
    t = time.perf_counter()
    res = _stream(server.url, "mode=slow", timeout_s=0.4)
    assert res.error_kind == "timeout" and "0.4 s" in res.error
    assert 0.35 < time.perf_counter() - t < 3


def test_connection_refused():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _stream(f"http://127.0.0.1:{port}/v1", "x")
    assert res.error_kind == "connection" and res.http_status is None


def test_the_key_goes_in_the_header_and_never_into_an_error(server):
    res = _stream(server.url, "mode=echo", headers={"Authorization": "Bearer SENTINEL-KEY-123"}, prompt="echo me")
    assert _entry(server, "echo me")["authorization"] == "Bearer SENTINEL-KEY-123"
    assert res.error_kind == "http_status" and res.http_status == 400
    assert "SENTINEL-KEY-123" not in res.error and "***" in res.error


def test_sse_parser_splits_anywhere():
    stream = b": ping\r\n\r\ndata: {\"a\": 1}\r\n\r\nevent: x\ndata: {\"b\":\ndata: 2}\n\ndata: [DONE]\n\n"
    whole = SSEParser().feed(stream)
    assert whole == [b'{"a": 1}', b'{"b":\n2}', b"[DONE]"]
    parser = SSEParser()
    pieces = [p for i in range(len(stream)) for p in parser.feed(stream[i:i + 1])]  # byte by byte
    assert pieces == whole and parser.close() == []
    with pytest.raises(MalformedStream):
        SSEParser().feed(b"garbage line\n")
    half = SSEParser()
    half.feed(b"data: {\"a\"")
    with pytest.raises(MalformedStream):
        half.close()


def test_busy_time_is_split_among_requests_in_flight():
    # A alone 0-1 s, A and B 1-2 s, B alone 2-4 s: A = 1 + 0.5, B = 0.5 + 2; together the 4 busy seconds.
    busy = _BusyShare()
    a = busy.start(0.0)
    b = busy.start(1.0)
    assert busy.stop(2.0, a) == pytest.approx(1.5)
    assert busy.stop(4.0, b) == pytest.approx(2.5)
    c = busy.start(10.0)  # idle time between is nobody's
    assert busy.stop(11.0, c) == pytest.approx(1.0)


def test_to_record_counts_from_arrival(server):
    from llmbench.scenarios.base import CellContext, Point
    from llmbench.workload import Prompt

    res = _stream(server.url, "t0=20,d=5", n=4)
    arrived = res.sent - 0.010  # sent 10 ms after its scheduled arrival
    ctx = CellContext("run", "m", "http", "concurrency", Point("clients=1", clients=1), usd_per_second=2.0)
    rec = to_record(res, Prompt(ids=[1, 2, 3], output_tokens=4, text="hello there"), arrived, ctx)
    assert rec.queue_ms == pytest.approx(10.0)
    assert rec.ttft_ms == pytest.approx((res.chunk_times[0] - arrived) * 1e3)
    assert rec.e2el_ms == pytest.approx((res.chunk_times[-1] - arrived) * 1e3)
    assert len(rec.itl_ms) == 3 and rec.output_tokens == 4 and rec.prompt_tokens == len("hello there")
    assert rec.cost == pytest.approx(2.0 * (res.end - res.called))  # alone in flight: all of its time
    assert rec.usage_source == "server" and rec.status == "ok" and rec.tpot_ms is not None
    closed = to_record(res, Prompt(ids=[1], output_tokens=4, text="x"), None, ctx)  # closed loop: from the write
    assert closed.queue_ms == 0.0 and closed.ttft_ms == pytest.approx((res.chunk_times[0] - res.sent) * 1e3)


def test_sent_is_when_the_request_was_written(server):
    # The client's clock starts at the write, which aiohttp does one event-loop pass after the call
    # on Python 3.11: after the call, and before the server (same monotonic clock) read it.
    prompt = "written"
    res = _stream(server.url, "t0=5,d=5", n=2, prompt=prompt)
    assert res.ok, res.error
    assert res.called < res.sent <= _entry(server, prompt)["recv"]


def test_the_cost_a_gateway_reports_is_kept():
    # A LiteLLM proxy puts the request's price in the last chunk's usage (usage.cost).
    from llmbench.served.sse import StreamState

    state = StreamState(chat=False)
    state.apply({"choices": [{"text": " a", "finish_reason": "length"}]})
    state.apply({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "cost": 4.17e-06}})
    res = StreamResult(sent=0.0, chunk_times=[0.1])
    StreamClient._finish(res, state, 1, None)
    assert res.reported_cost == 4.17e-06 and res.output_tokens == 1 and res.usage_source == "server"
    state.usage["cost"] = "free"  # not a number: no cost, rather than a wrong one
    StreamClient._finish(res, state, 1, None)
    assert res.reported_cost is None
