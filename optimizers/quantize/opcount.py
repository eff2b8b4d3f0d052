"""Operator counts of an ONNX model, and a plain statement of what a recipe quantized.

MatMulNBits rewrites `MatMul` nodes only, so a model that exports its linear layers as `Gemm`
(GPT-2) comes out of the int4 recipe unchanged (dynamic int8 handles some Gemm, not all). The
counts make that visible instead of letting an unquantized file pass for a quantized one.
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
    return OpReport(
        ops=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        quantized={op: ops[op] for op in QUANTIZED_OPS if ops.get(op)},
        float_weight_layers=dict(float_weights),
    )


def describe(precision: str, report: OpReport) -> str:
    """One line for a person: what was quantized, and plainly when nothing was."""
    left = ", ".join(f"{n} {op}" for op, n in report.float_weight_layers.items()) or "none"
    if precision == "fp32":
        return f"fp32 export: {sum(report.ops.values())} operators, weight layers {left}"
    if report.quantized_total == 0:
        why = "; MatMulNBits rewrites MatMul only, not Gemm" if precision == "int4" and "Gemm" in report.float_weight_layers else ""
        return f"{precision}: NOTHING WAS QUANTIZED (0 quantized operators; float weight layers left: {left}{why})"
    done = ", ".join(f"{n} {op}" for op, n in report.quantized.items())
    return f"{precision}: quantized {done}; float weight layers left: {left}"
