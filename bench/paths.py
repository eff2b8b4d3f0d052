"""Where llmbench keeps what it builds (card weights, variants, embeddings) between runs."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$LLMBENCH_CACHE`, else `~/.cache/llmbench`; created on first use."""
    root = Path(os.environ.get("LLMBENCH_CACHE") or Path.home() / ".cache" / "llmbench")
    root.mkdir(parents=True, exist_ok=True)
    return root
