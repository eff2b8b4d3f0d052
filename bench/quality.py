"""The quality gate: each variant against its candidate's reference variant on a golden set.

Figures (DESIGN.md, "Metric definitions"):
  greedy_agreement  mean over prompts of the share of generated tokens before the first difference
                    from the reference's greedy output (after a difference the two continue from
                    different prefixes, so later positions say nothing more)
  greedy_exact      share of prompts whose greedy output equals the reference's
  top1_agreement    teacher-forced on the golden texts: share of positions whose argmax matches
  kl_mean           mean KL(reference || variant) of the next-token distributions there (nats)
  ppl, ppl_delta    perplexity on the golden texts, and its change from the reference's
  exact_match, contains  against the set's reference answers, where it has them

A variant passes when it keeps at least `min_share` of the reference's quality: both agreement
figures at or above min_share, and its answer scores at or above min_share of the reference's
(plus `max_ppl_increase` and `max_kl` when configured). Random-weight models are measured and
shown but neither pass nor fail: "unverified: random weights" (their logits are nearly flat, so
greedy outputs differ by ties, not by damage). A local model whose reference logits are nearly
flat (mean entropy above FLAT_ENTROPY_SHARE of uniform) is treated the same way, with that reason.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from llmbench.config import QualityConfig
from llmbench.golden import GoldenSet, load_golden

MAX_TEXT_TOKENS = 256
UNVERIFIED = "unverified: random weights"
# Above this share of the uniform distribution's entropy the reference's logits are treated as
# flat (a trained model sits far lower; random weights sit at about 0.99).
FLAT_ENTROPY_SHARE = 0.9


# Bits per weight of each variant family, for choosing the reference: the highest-precision
# variant is the one every other is judged against (a lower-precision reference would hide the
# damage quantization does, or charge a full-precision variant with the reference's own error).
_PRECISION = (("fp32", 32), ("float32", 32), ("bf16", 16), ("fp16", 16), ("float16", 16), ("f16", 16), ("int8", 8),
              ("q8", 8), ("int4", 4), ("q4", 4))
FULL_PRECISION_REFERENCE = "torch-fp32"


def precision_bits(variant: str) -> int:
    """Bits per weight a variant name implies (0 when it names none)."""
    name = variant.lower()
    return next((bits for tag, bits in _PRECISION if tag in name), 0)


def reference_variant(device: str, variants: list[str] | None = None) -> str:
    """The variant every other variant is judged against: the highest-precision one listed.

    Among equals a torch variant goes first (the gate's teacher-forced logits come from torch
    most directly), then the listed order. When none of the listed variants is 32-bit (or none is
    listed), torch-fp32 is measured as the reference anyway, on any device: fp32 weights are
    the source's own, and a bf16 reference would judge fp32 variants against a rounder copy.
    """
    listed = [v for v in (variants or []) if precision_bits(v) == 32]
    if not listed:
        return FULL_PRECISION_REFERENCE
    return min(listed, key=lambda v: (not v.startswith("torch-"), listed.index(v)))


# ---- what one variant produces on the golden set ------------------------------------------------
@dataclass
class Encoded:
    """The golden set in one model's tokens: prompts for generation, texts for teacher forcing."""

    prompts: list[list[int]]
    texts: list[list[int]]


@dataclass
class Outputs:
    greedy: list[list[int]]
    logits: object  # float32 tensor [items, width, vocab], teacher-forced on the left-padded texts
    answers: list[str]
    seconds: float = 0.0


def encode(tokenizer, golden: GoldenSet) -> Encoded:
    def ids(text: str) -> list[int]:
        return tokenizer(text)["input_ids"][:MAX_TEXT_TOKENS]

    return Encoded([ids(i.prompt) for i in golden.items], [ids(i.text) for i in golden.items])


def eos_ids(tokenizer, backend=None) -> set[int]:
    """Token ids that end a generation: the tokenizer's EOS and the model's generation config's."""
    ids: set[int] = set()
    for value in (getattr(tokenizer, "eos_token_id", None),
                  getattr(getattr(getattr(backend, "model", None), "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value if isinstance(v, int))
    return ids


def cut_at_eos(ids: list[int], eos: set[int]) -> list[int]:
    """Tokens up to and including the first end-of-sequence token (the backends generate a fixed count)."""
    for i, tok in enumerate(ids):
        if tok in eos:
            return list(ids[: i + 1])
    return list(ids)


def cut_at_stop(text: str, stops: tuple[str, ...] | list[str]) -> str:
    """Text before the earliest stop string (the whole text when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


def collect(backend, tokenizer, enc: Encoded, max_new_tokens: int,
            stops: list[tuple[str, ...]] | None = None) -> Outputs:
    """Greedy outputs (one batch) and teacher-forced logits of one loaded backend.

    Generation runs a fixed number of tokens, so each output is cut after its first EOS, and each
    answer at its golden item's stop strings, before anything is scored: text a model would never
    have returned must not count for or against it.
    """
    t = time.perf_counter()
    gen = backend.generate(enc.prompts, max_new_tokens, timed=False)
    logits = backend.next_token_logits(enc.texts).float()
    eos = eos_ids(tokenizer, backend)
    greedy = [cut_at_eos(ids, eos) for ids in gen.output_ids]
    stops = stops or [()] * len(greedy)
    answers = [cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), st) for ids, st in zip(greedy, stops)]
    return Outputs(greedy, logits, answers, time.perf_counter() - t)


# ---- figures ------------------------------------------------------------------------------------
def greedy_agreement(ref: list[list[int]], var: list[list[int]]) -> tuple[float, float]:
    """(mean share of tokens before the first difference, share of identical sequences)."""
    shares, same = [], 0
    for a, b in zip(ref, var):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        shares.append(n / max(len(a), 1))
        same += a == b
    return sum(shares) / len(shares), same / len(ref)


def _targets(texts: list[list[int]]):
    """Next-token targets and their validity for left-padded texts: position j predicts j+1."""
    import torch

    width = max(len(t) for t in texts)
    targets = torch.zeros((len(texts), width - 1), dtype=torch.long)
    valid = torch.zeros((len(texts), width - 1), dtype=torch.bool)
    for row, t in enumerate(texts):
        pad = width - len(t)
        if len(t) > 1:
            targets[row, pad:] = torch.tensor(t[1:], dtype=torch.long)
            valid[row, pad:] = True
    return targets, valid


def next_token_figures(ref_logits, var_logits, texts: list[list[int]]) -> dict:
    """top1_agreement, kl_mean, and both perplexities over the valid teacher-forced positions."""
    import torch

    targets, valid = _targets(texts)
    ref_lp = torch.log_softmax(ref_logits[:, :-1].double(), dim=-1)[valid]
    var_lp = torch.log_softmax(var_logits[:, :-1].double(), dim=-1)[valid]
    tgt = targets[valid]
    kl = (ref_lp.exp() * (ref_lp - var_lp)).sum(-1).clamp(min=0.0)
    ppl_ref = torch.exp(-ref_lp.gather(-1, tgt[:, None]).mean()).item()
    ppl = torch.exp(-var_lp.gather(-1, tgt[:, None]).mean()).item()
    return {
        "top1_agreement": (ref_lp.argmax(-1) == var_lp.argmax(-1)).double().mean().item(),
        "kl_mean": kl.mean().item(),
        "ppl": ppl,
        "ppl_reference": ppl_ref,
        "positions": int(valid.sum()),
    }


def entropy_share(logits, texts: list[list[int]]) -> float:
    """Mean next-token entropy as a share of the uniform distribution's (1.0 = flat logits)."""
    import math

    import torch

    _, valid = _targets(texts)
    lp = torch.log_softmax(logits[:, :-1].double(), dim=-1)[valid]
    entropy = -(lp.exp() * lp).sum(-1).mean().item()
    return entropy / math.log(logits.shape[-1])


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip(" \t.,;:!?\"'")


def answer_scores(answers: list[str], references: list[str | None]) -> dict | None:
    """exact_match (first line equals the reference) and contains (reference as a whole word), or None."""
    pairs = [(a, r) for a, r in zip(answers, references) if r]
    if not pairs:
        return None
    exact = sum(_norm((a.strip().splitlines() or [""])[0]) == _norm(r) for a, r in pairs)
    contains = sum(re.search(rf"(?<!\w){re.escape(_norm(r))}(?!\w)", _norm(a)) is not None for a, r in pairs)
    return {"exact_match": exact / len(pairs), "contains": contains / len(pairs), "answered": len(pairs)}


def by_difficulty(ref: Outputs, var: Outputs, enc: Encoded, labels: list[str | None]) -> dict:
    """The agreement figures per difficulty label of the golden set ({} when it has none)."""
    groups: dict[str, list[int]] = {}
    for row, label in enumerate(labels):
        if label:
            groups.setdefault(label, []).append(row)
    out = {}
    for label, rows in groups.items():
        texts = [enc.texts[r] for r in rows]
        width = max(len(t) for t in texts)
        # Rows keep the batch's left padding; trim the shared padding so positions line up.
        cut = ref.logits.shape[1] - width
        agree, _ = greedy_agreement([ref.greedy[r] for r in rows], [var.greedy[r] for r in rows])
        tf = next_token_figures(ref.logits[rows, cut:], var.logits[rows, cut:], texts)
        out[label] = {"greedy_agreement": round(agree, 6), "top1_agreement": round(tf["top1_agreement"], 6),
                      "kl_mean": round(tf["kl_mean"], 6), "n": len(rows)}
    return out


def compare(ref: Outputs, var: Outputs, enc: Encoded, references: list[str | None],
            labels: list[str | None] | None = None) -> dict:
    """Every figure of a variant against the reference's outputs (per difficulty where labelled)."""
    agree, exact = greedy_agreement(ref.greedy, var.greedy)
    figs = {"greedy_agreement": agree, "greedy_exact": exact}
    figs |= next_token_figures(ref.logits, var.logits, enc.texts)
    figs["ppl_delta"] = figs["ppl"] - figs["ppl_reference"]
    scores = answer_scores(var.answers, references)
    if scores:
        figs |= scores
    groups = by_difficulty(ref, var, enc, labels or [])
    if groups:
        figs["by_difficulty"] = groups
    return figs


def gate(figs: dict, ref_scores: dict | None, cfg: QualityConfig, unverified: str | None) -> dict:
    """Pass/fail with every check that decided it; `unverified` (a reason) shows the checks but decides nothing."""
    share = cfg.min_share
    # A served variant has no teacher-forced figures (quality_served): only measured figures are checked.
    checks = {k: {"value": figs[k], "min": share, "ok": figs[k] >= share}
              for k in ("greedy_agreement", "top1_agreement") if k in figs}
    for k in ("exact_match", "contains"):
        if ref_scores and ref_scores.get(k) and k in figs:
            kept = figs[k] / ref_scores[k]
            checks[f"{k}_kept"] = {"value": kept, "min": share, "ok": kept >= share}
    if cfg.max_ppl_increase is not None and "ppl" in figs:
        rise = figs["ppl"] / figs["ppl_reference"] - 1
        checks["ppl_increase"] = {"value": rise, "max": cfg.max_ppl_increase, "ok": rise <= cfg.max_ppl_increase}
    if cfg.max_kl is not None and "kl_mean" in figs:
        checks["kl_mean"] = {"value": figs["kl_mean"], "max": cfg.max_kl, "ok": figs["kl_mean"] <= cfg.max_kl}
    ok = all(c["ok"] for c in checks.values())
    if unverified:
        return {"gate": "unverified", "gate_note": unverified, "would_pass": ok, "checks": checks}
    return {"gate": "pass" if ok else "fail", "checks": checks}


def _rounded(d: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}


# ---- one candidate ------------------------------------------------------------------------------
def measure_candidate(source, variants: list[str], device: str, dtype: str, golden: GoldenSet, cfg: QualityConfig,
                      trust_remote_code: bool = False, log=lambda s: None) -> dict:
    """Run the golden set through the reference and each variant; figures and gate per variant."""
    from llmbench.backends.registry import backend_for
    from llmbench.quality_served import collect_greedy, compare_greedy, is_served

    ref_name = reference_variant(device, variants)
    references = [i.reference for i in golden.items]
    stops = [i.stop for i in golden.items]

    def load(variant: str):
        backend = backend_for(variant)(source, variant, device, dtype, trust_remote_code)
        backend.load()
        return backend

    t = time.perf_counter()
    ref_backend = load(ref_name)
    tokenizer = ref_backend.tokenizer
    try:
        enc = encode(tokenizer, golden)
        ref = collect(ref_backend, tokenizer, enc, cfg.max_new_tokens, stops)
    finally:
        ref_backend.close()
    ref_scores = answer_scores(ref.answers, references)
    base = next_token_figures(ref.logits, ref.logits, enc.texts)
    flat = entropy_share(ref.logits, enc.texts)
    unverified = None
    if source.random_weights:
        unverified = UNVERIFIED
    elif flat > FLAT_ENTROPY_SHARE:
        # A local folder can hold untrained weights too; their verdicts would be ties, not damage.
        unverified = f"unverified: near-flat reference logits (entropy {flat:.0%} of uniform; untrained weights?)"
    out = {
        "reference": ref_name,
        "reference_variant": ref_name,
        "reference_why": ("the highest-precision variant listed" if ref_name in variants
                          else "no 32-bit variant listed: torch-fp32 measured as the reference"),
        "random_weights": source.random_weights,
        "entropy_share": round(flat, 4),
        "variants": {ref_name: _rounded({"role": "reference", "gate": "reference", "ppl": base["ppl"],
                                          "entropy_share": flat, **(ref_scores or {}), "seconds": ref.seconds})},
    }
    # Each variant's golden-set answers (cut as scored), for the judge (bench/judge/stage.py).
    out["answers"] = {ref_name: ref.answers}
    for variant in variants:
        if variant == ref_name:
            continue
        try:
            backend = load(variant)
            served = is_served(backend)
            try:
                var = (collect_greedy if served else collect)(backend, tokenizer, enc, cfg.max_new_tokens, stops)
            finally:
                backend.close()
            labels = [i.difficulty for i in golden.items]
            figs = compare_greedy(ref, var, references, labels) if served else compare(ref, var, enc, references, labels)
            out["answers"][variant] = var.answers
            result = _rounded(figs) | gate(figs, ref_scores, cfg, unverified) | {"seconds": round(var.seconds, 3)}
        except Exception as exc:  # one broken variant must not hide the others' figures
            result = {"gate": "error", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
        out["variants"][variant] = result
        log(f"{variant}: measured")  # progress only: the stage prints each verdict once, with its figures
    out["seconds"] = round(time.perf_counter() - t, 3)
    return out


# ---- the stage ----------------------------------------------------------------------------------
def quality_config(meta: dict) -> QualityConfig:
    return QualityConfig.model_validate(meta.get("config", {}).get("quality") or {})


def run_quality(meta: dict, log=lambda s: None) -> dict:
    """quality.json's document for a run: every candidate that has variants besides its reference."""
    from llmbench.models.source import resolve

    cfg = quality_config(meta)
    golden = load_golden(cfg.golden_set)
    device = meta.get("device") or "cpu"
    doc = {"golden": golden.identity(), "min_share": cfg.min_share, "max_new_tokens": cfg.max_new_tokens,
           "device": device, "candidates": {}}
    config = meta["config"]
    for cand in config["candidates"]:
        if cand.get("endpoint"):  # a server someone else runs: its weights are not here to compare
            ep = cand["endpoint"]
            label = cand.get("name") or ep.get("model")
            doc["candidates"][label] = {"skipped": "not measured: an endpoint's model has no local reference variant"}
            continue
        label = cand.get("name") or str(cand["model"])
        ref_name = reference_variant(device, cand["variants"])
        others = [v for v in cand["variants"] if v != ref_name]
        if not others:
            doc["candidates"][label] = {"reference": ref_name, "reference_variant": ref_name,
                                        "skipped": "no variant besides the reference"}
            continue
        dtype = cand.get("dtype") or config.get("dtype", "float32")
        try:
            source = resolve(str(cand["model"]), where=f"candidate {label}")
            doc["candidates"][label] = measure_candidate(source, cand["variants"], device, dtype, golden, cfg,
                                                         cand.get("trust_remote_code", False),
                                                         lambda s, label=label: log(f"{label} {s}"))
        except Exception as exc:  # e.g. the reference does not load: the other candidates still count
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            doc["candidates"][label] = {"reference": ref_name, "reference_variant": ref_name, "error": msg,
                                        "variants": {v: {"gate": "error", "error": msg} for v in others}}
            log(f"{label}: {msg}")
    return doc


# Facts measured while building and loading each variant (run.json "variants"), copied into rows.
_VARIANT_FACTS = ("build_s", "build_total_s", "cache_hit", "source_bytes", "size_ratio", "session_load_s",
                  "load_peak_rss_mb", "quantized_ops", "quantize_note")


def _ratio(a, b) -> float | None:
    return round(a / b, 4) if a and b else None


def annotate_rows(summary: dict, meta: dict, doc: dict) -> None:
    """Add quality figures, variant facts and speed-ups over the reference variant to summary rows."""
    rows = summary.get("rows", [])
    by_cell = {(r["model"], r["variant"], r["scenario"], r["point"]): r for r in rows}
    for row in rows:
        vmeta = meta.get("variants", {}).get(f"{row['model']}|{row['variant']}", {})
        row.update({k: vmeta[k] for k in _VARIANT_FACTS if k in vmeta})
        cand = doc["candidates"].get(row["model"], {})
        ref_name = cand.get("reference") or reference_variant(doc.get("device", "cpu"))
        q = cand.get("variants", {}).get(row["variant"])
        if q is not None:
            row["quality"] = {"reference": cand.get("reference"), "golden": f"{doc['golden']['name']}@{doc['golden']['version']}",
                              **{k: v for k, v in q.items() if k != "checks"}}
        ref = by_cell.get((row["model"], ref_name, row["scenario"], row["point"]))
        if ref is None or row.get("error") or ref.get("error"):
            continue
        row["speedup_vs_reference"] = {
            "reference": ref_name,
            "ttft_p50": _ratio((ref.get("ttft_ms") or {}).get("p50"), (row.get("ttft_ms") or {}).get("p50")),
            "tpot_p50": _ratio((ref.get("tpot_ms") or {}).get("p50"), (row.get("tpot_ms") or {}).get("p50")),
            "throughput": _ratio(row.get("output_throughput_tok_s"), ref.get("output_throughput_tok_s")),
        }


def quality_stage(run_dir, meta: dict, summary: dict, console) -> None:
    """The registered stage: quality.json in the run folder, figures and speed-ups in the summary."""
    from llmbench.results import write_json
    from llmbench.summary import write_summary

    t = time.perf_counter()
    doc = run_quality(meta, log=lambda s: console.print(f"  quality {s}"))
    doc["seconds"] = round(time.perf_counter() - t, 3)
    write_json(run_dir.path / "quality.json", doc)
    annotate_rows(summary, meta, doc)
    write_summary(run_dir, summary)
    for label, cand in doc["candidates"].items():
        for variant, q in cand.get("variants", {}).items():
            if q.get("role") == "reference":
                continue
            figs = ", ".join(f"{k} {q[k]:.3f}" for k in ("greedy_agreement", "top1_agreement", "kl_mean", "ppl_delta") if k in q)
            console.print(f"quality {label} {variant}: {q.get('gate_note') or q.get('gate')}  {figs or q.get('error', '')}")
