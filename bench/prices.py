"""API model prices per 1M input/output tokens: profiles/prices/api_models.yaml plus users' own files.

A price file is `{models: [{name, input_usd_per_1m, output_usd_per_1m, price_date, price_source, ...}]}`.
Users add or override entries by passing their own YAML path; an entry whose name matches a shipped
one replaces it, so a negotiated rate wins over the list price.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmbench.errors import BadInput
from llmbench.yamlsafe import load_yaml

Tier = Literal["small", "mid", "strong", "frontier"]
TIER_ORDER: tuple[str, ...] = ("small", "mid", "strong", "frontier")


class ApiModelPrice(BaseModel):
    """One hosted model's list price. Prices carry their date and source, since they move."""

    model_config = ConfigDict(extra="forbid")

    name: str
    provider: str = ""
    litellm_model: str | None = Field(None, description="model string for LiteLLM, e.g. openai/gpt-4o")
    api_key_env: str | None = Field(None, description="environment variable holding the key (never the key)")
    input_usd_per_1m: float = Field(ge=0)
    output_usd_per_1m: float = Field(ge=0)
    cached_input_usd_per_1m: float | None = Field(None, ge=0)
    context_window: int | None = Field(None, ge=1)
    tier: Tier | None = Field(None, description="rough strength hint for routing, not a measurement")
    price_date: str
    price_source: str

    @property
    def input_cost_per_token(self) -> float:
        return self.input_usd_per_1m / 1e6

    @property
    def output_cost_per_token(self) -> float:
        return self.output_usd_per_1m / 1e6

    def cost(self, prompt_tokens: float, output_tokens: float) -> float:
        """USD for one request of these token counts (tokens x per-token price, DESIGN.md)."""
        return prompt_tokens * self.input_cost_per_token + output_tokens * self.output_cost_per_token


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: Literal["USD"] = "USD"
    unit: str = "per 1M tokens"
    models: list[ApiModelPrice] = Field(min_length=1)


def _parse(text: str, where: str) -> list[ApiModelPrice]:
    data = load_yaml(text, where)  # safe types, no duplicate keys, no alias bombs
    if not isinstance(data, dict):
        raise BadInput(f"{where}: a price file is a mapping with a 'models' list")
    try:
        return _PriceFile(**data).models
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise BadInput(f"{where}: {loc}: {err['msg']}") from None


def shipped_prices() -> list[ApiModelPrice]:
    """The price list shipped in profiles/prices/api_models.yaml."""
    entry = resources.files("llmbench.profiles") / "prices" / "api_models.yaml"
    return _parse(entry.read_text(), "profiles/prices/api_models.yaml")


def load_api_prices(*paths: str | Path, include_shipped: bool = True) -> list[ApiModelPrice]:
    """Shipped prices, then each user file in order; a later entry of the same name replaces an earlier one."""
    merged: dict[str, ApiModelPrice] = {}
    if include_shipped:
        merged.update((m.name, m) for m in shipped_prices())
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise BadInput(f"price file {str(p)!r} does not exist or is not a file")
        merged.update((m.name, m) for m in _parse(p.read_text(encoding="utf-8"), str(p)))
    return list(merged.values())


def api_price(name: str, *paths: str | Path) -> ApiModelPrice:
    """One model's price by name (shipped or from the given files); BadInput if unknown."""
    prices = {m.name: m for m in load_api_prices(*paths)}
    if name not in prices:
        raise BadInput(f"no price for API model {name!r} (known: {', '.join(sorted(prices))})")
    return prices[name]
