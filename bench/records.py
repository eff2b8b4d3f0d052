"""The request record: one per measured request, and the derived per-request metrics."""
from __future__ import annotations

from pydantic import BaseModel, Field, computed_field


class RequestRecord(BaseModel):
    """One line of requests.jsonl. It doubles as a production interaction log entry."""

    timestamp: float = Field(description="wall-clock time the request was sent (unix seconds)")
    run_id: str
    model: str
    variant: str
    scenario: str
    point: str = Field(description="scenario point, e.g. 'batch=4' or 'clients=2'")
    request_id: int
    prompt_tokens: int
    output_tokens: int
    ttft_ms: float | None = None
    e2el_ms: float | None = None
    itl_ms: list[float] = Field(default_factory=list)
    queue_ms: float = 0.0
    batch_size: int = 1
    batch_id: int | None = Field(None, description="request_id of the first row of the batch this request ran in "
                                 "(the independent unit of a confidence interval)")
    cost: float = Field(0.0, description="USD attributed to this request (its share of the busy machine)")
    prompt_length: int = Field(0, description="prompt length in characters")
    template: str | None = None
    template_version: str | None = None
    dataset: str | None = None
    prompt: str | None = Field(None, description="the prompt text, kept only with workload.record_prompts: true")
    prompt_sha256: str | None = Field(None, description="sha256 of the prompt text (repeats show without the text)")
    status: str = "ok"
    error: str | None = None
    usage_source: str | None = Field(None, description="where the token counts come from: 'server' (the stream's "
                                     "usage), 'tokenizer' (counted by the client), 'engine' (in-process), 'none' (error)")
    ended_early: bool = Field(False, description="the server stopped before the forced output length")
    error_kind: str | None = Field(None, description="http_status, timeout, connection, stream_cut, malformed_sse, "
                                   "server_died, start_failed or exception")
    http_status: int | None = None
    server_timings: dict | None = Field(None, description="the server's own per-request timings (llama.cpp)")
    cache_hit: bool | None = Field(None, description="served from the gateway's cache (None: not known, or no cache)")
    guard_ms: float | None = Field(None, description="time the run's guardrails took on this request (ms); already "
                                   "included in ttft_ms (pre-model guards) and e2el_ms (all guards)")
    guard_flagged: bool | None = Field(None, description="a guardrail flagged this request (it is still measured)")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tpot_ms(self) -> float | None:
        """(E2EL - TTFT) / (output_tokens - 1); undefined for a single output token."""
        if self.status != "ok" or self.output_tokens < 2 or self.ttft_ms is None or self.e2el_ms is None:
            return None
        return (self.e2el_ms - self.ttft_ms) / (self.output_tokens - 1)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def cell(self) -> tuple[str, str, str, str]:
        return (self.model, self.variant, self.scenario, self.point)
