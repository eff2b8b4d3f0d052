"""The engines llmbench can build and manage, and their state (`llmbench engines`)."""
from __future__ import annotations

import os
from collections.abc import Callable

from llmbench.engines.llamacpp import info as llamacpp

ENGINES = (llamacpp.ENGINE_NAME,)


def _check(name: str) -> None:
    if name not in ENGINES:
        from llmbench.errors import BadInput

        raise BadInput(f"unknown engine {name!r}; engines: {', '.join(ENGINES)}")


def engine_status(name: str) -> dict:
    """{name, version, source_version, path, built, dev_tree, problem, bin_dir, server, quantize, source_dir}.

    `version` is what the built server says (None until built); `path` is where the build is or will be.
    """
    _check(name)
    dev = os.environ.get(llamacpp.DEV_TREE_ENV)
    doc = {"name": name, "version": None, "source_version": llamacpp.SOURCE_VERSION,
           "path": dev or str(llamacpp.engine_dir()), "built": False, "dev_tree": bool(dev), "problem": None,
           "bin_dir": None, "server": None, "quantize": None, "source_dir": None}
    try:
        found = llamacpp.find_engine()
    except llamacpp.EngineUnavailable as exc:
        doc["problem"] = str(exc)
        return doc
    if found is None:
        doc["problem"] = llamacpp.built_problem(llamacpp.engine_dir())
        return doc
    doc.update({k: v for k, v in found.as_json().items() if k != "name"}, built=True)
    return doc


def list_engines() -> list[dict]:
    """The state of every engine."""
    return [engine_status(name) for name in ENGINES]


def build_engine(name: str, progress: Callable[[str], None] | None = None) -> llamacpp.EngineInfo:
    """Build `name` if it is not built (EngineUnavailable when it cannot be)."""
    _check(name)
    from llmbench.engines.llamacpp.build import ensure_engine

    return ensure_engine(progress)
