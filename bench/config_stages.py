"""The config blocks of the stages after measuring: quality gate, compression, cache, planning."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from llmbench.config_base import MAX_BATCH, Strict
from llmbench.served.endpoint import EndpointSpec


class JudgePrice(Strict):
    """An endpoint judge's price per 1M tokens (a local candidate's is the run's hardware price)."""

    input_usd_per_1m: float = Field(ge=0, le=1e6)
    output_usd_per_1m: float = Field(ge=0, le=1e6)


class JudgeConfig(Strict):
    """LLM-as-a-judge on the golden set's answers (bench/judge/): against references, or two variants pairwise."""

    candidate: str | None = Field(None, description="a candidate's name in this run, a model folder or card:NAME, run here")
    endpoint: EndpointSpec | None = Field(None, description="an OpenAI-compatible judge server")
    rubric: str | None = Field(None, description="a rubric file or a shipped name (profiles/rubrics/); default: the mode's v1")
    mode: Literal["reference", "pairwise"] = "reference"
    labels: Path | None = Field(None, description="a labelled subset (JSONL: answer(s) + human verdict) to check the judge on")
    max_new_tokens: int = Field(4, ge=1, le=64)
    price: str | JudgePrice | None = Field(None, description="endpoint only: a name from the API price list, or "
                                           "{input_usd_per_1m, output_usd_per_1m}; none: its cost is not known")

    @model_validator(mode="after")
    def _one_source(self) -> "JudgeConfig":
        if (self.candidate is None) == (self.endpoint is None):
            raise ValueError("quality.judge needs exactly one of 'candidate' or 'endpoint'")
        if self.candidate is not None and self.price is not None:
            raise ValueError("quality.judge.price is for an endpoint; a local candidate costs the run's hardware time")
        return self


class QualityConfig(Strict):
    """The quality gate on variants (golden set against the reference variant)."""

    golden_set: Path | None = None
    enabled: bool = Field(True, description="`quality: null` in a config turns the gate off")
    min_share: float = Field(0.99, gt=0, le=1)
    max_new_tokens: int = Field(16, ge=1, le=4096)
    max_ppl_increase: float | None = Field(None, ge=0, description="also fail when perplexity rises more (0.02 = 2%)")
    max_kl: float | None = Field(None, ge=0, description="also fail when the mean next-token KL (nats) is higher")
    judge: JudgeConfig | None = None


class CompressionConfig(Strict):
    """LLMLingua prompt compression measured on the run's workload."""

    rates: list[Annotated[float, Field(gt=0, lt=1)]] = [0.5]
    model: str | None = None
    prompts: Path | None = None


class CacheConfig(Strict):
    """Semantic-cache simulation on a prompt log or labelled pairs."""

    log: Path | None = None
    target_false_hit: float = Field(0.05, gt=0, lt=1)
    verifier: Path | None = Field(None, description="a cache profile fitted on your own labelled pairs "
                                                    "(python -m llmbench.optimizers.cache.fit --pairs ... --out ...)")
    gateway: Literal["llmbench", "qdrant"] = Field("llmbench", description="the cache the gateway config deploys: "
                                                   "llmbench's own inside the proxy (no extra server), or LiteLLM's on Qdrant")
    qdrant_url: str | None = Field(None, description="the Qdrant vector store's URL (gateway: qdrant)")
    qdrant_api_key_env: str = Field("QDRANT_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="the variable holding Qdrant's key (the config names it, never its value)")

    @model_validator(mode="after")
    def _qdrant_needs_url(self) -> "CacheConfig":
        if self.gateway == "qdrant" and not self.qdrant_url:
            raise ValueError("cache.gateway: qdrant needs cache.qdrant_url (the vector store's URL)")
        return self


class PlanConfig(Strict):
    """Capacity planning at the end of a run (`llmbench plan` takes the same settings as options)."""

    rps: float | None = Field(None, gt=0, le=1e7, description="target load; default: half the best measured throughput")
    trace: Path | None = Field(None, description="replay this trace (Azure format, or an interaction log) instead of Poisson at rps")
    slo: str | None = Field(None, description="default: the run's slo")
    goodput: float | None = Field(None, gt=0, le=1, description="also require this share of requests to meet every SLO")
    max_replicas: int = Field(1024, ge=1, le=1_000_000)
    max_batch: int | None = Field(None, ge=1, le=MAX_BATCH, description="default: each measured batch size is tried, the one needing the fewest replicas taken")
    policy: Literal["random", "least-busy", "jsq", "round-robin"] = "random"  # random = LiteLLM's simple-shuffle
    api_models: list[str] = Field([], description="API models from the price list to compare (recommend --api); none by default")
