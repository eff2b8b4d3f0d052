"""Hand-built results folders whose right answers are known (used by the recommend, export and
report tests), made through llmbench's own summary code so that rows look like real ones."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmbench.optimizers.cache.chooser import Outcomes, curve, rates
from llmbench.optimizers.cache.simulate import COSINE_GRID
from llmbench.quality import annotate_rows
from llmbench.records import RequestRecord
from llmbench.results import RunDir, write_json
from llmbench.summary import build_summary, write_summary


def cell(model: str, variant: str = "torch-fp32", batch: int = 1, ttft_ms: float = 100.0, tpot_ms: float = 10.0,
         n: int = 24, output_tokens: int = 32, jitter: float = 0.03, prompt_tokens: tuple = (40, 160)) -> dict:
    """One scenario point: TTFT scales with prompt length (ttft_ms at 100 tokens), TPOT is fixed."""
    scenario, point = ("single-stream", "single") if batch == 1 else ("batch", f"batch={batch}")
    return dict(model=model, variant=variant, scenario=scenario, point=point, batch=batch, ttft_ms=ttft_ms,
                tpot_ms=tpot_ms, n=n, output_tokens=output_tokens, jitter=jitter, prompt_tokens=prompt_tokens)


# A variant an engine serves on a CPU (llama.cpp's llama-server): what a deployment can be made of.
# torch on a CPU, ONNX exports and ONNX Runtime GenAI models are measured but never deployed.
SERVED = "gguf-f16"


def served(model: str, variant: str = SERVED, **kw) -> dict:
    """A cell of a variant llama.cpp serves (see `cell`)."""
    return cell(model, variant, **kw)


def _records(c: dict, run_id: str, rng: np.random.Generator, t0: float) -> list[RequestRecord]:
    out, t, batch = [], t0, []
    for i in range(c["n"]):
        p = c["prompt_tokens"][i % len(c["prompt_tokens"])]
        noise = 1.0 + c["jitter"] * rng.standard_normal(2)
        ttft = c["ttft_ms"] * p / 100.0 * noise[0]
        tpot = c["tpot_ms"] * noise[1]
        e2el = ttft + tpot * (c["output_tokens"] - 1)
        # Requests of one static batch start together; the next batch starts when its slowest ends,
        # so throughput is batch size / the batch's time, as on a real server.
        batch.append(RequestRecord(timestamp=t, run_id=run_id, model=c["model"], variant=c["variant"], scenario=c["scenario"],
                                   point=c["point"], request_id=i, prompt_tokens=p, output_tokens=c["output_tokens"], ttft_ms=ttft,
                                   e2el_ms=e2el, itl_ms=[tpot] * (c["output_tokens"] - 1), batch_size=c["batch"], prompt_length=4 * p))
        if len(batch) == c["batch"] or i == c["n"] - 1:
            t += max(r.e2el_ms for r in batch) / 1e3
            out += batch
            batch = []
    return out


def make_run(path: Path, cells: list[dict], usd_per_hour: float = 1.0, params: dict | None = None,
             quality: dict | None = None, random_weights: bool = False, config: dict | None = None,
             run_id: str = "test-run", seed: int = 0, extra_files: dict | None = None, device: str = "cpu") -> Path:
    """A results folder: run.json, requests.jsonl, summary.json (+ quality figures and extra files).

    `quality` maps (model, variant) to that variant's entry in quality.json; the rows get them the
    way the quality stage adds them. `device` "cuda" makes it a run on a GPU profile.
    """
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    recs = [r for i, c in enumerate(cells) for r in _records(c, run_id, rng, 1.7e9 + 1000.0 * i)]
    (path / "requests.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in recs))
    variants = {f"{c['model']}|{c['variant']}": {"parameters": (params or {}).get(c["model"], 1_000_000), "size_bytes": 4_000_000,
                                                  "device": device, "dtype": "float32", "random_weights": random_weights} for c in cells}
    kind = "cuda" if device.startswith("cuda") else "cpu"
    meta = {"run_id": run_id, "config": {"slo": None, "plan": None, "quality": None, **(config or {})},
            "hardware_profile": {"name": f"test-{kind}", "kind": kind, "devices": 1, "usd_per_hour": usd_per_hour},
            "device": device, "variants": variants, "cells": {}}
    write_json(path / "run.json", meta)
    rd = RunDir(path)
    summary = build_summary(rd, meta)
    if quality:
        doc = {"golden": {"name": "test", "version": "1"}, "device": "cpu", "candidates": {}}
        for (model, variant), q in quality.items():
            doc["candidates"].setdefault(model, {"reference": "torch-fp32", "variants": {}})["variants"][variant] = q
        write_json(path / "quality.json", doc)
        annotate_rows(summary, meta, doc)
    write_summary(rd, summary)
    for name, doc in (extra_files or {}).items():
        (path / name).write_text(json.dumps(doc))
    return path


def _per_request(r: dict, n: int, embed_ms: float, traffic: str) -> dict:
    # Pairs mode replays 2n requests (each pair's text_a, then its text_b): a served lookup is one
    # request served from cache, a false hit one request answered wrongly (as the cache stage writes).
    served = r["served"] / (2 * n)
    wrong = ((r.get("false_hits") or 0) + (r.get("wrong_entries") or 0)) / (2 * n)
    return {**r, "served_from_cache_rate": served, "wrong_answer_rate": wrong, "embed_ms_p50": embed_ms, "lookup_ms_p50": 0.1,
            "traffic": traffic, "units": {"hit_rate": "per labelled lookup", "false_hit_rate": "per labelled lookup",
                                          "served_from_cache_rate": "per request", "wrong_answer_rate": "per request"}}


def cache_doc(scores: list[float], labels: list[int], threshold: float, baseline_threshold: float,
              embed_ms: float = 15.0, traffic: str = "shipped sample pairs (not your traffic)") -> dict:
    """cache.json as the cache stage writes it for labelled pairs when the profile's rule is plain
    cosine: the simulator's own rates and sweep over these lookups' best cosines (a served
    duplicate always finds its own entry), per-lookup and per-request figures, and the gateway block."""
    o = Outcomes(np.asarray(scores), np.ones(len(scores), bool), np.asarray(labels))
    n = len(scores)
    setting = {"rule": "cosine", "threshold": threshold, "target_false_hit": 0.05, "candidates": 1, "source": "cache profile"}
    main = _per_request(rates(o, threshold), n, embed_ms, traffic)
    base = _per_request(rates(o, baseline_threshold), n, embed_ms, traffic)
    return {**main, "log": "pairs.jsonl", "kind": "pairs", "lookup_ms_p99": 0.4,
            "setting": setting, "baseline": {**base, "rule": "cosine", "threshold": baseline_threshold},
            "gateway": {**main, "rule": "cosine", "threshold": threshold},
            "sweep": {"cosine": curve(o, COSINE_GRID), "verifier": []}}


def prompt_cache_doc(served: list[bool], threshold: float) -> dict:
    """cache.json as the cache stage writes it for a log of prompts (`simulate_prompts`): hits
    only, since without labels there are no false-hit figures."""
    unlabelled = {"false_hit_rate": None, "wrong_entry_rate": None, "precision": None, "false_hits": None, "wrong_entries": None}
    hits = {"lookups": len(served), "hits": sum(served), "hit_rate": sum(served) / len(served), **unlabelled}
    setting = {"rule": "cosine", "threshold": threshold, "target_false_hit": 0.05, "candidates": 1, "source": "cache profile"}
    return {"log": "requests.jsonl", "kind": "prompts", **hits, "entries": len(served) - sum(served), "lookup_ms_p50": 0.1,
            "lookup_ms_p99": 0.4, "setting": setting, "baseline": {"rule": "cosine", "threshold": threshold, **hits}}


def compression_entry(model: str, rate: float, ratio: float, agreement: float, net_latency_change_ms: float,
                      net_saving_usd_per_request: float, variant: str = "torch-fp32", compressor_ms: float = 20.0,
                      ttft_original_ms: float = 100.0, ttft_compressed_ms: float | None = None) -> dict:
    """One entry of compression.json as the compression stage writes it (for 1000 original tokens)."""
    return {"model": model, "variant": variant, "rate": rate, "origin_tokens": 1000,
            "compressed_tokens": round(1000 / ratio), "ratio": ratio, "compressor_ms": compressor_ms,
            "ttft_original_ms": ttft_original_ms,
            "ttft_compressed_ms": ttft_original_ms / ratio if ttft_compressed_ms is None else ttft_compressed_ms,
            "net_latency_change_ms": net_latency_change_ms, "agreement": agreement,
            "net_saving_usd_per_request": net_saving_usd_per_request,
            "pays": net_saving_usd_per_request > 0 and net_latency_change_ms < 0, "verdict": "test entry"}


def compression_doc(*entries: dict) -> dict:
    """compression.json as the compression stage writes it."""
    return {"prompts": "prompt.txt", "compressor_model": "card:llama-5m", "new_tokens": 16, "entries": list(entries)}


def test_builder_makes_a_readable_run(tmp_path):
    run = make_run(tmp_path / "r", [cell("m-small"), cell("m-small", batch=4)])
    rows = json.loads((run / "summary.json").read_text())["rows"]
    assert len(rows) == 2 and all(r["e2el_ms"]["p95"] > 0 for r in rows)
    single, batch = rows
    assert batch["request_throughput_req_s"] > 2 * single["request_throughput_req_s"]
