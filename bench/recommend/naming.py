"""Short, stable names for models and options (used in ids, gateway aliases and plots)."""
from __future__ import annotations

import re
from pathlib import PurePath


def short_model(model: str) -> str:
    """'card:llama-5m' -> 'llama-5m'; '/models/my-llama' -> 'my-llama'; 'org/name' -> 'name'."""
    m = model[5:] if model.startswith("card:") else model
    return PurePath(m.rstrip("/")).name or m


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes only (safe in a gateway alias or an env var name)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def env_name(text: str) -> str:
    """An environment variable name for an option's API key: LLMBENCH_<X>_API_KEY."""
    return f"LLMBENCH_{slug(text).replace('-', '_').upper()}_API_KEY"
