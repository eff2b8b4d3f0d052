"""onnxruntime's quantizers applied to an exported model: int8 dynamic and int4 weight-only."""
from __future__ import annotations

from pathlib import Path

from llmbench.optimizers.quantize.quiet import quiet
from llmbench.optimizers.quantize.recipes import Recipe


def _uses_external_data(model_path: Path) -> bool:
    # Models over 2 GB keep their weights beside the graph; the output must do the same.
    return any(p.suffix in (".onnx_data", ".data") or p.name.endswith(".onnx.data") for p in model_path.parent.iterdir())


def fold_weight_transposes(model) -> int:
    """Give every `MatMul(x, Transpose(W))` on an initializer W its own transposed initializer.

    Models with tied embeddings (Qwen2.5, Llama 3.2 1B) export their output layer as a MatMul on a
    runtime Transpose of the embedding table. The quantizers only rewrite a MatMul whose weight is
    an initializer, so without this the largest layer of such a model would stay in float. The
    embedding table itself stays as it was for the Gather. Returns how many were folded.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded = 0
    for node in list(graph.node):
        if node.op_type != "Transpose" or node.input[0] not in inits:
            continue
        users = consumers.get(node.output[0], [])
        if not users or any(u.op_type != "MatMul" or list(u.input).index(node.output[0]) != 1 for u in users):
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        weight = numpy_helper.to_array(inits[node.input[0]], base_dir="")
        transposed = weight.transpose(perm) if perm else weight.T
        name = f"{node.input[0]}.transposed_for_matmul"
        graph.initializer.append(numpy_helper.from_array(transposed.copy(), name))
        for user in users:
            user.input[1] = name
        graph.node.remove(node)
        folded += 1
    return folded


def quantize_int8(src: Path, dst: Path, recipe: Recipe) -> None:
    """Dynamic int8: weights stored int8, activations quantized on the fly (MatMul with constant B only).

    With `recipe.embeddings` the input embedding table is stored as uint8 too (onnxruntime's
    Gather quantizer: ONE scale and zero point for the whole table, a DequantizeLinear after the
    lookup); without it the table stays float32. opcount reports which.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    # onnxruntime's default list quantizes Gather (embedding lookups) as well as MatMul.
    lookups = ("Gather", "EmbedLayerNormalization")
    op_types = [op for op in IntegerOpsRegistry if recipe.embeddings or op not in lookups]

    external = _uses_external_data(src)
    with quiet():
        model = onnx.load(str(src))
        fold_weight_transposes(model)
        # quantize_dynamic reads a file and writes its shape-inferred copy (<name>-inferred.onnx)
        # beside it, then deletes it: handed the parent variant's cached file, two builds at once
        # (Ray nodes sharing a cache) deleted each other's copy. It gets a private copy beside the output.
        folded = dst.with_name(dst.stem + ".folded.onnx")
        onnx.save(model, str(folded), save_as_external_data=external, location=folded.name + ".data")
        src = folded
        try:
            quantize_dynamic(
                str(src), str(dst), weight_type=QuantType.QInt8, per_channel=recipe.per_channel, op_types_to_quantize=op_types,
                use_external_data_format=external,
                # Fused contrib operators (fuse.py) carry no type information for shape inference.
                extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            for leftover in dst.parent.glob(dst.stem + ".folded.onnx*"):
                leftover.unlink()


def quantize_int4(src: Path, dst: Path, recipe: Recipe) -> None:
    """Weight-only int4 with one scale per block of `block_size` input channels (MatMulNBits).

    With `recipe.embeddings` the embedding table is quantized too (GatherBlockQuantized); the
    quantizer then raises the model to opset 21, which onnxruntime runs.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    external = _uses_external_data(src)
    with quiet():
        model = onnx.load(str(src))
        fold_weight_transposes(model)
        ops = ("MatMul", "Gather") if recipe.embeddings else ("MatMul",)
        # Gather blocks run along the hidden axis (1), so that one token's row dequantizes alone.
        config = DefaultWeightOnlyQuantConfig(
            block_size=recipe.block_size, is_symmetric=recipe.symmetric, accuracy_level=recipe.accuracy_level,
            op_types_to_quantize=ops, quant_axes=(("MatMul", 0), ("Gather", 1)),
        )
        quantizer = MatMulNBitsQuantizer(model, algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=external)


QUANTIZERS = {"int8": quantize_int8, "int4": quantize_int4}
