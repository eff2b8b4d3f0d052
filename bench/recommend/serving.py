"""Which engine can serve an option as an OpenAI-compatible server, and the facts it starts from.

An option is a self-hosted deployment only if some engine serves it: llama.cpp's llama-server for
`gguf-*` variants (measured as served), the endpoint itself for `http` candidates (its URL, as
measured), and on a GPU `vllm serve` for `torch-*` variants (not measured here: the run timed
torch in-process). ONNX exports, ONNX Runtime GenAI models and torch on a CPU have no
OpenAI-compatible server: they stay measurements (report, frontier), never a deployment.
"""
from __future__ import annotations

import functools
import os
import re

from llmbench.paths import cache_root
from llmbench.recommend.inputs import RunData

LLAMA_CPP, VLLM, ENDPOINT = "llama.cpp", "vllm", "endpoint"
# Per-slot context margin the managed engine adds beyond the longest prompt and output (CONTRACT.md).
CTX_MARGIN = 16

_NOT_SERVABLE = {
    "onnx": "no OpenAI-compatible server for an ONNX export",
    "genai": "no OpenAI-compatible server for an ONNX Runtime GenAI model",
    "torch": "no OpenAI-compatible server for in-process torch on a CPU (llama.cpp serves gguf-* variants; vLLM needs a GPU)",
}
_VLLM_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def family(variant: str | None) -> str:
    """'gguf-q4_k_m' -> 'gguf'; 'http' -> 'http'."""
    return (variant or "").split("-", 1)[0]


def is_gpu(device: str | None, hardware_kind: str | None) -> bool:
    """A GPU option: measured on a CUDA device, or on a GPU hardware profile."""
    return (device or "").startswith("cuda") or (hardware_kind or "").lower() in ("cuda", "gpu")


def servability(variant: str | None, device: str | None, hardware_kind: str | None = None) -> tuple[str | None, str | None]:
    """(engine, None) for a variant an engine serves, else (None, why not)."""
    fam = family(variant)
    if fam == "gguf":
        return LLAMA_CPP, None
    if fam == "http":
        return ENDPOINT, None
    if fam == "torch" and is_gpu(device, hardware_kind):
        return VLLM, None
    return None, _NOT_SERVABLE.get(fam, f"no known OpenAI-compatible server for variant {variant!r}")


def per_slot_context(data: RunData, model: str, variant: str) -> int | None:
    """Context one server slot needs: what the measured server was given per slot (server_ctx_size /
    server_parallel of this variant's cells), else the workload's longest prompt + longest output + margin."""
    for row in data.rows:
        if row.get("model") == model and row.get("variant") == variant and row.get("server_ctx_size") and row.get("server_parallel"):
            return max(1, int(row["server_ctx_size"]) // int(row["server_parallel"]))
    recs = [r for r in data.records if r.ok and r.model == model and r.variant == variant] or [r for r in data.records if r.ok]
    if not recs:
        return None
    return max(r.prompt_tokens for r in recs) + max(r.output_tokens for r in recs) + CTX_MARGIN


def _cell_fact(data: RunData, model: str, variant: str, key: str):
    return next((row[key] for row in data.rows if row.get("model") == model and row.get("variant") == variant
                 and row.get(key) is not None), None)


def _candidates(data: RunData) -> list[dict]:
    return [c for c in (data.meta.get("config") or {}).get("candidates") or [] if isinstance(c, dict)]


def _endpoint(data: RunData, model: str) -> dict:
    # The endpoint as the run measured it: the candidate's own `endpoint:` block (its label is its
    # name, else the endpoint's model), else what the HTTP backend noted in run.json's variants.
    keys = ("url", "model", "api", "api_key_env")
    for c in _candidates(data):
        ep = c.get("endpoint")
        if isinstance(ep, dict) and (c.get("name") or ep.get("model")) == model:
            return {k: ep.get(k) for k in keys}
    vmeta = (data.meta.get("variants") or {}).get(f"{model}|http") or {}
    ep = vmeta.get("endpoint") if isinstance(vmeta.get("endpoint"), dict) else vmeta
    return {k: ep.get(k) for k in keys}


def _candidate_model(data: RunData, label: str) -> str:
    for c in _candidates(data):
        if (c.get("name") or c.get("model") or (f"card:{c['card']}" if c.get("card") else None)) == label:
            return str(c.get("model") or f"card:{c.get('card')}")
    return label


def _vllm_model(ref: str) -> str:
    # vLLM loads a folder or a hub id; a card is a folder llmbench built (cache/cards/NAME-<digest>).
    if not ref.startswith("card:"):
        return ref
    name = ref[len("card:"):]
    built = sorted(p for p in (cache_root() / "cards").glob(f"{name}-*") if re.fullmatch(re.escape(name) + r"-[0-9a-f]{12}", p.name))
    return str(built[-1]) if built else ref


def _local_engine() -> dict:
    # A run.json without `engines` (written before the runner recorded them): the engine built on
    # this machine, if any, so that a start script names a real llama-server rather than a bare name.
    return dict(_find_local(os.environ.get("LLMBENCH_LLAMA_CPP_DIR"), os.environ.get("LLMBENCH_ENGINES")))


@functools.lru_cache(maxsize=4)
def _find_local(dev_tree: str | None, engines: str | None) -> tuple:
    # Once per setting: a development tree's version is asked of its binary.
    try:
        from llmbench.engines.llamacpp import find_engine

        found = find_engine()
    except Exception:  # no engine package, or a broken development tree: the script names none
        return ()
    return tuple(found.as_json().items()) if found else ()


def engine_facts(data: RunData, model: str, variant: str, device: str | None) -> tuple[dict | None, str | None]:
    """(engine facts, None) or (None, why this option cannot be served). Facts are what a start
    script needs: the GGUF and the measured server's settings; the endpoint's URL; vLLM's model."""
    hw_kind = (data.meta.get("hardware_profile") or {}).get("kind")
    engine, why = servability(variant, device, hw_kind)
    if engine is None:
        return None, why
    vmeta = (data.meta.get("variants") or {}).get(f"{model}|{variant}") or {}
    if engine == LLAMA_CPP:
        info = (data.meta.get("engines") or {}).get(LLAMA_CPP) or _local_engine()
        cmd = _cell_fact(data, model, variant, "server_cmd")
        eng = vmeta.get("engine")
        version = eng.get("version") if isinstance(eng, dict) else (eng or "").removeprefix(f"{LLAMA_CPP} ") or None
        return {"name": LLAMA_CPP, "measured": True, "version": version or info.get("version"),
                "server": (cmd[0] if isinstance(cmd, list) and cmd else None) or info.get("server"), "engine_info": info or None,
                "gguf_path": vmeta.get("gguf_path"), "gguf_sha256": vmeta.get("gguf_sha256"),
                "ctx_per_slot": per_slot_context(data, model, variant),
                "threads": _cell_fact(data, model, variant, "server_threads"),
                "measured_parallel": _cell_fact(data, model, variant, "server_parallel"),
                "measured_cmd": cmd}, None
    if engine == ENDPOINT:
        return {"name": ENDPOINT, "measured": True, **_endpoint(data, model)}, None
    suffix = variant.split("-", 1)[1] if "-" in variant else ""
    return {"name": VLLM, "measured": False, "model": _vllm_model(_candidate_model(data, model)), "dtype": _VLLM_DTYPE.get(suffix),
            "max_model_len": per_slot_context(data, model, variant),
            "note": "the run timed torch in-process; vLLM's continuous batching serves the same weights"}, None
