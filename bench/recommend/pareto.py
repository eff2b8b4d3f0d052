"""The Pareto frontier over cost per 1k requests (lower), quality (higher) and p95 latency (lower)."""
from __future__ import annotations

from llmbench.recommend.option import Option


def _objectives(o: Option) -> tuple[float, float, float] | None:
    if o.cost_per_1k_usd is None or o.p95_ms is None:
        return None
    return (o.cost_per_1k_usd, -o.quality, o.p95_ms)  # all three "lower is better"


def dominates(a: tuple, b: tuple) -> bool:
    """a is no worse than b everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def frontier(options: list[Option]) -> list[Option]:
    """Options no other option dominates, cheapest first; options lacking a figure are left out
    (an API model without a measured latency cannot be placed on the latency axis)."""
    scored = [(o, s) for o in options if (s := _objectives(o)) is not None]
    front = [o for o, s in scored if not any(dominates(t, s) for _, t in scored)]
    return sorted(front, key=lambda o: (o.cost_per_1k_usd, o.p95_ms))
