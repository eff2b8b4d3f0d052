"""Checks made before the first model loads: input files' content, dtypes, memory and context length.

The README promises that bad input is found before anything is measured; each check here would
otherwise fail a stage after the measurements, or fail every cell, or exhaust the machine's memory.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmbench.errors import BadInput


def preflight(config, sources: list, device: str) -> None:
    """Every check below, in order of cost; BadInput (one line, exit 2) on the first fault."""
    check_dtype(config, device)
    check_input_files(config)
    check_card_memory(config, sources, device)
    check_context(config, sources)
    check_engine_variants(config, sources)


def check_engine_variants(config, sources: list) -> None:
    """A GGUF variant of an architecture llama.cpp's converter does not know is refused, naming it."""
    for i, (cand, src) in enumerate(zip(config.candidates, sources)):
        if src is None or not any(str(v).startswith("gguf-") for v in cand.variants):
            continue
        from llmbench.engines.llamacpp import EngineUnavailable
        from llmbench.engines.llamacpp.gguf import check_convertible

        try:
            check_convertible(src, f"candidates[{i}].variants")
        except EngineUnavailable:
            pass  # no usable engine: its variants' cells fail with the reason at load; the others still measure


def check_dtype(config, device: str) -> None:
    """float16 on the CPU is refused rather than silently ignored (each variant names its precision)."""
    for i, cand in enumerate(config.candidates):
        dtype = cand.dtype or config.dtype
        where = f"candidates[{i}].dtype" if cand.dtype else "dtype"
        if dtype == "float16" and device == "cpu":
            raise BadInput(f"{where}: float16 does not run on the CPU (device is cpu); use the variant torch-bf16, "
                           "or device: cuda")
        if dtype != "float32":  # every variant name carries its precision (torch-fp32, onnx-int8, ...)
            raise BadInput(f"{where}: {dtype} would be ignored: each of {cand.variants} names its own precision; "
                           f"choose a variant such as torch-{'bf16' if dtype == 'bfloat16' else 'fp16'} instead")


def _read(key: str, path, reader) -> object:
    try:
        return reader(path)
    except BadInput as exc:
        raise BadInput(f"{key}: {exc}") from None
    except Exception as exc:  # a reader's own fault on odd content is still bad input, named here
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise BadInput(f"{key}: {path} cannot be read ({type(exc).__name__}: {first})"[:400]) from None


def check_input_files(config) -> None:
    """Golden set, cache log, trace and compression prompts are read for content, not only existence."""
    if config.quality is not None and config.quality.enabled and config.quality.golden_set is not None:
        from llmbench.golden import load_golden

        _read("quality.golden_set", config.quality.golden_set, load_golden)
    if config.cache is not None and config.cache.log is not None:
        from llmbench.optimizers.cache.logs import read_log

        _read("cache.log", config.cache.log, read_log)
    if config.plan is not None and config.plan.trace is not None:
        from llmbench.planner.trace import load_trace

        _read("plan.trace", config.plan.trace, load_trace)
    if config.compression is not None and config.compression.prompts is not None:
        from llmbench.optimizers.compress.prompts import load_prompts

        _read("compression.prompts", config.compression.prompts, load_prompts)


def _bytes_per_parameter(variants: list[str]) -> int:
    # Every ONNX and int8 build starts from the float32 model; only bf16/fp16 torch variants load at 2.
    return 2 if all(v in ("torch-bf16", "torch-fp16") for v in variants) else 4


def available_memory_bytes() -> int:
    """What the machine can still give a new model (psutil's 'available')."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_card_memory(config, sources: list, device: str) -> None:
    """A card's weights (parameters x bytes per parameter) must fit in the memory this machine has free."""
    if device != "cpu":
        return
    from llmbench.models.cards import card_parameters

    free = available_memory_bytes()
    for i, (cand, src) in enumerate(zip(config.candidates, sources)):
        if src is None or src.kind != "card":  # None: an endpoint candidate (no local weights)
            continue
        per = _bytes_per_parameter(cand.variants)
        need = card_parameters(src.ref) * per
        if need > free:
            raise BadInput(f"candidates[{i}]: card {src.ref!r} needs at least {need / 1e9:.2f} GB for its weights "
                           f"({'bfloat16' if per == 2 else 'float32'}), and this machine has {free / 1e9:.2f} GB "
                           "available; choose a smaller card")


def _context_of(src) -> int | None:
    """The model's context window in tokens, from its config (None when it does not say)."""
    if src.kind == "card":
        from llmbench.models.cards import card_config

        cfg = card_config(src.ref)
    elif src.kind == "local":
        try:
            cfg = json.loads((Path(src.ref) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    else:
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(src.ref).to_dict()
        except Exception:  # resolve() already checked it loads; a context we cannot read is not checked
            return None
    value = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    return int(value) if isinstance(value, int) and value > 0 else None


def _tokenizer_of(src):
    if src.kind == "card":
        from llmbench.models.tokenizer import load_shipped_tokenizer

        return load_shipped_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(src.ref)


def _longest_request(config, src) -> int:
    """The longest prompt + output, in tokens, the run would send this candidate."""
    from llmbench.workload import _templates, dataset_rows, sample_lengths

    wl = config.workload
    if wl.log is not None:
        from llmbench.monitor.log_workload import log_requests

        reqs = log_requests(wl)
        tok = _tokenizer_of(src) if any(r.text is not None for r in reqs) else None
        return max((len(tok(r.text)["input_ids"]) if r.text is not None else r.prompt_tokens) + r.output_tokens
                   for r in reqs)
    rng = np.random.default_rng(config.seed)  # the same draws as build_prompts
    outs = sample_lengths(wl.output_tokens, wl.requests, rng)
    if wl.dataset is None and wl.templates is None:
        lengths = sample_lengths(wl.prompt_tokens, wl.requests, rng)
        return max(p + o for p, o in zip(lengths, outs))
    tok = _tokenizer_of(src)
    if wl.dataset is not None:
        rows = dataset_rows(wl)
        return max(len(tok(text)["input_ids"]) + (out if out is not None else outs[n % len(outs)])
                   for n, (text, out) in enumerate(rows))
    filled = _templates(wl)
    return max(len(tok(text)["input_ids"]) + outs[i % len(outs)] for i, (_, _, text) in enumerate(filled))


def check_context(config, sources: list) -> None:
    """Prompts plus outputs longer than a model's context window are refused (torch would measure past it)."""
    for i, src in enumerate(sources):
        context = _context_of(src) if src is not None else None
        if context is None:
            continue
        try:
            longest = _longest_request(config, src)
        except BadInput:
            raise
        except Exception:  # a tokenizer that cannot load here fails its cells later, with its own error
            continue
        if longest > context:
            raise BadInput(f"candidates[{i}]: a request of {longest:,} tokens (prompt + output) exceeds the "
                           f"model's context of {context:,} tokens; shorten workload.prompt_tokens/output_tokens "
                           "or the dataset's prompts")
