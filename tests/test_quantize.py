"""Variants of two tiny architectures: built, counted, cached, and rebuilt when corrupt."""
from __future__ import annotations

import json

import pytest
from tiny_models import ARCHS, tiny_sources

from llmbench.errors import BadInput
from llmbench.optimizers.quantize.build import build_variant
from llmbench.optimizers.quantize.opcount import count_ops, describe
from llmbench.optimizers.quantize.recipes import Recipe, onnx_recipe
from llmbench.optimizers.quantize.store import VariantStore, cache_key

ONNX_VARIANTS = ("onnx-fp32", "onnx-int8", "onnx-int4")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return tiny_sources(tmp_path_factory)


@pytest.fixture(scope="module")
def builds(sources):
    """Every ONNX variant of both architectures, built once for the module (cached for the session)."""
    return {(arch, v): build_variant(sources[arch], v) for arch in ARCHS for v in ONNX_VARIANTS}


def test_recipe_names():
    assert onnx_recipe("onnx-int4") == Recipe("int4", block_size=32)
    assert onnx_recipe("onnx-int4-b128").block_size == 128
    assert onnx_recipe("onnx-int4", block_size=64).variant == "onnx-int4-b64"
    assert onnx_recipe("onnx-int8").identity() != onnx_recipe("onnx-fp32").identity()
    for bad in ("onnx-int5", "onnx-int4-b48", "torch-int8", "onnx-int4-b8"):
        with pytest.raises(BadInput):
            onnx_recipe(bad)


def test_cache_key_covers_source_recipe_and_versions():
    base = cache_key("abc", {"precision": "int4"}, {"onnxruntime": "1.32.0"})
    assert base == cache_key("abc", {"precision": "int4"}, {"onnxruntime": "1.32.0"})
    assert base != cache_key("abd", {"precision": "int4"}, {"onnxruntime": "1.32.0"})
    assert base != cache_key("abc", {"precision": "int8"}, {"onnxruntime": "1.32.0"})
    assert base != cache_key("abc", {"precision": "int4"}, {"onnxruntime": "1.33.0"})


@pytest.mark.parametrize("arch", ARCHS)
def test_every_variant_is_built_with_its_operators(builds, arch):
    fp32, int8, int4 = (builds[(arch, v)] for v in ONNX_VARIANTS)
    weight_matmuls = fp32.ops["float_weight_layers"].get("MatMul", 0)
    # 2 layers x (q, k, v, o, gate, up, down) + lm_head (tied or not, it is a MatMul on a weight)
    assert weight_matmuls == 2 * 7 + 1
    assert fp32.ops["quantized_total"] == 0 and "fp32 export" in fp32.note
    # Norms and rotary embeddings fused (2 per layer each), the key-value interface left alone.
    fusion = fp32.extra["graph"]["fusion"]
    assert fusion["fused"] == {"RotaryEmbedding": 4, "SkipSimplifiedLayerNormalization": 4}
    assert fusion["nodes_after"] < fusion["nodes_before"] and int4.extra["graph"]["fusion"] == fusion and fp32.extra["graph"]["logits_start"]
    assert fusion["rotary_positions"] == 256  # the tables stop at the model's max_position_embeddings
    assert int4.ops["quantized"] == {"MatMulNBits": weight_matmuls, "GatherBlockQuantized": 1}
    assert int4.ops["float_weight_layers"] == {}
    assert int8.ops["quantized"].get("MatMulInteger", 0) + int8.ops["quantized"].get("DynamicQuantizeMatMul", 0) == weight_matmuls
    assert "NOTHING" not in int4.note and "quantized 15 MatMulNBits, 1 GatherBlockQuantized" in int4.note
    for b in (fp32, int8, int4):
        assert b.model_file.is_file() and (b.path / "tokenizer.json").is_file() and (b.path / "config.json").is_file()
        assert b.source_bytes > 0 and b.size_bytes > 0
    # Quantized files are smaller than the fp32 export (the embedding table stays float in int4).
    assert int8.size_bytes < fp32.size_bytes and int4.size_bytes < fp32.size_bytes
    assert int4.recipe["block_size"] == 32 and int4.recipe["symmetric"] is True


def test_second_build_is_a_cache_hit(builds, sources):
    again = build_variant(sources["llama"], "onnx-int4")
    assert again.cache_hit and again.path == builds[("llama", "onnx-int4")].path
    assert again.build_s == builds[("llama", "onnx-int4")].build_s  # the original build's time, kept in the manifest


def test_block_size_is_a_separate_entry(builds, sources):
    b64 = build_variant(sources["llama"], "onnx-int4", block_size=64)
    assert b64.variant == "onnx-int4-b64" and b64.path != builds[("llama", "onnx-int4")].path
    assert b64.recipe["block_size"] == 64 and b64.ops["quantized"]["MatMulNBits"] == 15


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "drop-file", "extra-file", "bad-manifest"])
def test_corrupt_entry_is_detected_and_rebuilt(sources, tmp_path, damage):
    store = VariantStore(tmp_path / "variants")
    first = build_variant(sources["qwen2"], "onnx-int8", store=store)
    target = first.model_file
    if damage == "flip-byte":  # same size, different content: only the sha256 can tell
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:1000])
    elif damage == "drop-file":
        (first.path / "tokenizer.json").unlink()
    elif damage == "extra-file":
        (first.path / "model.onnx.opt.onnx").write_bytes(b"left behind by a profiler")
    else:
        (first.path / "manifest.json").write_text("{not json")
    lines: list[str] = []
    again = build_variant(sources["qwen2"], "onnx-int8", store=store, log=lines.append)
    assert not again.cache_hit and again.rebuilt_corrupt and "corrupt" in again.rebuilt_corrupt
    assert any("corrupt" in line for line in lines)
    assert count_ops(again.model_file).quantized == {"MatMulInteger": 15, "Gather (uint8 table)": 1}
    assert build_variant(sources["qwen2"], "onnx-int8", store=store).cache_hit
    # The parent fp32 export was intact, so only the damaged int8 entry was rebuilt.
    assert [line for line in lines if ": building" in line] == ["onnx-int8: building from onnx-fp32"]


def test_manifest_lists_every_file_with_its_hash(builds):
    entry = builds[("llama", "onnx-int4")].path
    manifest = json.loads((entry / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in entry.iterdir() if p.name != "manifest.json"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert manifest["recipe"]["precision"] == "int4" and "onnxruntime" in manifest["versions"]


def test_nothing_quantized_is_said_plainly(tmp_path):
    """A model whose linear layers are Gemm (as GPT-2 exports them): int4 and int8 leave it unchanged."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from llmbench.optimizers.quantize.onnx_quant import quantize_int4, quantize_int8

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    src = tmp_path / "gemm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    quantize_int4(src, tmp_path / "int4.onnx", Recipe("int4"))
    report = count_ops(tmp_path / "int4.onnx")
    assert report.quantized_total == 0 and report.float_weight_layers == {"Gemm": 1}
    assert "NOTHING WAS QUANTIZED" in describe("int4", report)
    # Dynamic int8 does rewrite a bias-free Gemm: the counts tell the two recipes apart.
    quantize_int8(src, tmp_path / "int8.onnx", Recipe("int8"))
    assert count_ops(tmp_path / "int8.onnx").quantized == {"MatMulInteger": 1}


@pytest.mark.parametrize("arch", ARCHS)
def test_torch_int8_generates(sources, arch):
    import torch

    from llmbench.backends.torch_backend import TorchBackend

    b = TorchBackend(sources[arch], "torch-int8", "cpu", "float32")
    b.load()
    linear = [m for m in b.model.modules() if isinstance(m, torch.nn.Linear)]
    dynamic = [m for m in b.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert not linear and len(dynamic) == 15
    gen = b.generate([list(range(10, 30))], 5)
    assert len(gen.output_ids[0]) == 5 and len(gen.token_times) == 5


def test_a_hub_id_in_the_local_cache_builds_like_a_folder(sources, tmp_path, monkeypatch):
    """A hub id resolves to its snapshot in the Hugging Face cache (offline: nothing is downloaded)."""
    import shutil

    from llmbench.models.source import ModelSource

    hub = tmp_path / "hub"
    snapshot = hub / "models--someone--tiny-llama" / "snapshots" / ("0" * 40)
    shutil.copytree(sources["llama"].ref, snapshot)
    (hub / "models--someone--tiny-llama" / "refs").mkdir()
    (hub / "models--someone--tiny-llama" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    source = ModelSource("hub", "someone/tiny-llama")  # as resolve() makes it once the id is found
    built = build_variant(source, "onnx-int4", store=VariantStore(tmp_path / "variants"))
    # Same files as the local folder: the same content digest, so the same cache key.
    assert built.key == build_variant(sources["llama"], "onnx-int4").key
