"""A scripted OpenAI-compatible streaming server: tokens on a known schedule, and broken streams on demand.

For client precision and error shapes only (real servers are tested against llama-server). It runs
in its own PROCESS (`ScriptedServer`, a context manager), so its work never shares the client's
GIL, on 127.0.0.1 only; it exits when stopped, when its parent dies (PR_SET_PDEATHSIG) and when
its stdin closes.

Each request's script comes from the server's default, overridden by its `model` field:
`"mode=cut,t0=30,d=5"`. Modes: ok, http500, cut (connection closed mid-stream), malformed (a data
line that is not JSON), nousage (no usage chunk), early (stops at half the length, finish_reason
stop), slow (the first token never comes in time), error_event (an `error` object mid-stream),
echo (HTTP 400 whose message repeats the Authorization header), close (the connection is closed
50 ms after each streamed response, as llama-server does); `fail_every=k`: every k-th
completion request answers HTTP 500; `key` (server default only): 401 without that bearer key.
The first content chunk goes out t0 ms after the request arrived, then one every d ms, `per`
tokens each; `align=1` puts every stream's chunks on one global grid of d ms (lockstep, as a
continuously batching server emits them). Each token is the text " the". Usage says
prompt_tokens = the prompt's length in characters (so a test can tell it from the client's count).
GET /log returns what arrived and when each chunk was sent (perf_counter, which is CLOCK_MONOTONIC
and so comparable across processes).
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields, replace

TOKEN = " the"


@dataclass(frozen=True)
class Script:
    mode: str = "ok"
    t0: float = 20.0  # ms from arrival to the first content chunk
    d: float = 5.0  # ms between content chunks
    per: int = 1  # tokens per chunk
    align: int = 0
    timings: int = 0  # send llama.cpp-style `timings` in the last chunk
    fail_every: int = 0  # every k-th completion request (counted by the server) answers HTTP 500
    key: str = ""  # when set, every route wants `Authorization: Bearer KEY` (401 otherwise)

    def override(self, model: str) -> "Script":
        """This script with the `key=value` pairs of a request's model string applied."""
        kinds = {f.name: f.type for f in fields(self)}
        changes = {}
        for part in model.split(","):
            key, sep, value = part.partition("=")
            if sep and key.strip() in kinds:
                k = key.strip()
                changes[k] = value.strip() if k in ("mode", "key") else (float(value) if k in ("t0", "d") else int(value))
        return replace(self, **changes)


def headers_close(entry: dict) -> bool:
    return (entry.get("connection") or "").lower() == "close"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(obj) -> bytes:
    return _chunk(b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n")


class _Server:
    def __init__(self, default: Script):
        self.default = default
        self.log: list[dict] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                recv = time.perf_counter()
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if not await self.route(method, path, headers, body, recv, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def route(self, method, path, headers, body, recv, writer) -> bool:
        if self.default.key and headers.get("authorization") != f"Bearer {self.default.key}" and path != "/log":
            return self.reply(writer, 401, {"error": {"message": "invalid key", "code": 401}})
        if method == "GET":
            if path == "/log":
                return self.reply(writer, 200, {"requests": self.log})
            if path.endswith("/models"):
                return self.reply(writer, 200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
            if path == "/health":
                return self.reply(writer, 200, {"status": "ok"})
            return self.reply(writer, 404, {"error": {"message": "not found", "code": 404}})
        req = json.loads(body)
        script = self.default.override(str(req.get("model", "")))
        chat = path.endswith("/chat/completions")
        prompt = req["messages"][-1]["content"] if chat else req["prompt"]
        entry = {"recv": recv, "sends": [], "body": req, "authorization": headers.get("authorization"),
                 "connection": headers.get("connection"),
                 "path": path, "script": asdict(script)}
        self.log.append(entry)
        failing = script.fail_every and sum(1 for e in self.log if e["path"] == path) % script.fail_every == 0
        if script.mode == "http500" or failing:
            return self.reply(writer, 500, {"error": {"message": "scripted failure", "code": 500}})
        if script.mode == "echo":  # a badly behaved server that echoes the credentials it got
            return self.reply(writer, 400, {"error": {"message": f"bad request from {headers.get('authorization')}"}})
        return await self.stream(writer, script, chat, prompt, int(req.get("max_tokens", 16)), recv, entry)

    def reply(self, writer, status: int, obj) -> bool:
        data = json.dumps(obj).encode()
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (status, len(data), data))
        return True

    async def stream(self, writer, s: Script, chat: bool, prompt: str, n: int, recv: float, entry: dict) -> bool:
        close = b"Connection: close\r\n" if headers_close(entry) else b""  # a client's request, answered
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n%s\r\n" % close)
        base = {"id": "cmpl-1", "object": "chat.completion.chunk" if chat else "text_completion", "model": "scripted"}

        def choice(text: str, finish=None) -> dict:
            c = {"index": 0, "finish_reason": finish}
            c.update({"delta": {"content": text}} if chat else {"text": text})
            return {**base, "choices": [c]}

        if chat:  # a role-only chunk at once, as servers send: it carries no token
            writer.write(_event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                      "finish_reason": None}]}))
        writer.write(b"%x\r\n: ping\n\n\r\n" % len(b": ping\n\n"))  # an SSE comment
        await writer.drain()
        emit = n // 2 if s.mode in ("early", "cut", "malformed", "error_event") else n
        first = recv + s.t0 / 1e3 + (3600.0 if s.mode == "slow" else 0.0)
        if s.align:  # lockstep: the next tick of a global d-ms grid
            first = math.ceil(first / (s.d / 1e3)) * (s.d / 1e3)
        chunks = math.ceil(emit / s.per)
        for i in range(chunks):
            wait = first + i * s.d / 1e3 - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            k = min(s.per, emit - i * s.per)
            entry["sends"].append(time.perf_counter())
            writer.write(_event(choice(TOKEN * k)))
            await writer.drain()
        if s.mode == "cut":
            writer.transport.abort()  # no terminating chunk: the body is incomplete
            return False
        if s.mode == "malformed":
            writer.write(_event(b"{not json"))
        elif s.mode == "error_event":
            writer.write(_event({"error": {"message": "scripted error", "code": 503}}))
        else:
            writer.write(_event(choice("", "stop" if s.mode == "early" else "length")))
            if s.mode != "nousage":
                last = {**base, "choices": [], "usage": {"prompt_tokens": len(prompt), "completion_tokens": emit,
                                                         "total_tokens": len(prompt) + emit}}
                if s.timings:
                    last["timings"] = {"prompt_ms": s.t0, "predicted_ms": s.d * max(0, chunks - 1),
                                       "predicted_n": emit, "prompt_n": len(prompt)}
                writer.write(_event(last))
        writer.write(_event(b"[DONE]") + b"0\r\n\r\n")
        await writer.drain()
        if s.mode == "close" or headers_close(entry):
            # As llama-server does: the connection ends after a streamed response, a little later,
            # without reading the next request a client may already have sent on it.
            await asyncio.sleep(0.05 if s.mode == "close" else 0)
            return False
        return True


async def _serve(default: Script, port: int) -> None:
    server = _Server(default)
    srv = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=1024)
    print(f"PORT {srv.sockets[0].getsockname()[1]}", flush=True)
    async with srv:
        await srv.serve_forever()


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: the kernel kills this child if the process that started it dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:  # not Linux: stdin's EOF still ends the server
        pass


class ScriptedServer:
    """The scripted server in a child process; `url` is its /v1 base. Use as a context manager."""

    def __init__(self, default: Script = Script(), port: int = 0):
        self.default, self.port = default, port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "ScriptedServer":
        args = [sys.executable, os.path.abspath(__file__), json.dumps(asdict(self.default)), str(self.port)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the scripted server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def log(self) -> list[dict]:
        """What the server received and when it sent each content chunk."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/log", timeout=10) as resp:
            return json.loads(resp.read())["requests"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    # Exit when the parent closes our stdin (it died or stopped us), whatever the event loop does.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    try:  # the server's own loop lag would count against the client in bench_client: keep it small
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(Script(**json.loads(sys.argv[1])), int(sys.argv[2])))
