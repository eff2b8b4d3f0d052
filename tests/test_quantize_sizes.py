"""What a variant reports about itself: its embedding table, its dtype, its size, its source's size."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from tiny_models import tiny_sources

from llmbench.models.source import resolve
from llmbench.optimizers.quantize.build import build_variant
from llmbench.optimizers.quantize.recipes import onnx_recipe
from llmbench.optimizers.quantize.sources import weights_bytes
from llmbench.optimizers.quantize.store import VariantStore

VOCAB, HIDDEN = 4096, 64  # tiny_models' shapes


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return tiny_sources(tmp_path_factory)


def _embedding_initializer(model_file):
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    gather = next(n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits and len(inits[n.input[0]].dims) == 2)
    return model, inits, gather


def test_int8_embedding_table_is_reported_controlled_and_keyed(sources, tmp_path):
    """onnxruntime's dynamic int8 stores the table as uint8 with one scale: the report says so, the recipe chooses."""
    store = VariantStore(tmp_path / "variants")
    default = build_variant(sources["llama"], "onnx-int8", store=store)
    kept = build_variant(sources["llama"], "onnx-int8", store=store, embeddings=False)
    # Read the graphs directly, not through the report under test.
    model, inits, gather = _embedding_initializer(default.model_file)
    table = inits[gather.input[0]]
    assert table.data_type == 2 and list(table.dims) == [VOCAB, HIDDEN]  # uint8
    deq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == gather.output[0])
    assert list(inits[deq.input[1]].dims) == []  # a scalar: one scale for the whole table
    _, inits_kept, gather_kept = _embedding_initializer(kept.model_file)
    assert inits_kept[gather_kept.input[0]].data_type == 1  # float32
    # The report tells the two apart.
    assert default.ops["tables"][table.name] == {"op": "Gather", "shape": [VOCAB, HIDDEN], "dtype": "uint8", "scales": 1}
    assert default.ops["quantized"] == {"MatMulInteger": 15, "Gather (uint8 table)": 1}
    assert "4096x64 uint8, 1 scale (one for the whole table)" in default.note
    assert kept.ops["quantized"] == {"MatMulInteger": 15} and "4096x64 float32" in kept.note
    assert kept.recipe["embeddings"] is False and default.recipe["embeddings"] is True
    # Keyed: two entries, and the float table costs 3 bytes more per element.
    assert kept.key != default.key and kept.path != default.path
    assert kept.size_bytes - default.size_bytes == pytest.approx(VOCAB * HIDDEN * 3, rel=0.01)
    assert onnx_recipe("onnx-int8", embeddings=False).identity() != onnx_recipe("onnx-int8").identity()


def test_int4_table_is_reported_with_its_blocks(sources):
    int4 = build_variant(sources["llama"], "onnx-int4")
    (info,) = int4.ops["tables"].values()
    # Blocks of 32 along the hidden axis: one scale per 32 values of every row.
    assert info["op"] == "GatherBlockQuantized" and info["block_size"] == 32
    assert info["scales"] == VOCAB * HIDDEN // 32


def _expected_int8_bytes(fp32_model) -> int:
    """Linear weights one byte each (biases stay float), every other parameter four bytes."""
    import torch

    linear = {id(m.weight) for m in fp32_model.modules() if isinstance(m, torch.nn.Linear)}
    return sum(p.numel() * (1 if id(p) in linear else 4) for p in fp32_model.parameters())


def test_torch_int8_reports_its_own_dtype_and_size(sources):
    from llmbench.backends.torch_backend import TorchBackend

    fp32 = TorchBackend(sources["llama"], "torch-fp32", "cpu", "float32")
    fp32.load()
    int8 = TorchBackend(sources["llama"], "torch-int8", "cpu", "float32")
    int8.load()
    assert int8.info.dtype == "int8" and fp32.info.dtype == "float32"
    assert int8.info.size_bytes == _expected_int8_bytes(fp32.model)
    assert fp32.info.size_bytes == sum(p.numel() * 4 for p in fp32.model.parameters())
    # The same model: the parameter count does not shrink because Linear weights are packed away.
    assert int8.info.parameters == fp32.info.parameters


def test_bf16_reports_two_bytes_per_weight(sources):
    from llmbench.backends.torch_backend import TorchBackend

    b = TorchBackend(sources["llama"], "torch-bf16", "cpu", "float32")
    b.load()
    assert b.info.dtype == "bfloat16" and b.info.size_bytes == 2 * b.info.parameters


def test_a_folder_with_two_formats_counts_the_loaded_one(sources, tmp_path):
    """model.safetensors and pytorch_model.bin of one checkpoint: transformers loads one; so does the size."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "both"
    shutil.copytree(sources["llama"].ref, folder)
    single = (folder / "model.safetensors").stat().st_size
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    assert weights_bytes(folder) == single
    # A .bin-only folder counts the .bin.
    (folder / "model.safetensors").unlink()
    assert weights_bytes(folder) == (folder / "pytorch_model.bin").stat().st_size


def test_a_sharded_checkpoint_counts_its_shards(sources, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(sources["llama"].ref).save_pretrained(folder, max_shard_size="300KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    (folder / "stray.safetensors").write_bytes(b"\0" * 12345)  # not in the index: never loaded
    assert weights_bytes(folder) == sum(p.stat().st_size for p in shards)


def test_variant_size_ratio_uses_the_loaded_file(sources, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "both"
    shutil.copytree(sources["llama"].ref, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    built = build_variant(resolve(str(folder)), "onnx-fp32", store=VariantStore(tmp_path / "variants"))
    assert built.source_bytes == (folder / "model.safetensors").stat().st_size
    # fp32 export against the same weights: about 1x, not 0.5x.
    assert 0.9 < built.size_ratio < 1.2
    assert np.isfinite(built.size_ratio)
