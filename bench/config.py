"""The run config: YAML, validated with pydantic; every key has a default, unknown keys are errors."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, field_validator, model_validator

from llmbench.served.endpoint import EndpointSpec
from llmbench.optimizers.guard.spec import GuardSpec
from llmbench.config_base import (  # noqa: F401  (the limits are part of this module's interface)
    MAX_BATCH, MAX_CLIENTS, MAX_DURATION_S, MAX_RATE, MAX_REPEATS, MAX_REQUESTS, MAX_TOKENS, MIN_RATE, Strict)
from llmbench.config_stages import CacheConfig, CompressionConfig, PlanConfig, QualityConfig  # noqa: F401

_CARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---- candidates --------------------------------------------------------------------------------
class Candidate(Strict):
    """One model to profile, in one or more variants."""

    model: str | None = Field(None, description="local folder, hub id, or 'card:NAME'")
    card: str | None = Field(None, description="shorthand for model: 'card:NAME'")
    endpoint: EndpointSpec | None = Field(None, description="an OpenAI-compatible server, measured over HTTP")
    name: str | None = Field(None, description="display name; defaults to the model string (endpoint: its model)")
    variants: list[str] = ["torch-fp32"]
    dtype: str | None = None
    trust_remote_code: bool = False

    @model_validator(mode="before")
    @classmethod
    def _endpoint_variant(cls, data: Any) -> Any:
        # An endpoint is measured as the server runs it: its one variant is "http".
        if isinstance(data, dict) and data.get("endpoint") is not None and "variants" not in data:
            data = {**data, "variants": ["http"]}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> "Candidate":
        if self.endpoint is not None:
            if self.model is not None or self.card is not None:
                raise ValueError("give exactly one of 'model', 'card' or 'endpoint'")
            if self.variants != ["http"]:
                raise ValueError(f"an endpoint candidate's only variant is 'http', got {self.variants}")
            return self
        if "http" in self.variants:
            raise ValueError("variant 'http' needs an 'endpoint:' candidate (url, model)")
        # run.json stores both `model: card:X` and `card: X` for a card; reading it back must work.
        both_agree = self.card is not None and self.model == f"card:{self.card}"
        if (self.model is None) == (self.card is None) and not both_agree:
            raise ValueError("give exactly one of 'model', 'card' or 'endpoint'")
        if self.card is not None:
            if not _CARD_NAME.match(self.card) or ".." in self.card:
                raise ValueError(f"card name {self.card!r} may hold only letters, digits, '.', '_' and '-'")
            self.model = f"card:{self.card}"
        elif str(self.model).startswith("card:"):
            name = str(self.model)[len("card:"):].strip()
            if not _CARD_NAME.match(name) or ".." in name:
                raise ValueError(f"card name {name!r} may hold only letters, digits, '.', '_' and '-'")
        if not self.variants:
            raise ValueError("'variants' is empty")
        return self

    @property
    def label(self) -> str:
        if self.endpoint is not None:
            return self.name or self.endpoint.model
        return self.name or str(self.model)


# ---- workload ----------------------------------------------------------------------------------
class LengthDist(Strict):
    """Token lengths: fixed, uniform [low, high], normal(mean, std) or lognormal(mean, sigma)."""

    dist: Literal["fixed", "uniform", "normal", "lognormal"] = "fixed"
    value: int | None = Field(None, ge=1, le=MAX_TOKENS)
    mean: float | None = Field(None, description="normal: mean; lognormal: the median, > 0")
    std: float | None = Field(None, ge=0)
    sigma: float | None = Field(None, ge=0, le=10)
    low: int | None = Field(None, ge=1, le=MAX_TOKENS)
    high: int | None = Field(None, ge=1, le=MAX_TOKENS)
    min: int = Field(1, ge=1, le=MAX_TOKENS)
    max: int | None = Field(None, ge=1, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _complete(self) -> "LengthDist":
        need = {"fixed": ["value"], "uniform": ["low", "high"], "normal": ["mean", "std"], "lognormal": ["mean", "sigma"]}
        missing = [k for k in need[self.dist] if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.dist} length needs {', '.join(missing)}")
        if self.dist == "uniform" and self.low > self.high:  # type: ignore[operator]
            raise ValueError("uniform length: low > high")
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        if self.dist == "lognormal" and self.mean is not None and self.mean <= 0:
            raise ValueError(f"a lognormal length needs mean > 0 (its median in tokens), got {self.mean:g}")
        if self.dist == "normal" and self.mean is not None and not -MAX_TOKENS <= self.mean <= MAX_TOKENS:
            raise ValueError(f"a normal length's mean must be within {MAX_TOKENS:,} tokens")
        if self.dist == "lognormal" and self.mean is not None and self.mean > MAX_TOKENS:
            raise ValueError(f"a lognormal length's mean must be at most {MAX_TOKENS:,} tokens")
        return self


def _fixed(value: Any) -> Any:
    # A bare number means a fixed length; one type keeps validation errors about the real problem.
    return {"dist": "fixed", "value": value} if isinstance(value, int) and not isinstance(value, bool) else value


Length = Annotated[LengthDist, BeforeValidator(_fixed)]


class DatasetSpec(Strict):
    """A versioned JSONL of prompts: datasets are versioned like code (name, semver, sha256)."""

    path: Path
    name: str | None = None
    version: str = "0.0.0"
    sha256: str | None = Field(None, description="if given, the file must match it")
    field: str = "prompt"


class TemplateSpec(Strict):
    """Versioned prompt templates filled from a JSONL of variables, e.g. support_v2."""

    file: Path
    variables: Path
    use: list[str] = Field(default_factory=list, description="template names; empty = all")


class Workload(Strict):
    """What is sent: synthetic lengths, a dataset, or templates; `requests` per scenario point."""

    prompt_tokens: Length = LengthDist(dist="lognormal", mean=96, sigma=0.5, min=8, max=512)
    output_tokens: Length = LengthDist(value=32)
    requests: int = Field(8, ge=1, le=MAX_REQUESTS)
    dataset: DatasetSpec | None = None
    templates: TemplateSpec | None = None
    log: Path | None = Field(None, description="an interaction log (the gateway's, or a run's requests.jsonl; a rotated "
                             "set by its newest file): its prompts (the text, or random tokens of the logged length where "
                             "only a hash was kept), output lengths and arrival times (scenario 'replay'); `requests` "
                             "caps how many, oldest first (default: all)")
    record_prompts: bool = Field(False, description="keep each prompt's text in requests.jsonl ('prompt'); "
                                                    "otherwise only its sha256 ('prompt_sha256')")

    @model_validator(mode="before")
    @classmethod
    def _log_takes_all(cls, data: Any) -> Any:
        # A log's requests are all sent unless `requests` caps them (resolved here, so run.json keeps the cap).
        if isinstance(data, dict) and data.get("log") is not None and "requests" not in data:
            data = {**data, "requests": MAX_REQUESTS}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> "Workload":
        if sum(x is not None for x in (self.dataset, self.templates, self.log)) > 1:
            raise ValueError("give one of 'dataset', 'templates' or 'log', not more")
        return self


# ---- scenarios ---------------------------------------------------------------------------------
class SingleStream(Strict):
    """One request at a time (MLPerf SingleStream)."""

    kind: Literal["single-stream"] = "single-stream"


class Batch(Strict):
    """Static batches: offline throughput and the latency it costs."""

    kind: Literal["batch"] = "batch"
    batch_sizes: list[Annotated[int, Field(ge=1, le=MAX_BATCH)]] = Field([1, 2, 4, 8], min_length=1)


class Concurrency(Strict):
    """N closed-loop clients, or a fixed arrival rate, against one instance through a queue."""

    kind: Literal["concurrency"] = "concurrency"
    clients: list[Annotated[int, Field(ge=1, le=MAX_CLIENTS)]] = Field(default_factory=list)
    rates: list[Annotated[float, Field(ge=MIN_RATE, le=MAX_RATE)]] = Field(default_factory=list, description="requests/s, open loop")
    arrivals: Literal["poisson", "constant"] = Field("poisson", description="gaps between a rate point's arrivals")
    max_batch: int = Field(8, ge=1, le=MAX_BATCH, description="in-process: the largest static batch; "
                           "served: a rate point's --parallel")

    @model_validator(mode="after")
    def _some_load(self) -> "Concurrency":
        if not self.clients and not self.rates:
            self.clients = [1, 2, 4]
        return self


class Sweep(Strict):
    """As GuideLLM's sweep: synchronous (1 client), maximum (max_clients), then `rates` open-loop
    rates spaced evenly between the two throughputs just measured."""

    kind: Literal["sweep"] = "sweep"
    rates: int = Field(4, ge=1, le=64, description="open-loop rates between the sync and max throughputs")
    max_clients: int = Field(16, ge=1, le=MAX_CLIENTS, description="closed-loop clients of sweep=max")
    arrivals: Literal["poisson", "constant"] = Field("constant", description="gaps between a rate point's arrivals")


class Replay(Strict):
    """The workload's own arrivals (workload.log), open loop: each request at its logged time / speedup."""

    kind: Literal["replay"] = "replay"
    speedups: list[Annotated[float, Field(gt=0, le=1000)]] = Field([1.0], min_length=1,
                                                                   description="2 = the log's arrivals twice as fast")
    max_batch: int = Field(8, ge=1, le=MAX_BATCH, description="in-process: the largest static batch; served: --parallel")


Scenario = Annotated[Union[SingleStream, Batch, Concurrency, Sweep, Replay], Field(discriminator="kind")]


# ---- hardware ----------------------------------------------------------------------------------
class InlineHardware(Strict):
    """A machine described inline instead of by profile name."""

    name: str
    usd_per_hour: float = Field(ge=0, le=1e6)
    devices: int = Field(1, ge=1, le=MAX_BATCH)


# ---- the whole run -----------------------------------------------------------------------------
class RunConfig(Strict):
    """A run: candidates x variants x scenarios on one device, with a workload and a price."""

    candidates: list[Candidate] = Field(min_length=1)
    workload: Workload = Workload()
    scenarios: list[Scenario] = [SingleStream()]
    hardware: str | InlineHardware = "cpu-2core"
    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    warmup: int = Field(2, ge=0, le=MAX_REPEATS, description="warm-up batches per scenario point, each as large as "
                        "the largest batch the point can run (a rate point: max_batch), not recorded")
    iterations: int = Field(1, ge=1, le=MAX_REPEATS, description="passes over the workload per scenario point")
    min_duration_s: float = Field(0.0, ge=0, le=MAX_DURATION_S, description="keep measuring a point at least this long")
    precision_pct: float | None = Field(2.0, gt=0, le=100, description="after iterations and min_duration_s, keep "
                                        "measuring a point until the 95% CI of its p50 TPOT is within +-this % of the median "
                                        "(null: stop after iterations; the default when `workload.requests` is given, so that a "
                                        "count asked for is the count sent)")
    cell_time_cap_s: float = Field(2.0, ge=0, le=MAX_DURATION_S, description="stop measuring a point for precision_pct "
                                   "after this long; the cell is then flagged noisy")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="numpy seeds are 0 .. 2**32-1")
    slo: str | None = Field(None, description="e.g. 'ttft_p95=500ms,tpot_p99=80ms'")
    quality: QualityConfig | None = None
    compression: CompressionConfig | None = None
    cache: CacheConfig | None = None
    plan: PlanConfig | None = None
    guardrails: list[GuardSpec] = Field(default_factory=list, description="checks before (or after) each measured "
                                        "request, e.g. [{kind: embedding}]: their time is added to TTFT/E2EL and cost")

    @model_validator(mode="before")
    @classmethod
    def _gate_off(cls, data: Any) -> Any:
        # `quality: null` says "no gate"; a missing `quality` keeps the default gate.
        if isinstance(data, dict) and "quality" in data and data["quality"] is None:
            data = {**data, "quality": {"enabled": False}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _asked_count_is_sent(cls, data: Any) -> Any:
        # A user who writes `requests: 6` expects 6 requests per point (and two runs of the config to
        # send the same number); measuring on for precision is then asked for by name.
        workload = data.get("workload") if isinstance(data, dict) else None
        if isinstance(workload, dict) and "requests" in workload and "precision_pct" not in data:
            data = {**data, "precision_pct": None}
        return data

    @field_validator("scenarios", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `scenarios: [single-stream, batch]` is the common case: a bare kind means its defaults.
        if isinstance(value, list):
            return [{"kind": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _replay_needs_log(self) -> "RunConfig":
        if any(s.kind == "replay" for s in self.scenarios) and self.workload.log is None:
            raise ValueError("scenario 'replay' sends the arrivals of a log: give workload.log")
        return self

    @model_validator(mode="after")
    def _distinct_names(self) -> "RunConfig":
        # Results are keyed by the display name: two candidates with one name would be merged
        # into one summary row, and on resume one would count as done.
        seen: dict[str, int] = {}
        for i, cand in enumerate(self.candidates):
            if cand.label in seen:
                raise ValueError(f"candidates {seen[cand.label]} and {i} are both named {cand.label!r}; "
                                 "give each a distinct 'name:'")
            seen[cand.label] = i
        return self


# Reading a config file lives in config_load (kept apart to keep this file to the schema).
from llmbench.config_load import load_config, parse_config  # noqa: E402,F401
