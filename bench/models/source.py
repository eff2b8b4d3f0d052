"""Resolve a candidate's `model:` string to something loadable, before anything is measured."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmbench.errors import BadInput

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """Where a candidate's weights come from.

    kind: "local" (a folder), "hub" (an id for from_pretrained), "card" (architecture card,
    random weights). `random_weights` marks quality figures as unverified (DESIGN.md).
    """

    kind: Literal["local", "hub", "card"]
    ref: str

    @property
    def random_weights(self) -> bool:
        return self.kind == "card"

    @property
    def name(self) -> str:
        return f"card:{self.ref}" if self.kind == "card" else self.ref

    def path(self) -> str:
        """What to hand to from_pretrained: a folder (cards are built on first use) or the hub id."""
        if self.kind == "card":
            from llmbench.models.cards import card_dir

            return str(card_dir(self.ref))
        return self.ref


def resolve(model: str, where: str = "model") -> ModelSource:
    """Classify and check a `model:` value; raise BadInput naming `where` when it cannot be loaded."""
    text = model.strip()
    if text.startswith("card:"):
        from llmbench.models.cards import card_config

        name = text[len("card:") :].strip()
        card_config(name)  # raises BadInput for an unknown card
        return ModelSource("card", name)
    path = Path(text).expanduser()
    looks_local = text.startswith(("/", "./", "../", "~")) or path.exists() or not _HUB_ID.match(text)
    if looks_local:
        if not path.is_dir():
            raise BadInput(f"{where}: model folder {text!r} does not exist")
        if not (path / "config.json").is_file():
            raise BadInput(f"{where}: {text!r} is not a model folder (no config.json)")
        return ModelSource("local", str(path.resolve()))
    _check_hub(text, where)
    return ModelSource("hub", text)


def _check_hub(model_id: str, where: str) -> None:
    # Resolving the config is cheap and tells, before measuring, whether the weights can be had:
    # from the local HF cache, or from the hub when there is a network.
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model_id, local_files_only=True)
        return  # in the local cache: no network needed
    except Exception:  # not cached: ask the hub, if it can be reached at all
        pass
    try:
        if not _hub_reachable():
            # Without this, huggingface_hub retries for about 30 s, printing a traceback each time.
            raise OSError("the hub cannot be reached from this machine")
        AutoConfig.from_pretrained(model_id)
    except Exception as exc:  # transformers raises OSError, ValueError or HTTP errors here
        raise BadInput(
            f"{where}: cannot load hub model {model_id!r} (not in the local cache and the hub is "
            f"unreachable or has no such model: {type(exc).__name__}); download it to a folder and "
            "point `model:` at the folder"
        ) from None


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection within a few seconds (offline mode: never)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False
