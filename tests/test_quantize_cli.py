"""`llmbench quantize MODEL --to int8|int4 [--block-size N] [--out DIR]` through the real CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tiny_models import tiny_sources


def llmbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmbench", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    return tiny_sources(tmp_path_factory)["qwen2"]


def test_int4_to_a_folder_is_smaller_and_loadable(qwen2, tmp_path):
    out = tmp_path / "q4"
    proc = llmbench("quantize", qwen2.ref, "--to", "int4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "onnx-int4" in proc.stdout and "MatMulNBits" in proc.stdout and "against" in proc.stdout
    model = out / "model.onnx"
    source = next(p for p in os.scandir(qwen2.ref) if p.name.endswith(".safetensors"))
    assert model.stat().st_size < source.stat().st_size
    assert not (out / "manifest.json").exists()
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert "logits" in [o.name for o in session.get_outputs()]


def test_json_output_and_block_size(qwen2):
    proc = llmbench("quantize", qwen2.ref, "--to", "int4", "--block-size", "64", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["variant"] == "onnx-int4-b64" and doc["recipe"]["block_size"] == 64
    assert doc["quantized_ops"] == {"MatMulNBits": 15, "GatherBlockQuantized": 1} and doc["size_bytes"] < doc["source_bytes"]
    again = json.loads(llmbench("quantize", qwen2.ref, "--to", "int4", "--block-size", "64", "--json").stdout)
    assert again["cache_hit"] is True and again["path"] == doc["path"]


@pytest.mark.parametrize("args, needle", [
    (["--to", "int4", "--block-size", "48"], "power of two"),
    (["--to", "int8", "--block-size", "64"], "--block-size applies to --to int4 only"),
])
def test_bad_options_are_bad_input(qwen2, args, needle):
    proc = llmbench("quantize", qwen2.ref, *args)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_missing_model_is_bad_input(tmp_path):
    proc = llmbench("quantize", str(tmp_path / "nope"), "--to", "int8")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_out_into_a_non_empty_folder_is_refused_before_building(qwen2, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"another model")
    (out / "notes.txt").write_text("mine")
    proc = llmbench("quantize", qwen2.ref, "--to", "int8", "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "not empty" in proc.stderr and "--force" in proc.stderr
    assert "building" not in proc.stderr  # refused before any build
    assert (out / "model.onnx").read_bytes() == b"another model" and sorted(p.name for p in out.iterdir()) == ["model.onnx", "notes.txt"]
    # --force replaces the folder's contents: nothing of the other model stays beside the variant.
    forced = llmbench("quantize", qwen2.ref, "--to", "int8", "--out", str(out), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    doc = json.loads(forced.stdout)
    entry = sorted(p.name for p in os.scandir(doc["cache_entry"]) if p.name != "manifest.json")
    assert sorted(p.name for p in out.iterdir()) == entry and not (out / "notes.txt").exists()


def test_out_cannot_be_the_source_folder(qwen2):
    proc = llmbench("quantize", qwen2.ref, "--to", "int8", "--out", qwen2.ref, "--force")
    assert proc.returncode == 2 and "holds the source model" in proc.stderr
    assert (os.path.join(qwen2.ref, "config.json")) and os.path.isfile(os.path.join(qwen2.ref, "model.safetensors"))


def test_an_unknown_model_type_is_one_line(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "foobar", "architectures": ["FooForCausalLM"]}))
    proc = llmbench("quantize", str(folder), "--to", "int4")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "foobar" in errors[0] and str(folder) in errors[0]


def test_a_model_that_is_not_a_causal_lm_is_one_line(tmp_path):
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                         vocab_size=100)).save_pretrained(folder)
    proc = llmbench("quantize", str(folder), "--to", "int8")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no text-generation ONNX export for model type 'bert'" in proc.stderr
