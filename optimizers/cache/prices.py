"""Prices for `cache simulate --profile NAME`: an API model from the shared price list, or a profile file.

The price list belongs to the cost model (`llmbench.prices`, profiles/prices/api_models.yaml); a
model name found there gives separate input and output prices. Otherwise NAME may be a profile
file (or path) carrying a per-token price under one of the spellings below.
"""
from __future__ import annotations

import json
from pathlib import Path

from llmbench.errors import BadInput

_PER_MILLION = ("usd_per_1m_tokens", "usd_per_1m", "price_per_1m_tokens", "price_per_1m")
_PAIRS_PER_MILLION = (("input_usd_per_1m", "output_usd_per_1m"), ("usd_per_1m_input", "usd_per_1m_output"))
_PAIRS_PER_TOKEN = (("input_cost_per_token", "output_cost_per_token"),)


def _profiles_root() -> Path:
    from importlib.resources import files

    return Path(str(files("llmbench.profiles")))


def find_profile(name: str) -> Path:
    """The profile file called NAME (.yaml, .yml or .json) anywhere under llmbench.profiles, or a path."""
    direct = Path(name)
    if direct.is_file():
        return direct
    root = _profiles_root()
    for ext in (".yaml", ".yml", ".json"):
        found = sorted(root.rglob(f"{name}{ext}"))
        if found:
            return found[0]
    raise BadInput(f"--profile {name}: no such profile under {root}")


def input_output_per_million(name: str) -> tuple[float, float]:
    """(input, output) USD per 1M tokens for an API model of the shared price list, else from a profile file."""
    try:
        from llmbench.prices import api_price

        model = api_price(name)
        return float(model.input_usd_per_1m), float(model.output_usd_per_1m)
    except (ImportError, BadInput):
        pass  # not a listed model: try a profile file of that name
    try:
        blended = usd_per_million(name)
    except BadInput:
        raise BadInput(f"--profile {name}: neither an API model in the price list nor a price profile "
                       "under llmbench.profiles") from None
    return blended, blended


def usd_per_million(name: str) -> float:
    """The blended price in USD per 1M tokens from a profile file (mean of input and output when split)."""
    path = find_profile(name)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # any parse problem is the profile's, reported as one line
        raise BadInput(f"{path}: cannot read price profile ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping")
    section = data.get("price", data.get("prices", data))
    section = section if isinstance(section, dict) else data
    for key in _PER_MILLION:
        if isinstance(section.get(key), (int, float)):
            return float(section[key])
    for a, b in _PAIRS_PER_MILLION:
        if isinstance(section.get(a), (int, float)) and isinstance(section.get(b), (int, float)):
            return (float(section[a]) + float(section[b])) / 2
    for a, b in _PAIRS_PER_TOKEN:
        if isinstance(section.get(a), (int, float)) and isinstance(section.get(b), (int, float)):
            return (float(section[a]) + float(section[b])) / 2 * 1e6
    raise BadInput(f"{path}: no per-token price (expected one of {', '.join(_PER_MILLION)}, "
                   "or input/output prices per 1M tokens or per token)")
