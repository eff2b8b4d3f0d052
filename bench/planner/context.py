"""A model's context window, and the requests of a load that do not fit in it.

A request needs prompt + output positions (the convention of transformers' `max_length` and of
the serving engines): one with more than the model's `max_position_embeddings` cannot be served
by that model at all (the ONNX variants fail at position 2,048 for the shipped cards; torch would
run on past the trained positions and return garbage). Such requests are split out of the load,
counted and reported, never planned as if they were cheap.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmbench.planner.queue import Requests

# Keys a model config may carry its context under (Llama/Qwen/Mistral, GPT-2, MPT, ChatGLM).
_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


def _from_config(config: dict) -> int | None:
    for key in _KEYS:
        v = config.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    text = config.get("text_config")
    return _from_config(text) if isinstance(text, dict) else None


def model_string(meta: dict, label: str) -> str:
    """The `model:` string of the run config's candidate shown as `label` (its name, else the model)."""
    for cand in (meta.get("config") or {}).get("candidates") or []:
        if not isinstance(cand, dict):
            continue
        model = cand.get("model") or (f"card:{cand['card']}" if cand.get("card") else None)
        if label in (cand.get("name"), model):
            return str(model)
    return label


def context_tokens(meta: dict, label: str, variant: str) -> tuple[int | None, str]:
    """(context window in tokens, where it was read) for one measured option; (None, why) if unknown."""
    vmeta = (meta.get("variants") or {}).get(f"{label}|{variant}") or {}
    for key in ("context_tokens", *_KEYS):
        if isinstance(vmeta.get(key), int) and vmeta[key] > 0:
            return vmeta[key], f"run.json variants[{label}|{variant}].{key}"
    model = model_string(meta, label)
    try:
        if model.startswith("card:"):
            from llmbench.models.cards import card_config

            ctx = _from_config(card_config(model[len("card:"):].strip()))
            return ctx, f"card {model[len('card:'):].strip()} max_position_embeddings"
        path = Path(model).expanduser()
        if (path / "config.json").is_file():
            return _from_config(json.loads((path / "config.json").read_text())), f"{path / 'config.json'}"
        from transformers import AutoConfig  # a hub id: only from the local cache

        return _from_config(AutoConfig.from_pretrained(model, local_files_only=True).to_dict()), f"{model} config"
    except Exception as exc:  # an unreadable config leaves the context unknown, and the plan says so
        return None, f"the model's config could not be read ({type(exc).__name__})"


def split_over_context(reqs: Requests, context: int | None) -> tuple[Requests, dict]:
    """(the requests that fit in `context` positions, the facts about those that do not)."""
    n = len(reqs)
    if context is None:
        return reqs, {"context_tokens": None, "requests_over_context": None, "share_over_context": None}
    need = reqs.prompt_tokens + reqs.output_tokens
    over = need > context
    k = int(over.sum())
    facts = {"context_tokens": int(context), "requests_over_context": k, "share_over_context": k / n if n else 0.0,
             "requests_within_context": n - k}
    if k:
        facts["over_context_prompt_tokens_p50"] = float(np.median(reqs.prompt_tokens[over]))
    if not k:
        return reqs, facts
    keep = ~over
    return Requests(reqs.arrival_s[keep], reqs.prompt_tokens[keep], reqs.output_tokens[keep]), facts
