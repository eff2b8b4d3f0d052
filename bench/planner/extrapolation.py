"""How far a plan's load goes beyond what its service model was fitted on, in figures and in words.

Every figure of a plan rests on service times measured at some prompt lengths, output lengths,
KV lengths and batch sizes. `extrapolation` gives, for each, the measured maximum, the load's
maximum, their ratio (`factor`; above 1 means extrapolated that many times beyond the longest
measured) and how many of the load's requests lie beyond, plus one plain line for each that does.
"""
from __future__ import annotations

import numpy as np

from llmbench.planner.service import ServiceModel


def _axis(measured_max: float | None, values: np.ndarray) -> dict | None:
    if measured_max is None or not len(values):
        return None
    beyond = int((values > measured_max).sum())
    top = float(values.max())
    return {"measured_max": float(measured_max), "load_max": top, "factor": top / measured_max if measured_max > 0 else None,
            "requests_beyond": beyond, "share_beyond": beyond / len(values)}


def _times(factor: float | None) -> str:
    """'x2.50', or what stands when nothing was measured on that axis (a measured maximum of 0)."""
    return f"x{factor:.2f}" if factor is not None else "none measured to compare"


def extrapolation(service: ServiceModel, prompts: np.ndarray, outputs: np.ndarray, max_batch: int) -> tuple[dict, list[str]]:
    """({prompt_tokens, output_tokens, kv_tokens, batch: {measured_max, load_max, factor, ...}}, notes)."""
    m = service.measured
    p = np.asarray(prompts, float)
    o = np.asarray(outputs, float)
    n = len(p)
    pmin, pmax = m.get("prompt_tokens", [None, None])
    omax = (m.get("output_tokens") or [None, None])[1]
    doc = {
        "prompt_tokens": _axis(pmax, p),
        "output_tokens": _axis(omax, o),
        "kv_tokens": _axis(m.get("kv_tokens_max"), p + o),
        "batch": {"measured_max": max(service.step_batches), "load_max": int(max_batch),
                  "factor": int(max_batch) / max(service.step_batches)},
    }
    notes = []
    pr = doc["prompt_tokens"]
    if pr and pr["requests_beyond"]:
        q = service.prefill_ms_per_token2
        shape = (f"{service.prefill_fixed_ms:.3g} ms + {service.prefill_ms_per_token:.3g} ms/token + {q:.3g} ms/token^2"
                 if q > 0 else f"{service.prefill_fixed_ms:.3g} ms + {service.prefill_ms_per_token:.3g} ms/token; no "
                 "quadratic term could be fitted, so long prompts are more likely under- than over-estimated")
        notes.append(
            f"{pr['requests_beyond']} of {n} requests ({100 * pr['share_beyond']:.1f}%) have prompts longer than the longest "
            f"measured ({pmax:g} tokens; the load goes to {pr['load_max']:,.0f}, {_times(pr['factor'])}, p95 "
            f"{np.percentile(p, 95):,.0f}): their prefill is extrapolated from the fit ({shape})")
    if pmin is not None and n:
        under = int((p < pmin).sum())
        if under:
            notes.append(f"{under} of {n} requests have prompts shorter than the shortest measured ({pmin:g} tokens): "
                         "prefill interpolated toward the fitted fixed cost")
    out = doc["output_tokens"]
    if out and out["requests_beyond"]:
        notes.append(
            f"{out['requests_beyond']} of {n} requests ({100 * out['share_beyond']:.1f}%) generate more tokens than the most "
            f"measured ({omax:g}; the load goes to {out['load_max']:,.0f}, {_times(out['factor'])}): decode is extrapolated at "
            f"the measured per-step time for the batch size, growing by {service.step_ms_per_kv_token:.3g} ms per batch x KV token")
    kv = doc["kv_tokens"]
    if kv and kv["factor"] and kv["factor"] > 1.1:
        notes.append(f"KV lengths reach {kv['load_max']:,.0f} tokens against {kv['measured_max']:,.0f} measured "
                     f"(x{kv['factor']:.2f}): step-time growth with context is extrapolated linearly")
    bmax = max(service.step_batches)
    if max_batch > bmax:
        how = ("held at the one measured size's step time (optimistic: larger batches cost more per step)"
               if len(service.step_batches) == 1 else
               "extrapolated linearly from the two largest measured sizes (optimistic if the machine saturates)")
        notes.append(f"max batch {max_batch} exceeds the largest measured batch ({bmax}): decode step time {how}")
    return doc, notes
