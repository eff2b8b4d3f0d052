"""The judge model: a local candidate (run on this machine) or an endpoint, asked one prompt at a time.

The asking itself is the judge guard's (llmbench.optimizers.guard.judge: `local_asker`,
`endpoint_asker`); this adds what a run's cost needs: tokens, seconds, failed calls and dollars.
A local judge costs the run's hardware price for the time it ran; an endpoint its token price
(`price:` in the config), or "not known" without one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from llmbench.errors import BadInput

Ask = Callable[[str], tuple[str, int, int]]


@dataclass
class Judge:
    """One judge model with its running counts; `ask` returns its answer, or None when the call failed."""

    ask_fn: Ask
    source: str
    usd_per_second: float | None = None  # local: the hardware's price
    usd_per_token: tuple[float, float] | None = None  # endpoint: (input, output)
    price_note: str = ""
    stats: dict = field(default_factory=lambda: {"calls": 0, "failed_calls": 0, "prompt_tokens": 0,
                                                 "output_tokens": 0, "seconds": 0.0})
    first_error: str | None = None

    def ask(self, prompt: str) -> tuple[str | None, int, int]:
        """(answer or None, prompt tokens, output tokens) of one judgement; a failed call is counted, not raised."""
        t = time.perf_counter()
        self.stats["calls"] += 1
        try:
            answer, p_tok, o_tok = self.ask_fn(prompt)
        except BadInput:
            raise
        except Exception as exc:  # an endpoint that fails one call must not end the stage
            self.stats["failed_calls"] += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
            return None, 0, 0
        finally:
            self.stats["seconds"] += time.perf_counter() - t
        self.stats["prompt_tokens"] += int(p_tok)
        self.stats["output_tokens"] += int(o_tok)
        return answer, int(p_tok), int(o_tok)

    def cost(self, prompt_tokens: int, output_tokens: int, seconds: float) -> float | None:
        """USD for this much judging (None when the endpoint's price is not known)."""
        if self.usd_per_second is not None:
            return self.usd_per_second * seconds
        if self.usd_per_token is not None:
            return prompt_tokens * self.usd_per_token[0] + output_tokens * self.usd_per_token[1]
        return None

    def describe(self) -> dict:
        """Where the judge runs (no key), its price and its counts so far."""
        s = self.stats
        return {"source": self.source, "price": self.price_note, **{k: (round(v, 3) if isinstance(v, float) else v)
                                                                     for k, v in s.items()},
                "cost_usd": _round(self.cost(s["prompt_tokens"], s["output_tokens"], s["seconds"])),
                **({"first_error": self.first_error} if self.first_error else {})}


def endpoint_price(price) -> tuple[tuple[float, float] | None, str]:
    """(USD per input and output token, a note) for a config's `price:` (a price-list name or numbers)."""
    if price is None:
        return None, "not known (no quality.judge.price given)"
    if isinstance(price, str):
        from llmbench.prices import api_price

        p = api_price(price)
        return (p.input_cost_per_token, p.output_cost_per_token), f"{p.name}: ${p.input_usd_per_1m}/${p.output_usd_per_1m} per 1M in/out ({p.price_date})"
    return ((price.input_usd_per_1m / 1e6, price.output_usd_per_1m / 1e6),
            f"${price.input_usd_per_1m}/${price.output_usd_per_1m} per 1M in/out (config)")


def build_judge(cfg, model_folder: str | None, usd_per_hour: float) -> Judge:
    """The judge of a `quality.judge` block; `model_folder` is its candidate resolved to a folder."""
    from llmbench.optimizers.guard.judge import endpoint_asker, local_asker

    if cfg.endpoint is not None:
        per_token, note = endpoint_price(cfg.price)
        return Judge(endpoint_asker(cfg.endpoint, cfg.max_new_tokens), f"endpoint {cfg.endpoint.url} ({cfg.endpoint.model})",
                     usd_per_token=per_token, price_note=note)
    assert model_folder is not None
    return Judge(local_asker(model_folder, cfg.max_new_tokens), f"candidate {cfg.candidate}",
                 usd_per_second=usd_per_hour / 3600.0, price_note=f"this machine's time at ${usd_per_hour}/hour")


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 9)
