"""API models for the recommender, from the shared price list (`llmbench.prices`).

The recommender needs a name, a LiteLLM model string, the key's environment variable and the
per-1M-token prices with their date; everything else about a price entry stays in llmbench.prices.
"""
from __future__ import annotations

from llmbench.prices import ApiModelPrice, load_api_prices

# Where each provider's key is read from in a LiteLLM config (os.environ/NAME references only).
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
            "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY", "together_ai": "TOGETHERAI_API_KEY",
            "deepseek": "DEEPSEEK_API_KEY", "cohere": "COHERE_API_KEY"}


def describe(m: ApiModelPrice) -> dict:
    """One price entry as {name, litellm_model, provider, input/output_usd_per_1m, price_date, source, api_key_env, tier}."""
    provider = m.provider or (m.litellm_model or "").split("/")[0] or None
    litellm_model = m.litellm_model or (f"{provider}/{m.name}" if provider else m.name)
    key_env = m.api_key_env or _KEY_ENV.get((provider or "").lower()) or f"{(provider or m.name).upper().replace('-', '_')}_API_KEY"
    return {"name": m.name, "litellm_model": litellm_model, "provider": provider,
            "input_usd_per_1m": m.input_usd_per_1m, "output_usd_per_1m": m.output_usd_per_1m,
            "price_date": m.price_date, "source": m.price_source, "api_key_env": key_env, "tier": m.tier}


def api_prices() -> list[dict]:
    """Every API model in the price list."""
    return [describe(m) for m in load_api_prices()]
