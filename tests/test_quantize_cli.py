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
