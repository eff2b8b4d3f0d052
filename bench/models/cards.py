"""Architecture cards: a real model's config.json, profiled with random weights.

A card lets a user size a 1B-8B model without downloading it: speed depends on the shapes, not on
the weight values. The folder a card becomes is an ordinary transformers model folder, so every
later stage loads it with the same `from_pretrained` path as a user's own model.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from importlib import resources
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.models.scratch import scratch_dir, sweep_scratch
from llmbench.paths import cache_root

CARD_SEED = 0
CARD_MANIFEST = ".card-manifest.json"  # hidden: not a model file, and not part of the variant cache key
BUILD_PREFIX = ".build-"


def card_names() -> list[str]:
    """Names of the cards shipped under profiles/models/."""
    folder = resources.files("llmbench.profiles") / "models"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def card_config(name: str) -> dict:
    """The card's config.json as a dict (without llmbench's own notes)."""
    # Only a shipped card's name: a name like '../x' must not reach a path (here or in card_dir).
    if name not in card_names():
        raise BadInput(f"unknown model card {name!r}; shipped cards: {', '.join(card_names())}")
    path = resources.files("llmbench.profiles") / "models" / f"{name}.json"
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


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is not whole (its header's tensors must end exactly at the file's end)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated"
            n = struct.unpack("<Q", head)[0]
            if n > path.stat().st_size - 8:
                return f"{path.name} is truncated"
            header = json.loads(fh.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return f"{path.name} is unreadable"
    if 8 + n + end != path.stat().st_size:
        return f"{path.name} has {path.stat().st_size} bytes, its header says {8 + n + end}"
    return None


def _card_files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def card_problem(folder: Path) -> str | None:
    """None when a built card folder is whole; else what is wrong with it (checked on every use).

    A card folder holds a hidden manifest of its files and sizes, written before it is published:
    a missing or truncated file is caught without hashing hundreds of megabytes on every run.
    A folder from before the manifest existed is checked by its structure and then given one.
    """
    manifest = folder / CARD_MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text())["files"]
            files = {str(k): int(v) for k, v in files.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return "its manifest is unreadable"
        for name, size in files.items():
            f = folder / name
            if not f.is_file():
                return f"{name} is missing"
            if f.stat().st_size != size:
                return f"{name} has {f.stat().st_size} bytes, its manifest says {size}"
        return None
    for needed in ("config.json", "tokenizer.json"):
        if not (folder / needed).is_file():
            return f"{needed} is missing"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no .safetensors weights"
    for w in weights:
        problem = _safetensors_problem(w)
        if problem:
            return problem
    _write_manifest(folder)
    return None


def _write_manifest(folder: Path) -> None:
    tmp = folder / f"{CARD_MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": _card_files(folder)}, indent=1, sort_keys=True))
    os.replace(tmp, folder / CARD_MANIFEST)


def card_dir(name: str, log=None) -> Path:
    """A model folder for the card (random weights, seed 0, shipped tokenizer), built once and cached.

    A cached folder that is damaged (a truncated or missing file) is removed and built again;
    `log` (if given) receives one line saying so.
    """
    from llmbench.models.tokenizer import load_shipped_tokenizer, shipped_tokenizer_file

    config = card_config(name)
    digest = hashlib.sha256(
        json.dumps(config, sort_keys=True).encode() + shipped_tokenizer_file().read_bytes()
    ).hexdigest()[:12]
    target = cache_root() / "cards" / f"{name}-{digest}"
    if target.is_dir():
        problem = card_problem(target)
        if problem is None:
            return target
        if log:
            log(f"card {name}: cached folder {target} is damaged ({problem}); building it again")
        shutil.rmtree(target, ignore_errors=True)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sweep_scratch(target.parent, BUILD_PREFIX)  # folders of builds that were killed
    tmp = scratch_dir(target.parent, BUILD_PREFIX)
    try:
        torch.manual_seed(CARD_SEED)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
        model.save_pretrained(tmp, safe_serialization=True)
        load_shipped_tokenizer().save_pretrained(tmp)
        _write_manifest(tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process published it meanwhile: keep theirs if whole, else ours replaces it.
            if card_problem(target) is not None:
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
