"""API model prices, normalised from the price profiles (`llmbench.prices`, issue 6's profiles).

The recommender only needs a name, a LiteLLM model string and the per-1M-token prices with their
date; this adapter keeps the rest of the recommender independent of the profile's exact schema.
"""
from __future__ import annotations

from typing import Any

from llmbench.recommend.facts import num

# Where each provider's key is read from in a LiteLLM config (os.environ/NAME references only).
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
            "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY", "together_ai": "TOGETHERAI_API_KEY",
            "deepseek": "DEEPSEEK_API_KEY", "cohere": "COHERE_API_KEY"}


def _raw_entries() -> list[Any]:
    try:
        from llmbench import prices  # written beside the planner; absent in older trees
    except ImportError:
        return []
    for fn in ("load_api_prices", "load_prices", "api_models", "load_api_models"):
        if callable(getattr(prices, fn, None)):
            got = getattr(prices, fn)()
            return list(got.values()) if isinstance(got, dict) else list(got)
    return []


def _get(entry: Any, *names: str) -> Any:
    for n in names:
        v = entry.get(n) if isinstance(entry, dict) else getattr(entry, n, None)
        if v is not None:
            return v
    return None


def normalise(entry: Any) -> dict | None:
    """One price entry as {name, litellm_model, provider, input/output_usd_per_1m, ...}."""
    name = _get(entry, "name", "model")
    p_in = num(_get(entry, "input_usd_per_1m", "input_per_1m", "usd_per_1m_input", "input_usd_per_1m_tokens", "input"))
    p_out = num(_get(entry, "output_usd_per_1m", "output_per_1m", "usd_per_1m_output", "output_usd_per_1m_tokens", "output"))
    if not name or p_in is None or p_out is None:
        return None
    provider = _get(entry, "provider") or (str(_get(entry, "litellm_model") or "").split("/")[0] or None)
    litellm_model = _get(entry, "litellm_model", "litellm")
    if not litellm_model:
        litellm_model = f"{provider}/{name}" if provider else str(name)
    key_env = _get(entry, "api_key_env") or _KEY_ENV.get(str(provider or "").lower()) or f"{str(provider or name).upper().replace('-', '_')}_API_KEY"
    lat = _get(entry, "latency")
    return {
        "name": str(name), "litellm_model": str(litellm_model), "provider": provider,
        "input_usd_per_1m": p_in, "output_usd_per_1m": p_out,
        "price_date": str(_get(entry, "price_date", "date") or "") or None,
        "source": _get(entry, "price_source", "source"), "api_key_env": key_env,
        "latency": lat if isinstance(lat, dict) else None,
        "tier": _get(entry, "tier"),
    }


def api_prices() -> list[dict]:
    """Every API model in the price profiles that has both prices."""
    return [n for e in _raw_entries() if (n := normalise(e))]
