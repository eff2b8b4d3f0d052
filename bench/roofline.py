"""Decode rooflines: the fastest batch-1 decode a variant's weight traffic allows, and the share reached.

At batch 1 a decode step streams every weight once (an embedding table is read one row per token),
so tokens/s <= read bandwidth / weight bytes per token. Bytes are what the variant's graph really
holds: int8/int4 initializers for quantized ONNX graphs, packed weights for quantized torch layers
(`llmbench.optimizers.quantize.footprint`). Bandwidth is the CPU's parallel read bandwidth, or on
CUDA the device's copy bandwidth (`llmbench.hardware.roofline_bandwidth`).
"""
from __future__ import annotations

# Rows whose requests ran one at a time without queueing: their p50 TPOT is the batch-1 decode speed.
_BATCH1_SCENARIOS = ("single-stream", "batch")


def weight_bytes_per_token(backend) -> int | None:
    """Bytes of weights `backend`'s loaded variant reads per decoded token (None: engine not known)."""
    from llmbench.optimizers.quantize.footprint import onnx_bytes_per_token, torch_bytes_per_token

    own = getattr(backend, "weight_bytes_per_token", None)
    if callable(own):  # an engine that knows its own layout (e.g. a GGUF runtime) says so itself
        return own()
    if backend.kind == "onnx":
        return onnx_bytes_per_token(backend.build.model_file)
    if backend.kind == "torch":
        return torch_bytes_per_token(backend.model)
    return None


def _decode_tok_s(row: dict) -> float | None:
    p50 = (row.get("tpot_ms") or {}).get("p50")
    return 1e3 / p50 if p50 else None


def batch1_decode(rows: list[dict]) -> dict[tuple[str, str], tuple[float, str]]:
    """Per (model, variant): batch-1 decode tok/s (1000 / p50 TPOT) and the point it came from.

    The single-stream point is preferred, then a static batch of 1; failed rows never count.
    """
    out: dict[tuple[str, str], tuple[float, str]] = {}
    for scenario in _BATCH1_SCENARIOS:
        for r in rows:
            key = (r["model"], r["variant"])
            if key in out or r.get("error") or r.get("scenario") != scenario or r.get("batch_size") != 1:
                continue
            tok_s = _decode_tok_s(r)
            if tok_s:
                out[key] = (tok_s, f"{scenario} {r['point']}")
    return out


def add_roofline(rows: list[dict], bandwidth_gbs: float | None, bytes_per_token: dict[tuple[str, str], int | None]) -> None:
    """Add `roofline_tok_s`, `roofline_share` and `roofline_basis` to every row that has the figures.

    `roofline_tok_s` = bandwidth / weight bytes per token of the row's variant. `roofline_share`
    = the variant's batch-1 decode tok/s (its single-stream or batch=1 row) / roofline_tok_s, the
    same for every row of the variant, since the roofline is a batch-1 bound. A variant measured
    at no batch-1 point uses the row's own per-user decode speed (1000 / its p50 TPOT) instead;
    `roofline_basis` says which.
    """
    decode = batch1_decode(rows)
    for r in rows:
        key = (r["model"], r["variant"])
        nbytes = bytes_per_token.get(key)
        # A row measured on a Ray node is bounded by that node's memory, not the driver's.
        bw = r.get("ray_bandwidth_gbs") or bandwidth_gbs
        if not bw or not nbytes:
            continue
        roof = bw * 1e9 / nbytes
        r["weight_bytes_per_token"] = nbytes
        r["roofline_bandwidth_gbs"] = bw
        r["roofline_tok_s"] = roof
        if key in decode:
            tok_s, basis = decode[key]
            r["roofline_basis"] = f"batch-1 decode of this variant ({basis})"
        else:
            tok_s, basis = _decode_tok_s(r), None
            r["roofline_basis"] = "this row's per-user decode speed (no batch-1 point)"
        r["roofline_share"] = tok_s / roof if tok_s else None
