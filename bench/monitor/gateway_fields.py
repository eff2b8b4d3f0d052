"""From what LiteLLM hands a callback to the fields of a request record (records.RequestRecord).

Split in two so that the request path does as little as possible: `success_fields`/`failure_fields`
only pick plain values out of LiteLLM's kwargs (the hook runs on the proxy's event loop), and
`record_line` (on the writer thread) hashes the prompt, validates the record and writes its JSON.

Times are unix seconds; latencies count from when the proxy received the request
(`litellm_received_at`, stamped before authentication), as llmbench's own client counts from a
request's arrival: TTFT to the first streamed chunk, E2EL to the end, and `queue_ms` the proxy's own
time before it called the model (authentication, routing, pre-call hooks). A non-streamed answer
has no first token to time: its TTFT is left empty. No LiteLLM import here (the exporter's tests and
the log reader need none).
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from llmbench.monitor.gateway_names import RUN_ID, SCENARIO, UNKNOWN_VARIANT
from llmbench.records import RequestRecord

# The calls that are model requests (an embedding or a moderation is not an interaction to replay).
GENERATION_CALLS = frozenset({"completion", "acompletion", "text_completion", "atext_completion", "responses", "aresponses"})
ERROR_CHARS = 500


def _unix(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()  # LiteLLM stamps received_at timezone-aware (UTC)
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    return None


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones
        parts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


def prompt_text(source: dict) -> str | None:
    """The request's text: a completion's prompt, or the chat's message contents joined by newlines
    (as the semantic cache and its simulation read a chat); None for token ids and the like."""
    prompt = source.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompt = "\n".join(prompt)
    if isinstance(prompt, str):
        return prompt
    msgs = source.get("messages")
    if isinstance(msgs, list) and msgs and all(isinstance(m, dict) for m in msgs):
        texts = [_text(m.get("content")) for m in msgs]
        if all(t is not None for t in texts):
            return "\n".join(t for t in texts if t is not None)
    return None


def _request_text(kwargs: dict) -> str | None:
    # The body the client sent comes first: LiteLLM turns a text prompt into a chat message, and puts
    # a placeholder message on requests it refused before routing.
    body = (((kwargs.get("litellm_params") or {}).get("proxy_server_request") or {}).get("body")
            or (kwargs.get("proxy_server_request") or {}).get("body"))
    if isinstance(body, dict) and prompt_text(body) is not None:
        return prompt_text(body)
    return prompt_text(kwargs)


def _metadata(kwargs: dict) -> dict:
    lp = kwargs.get("litellm_params") or {}
    for holder in (lp.get("metadata"), lp.get("litellm_metadata"), kwargs.get("metadata"), kwargs.get("litellm_metadata")):
        if isinstance(holder, dict) and holder:
            return holder
    return {}


def _model_info(kwargs: dict) -> dict:
    lp = kwargs.get("litellm_params") or {}
    info = lp.get("model_info") or _metadata(kwargs).get("model_info")
    return info if isinstance(info, dict) else {}


def received_at(kwargs: dict) -> float | None:
    """When the proxy received the request (unix s), if LiteLLM stamped it."""
    return _unix(_metadata(kwargs).get("litellm_received_at"))


def _base(kwargs: dict, slo: dict) -> dict:
    """What every line has: when, which deployment (llmbench's names from model_info, else LiteLLM's), the text."""
    meta, info = _metadata(kwargs), _model_info(kwargs)
    start = _unix(slo.get("startTime")) or _unix(kwargs.get("start_time"))
    received = received_at(kwargs) or start
    group = slo.get("model_group") or meta.get("model_group") or kwargs.get("model") or slo.get("model") or ""
    return {
        "received": received, "start": start,
        "model": str(info.get("llmbench_model") or slo.get("model") or kwargs.get("model") or group),
        "variant": str(info.get("llmbench_variant") or UNKNOWN_VARIANT),
        "point": str(group),
        "text": _request_text(kwargs),
        "call_id": slo.get("litellm_call_id") or kwargs.get("litellm_call_id"),
    }


def _cost(kwargs: dict, slo: dict, prompt_tokens: int, output_tokens: int) -> float:
    """LiteLLM's response_cost; when it is zero for an answer the model gave, the entry's own per-token prices."""
    cost = slo.get("response_cost") or kwargs.get("response_cost")
    if cost or slo.get("cache_hit") or not (prompt_tokens or output_tokens):
        return float(cost or 0.0)  # a cache hit is free, as LiteLLM prices it
    # LiteLLM 1.108.7 now and then leaves a deployment's prices unapplied (zero_cost_diagnostic
    # "pricing_not_applied", 1 or 2 requests in 32 under concurrency here): the entry says what it costs.
    prices = {**((kwargs.get("litellm_params") or {})), **_model_info(kwargs)}
    p_in, p_out = prices.get("input_cost_per_token"), prices.get("output_cost_per_token")
    if p_in is None and p_out is None:
        return 0.0
    return prompt_tokens * float(p_in or 0.0) + output_tokens * float(p_out or 0.0)


def success_fields(kwargs: dict) -> dict | None:
    """The plain values of a success event (None for a call that is not a model request)."""
    slo = kwargs.get("standard_logging_object") or {}
    if (slo.get("call_type") or kwargs.get("call_type")) not in GENERATION_CALLS:
        return None
    out = _base(kwargs, slo)
    streamed = bool(slo.get("stream") if slo.get("stream") is not None else kwargs.get("stream"))
    tokens = int(slo.get("prompt_tokens") or 0), int(slo.get("completion_tokens") or 0)
    out.update(status="ok", prompt_tokens=tokens[0], output_tokens=tokens[1], cost=_cost(kwargs, slo, *tokens),
               cache_hit=slo.get("cache_hit"), first=_unix(slo.get("completionStartTime")) if streamed else None,
               end=_unix(slo.get("endTime")), http_status=200)
    return out


def _error_kind(exc: BaseException | None, status: int | None) -> str:
    # LiteLLM maps a refused connection to InternalServerError (500): the cause it wraps says what happened.
    names: set[str] = set()
    for _ in range(5):
        if exc is None:
            break
        names.update(c.__name__ for c in type(exc).__mro__)
        exc = exc.__cause__ or exc.__context__
    if names & {"Timeout", "TimeoutError", "APITimeoutError"}:
        return "timeout"
    if "APIConnectionError" in names:
        return "connection"
    return "http_status" if status is not None else "exception"


def _status(exc: BaseException | None, slo: dict) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    code = str((slo.get("error_information") or {}).get("error_code") or "")
    return int(code) if code.isdigit() else None


def failure_fields(kwargs: dict, exc: BaseException | None = None) -> dict | None:
    """The plain values of a failed request (a failure event's kwargs, or the proxy's request data)."""
    slo = kwargs.get("standard_logging_object") or {}
    call = slo.get("call_type") or kwargs.get("call_type")
    if call not in GENERATION_CALLS and not ("prompt" in kwargs or "messages" in kwargs):
        return None
    exc = exc if exc is not None else kwargs.get("exception")
    status = _status(exc, slo)
    message = str(slo.get("error_str") or (exc if exc is not None else "") or "error")
    out = _base(kwargs, slo)
    out.update(status="error", prompt_tokens=0, output_tokens=0, cost=float(slo.get("response_cost") or 0.0),
               cache_hit=slo.get("cache_hit"), first=None, end=None, http_status=status,
               error=" ".join(message.split())[:ERROR_CHARS], error_kind=_error_kind(exc, status))
    return out


def _ms(t: float | None, origin: float | None) -> float | None:
    return max(0.0, (t - origin) * 1e3) if t is not None and origin is not None else None


def record_line(raw: dict, request_id: int, record_prompts: bool) -> str:
    """One JSON line: the request record of `raw` (the prompt kept only with `record_prompts`)."""
    text = raw.get("text")
    origin = raw.get("received")
    rec = RequestRecord(
        timestamp=origin or 0.0, run_id=RUN_ID, scenario=SCENARIO, point=raw["point"], model=raw["model"],
        variant=raw["variant"], request_id=request_id, prompt_tokens=raw["prompt_tokens"],
        output_tokens=raw["output_tokens"], ttft_ms=_ms(raw.get("first"), origin), e2el_ms=_ms(raw.get("end"), origin),
        queue_ms=_ms(raw.get("start"), origin) or 0.0, cost=raw["cost"],
        prompt_length=len(text) if text is not None else 0,
        prompt=text if record_prompts else None,
        prompt_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else None,
        status=raw["status"], error=raw.get("error"), error_kind=raw.get("error_kind"), http_status=raw.get("http_status"),
        usage_source="server" if raw["status"] == "ok" else "none", cache_hit=raw.get("cache_hit"),
    )
    return rec.model_dump_json()
