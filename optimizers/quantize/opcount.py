"""Operator counts of an ONNX model, and a plain statement of what a recipe quantized.

MatMulNBits rewrites `MatMul` nodes only, so a model that exports its linear layers as `Gemm`
(GPT-2) comes out of the int4 recipe unchanged (dynamic int8 handles some Gemm, not all). The
counts make that visible instead of letting an unquantized file pass for a quantized one.

Embedding tables are reported apart (`tables`): onnxruntime's dynamic int8 quantizer stores a
table read by a plain `Gather` as uint8 with one scale for the whole table, which the operator
names alone would hide (the Gather stays a Gather).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Operators that only appear when something was quantized.
QUANTIZED_OPS = ("MatMulNBits", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul",
                 "QGemm", "ConvInteger", "QLinearConv", "GatherBlockQuantized")
# Float operators that carry weights (a constant second input) and could have been quantized.
WEIGHT_OPS = ("MatMul", "Gemm")


@dataclass
class OpReport:
    """What a model holds: every operator count, the quantized ones, and float weight layers left."""

    ops: dict[str, int] = field(default_factory=dict)
    quantized: dict[str, int] = field(default_factory=dict)
    float_weight_layers: dict[str, int] = field(default_factory=dict)
    # Lookup tables (embedding tables) by initializer name: {"op", "shape", "dtype", "scales"}.
    tables: dict[str, dict] = field(default_factory=dict)

    @property
    def quantized_total(self) -> int:
        return sum(self.quantized.values())

    def to_dict(self) -> dict:
        return asdict(self) | {"quantized_total": self.quantized_total}


def _graphs(graph):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 10: "float16", 16: "bfloat16", 21: "uint4", 22: "int4"}


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _tables(graph) -> dict[str, dict]:
    """How each lookup table (a 2-D initializer read by Gather or GatherBlockQuantized) is stored."""
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    tables: dict[str, dict] = {}
    for node in graph.node:
        table = inits.get(node.input[0]) if node.op_type in ("Gather", "GatherBlockQuantized") and node.input else None
        if table is None or len(table.dims) != 2:
            continue
        info = {"op": node.op_type, "shape": list(table.dims), "dtype": _DTYPES.get(table.data_type, str(table.data_type))}
        if node.op_type == "GatherBlockQuantized":
            block = next((a.i for a in node.attribute if a.name == "block_size"), 128)
            scale = inits.get(node.input[2]) if len(node.input) > 2 else None
            info.update(scales=_numel(scale.dims) if scale is not None else None, block_size=block)
        elif info["dtype"] != "float32":
            # A quantized plain Gather is followed by the DequantizeLinear that holds its scale(s).
            deq = next((c for c in consumers.get(node.output[0], []) if c.op_type == "DequantizeLinear"), None)
            scale = inits.get(deq.input[1]) if deq is not None and len(deq.input) > 1 else None
            info.update(scales=_numel(scale.dims) if scale is not None else None)
        tables[table.name] = info
    return tables


def count_ops(model_path: str | Path) -> OpReport:
    """Count the operators of an ONNX file (weights are not loaded: external data stays on disk)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    ops: Counter = Counter()
    float_weights: Counter = Counter()
    for graph in _graphs(model.graph):
        consts = {init.name for init in graph.initializer}
        consts |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
        # A transposed initializer is still a weight (tied output layers are exported that way).
        consts |= {n.output[0] for n in graph.node if n.op_type == "Transpose" and n.input[0] in consts}
        for node in graph.node:
            ops[node.op_type] += 1
            if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in consts:
                float_weights[node.op_type] += 1
    tables = _tables(model.graph)
    quantized = {op: ops[op] for op in QUANTIZED_OPS if ops.get(op)}
    # A plain Gather on an integer table is a quantized lookup too: count it, by what it stores.
    for info in tables.values():
        if info["op"] == "Gather" and info["dtype"] != "float32":
            name = f"Gather ({info['dtype']} table)"
            quantized[name] = quantized.get(name, 0) + 1
    return OpReport(
        ops=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        quantized=quantized,
        float_weight_layers=dict(float_weights),
        tables=tables,
    )


def describe_tables(tables: dict[str, dict]) -> str:
    """'embedding table 4096x64 uint8, 1 scale' for each lookup table, joined (empty when none)."""
    parts = []
    for info in tables.values():
        shape = "x".join(str(d) for d in info["shape"])
        text = f"{shape} {info['dtype']}"
        if info.get("scales") is not None:
            n = info["scales"]
            text += f", {n:,} scale{'s' if n != 1 else ''}"
            text += " (one for the whole table)" if n == 1 else ""
        if info.get("block_size"):
            text += f" (blocks of {info['block_size']})"
        parts.append(text)
    return ("embedding table " if len(parts) == 1 else "lookup tables ") + "; ".join(parts) if parts else ""


def describe(precision: str, report: OpReport) -> str:
    """One line for a person: what was quantized (embedding tables included), and plainly when nothing was."""
    left = ", ".join(f"{n} {op}" for op, n in report.float_weight_layers.items()) or "none"
    tables = describe_tables(report.tables)
    tables = f"; {tables}" if tables else ""
    if precision == "fp32":
        return f"fp32 export: {sum(report.ops.values())} operators, weight layers {left}{tables}"
    if report.quantized_total == 0:
        why = "; MatMulNBits rewrites MatMul only, not Gemm" if precision == "int4" and "Gemm" in report.float_weight_layers else ""
        return f"{precision}: NOTHING WAS QUANTIZED (0 quantized operators; float weight layers left: {left}{why}){tables}"
    done = ", ".join(f"{n} {op}" for op, n in report.quantized.items())
    return f"{precision}: quantized {done}; float weight layers left: {left}{tables}"
