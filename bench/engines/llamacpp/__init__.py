"""llama.cpp as a managed engine: the pinned build, GGUF variants, and a managed llama-server."""
from llmbench.engines.llamacpp.build import ensure_engine
from llmbench.engines.llamacpp.info import (
    LLAMA_CPP_PYTHON_VERSION, EngineInfo, EngineUnavailable, engine_dir, engine_root, find_engine,
)

__all__ = ["LLAMA_CPP_PYTHON_VERSION", "EngineInfo", "EngineUnavailable", "engine_dir", "engine_root",
           "ensure_engine", "find_engine"]
