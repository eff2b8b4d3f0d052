"""Service-level objectives: `ttft_p95=500ms,tpot_p99=80ms,e2el_p95=5s`."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from llmbench.errors import BadInput
from llmbench.stats import PERCENTILES

METRICS = ("ttft", "tpot", "e2el", "itl")
_TERM = re.compile(r"^(ttft|tpot|e2el|itl)_p(\d{1,2}(?:\.\d+)?)=(\d+(?:\.\d+)?)(ms|s)$")


@dataclass(frozen=True)
class SLO:
    """One objective: the given percentile of a latency metric must not exceed limit_ms."""

    metric: str
    percentile: float
    limit_ms: float

    def __str__(self) -> str:
        return f"{self.metric}_p{self.percentile:g}<={self.limit_ms:g}ms"


def parse_slo(text: str | None, where: str = "--slo") -> list[SLO]:
    """Parse a comma-separated SLO list; BadInput names the malformed term."""
    if not text:
        return []
    slos = []
    for term in text.replace(" ", "").split(","):
        m = _TERM.match(term)
        if not m:
            raise BadInput(f"{where}: cannot read {term!r}; expected METRIC_pNN=VALUE(ms|s), e.g. ttft_p95=500ms (metrics: {', '.join(METRICS)})")
        metric, pct, value, unit = m.groups()
        if float(pct) not in PERCENTILES:
            # Only computed percentiles can be checked: a p96 would be measured, then never judged.
            raise BadInput(f"{where}: percentile p{pct} in {term!r} is not measured; use one of "
                           f"{', '.join(f'p{q}' for q in PERCENTILES)}")
        if not math.isfinite(float(value)) or float(value) <= 0:
            raise BadInput(f"{where}: the limit in {term!r} must be a positive number")
        slos.append(SLO(metric, float(pct), float(value) * (1000.0 if unit == "s" else 1.0)))
    return slos


def meets_all(record, slos: list[SLO]) -> bool:
    """Whether one request meets every objective's limit (goodput counts such requests)."""
    for s in slos:
        value = record.tpot_ms if s.metric == "tpot" else (max(record.itl_ms, default=0.0) if s.metric == "itl" else getattr(record, f"{s.metric}_ms"))
        if value is not None and value > s.limit_ms:
            return False
    return True


def row_meets(row: dict, slos: list[SLO]) -> list[str]:
    """The objectives a summary row misses (empty when it meets them all)."""
    missed = []
    for s in slos:
        stats = row.get(f"{s.metric}_ms") or {}
        key = f"p{s.percentile:g}"
        value = stats.get(key)
        if value is None:
            continue
        if value > s.limit_ms:
            missed.append(f"{s}: measured {value:.1f}ms")
    return missed
