"""A scripted OpenAI-compatible streaming server on loopback that logs the load it receives.

For the load-shape tests: when each request arrived (time.perf_counter, the clock the driver
uses) and how many were in flight then. Tokens stream `gap_s` apart, with usage at the end.
Runs in its own thread and event loop, so the driver under test has its loop to itself.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from llmbench.backends.http_backend import HttpBackend
from llmbench.served.endpoint import EndpointSpec


@dataclass
class Arrival:
    at: float          # perf_counter when the server read the request
    in_flight: int     # requests in flight at the server, this one included
    started: int       # requests started so far, this one included
    finished: int      # requests finished before this one arrived


@dataclass
class LoadServer:
    gap_s: float = 0.004
    arrivals: list[Arrival] = field(default_factory=list)
    finishes: list[float] = field(default_factory=list)  # perf_counter when each response was complete
    in_flight: int = 0
    finished: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def spec(self) -> EndpointSpec:
        return EndpointSpec(url=self.url, model="scripted", timeout_s=30)

    def start(self) -> "LoadServer":
        self._thread.start()
        assert self._ready.wait(10), "the scripted server did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> "LoadServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._complete)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "scripted"}]})

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        done: list[bool] = []
        self.in_flight += 1
        self.arrivals.append(Arrival(time.perf_counter(), self.in_flight, len(self.arrivals) + 1, self.finished))
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            n = int(body["max_tokens"])
            for i in range(n):
                await asyncio.sleep(self.gap_s)
                last = i == n - 1
                chunk = {"choices": [{"index": 0, "text": " tok", "finish_reason": "length" if last else None}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            usage = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5}}
            # Counted finished before the last bytes go out: the client cannot send its next
            # request before it has them, so a closed loop never shows N+1 here.
            self._finish(done)
            await resp.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
            await resp.write_eof()
            return resp
        except ConnectionResetError:  # the client went away (a cancelled cell): nothing to answer
            return resp
        finally:
            self._finish(done)

    def _finish(self, done: list[bool]) -> None:
        # Called twice for a complete response (the second call is a no-op): once by a stream that
        # ends, and always by the finally of one cut short (the client went away).
        if done:
            return
        done.append(True)
        self.in_flight -= 1
        self.finished += 1
        self.finishes.append(time.perf_counter())


class ServedStub(HttpBackend):
    """The real HTTP backend pointed at a LoadServer, with no tokenizer (prompts carry text);
    `fail_after`: send() raises on its n-th call, as a backend broken mid-cell would."""

    def __init__(self, server: LoadServer, fail_after: int | None = None):
        super().__init__(None, "http", "cpu", "float32")
        self.endpoint = server.spec()
        self.fail_after = fail_after
        self.calls = 0
        self.cells: list[tuple[str, str]] = []

    async def send(self, client, prompt):
        self.calls += 1
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError(f"backend broke on request {self.calls}")
        return await super().send(client, prompt)

    def begin_cell(self, point, prompts, run_dir) -> None:
        self.cells.append(("begin", point.label))

    def end_cell(self) -> None:
        self.cells.append(("end", ""))
