"""Let the exported graph compute logits for the last positions only (an optional `logits_start` input).

optimum's export applies the output layer to every position of the prompt, so a prefill of S
tokens multiplies an S x hidden matrix by the whole vocabulary projection, although greedy
decoding needs the last row only (transformers' `logits_to_keep=1`, which the torch backend
uses). For a 32,000-word vocabulary that is most of the prefill's arithmetic at short prompts,
and it would put the ONNX variants' TTFT at a disadvantage that has nothing to do with them.
A Slice from `logits_start` along the sequence axis before the output layer fixes that; the
quality gate passes 0 to get every position.
"""
from __future__ import annotations

INPUT = "logits_start"
_INT64_MAX = 2**63 - 1


def _output_layer(graph):
    """The MatMul that produces `logits` (possibly through a bias Add), or None."""
    producers = {o: n for n in graph.node for o in n.output}
    node = producers.get("logits")
    if node is not None and node.op_type == "Add":
        node = next((producers[i] for i in node.input if i in producers and producers[i].op_type == "MatMul"), None)
    return node if node is not None and node.op_type == "MatMul" else None


def add_logits_start(model) -> bool:
    """Insert `Slice(hidden, logits_start:, axis=1)` before the output layer; False if not found."""
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    graph = model.graph
    if any(i.name == INPUT for i in graph.input):
        return True
    layer = _output_layer(graph)
    if layer is None:
        return False
    hidden = layer.input[0]
    sliced = f"{hidden}/from_logits_start"
    graph.initializer.extend([
        numpy_helper.from_array(np.array([_INT64_MAX], dtype=np.int64), "logits_start/ends"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "logits_start/axes"),
    ])
    slice_node = helper.make_node("Slice", [hidden, INPUT, "logits_start/ends", "logits_start/axes"], [sliced],
                                  name="/logits_start/Slice")
    layer.input[0] = sliced
    index = list(graph.node).index(layer)
    graph.node.insert(index, slice_node)
    graph.input.append(helper.make_tensor_value_info(INPUT, TensorProto.INT64, [1]))
    return True
