"""Bytes of weights a model reads to produce one token: the numerator of a decode roofline.

At batch 1 a decode step reads every weight matrix once, but only one row of an embedding table
(a Gather), so a table read only through lookups counts as one row. The bound is then
`bandwidth / bytes_per_token` tokens per second; nothing that reads all those bytes beats it.
"""
from __future__ import annotations

from pathlib import Path

# onnx TensorProto data types -> bits per element (int4 packs two per byte).
_BITS = {1: 32, 2: 8, 3: 8, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 16: 16, 21: 4, 22: 4}
# Lookups read one row per token: their table inputs are not streamed.
# GroupQueryAttention (onnxruntime-genai's graphs) reads its rotary cos/sin caches (inputs 7, 8)
# at the current positions only.
_LOOKUPS = {"Gather": (0,), "GatherBlockQuantized": (0, 2, 3), "RotaryEmbedding": (2, 3), "GroupQueryAttention": (7, 8)}


def _tensor_bytes(init) -> int:
    n = 1
    for d in init.dims:
        n *= d
    return (n * _BITS.get(init.data_type, 32) + 7) // 8


def onnx_bytes_per_token(model_file: str | Path) -> int:
    """Initializer bytes of an ONNX model, less the tables it only reads through lookups."""
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    graph = model.graph
    uses: dict[str, set[str]] = {}
    for node in graph.node:
        lookup_inputs = _LOOKUPS.get(node.op_type, ())
        for i, name in enumerate(node.input):
            uses.setdefault(name, set()).add("lookup" if i in lookup_inputs else "stream")
    total = 0
    for init in graph.initializer:
        if uses.get(init.name, {"stream"}) == {"lookup"}:
            total += _tensor_bytes(init) // max(1, init.dims[0] if init.dims else 1)  # one row per token
            continue
        total += _tensor_bytes(init)
    return total


def _packed_bytes(model) -> int:
    """Bytes of the packed weights and biases of quantized Linear layers (kept outside .parameters())."""
    total = 0
    for m in model.modules():
        if hasattr(m, "_packed_params") and hasattr(m, "weight") and callable(m.weight):
            w = m.weight()
            total += w.numel() * w.element_size()
            b = m.bias() if callable(getattr(m, "bias", None)) else None
            if b is not None:
                total += b.numel() * b.element_size()
    return total


def torch_weight_bytes(model) -> int:
    """Bytes of every weight a torch model holds in memory: each parameter once, quantized layers packed.

    This is a variant's size: torch-int8 holds int8 Linear weights, torch-bf16 two bytes per
    weight, whatever the checkpoint file it was loaded from.
    """
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * p.element_size()
    return total + _packed_bytes(model)


def torch_bytes_per_token(model) -> int:
    """Parameter bytes of a torch model; input embeddings that no output layer shares count as one row."""
    import torch

    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    shared = {id(out.weight)} if out is not None and isinstance(getattr(out, "weight", None), torch.Tensor) else set()
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in embeddings and id(p) not in shared:
            total += (p.numel() // max(1, p.shape[0])) * p.element_size()  # one row per token
            continue
        total += p.numel() * p.element_size()
    return total + _packed_bytes(model)
