"""The shipped reference model: a small Llama trained by the project on Tiny Shakespeare.

Unlike the architecture cards (random weights, right for speed only) its weights are trained, so
the quality gate decides its variants on real figures. The folder ships in the package
(profiles/reference/); `python -m llmbench.models.train_reference` rebuilds it.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

REFERENCE_NAME = "shakespeare-4m"


def reference_dir() -> Path:
    """The shipped model folder (config.json, model.safetensors, tokenizer, README.md)."""
    return Path(str(resources.files("llmbench.profiles") / "reference" / REFERENCE_NAME))
