"""The `compression` stage at the end of `llmbench run`: what LLMLingua saves, net (compression.json).

For each candidate's reference variant and each configured rate: the compressed prompt's token
count in the candidate's own tokenizer, TTFT and E2EL with the original and compressed prompt
(alternated, so machine noise hits both alike), the compressor's own latency, the net latency
change, the net money saved per request, and agreement of the greedy outputs.
"""
from __future__ import annotations

import statistics
from importlib import resources
from pathlib import Path

from llmbench.results import write_json
from llmbench.stages import register_stage

DEFAULT_COMPRESSOR = "card:llama-5m"
NEW_TOKENS = 16
REPEATS = 3


def shipped_prompt() -> Path:
    """The long prompt compressed when the run's workload has no real text (profiles/prompts/)."""
    return Path(str(resources.files("llmbench.profiles") / "prompts" / "gsm8k_cot_3shot.txt"))


def _entry(backend, label: str, variant: str, prompts: list, rate: float, model: str, usd_per_hour: float) -> dict:
    from llmbench.optimizers.compress.measure import compress_prompts, latency_effect, net_saving, prompt_token_price

    texts = [p.text() for p in prompts]
    compress_prompts(prompts[:1], rate, model, target_tokenizer=backend.tokenizer)  # first call: one-time set-up, not timed
    results = compress_prompts(prompts, rate, model, target_tokenizer=backend.tokenizer)
    effects = [latency_effect(backend, t, r, new_tokens=NEW_TOKENS, repeats=REPEATS) for t, r in zip(texts, results)]
    origin = sum(r.origin_tokens for r in results)
    compressed = sum(r.compressed_tokens for r in results)
    compressor_ms = statistics.mean(r.latency_ms for r in results)
    prefill_tok_s = origin / sum(e["original"]["ttft_ms"] / 1e3 for e in effects)
    money = net_saving((origin - compressed) / len(results), prompt_token_price(usd_per_hour, prefill_tok_s),
                       compressor_ms / 1e3, usd_per_hour)
    e2el = [e["e2el"] for e in effects]
    return {
        "model": label, "variant": variant, "rate": rate,
        "origin_tokens": origin, "compressed_tokens": compressed, "ratio": round(origin / max(compressed, 1), 3),
        "compressor_ms": round(compressor_ms, 2),
        "ttft_original_ms": round(statistics.mean(e["original"]["ttft_ms"] for e in effects), 3),
        "ttft_compressed_ms": round(statistics.mean(e["compressed"]["ttft_ms"] for e in effects), 3),
        "e2el_original_ms": round(statistics.mean(e["original"]["e2el_ms"] for e in effects), 3),
        "e2el_compressed_ms": round(statistics.mean(e["compressed"]["e2el_ms"] for e in effects), 3),
        # Positive = slower: the compressed prompt's E2EL plus the compressor, against the original.
        "net_latency_change_ms": round(-statistics.mean(x["net_ms"] for x in e2el), 3),
        "agreement": round(statistics.mean(e["greedy_agreement"] for e in effects), 4),
        "net_saving_usd_per_request": money["net_usd"],
        "pays": money["pays"] and all(x["pays"] for x in e2el),
        "verdict": money["verdict"] + "; " + e2el[0]["verdict"],
    }


def compression_stage(run_dir, meta: dict, summary: dict, console) -> None:
    """Measure each configured rate on each candidate's reference variant; write compression.json."""
    cfg = (meta.get("config") or {}).get("compression")
    if cfg is None:
        return
    from llmbench.backends.registry import backend_for
    from llmbench.models.source import resolve
    from llmbench.optimizers.compress.prompts import load_prompts

    path = Path(cfg["prompts"]) if cfg.get("prompts") else shipped_prompt()
    prompts = load_prompts(path)
    model = cfg.get("model") or DEFAULT_COMPRESSOR
    usd_per_hour = meta["hardware_profile"]["usd_per_hour"] * meta["hardware_profile"].get("devices", 1)
    entries = []
    for cand in meta["config"]["candidates"]:
        label = cand.get("name") or cand["model"]
        variant = cand["variants"][0]
        backend = backend_for(variant)(resolve(cand["model"]), variant, meta["device"], cand.get("dtype") or meta["config"]["dtype"],
                                       cand.get("trust_remote_code", False))
        backend.load()
        try:
            for rate in cfg["rates"]:
                entries.append(_entry(backend, label, variant, prompts, rate, model, usd_per_hour))
        finally:
            backend.close()
    doc = {"prompts": str(path), "compressor_model": model, "new_tokens": NEW_TOKENS, "entries": entries}
    write_json(run_dir.path / "compression.json", doc)
    for e in entries:
        console.print(f"compression: {e['model']} rate {e['rate']}: {e['ratio']}x fewer tokens, net E2EL {e['net_latency_change_ms']:+.1f} ms, "
                      f"agreement {e['agreement']:.2f} ({'pays' if e['pays'] else 'does not pay'})", highlight=False)


register_stage("compression", compression_stage)
