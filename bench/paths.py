"""Where llmbench keeps what it builds (card weights, variants, embeddings) between runs."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$LLMBENCH_CACHE`, else `$XDG_CACHE_HOME/llmbench`, else `~/.cache/llmbench`; created on first use."""
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(os.environ.get("LLMBENCH_CACHE") or Path(xdg) / "llmbench")
    root.mkdir(parents=True, exist_ok=True)
    return root
