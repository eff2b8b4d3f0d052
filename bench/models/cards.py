"""Architecture cards: a real model's config.json, profiled with random weights.

A card lets a user size a 1B-8B model without downloading it: speed depends on the shapes, not on
the weight values. The folder a card becomes is an ordinary transformers model folder, so every
later stage loads it with the same `from_pretrained` path as a user's own model.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.paths import cache_root

CARD_SEED = 0


def card_names() -> list[str]:
    """Names of the cards shipped under profiles/models/."""
    folder = resources.files("llmbench.profiles") / "models"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def card_config(name: str) -> dict:
    """The card's config.json as a dict (without llmbench's own notes)."""
    path = resources.files("llmbench.profiles") / "models" / f"{name}.json"
    if not path.is_file():
        raise BadInput(f"unknown model card {name!r}; shipped cards: {', '.join(card_names())}")
    config = json.loads(path.read_text())
    config.pop("_llmbench_card", None)
    return config


def card_parameters(name: str) -> int:
    """Parameter count of a card, computed from its shapes without building it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**card_config(name))
    import torch

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def card_dir(name: str) -> Path:
    """A model folder for the card (random weights, seed 0, shipped tokenizer), built once and cached."""
    from llmbench.models.tokenizer import load_shipped_tokenizer, shipped_tokenizer_file

    config = card_config(name)
    digest = hashlib.sha256(
        json.dumps(config, sort_keys=True).encode() + shipped_tokenizer_file().read_bytes()
    ).hexdigest()[:12]
    target = cache_root() / "cards" / f"{name}-{digest}"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        torch.manual_seed(CARD_SEED)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
        model.save_pretrained(tmp, safe_serialization=True)
        load_shipped_tokenizer().save_pretrained(tmp)
        # Another process may have built it meanwhile: keep theirs, drop ours.
        try:
            tmp.rename(target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
