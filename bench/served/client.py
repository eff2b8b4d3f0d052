"""The asynchronous streaming client: one request, timed chunk by chunk, into a StreamResult.

One StreamClient (one connection pool) serves a whole cell; every request is a coroutine on the
caller's event loop, never a thread or a process. A chunk's time is taken as soon as the read that
carried it returns, before any parsing, so the client's own work does not delay the timestamps.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from llmbench.served.sse import DONE, MalformedStream, SSEParser, StreamState, decode_event
from llmbench.served.transport import DEFAULT, make_transport

if sys.version_info >= (3, 11):
    from asyncio import timeout as _deadline
else:  # pragma: no cover - aiohttp brings async_timeout on 3.10
    from async_timeout import timeout as _deadline

if TYPE_CHECKING:
    from llmbench.records import RequestRecord
    from llmbench.scenarios.base import CellContext
    from llmbench.workload import Prompt

ERROR_BODY_CHARS = 200  # of an HTTP error's body, kept in the record's error message
SERVED_BY_HEADER = "x-litellm-model-id"  # LiteLLM's proxy names the deployment that answered


@dataclass
class StreamResult:
    """One request as the client saw it. Times are time.perf_counter() seconds. `sent` is when the
    request's body was first handed to the socket (the transport's timing; the call where it has
    none), `called` when the caller asked for it: the gap is the client's own send overhead."""

    sent: float
    called: float = 0.0
    first_token: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    end: float = 0.0
    prompt_tokens: int | None = None
    output_tokens: int = 0
    usage_source: str = "none"
    ended_early: bool = False
    error_kind: str | None = None
    error: str | None = None
    http_status: int | None = None
    server_timings: dict | None = None
    finish_reason: str | None = None
    busy_s: float = 0.0  # this request's share of the time the endpoint had requests in flight
    reconnects: int = 0  # sends repeated on a new connection because a pooled one was already closed
    reported_cost: float | None = None  # the cost the server put in its usage (a LiteLLM proxy's usage.cost)
    served_by: str | None = None  # the deployment a LiteLLM proxy sent it to (its x-litellm-model-id header)

    @property
    def ok(self) -> bool:
        return self.error_kind is None


class _BusyShare:
    """Splits the time with requests in flight evenly among them: sum of shares = busy time.

    S(t) grows at 1/n(t) while n requests are in flight; a request's share is S(end) - S(start).
    """

    __slots__ = ("_n", "_last", "_s")

    def __init__(self) -> None:
        self._n, self._last, self._s = 0, 0.0, 0.0

    def _advance(self, now: float) -> float:
        if self._n:
            self._s += (now - self._last) / self._n
        self._last = now
        return self._s

    def start(self, now: float) -> float:
        mark = self._advance(now)
        self._n += 1
        return mark

    def stop(self, now: float, mark: float) -> float:
        share = self._advance(now) - mark
        self._n -= 1
        return share


class StreamClient:
    """A connection pool sized to a cell's concurrency, and the streaming request on it."""

    def __init__(self, concurrency: int, timeout_s: float, headers: dict[str, str] | None = None,
                 transport: str = DEFAULT, transport_options: dict | None = None) -> None:
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **(headers or {})}
        auth = self._headers.get("Authorization", "")
        self._secret = auth.split(" ", 1)[-1] if auth else ""  # scrubbed from every error message
        self._transport = make_transport(transport, concurrency, **(transport_options or {}))
        self._busy = _BusyShare()

    async def __aenter__(self) -> "StreamClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool's connections."""
        await self._transport.aclose()

    async def stream(self, url: str, body: dict, chat: bool, asked: int,
                     count_tokens: Callable[[str], int] | None = None) -> StreamResult:
        """POST `body` to `url` and time its stream. Never raises for a failed request: the
        StreamResult says what went wrong (error_kind). `asked` is the forced output length;
        `count_tokens` counts output tokens when the server sends no usage."""
        payload = json.dumps(body).encode()
        called = time.perf_counter()
        res = StreamResult(sent=called, called=called)
        mark = self._busy.start(called)
        wire: list[float] = []  # when each attempt's body was written
        try:
            # A pooled connection the server closed meanwhile fails at once, before any response:
            # send again (the time lost stays in this request's TTFT, as any client would pay it).
            # Every idle connection may be such a one, hence up to the pool's size of retries.
            for _ in range(self.concurrency + 1):
                state = StreamState(chat=chat)
                if not await self._request(url, payload, state, res, wire):
                    break
                res.reconnects += 1
                # This server closes its connections: ask for that, so that none is reused stale.
                self._headers["Connection"] = "close"
            else:
                self._fail(res, "connection", "every pooled connection was closed by the server")
        finally:  # also when the caller cancels: the busy-time split must stay right for the others
            res.end = time.perf_counter()
            res.busy_s = self._busy.stop(res.end, mark)
            res.sent = wire[0] if wire else called  # the first attempt's: a resend's cost stays in
        self._finish(res, state, asked, count_tokens)
        return res

    async def _request(self, url: str, payload: bytes, state: StreamState, res: StreamResult,
                       wire: list[float]) -> bool:
        """One attempt; True when it failed on a stale pooled connection (nothing recorded then)."""
        opened = False
        try:
            async with _deadline(self.timeout_s):
                async with self._transport.post(url, payload, self._headers, wire) as resp:
                    opened = True
                    res.http_status = resp.status
                    res.served_by = resp.headers.get(SERVED_BY_HEADER)
                    if resp.status >= 400:
                        text = (await resp.body(ERROR_BODY_CHARS)).decode("utf-8", "replace")
                        self._fail(res, "http_status", f"HTTP {resp.status}: {' '.join(text.split())}")
                    else:
                        await self._read(resp, state, res)
        except self._transport.timeout_errors:
            self._fail(res, "timeout", f"no complete response within {self.timeout_s:g} s")
        except MalformedStream as exc:
            self._fail(res, "malformed_sse", f"malformed stream: {exc}")
        except self._transport.errors as exc:
            if not opened and self._transport.is_stale(exc):
                return True
            kind, what = ("stream_cut", "the stream was cut") if opened else ("connection", "cannot connect")
            self._fail(res, kind, f"{what}: {_first_line(exc)}")
        except Exception as exc:  # a failed request is a record, never a crashed cell
            self._fail(res, "exception", _first_line(exc))
        return False

    async def _read(self, resp, state: StreamState, res: StreamResult) -> None:
        parser = SSEParser()
        times = res.chunk_times
        clock = time.perf_counter
        async for data in resp.chunks():
            now = clock()  # before parsing: the chunk's arrival, not our handling of it
            for payload in parser.feed(data):
                if self._event(payload, state):
                    times.append(now)
        # Read to the end even after [DONE]: a body left unread would close the pooled connection.
        for payload in parser.close():
            if self._event(payload, state):
                times.append(clock())
        if state.server_error is not None:
            err = state.server_error
            code = err.get("code")
            res.http_status = code if isinstance(code, int) else res.http_status
            self._fail(res, "http_status", f"server error in the stream: {str(err.get('message', err))[:ERROR_BODY_CHARS]}")
        elif not state.complete:
            self._fail(res, "stream_cut", "the stream ended without [DONE] or a finish_reason")

    @staticmethod
    def _event(payload: bytes, state: StreamState) -> bool:
        if payload == DONE:
            state.done = True
            return False
        return state.apply(decode_event(payload))

    def _fail(self, res: StreamResult, kind: str, message: str) -> None:
        if res.error_kind is None:
            res.error_kind = kind
            res.error = message.replace(self._secret, "***") if self._secret else message

    @staticmethod
    def _finish(res: StreamResult, state: StreamState, asked: int, count_tokens) -> None:
        res.first_token = res.chunk_times[0] if res.chunk_times else None
        res.server_timings = state.timings
        res.finish_reason = state.finish_reason
        usage = state.usage or {}
        completion, prompt = usage.get("completion_tokens"), usage.get("prompt_tokens")
        res.prompt_tokens = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else None
        cost = usage.get("cost")
        res.reported_cost = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
        if isinstance(completion, int) and not isinstance(completion, bool):
            res.output_tokens, res.usage_source = completion, "server"
        elif count_tokens is not None and state.texts:
            res.output_tokens, res.usage_source = count_tokens("".join(state.texts)), "tokenizer"
        else:  # nothing to count with: one token per content chunk is the best lower bound
            res.output_tokens, res.usage_source = len(res.chunk_times), "chunks"
        if not res.ok:
            res.usage_source = "none"
        # Stopped short: fewer tokens than forced, and not because the length limit was reached.
        res.ended_early = res.ok and res.output_tokens < asked and state.finish_reason != "length"


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def to_record(res: StreamResult, prompt: "Prompt", arrived: float | None, ctx: "CellContext") -> "RequestRecord":
    """The request record of one streamed request. Latencies count from `arrived`, the request's
    scheduled arrival (a client that sends late shows it as queue_ms, as in-process backends do),
    or, with None, from when it was sent; E2EL ends at the last content chunk; ITL is the gaps
    between chunks."""
    from llmbench.records import RequestRecord
    from llmbench.scenarios.base import _WALL_OFFSET

    if arrived is None:
        arrived = res.sent
    times = res.chunk_times
    last = times[-1] if times else None
    return RequestRecord(
        timestamp=arrived + _WALL_OFFSET,
        run_id=ctx.run_id, model=ctx.model, variant=ctx.variant, scenario=ctx.scenario, point=ctx.point.label,
        request_id=ctx.next_id(),
        prompt_tokens=res.prompt_tokens if res.prompt_tokens is not None else len(prompt.ids),
        output_tokens=res.output_tokens,
        ttft_ms=(res.first_token - arrived) * 1e3 if res.first_token is not None else None,
        e2el_ms=(last - arrived) * 1e3 if last is not None else None,
        itl_ms=[(b - a) * 1e3 for a, b in zip(times, times[1:])],
        queue_ms=max(0.0, (res.sent - arrived) * 1e3),
        cost=ctx.usd_per_second * res.busy_s,
        prompt_length=prompt.length_chars, template=prompt.template, template_version=prompt.template_version,
        dataset=prompt.dataset, prompt=prompt.recorded_text, prompt_sha256=prompt.sha256,
        status="ok" if res.ok else "error", error=res.error,
        usage_source=res.usage_source, ended_early=res.ended_early, error_kind=res.error_kind,
        http_status=res.http_status, server_timings=res.server_timings,
    )
