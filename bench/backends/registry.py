"""One registry of backends, keyed by the family prefix of a variant name (torch-fp32 -> torch)."""
from __future__ import annotations

from typing import Callable

from llmbench.backends.base import Backend
from llmbench.errors import BadInput

_BACKENDS: dict[str, Callable[[], type[Backend]]] = {}


def register(family: str, loader: Callable[[], type[Backend]]) -> None:
    """Register a backend class behind a lazy loader (so that importing one engine never imports all)."""
    _BACKENDS[family] = loader


def family_of(variant: str) -> str:
    return variant.split("-", 1)[0]


def backend_for(variant: str) -> type[Backend]:
    """The backend class that runs a variant; BadInput for an unknown family."""
    family = family_of(variant)
    if family not in _BACKENDS:
        raise BadInput(f"variant {variant!r}: unknown backend {family!r} (known: {', '.join(sorted(_BACKENDS))})")
    return _BACKENDS[family]()


def _torch() -> type[Backend]:
    from llmbench.backends.torch_backend import TorchBackend

    return TorchBackend


register("torch", _torch)


def _onnx() -> type[Backend]:
    from llmbench.backends.onnx_backend import OnnxBackend

    return OnnxBackend


register("onnx", _onnx)


def _genai() -> type[Backend]:
    from llmbench.backends.genai_backend import GenaiBackend

    return GenaiBackend


register("genai", _genai)


def _llamacpp() -> type[Backend]:
    from llmbench.backends.llamacpp_backend import LlamaCppBackend

    return LlamaCppBackend


register("gguf", _llamacpp)


def _http() -> type[Backend]:
    from llmbench.backends.http_backend import HttpBackend

    return HttpBackend


register("http", _http)
