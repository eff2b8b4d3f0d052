"""One deployable option: a way to serve the workload, with its cost, quality and latency."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

LATENCY_METRICS = ("ttft_ms", "tpot_ms", "e2el_ms", "itl_ms")
API_TIERS = ("small", "mid", "strong", "frontier")  # the price profile's strength hint, weakest first
# Weight precision by variant suffix, lowest first: a standby of higher precision is the stronger one.
PRECISION = ("int4", "q4", "int8", "q8", "fp16", "bf16", "f16", "fp32", "f32")


def precision_rank(variant: str | None) -> int:
    """Index of the variant's precision in PRECISION (fp32 highest); 0 when it names none."""
    v = (variant or "").lower()
    return max((i for i, p in enumerate(PRECISION) if p in v), default=0)


@dataclass
class Option:
    """A candidate x variant x device x batch size (x cache x compression), or an API model.

    Figures are per request at the option's measured operating point; `latency` holds the
    percentile dicts of the summary row (possibly adjusted for compression), used for SLO checks.
    """

    id: str
    kind: str  # "self-hosted" or "api"
    model: str
    variant: str | None = None
    device: str | None = None
    hardware: str | None = None
    batch_size: int | None = None
    scenario: str | None = None
    point: str | None = None
    cache: dict | None = None
    compression: dict | None = None
    cost_per_1k_usd: float | None = None
    cost_note: str = ""
    quality: float = 1.0
    quality_status: str = "not measured: taken as the reference (1.0)"
    gate: str | None = None
    latency: dict = field(default_factory=dict)
    latency_source: str = "measured"
    throughput_req_s: float | None = None
    output_tok_s: float | None = None
    prompt_tokens_mean: float | None = None
    output_tokens_mean: float | None = None
    parameters: int | None = None
    random_weights: bool = False
    prices: dict | None = None  # API models: usd per 1M input/output tokens, date, source
    notes: list[str] = field(default_factory=list)
    base_id: str | None = None  # the plain option a cache/compression option is built on
    label: str | None = None  # the model's short name, unique among the run's candidates
    unreliable: str | None = None  # why the measurement behind this option is noisy (summary row's flag)
    sidecars: list[dict] = field(default_factory=list)  # compute beside the server: embedder, compressor
    # Whether an engine serves this option as an OpenAI-compatible server (recommend.serving): an
    # option that none serves stays a measurement, never a deployment, and says why.
    servable: bool = True
    not_servable_reason: str | None = None
    engine: dict | None = None  # the serving engine's facts (GGUF, server settings, URL, vLLM model)

    @property
    def p95_ms(self) -> float | None:
        """p95 end-to-end latency: what a user waits for a whole answer."""
        return (self.latency.get("e2el_ms") or {}).get("p95")

    @property
    def cell(self) -> tuple:
        """The (model, variant, scenario, point) whose request records this option was measured on."""
        return (self.model, self.variant, self.scenario, self.point)

    @property
    def verified(self) -> bool:
        """Whether the quality figure is a measurement on trained weights (or the reference itself)."""
        return self.quality_status == "measured" or self.quality_status.startswith("reference")

    def strength(self) -> tuple:
        """Ordering for fallbacks: verified quality, then numeric precision, then a larger model.

        One rule for unverified figures (random weights, not measured): they decide nothing, so an
        unverified option ranks by precision and size alone, below any verified quality. API models
        count as larger than any local model, ordered among themselves by the price profile's tier.
        """
        q = round(self.quality, 4) if self.verified else 0.0
        if self.kind == "api":
            tier = (self.prices or {}).get("tier")
            return (q, len(PRECISION), 1e13 * (2 + (API_TIERS.index(tier) if tier in API_TIERS else 1)))
        return (q, precision_rank(self.variant), float(self.parameters or 0))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["p95_ms"] = self.p95_ms
        return d
