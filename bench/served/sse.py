"""Server-sent events of an OpenAI-compatible stream, read incrementally and strictly.

Every server this project knows (vLLM, llama.cpp, TGI, SGLang, LiteLLM, OpenAI) sends one JSON
object per event as `data: {...}` followed by a blank line, and ends with `data: [DONE]`. A line
that is none of the fields the SSE format defines, or a data payload that is not a JSON object,
is a malformed stream: the request is recorded as failed with that kind, never half-counted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

DONE = b"[DONE]"
_FIELDS = (b"event", b"id", b"retry")  # defined by the SSE format; OpenAI streams do not use them


class MalformedStream(ValueError):
    """The bytes are not a well-formed SSE stream of JSON objects."""


class SSEParser:
    """Splits a byte stream into event payloads (the joined `data:` lines of each event)."""

    __slots__ = ("_tail", "_data")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The payloads of the events completed by `chunk` (an event ends at a blank line)."""
        lines = (self._tail + chunk).split(b"\n") if self._tail else chunk.split(b"\n")
        self._tail = lines.pop()  # the part after the last newline: an incomplete line
        out: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    out.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b":"):
                continue  # a comment (keep-alive pings)
            elif line.split(b":", 1)[0] not in _FIELDS:
                raise MalformedStream(f"not an SSE line: {line[:80]!r}")
        return out

    def close(self) -> list[bytes]:
        """At the end of the body: an event still open counts only if its data line was complete."""
        if self._tail.strip():
            raise MalformedStream(f"the stream ended inside a line: {self._tail[:80]!r}")
        out = [b"\n".join(self._data)] if self._data else []
        self._data = []
        return out


def decode_event(payload: bytes) -> dict:
    """One event's JSON object; MalformedStream for anything else."""
    try:
        obj = json.loads(payload)
    except ValueError:
        raise MalformedStream(f"event data is not JSON: {payload[:80]!r}") from None
    if not isinstance(obj, dict):
        raise MalformedStream(f"event data is not a JSON object: {payload[:80]!r}")
    return obj


@dataclass
class StreamState:
    """What the events of one response said so far."""

    chat: bool
    texts: list[str] = field(default_factory=list)
    done: bool = False
    finish_reason: str | None = None
    usage: dict | None = None
    timings: dict | None = None
    server_error: dict | None = None

    def apply(self, obj: dict) -> bool:
        """Take in one event; True when it carried generated text (a chunk with a token in it).

        A role-only delta, an empty text, a usage-only chunk (`choices: []`) and llama.cpp's
        prompt-progress chunks carry no token. Reasoning text (`reasoning_content`) is generated
        text, so it counts.
        """
        if "error" in obj:
            self.server_error = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
            return False
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        timings = obj.get("timings")
        if isinstance(timings, dict):
            self.timings = timings
        choices = obj.get("choices")
        if not choices or not isinstance(choices, list):
            return False
        choice = choices[0]
        if not isinstance(choice, dict):
            raise MalformedStream("a choice is not a JSON object")
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        if self.chat:
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise MalformedStream("a chunk's delta is not a JSON object")
            parts = (delta.get("content"), delta.get("reasoning_content"))
        else:
            parts = (choice.get("text"),)
        if any(p is not None and not isinstance(p, str) for p in parts):
            raise MalformedStream("a chunk's text is not a string")
        text = "".join(p for p in parts if p)
        if text:
            self.texts.append(text)
            return True
        return False

    @property
    def complete(self) -> bool:
        """The server said it was finished: `[DONE]`, or a finish_reason before the connection closed."""
        return self.done or self.finish_reason is not None
