"""The run config: YAML, validated with pydantic; every key has a default, unknown keys are errors."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmbench.errors import BadInput


class Strict(BaseModel):
    """Base of every config block: a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


# ---- candidates --------------------------------------------------------------------------------
class Candidate(Strict):
    """One model to profile, in one or more variants."""

    model: str | None = Field(None, description="local folder, hub id, or 'card:NAME'")
    card: str | None = Field(None, description="shorthand for model: 'card:NAME'")
    name: str | None = Field(None, description="display name; defaults to the model string")
    variants: list[str] = ["torch-fp32"]
    dtype: str | None = None
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> "Candidate":
        if (self.model is None) == (self.card is None):
            raise ValueError("give exactly one of 'model' or 'card'")
        if self.card is not None:
            self.model = f"card:{self.card}"
        if not self.variants:
            raise ValueError("'variants' is empty")
        return self

    @property
    def label(self) -> str:
        return self.name or str(self.model)


# ---- workload ----------------------------------------------------------------------------------
class LengthDist(Strict):
    """Token lengths: fixed, uniform [low, high], normal(mean, std) or lognormal(mean, sigma)."""

    dist: Literal["fixed", "uniform", "normal", "lognormal"] = "fixed"
    value: int | None = None
    mean: float | None = None
    std: float | None = None
    sigma: float | None = None
    low: int | None = None
    high: int | None = None
    min: int = 1
    max: int | None = None

    @model_validator(mode="after")
    def _complete(self) -> "LengthDist":
        need = {"fixed": ["value"], "uniform": ["low", "high"], "normal": ["mean", "std"], "lognormal": ["mean", "sigma"]}
        missing = [k for k in need[self.dist] if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.dist} length needs {', '.join(missing)}")
        if self.dist == "uniform" and self.low > self.high:  # type: ignore[operator]
            raise ValueError("uniform length: low > high")
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
    requests: int = Field(8, ge=1)
    dataset: DatasetSpec | None = None
    templates: TemplateSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "Workload":
        if self.dataset is not None and self.templates is not None:
            raise ValueError("give either 'dataset' or 'templates', not both")
        return self


# ---- scenarios ---------------------------------------------------------------------------------
class SingleStream(Strict):
    """One request at a time (MLPerf SingleStream)."""

    kind: Literal["single-stream"] = "single-stream"


class Batch(Strict):
    """Static batches: offline throughput and the latency it costs."""

    kind: Literal["batch"] = "batch"
    batch_sizes: list[Annotated[int, Field(ge=1)]] = [1, 2, 4, 8]


class Concurrency(Strict):
    """N closed-loop clients, or a fixed arrival rate, against one instance through a queue."""

    kind: Literal["concurrency"] = "concurrency"
    clients: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    rates: list[Annotated[float, Field(gt=0)]] = Field(default_factory=list, description="requests/s, Poisson")
    max_batch: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _some_load(self) -> "Concurrency":
        if not self.clients and not self.rates:
            self.clients = [1, 2, 4]
        return self


Scenario = Annotated[Union[SingleStream, Batch, Concurrency], Field(discriminator="kind")]


# ---- hardware ----------------------------------------------------------------------------------
class InlineHardware(Strict):
    """A machine described inline instead of by profile name."""

    name: str
    usd_per_hour: float = Field(ge=0)
    devices: int = Field(1, ge=1)


# ---- stages of other issues --------------------------------------------------------------------
class QualityConfig(Strict):
    """The quality gate on variants (golden set against the reference variant)."""

    golden_set: Path | None = None
    min_share: float = Field(0.99, gt=0, le=1)
    max_new_tokens: int = Field(16, ge=1)
    max_ppl_increase: float | None = Field(None, ge=0, description="also fail when perplexity rises more (0.02 = 2%)")
    max_kl: float | None = Field(None, ge=0, description="also fail when the mean next-token KL (nats) is higher")


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


class PlanConfig(Strict):
    """Capacity planning at the end of a run (`llmbench plan` takes the same settings as options)."""

    rps: float | None = Field(None, gt=0, description="target load; default: half the best measured throughput")
    trace: Path | None = Field(None, description="replay this trace (Azure format) instead of Poisson at rps")
    slo: str | None = Field(None, description="default: the run's slo")
    goodput: float | None = Field(None, gt=0, le=1, description="also require this share of requests to meet every SLO")
    max_replicas: int = Field(1024, ge=1)
    max_batch: int | None = Field(None, ge=1, description="default: the largest batch measured")
    policy: Literal["jsq", "round-robin"] = "jsq"


# ---- the whole run -----------------------------------------------------------------------------
class RunConfig(Strict):
    """A run: candidates x variants x scenarios on one device, with a workload and a price."""

    candidates: list[Candidate] = Field(min_length=1)
    workload: Workload = Workload()
    scenarios: list[Scenario] = [SingleStream()]
    hardware: str | InlineHardware = "cpu-2core"
    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    warmup: int = Field(2, ge=0, description="warm-up requests per scenario point, not recorded")
    iterations: int = Field(1, ge=1, description="passes over the workload per scenario point")
    min_duration_s: float = Field(0.0, ge=0, description="keep measuring a point at least this long")
    seed: int = 0
    slo: str | None = Field(None, description="e.g. 'ttft_p95=500ms,tpot_p99=80ms'")
    quality: QualityConfig | None = None
    compression: CompressionConfig | None = None
    cache: CacheConfig | None = None
    plan: PlanConfig | None = None

    @field_validator("scenarios", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `scenarios: [single-stream, batch]` is the common case: a bare kind means its defaults.
        if isinstance(value, list):
            return [{"kind": v} if isinstance(v, str) else v for v in value]
        return value


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith(("function-", "tagged-union"))) or "(top level)"


def parse_config(data: Any, source: str) -> RunConfig:
    """Validate a mapping as a RunConfig; BadInput names the file and the key on failure."""
    if not isinstance(data, dict):
        raise BadInput(f"{source}: the config must be a mapping of keys, got {type(data).__name__}")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise BadInput(f"{source}: {_where(err['loc'])}: {msg}{more}") from None
    base = Path(source).parent if source != "<default>" else Path.cwd()
    _resolve_paths(config, base, source)
    if config.cache is not None and config.cache.verifier is not None:
        from llmbench.optimizers.cache.profile import load_user_profile

        # Read now: a bad profile found at the cache stage would come after the measurements.
        load_user_profile(str(config.cache.verifier), f"{source}: cache.verifier")
    return config


def _resolve_paths(config: RunConfig, base: Path, source: str) -> None:
    # Relative paths in a config are relative to the config file, as users expect. A missing file
    # is bad input now, not a failed stage after the measurements.
    wl = config.workload
    holders = [("workload.dataset.path", wl.dataset, "path"), ("workload.templates.file", wl.templates, "file"),
               ("workload.templates.variables", wl.templates, "variables"),
               ("quality.golden_set", config.quality, "golden_set"), ("compression.prompts", config.compression, "prompts"),
               ("cache.log", config.cache, "log"), ("cache.verifier", config.cache, "verifier"),
               ("plan.trace", config.plan, "trace")]
    for key, block, attr in holders:
        value = getattr(block, attr, None) if block is not None else None
        if value is None:
            continue
        if not Path(value).is_absolute():
            value = base / value
            setattr(block, attr, value)
        if not Path(value).is_file():
            raise BadInput(f"{source}: {key}: {value} does not exist or is not a file")
    for cand in config.candidates:
        if str(cand.model).startswith(("./", "../")):
            cand.model = str(base / str(cand.model))


def load_config(path: str | Path | None) -> tuple[RunConfig, str]:
    """Read and validate a YAML config (None: the embedded default). Returns (config, its text)."""
    if path is None:
        from importlib import resources

        text = (resources.files("llmbench.profiles") / "default.yaml").read_text()
        source = "<default>"
    else:
        from llmbench.files import read_input_text

        text = read_input_text(path, "config")
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise BadInput(f"{source}: not valid YAML{at}: {problem}") from None
    return parse_config(data, source), text
