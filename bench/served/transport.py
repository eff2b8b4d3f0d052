"""The HTTP library under the streaming client: one connection pool, bodies read as they arrive.

aiohttp is what the client uses (`DEFAULT`): at 64 streams it spent less CPU per streamed chunk
than httpx on this machine (tests/benchmarks/bench_client.py --transport; BENCHMARKS.md). The httpx
transport stays for that comparison only.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Mapping, Protocol

DEFAULT = "aiohttp"


class Response(Protocol):
    status: int
    headers: Mapping[str, str]

    async def body(self, limit: int) -> bytes: ...
    def chunks(self) -> AsyncIterator[bytes]: ...


class Transport(Protocol):
    """What the client needs from an HTTP library."""

    timeout_errors: tuple[type[BaseException], ...]
    errors: tuple[type[BaseException], ...]

    def is_stale(self, exc: BaseException) -> bool:
        """Whether a failure before any response byte looks like a pooled connection the server had
        already closed (llama-server closes every connection after a streamed response)."""
        ...

    def post(self, url: str, body: bytes, headers: dict[str, str], sent: list[float]):
        """An async context manager -> Response. Appends to `sent` the time the request's body was
        handed to the socket, where the library can tell it."""
        ...
    async def aclose(self) -> None: ...


class _AiohttpResponse:
    def __init__(self, resp) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers

    async def body(self, limit: int) -> bytes:
        return await self._resp.content.read(limit)

    def chunks(self) -> AsyncIterator[bytes]:
        # iter_any: whatever bytes have arrived, as soon as they arrive (no line buffering).
        return self._resp.content.iter_any()


class AiohttpTransport:
    """aiohttp.ClientSession over one TCPConnector sized to the cell's concurrency."""

    def __init__(self, connections: int, **session_options) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._connections = connections
        self._options = session_options
        self._session = None
        self.timeout_errors = (asyncio.TimeoutError, TimeoutError)
        self.errors = (aiohttp.ClientError, OSError)

    def is_stale(self, exc: BaseException) -> bool:
        aiohttp = self._aiohttp
        if isinstance(exc, aiohttp.ClientConnectorError):  # a new connection that failed: the server is gone
            return False
        return isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionResetError))

    def _open(self):
        if self._session is None:  # a session must be made inside the running event loop
            aiohttp = self._aiohttp
            connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections,
                                             ttl_dns_cache=300)
            # When the request is really sent: before Python 3.12 aiohttp writes the body from a
            # task of its own, one event-loop pass after the call, and with 64 streams in flight
            # that pass took up to 4 ms here (BENCHMARKS.md). The trace fires as the body is written.
            wrote = aiohttp.TraceConfig()
            wrote.on_request_chunk_sent.append(_note_write)
            options = dict(self._options)
            traces = [wrote, *options.pop("trace_configs", [])]
            # No library timeout: the client applies one deadline per request itself.
            self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                                  auto_decompress=False, trace_configs=traces, **options)
        return self._session

    @asynccontextmanager
    async def post(self, url: str, body: bytes, headers: dict[str, str], sent: list[float]):
        async with self._open().post(url, data=body, headers=headers, trace_request_ctx=sent) as resp:
            yield _AiohttpResponse(resp)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _note_write(session, ctx, params) -> None:
    ctx.trace_request_ctx.append(time.perf_counter())


class _HttpxResponse:
    def __init__(self, resp) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.headers = resp.headers

    async def body(self, limit: int) -> bytes:
        out = b""
        async for part in self._resp.aiter_raw():
            out += part
            if len(out) >= limit:
                break
        return out[:limit]

    def chunks(self) -> AsyncIterator[bytes]:
        return self._resp.aiter_raw()


class HttpxTransport:
    """httpx.AsyncClient with a pool of `connections` (kept for the transport comparison)."""

    def __init__(self, connections: int, **_options) -> None:
        import httpx

        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=httpx.Timeout(None), trust_env=False)
        self.timeout_errors = (asyncio.TimeoutError, TimeoutError, httpx.TimeoutException)
        self.errors = (httpx.HTTPError, httpx.StreamError, OSError)
        self._stale = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)

    def is_stale(self, exc: BaseException) -> bool:
        return isinstance(exc, self._stale)

    @asynccontextmanager
    async def post(self, url: str, body: bytes, headers: dict[str, str], sent: list[float]):
        sent.append(time.perf_counter())  # httpx has no hook at the write: the call is the nearest
        async with self._client.stream("POST", url, content=body, headers=headers) as resp:
            yield _HttpxResponse(resp)

    async def aclose(self) -> None:
        await self._client.aclose()


def make_transport(name: str, connections: int, **options) -> Transport:
    """The transport called `name` ("aiohttp" or "httpx"); `options` go to the library's session."""
    if name == "aiohttp":
        return AiohttpTransport(connections, **options)
    if name == "httpx":
        return HttpxTransport(connections, **options)
    raise ValueError(f"unknown transport {name!r} (aiohttp or httpx)")
