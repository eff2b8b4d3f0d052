"""What compression saves in a run, net of what the compressor itself costs.

The run pipeline calls these; they hold no state. Independent studies found end-to-end gains
far below LLMLingua's headline ratios, because the compressor's own forward passes cost time and
money too: every figure here is measured, and `net_saving` / `net_latency` say plainly when
compression does not pay.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from llmbench.optimizers.compress.compressor import CompressionResult, Compressor
from llmbench.optimizers.compress.prompts import Prompt


def compress_prompts(
    texts: Sequence[str | Prompt],
    rate: float,
    model_path: str,
    target_tokenizer: Any = None,
    force_tokens: Iterable[str] = (),
) -> list[CompressionResult]:
    """Compress each prompt at `rate` with the causal LM `model_path` (a folder, hub id or card:NAME).

    Token counts are in `target_tokenizer` (a transformers tokenizer, a tiktoken Encoding or a
    text -> count callable; default: the compressor's own). The compressor is loaded once per
    folder and process, and warmed up outside the timings.
    """
    from llmbench.models.source import resolve

    compressor = Compressor(resolve(model_path, where="compression model").path(), target_tokenizer=target_tokenizer)
    forced = tuple(force_tokens)
    return [compressor.compress(t, rate=rate, force_tokens=forced) for t in texts]


def prompt_token_price(usd_per_hour: float, prefill_tokens_per_s: float) -> float:
    """What one prompt token costs a self-hosted model: its share of the machine's hour in prefill."""
    return usd_per_hour / 3600 / prefill_tokens_per_s


def net_saving(
    tokens_saved: float, price_per_token_usd: float, compressor_seconds: float, usd_per_hour: float
) -> dict:
    """Money per request: tokens saved x price, minus the compressor's time at `usd_per_hour`.

    For an API model the price is its input-token price; for a self-hosted one use
    `prompt_token_price`. `usd_per_hour` is what the machine that runs the compressor costs.
    """
    saved = tokens_saved * price_per_token_usd
    cost = compressor_seconds * usd_per_hour / 3600
    net = saved - cost
    pays = net > 0
    if pays:
        verdict = f"compression pays: net ${net:.3g} saved per request (${saved:.3g} of tokens, ${cost:.3g} of compressor time)"
    else:
        verdict = (
            f"compression does not pay: the compressor costs ${cost:.3g} per request, "
            f"more than the ${saved:.3g} that its {tokens_saved:g} saved tokens are worth"
        )
    return {
        "tokens_saved": tokens_saved,
        "saved_usd": saved,
        "compressor_usd": cost,
        "net_usd": net,
        "break_even_usd_per_token": cost / tokens_saved if tokens_saved > 0 else None,
        "pays": pays,
        "verdict": verdict,
    }


def net_latency(original_ms: float, compressed_ms: float, compressor_ms: float, metric: str = "TTFT") -> dict:
    """Time per request: what the shorter prompt saves in `metric`, minus the compressor's latency."""
    saved = original_ms - compressed_ms
    net = saved - compressor_ms
    pays = net > 0
    if pays:
        verdict = f"compression pays: {metric} {net:.1f} ms faster net ({saved:.1f} ms saved, compressor {compressor_ms:.1f} ms)"
    else:
        verdict = (
            f"compression does not pay: the compressor takes {compressor_ms:.1f} ms, more than the "
            f"{saved:.1f} ms the shorter prompt saves in {metric}; net {-net:.1f} ms slower"
        )
    return {"metric": metric, "saved_ms": saved, "compressor_ms": compressor_ms, "net_ms": net, "pays": pays, "verdict": verdict}


def greedy_agreement(reference: Sequence[int], other: Sequence[int]) -> float:
    """Share of positions where two greedy outputs hold the same token (over the longer one)."""
    longest = max(len(reference), len(other))
    if longest == 0:
        return 1.0
    return sum(a == b for a, b in zip(reference, other)) / longest


def _sample(backend: Any, prompt_ids: list[int], new_tokens: int) -> tuple[float, float, list[int]]:
    gen = backend.generate([prompt_ids], new_tokens)
    return (gen.token_times[0] - gen.start) * 1000, (gen.end - gen.start) * 1000, list(gen.output_ids[0])


def _summary(prompt_ids: list[int], samples: list[tuple[float, float, list[int]]]) -> dict:
    return {
        "prompt_tokens": len(prompt_ids),
        "ttft_ms": statistics.median(s[0] for s in samples),
        "e2el_ms": statistics.median(s[1] for s in samples),
        "ttft_samples_ms": [s[0] for s in samples],
        "e2el_samples_ms": [s[1] for s in samples],
        "output_ids": samples[-1][2],
    }


def time_generation(backend: Any, prompt_ids: list[int], new_tokens: int, repeats: int = 5, warmup: int = 1) -> dict:
    """Median TTFT and E2EL (ms) of greedy-decoding exactly `new_tokens` after `prompt_ids`.

    `backend` is anything with llmbench's Backend.generate(prompts, new_tokens) -> Generation
    (per-token timestamps). Returns the medians, every sample, and the last output's token ids.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for _ in range(warmup):
        _sample(backend, prompt_ids, new_tokens)
    return _summary(prompt_ids, [_sample(backend, prompt_ids, new_tokens) for _ in range(repeats)])


def latency_effect(
    backend: Any,
    original: str,
    result: CompressionResult,
    new_tokens: int = 16,
    repeats: int = 5,
    compressor_ms: float | None = None,
) -> dict:
    """TTFT / E2EL with the original and the compressed prompt on one candidate, net of the compressor.

    The prompts are tokenized with `backend.tokenizer` (the candidate's own) and run alternately,
    so that anything else slowing the machine hits both alike. `compressor_ms` defaults to the
    result's own latency (pass a median over several compressions where there is one). Greedy
    outputs are compared token by token (on random-weight cards that agreement says nothing about
    quality: their logits are nearly flat).
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    tok = backend.tokenizer
    ids = {
        "original": tok(original, add_special_tokens=False).input_ids,
        "compressed": tok(result.compressed_prompt, add_special_tokens=False).input_ids,
    }
    samples: dict[str, list] = {"original": [], "compressed": []}
    for name in ids:  # warm-up, not recorded
        _sample(backend, ids[name], new_tokens)
    for _ in range(repeats):
        for name in ids:
            samples[name].append(_sample(backend, ids[name], new_tokens))
    orig, comp = (_summary(ids[n], samples[n]) for n in ("original", "compressed"))
    cost = result.latency_ms if compressor_ms is None else compressor_ms
    return {
        "original": {k: v for k, v in orig.items() if k != "output_ids"},
        "compressed": {k: v for k, v in comp.items() if k != "output_ids"},
        "compressor_ms": cost,
        "ttft": net_latency(orig["ttft_ms"], comp["ttft_ms"], cost, "TTFT"),
        "e2el": net_latency(orig["e2el_ms"], comp["e2el_ms"], cost, "E2EL"),
        "greedy_agreement": greedy_agreement(orig["output_ids"], comp["output_ids"]),
    }
