"""GGUF variants through llama.cpp's own converter and llama-quantize (real engine), and the cache."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

from llmbench.engines.llamacpp.gguf import (
    GGUF_TYPES, KNOWN_CONVERTIBLE, build_gguf, check_convertible, converter_architectures, variant_key,
)
from llmbench.errors import BadInput
from llmbench.models.source import resolve
from llmbench.optimizers.quantize.sources import model_folder


@pytest.fixture(scope="module")
def card():
    return resolve("card:llama-5m")


@pytest.fixture(scope="module")
def builds(engine, card):
    """Every GGUF type of the 5M card, built (or reused) once for the module."""
    return {v: build_gguf(card, v, engine) for v in GGUF_TYPES}


def _gguf_fields(engine, path, keys) -> dict:
    """Metadata read back with the engine's own gguf-py (in a subprocess: it must not shadow anything here)."""
    code = ("import sys, json; from gguf import GGUFReader\n"
            "r = GGUFReader(sys.argv[1]); out = {}\n"
            "for k in sys.argv[2:]:\n"
            "    f = r.fields[k]; v = f.contents()\n"
            "    out[k] = v\n"
            "print(json.dumps(out))")
    env = dict(os.environ, PYTHONPATH=str(engine.source_dir / "gguf-py"))
    res = subprocess.run([sys.executable, "-c", code, str(path), *keys], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def test_no_gguf_package_is_installed():
    # The converter must use the gguf-py of the engine's own source tree, whose format matches the
    # binaries; an installed `gguf` from the index could be another version.
    # (Reading a GGUF in process puts the engine's own gguf-py on sys.path: ask for an installed
    # distribution, not for an importable module.)
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("gguf")


def test_types_are_real_quantizations_of_the_card(engine, builds):
    sizes = {v: b.size_bytes for v, b in builds.items()}
    assert sizes["gguf-f16"] > sizes["gguf-q8_0"] > sizes["gguf-q4_k_m"] >= sizes["gguf-q4_0"]
    # f16: about 2 bytes per parameter of the 5M card (4.8M weights), plus the vocabulary.
    assert 9e6 < sizes["gguf-f16"] < 11e6
    # llama.cpp's file type numbers: 1 = F16, 7 = Q8_0, 15 = Q4_K_M, 2 = Q4_0.
    want = {"gguf-f16": 1, "gguf-q8_0": 7, "gguf-q4_k_m": 15, "gguf-q4_0": 2}
    for variant, b in builds.items():
        assert b.path.read_bytes()[:4] == b"GGUF"
        meta = _gguf_fields(engine, b.path, ["general.file_type", "general.architecture", "tokenizer.ggml.pre"])
        assert meta == {"general.file_type": want[variant], "general.architecture": "llama", "tokenizer.ggml.pre": "gpt-2"}


def test_second_build_is_a_cache_hit_and_a_damaged_entry_is_rebuilt(engine, card, builds):
    again = build_gguf(card, "gguf-q4_k_m", engine)
    assert again.cache_hit and again.path == builds["gguf-q4_k_m"].path and again.sha256 == builds["gguf-q4_k_m"].sha256
    data = again.path.read_bytes()
    again.path.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    lines: list[str] = []
    fresh = build_gguf(card, "gguf-q4_k_m", engine, log=lines.append)
    assert not fresh.cache_hit and fresh.size_bytes == len(data) and fresh.sha256 == builds["gguf-q4_k_m"].sha256
    assert any("corrupt" in line for line in lines) and any("reusing" in line and "gguf-f16" in line for line in lines)


def test_the_key_follows_source_type_and_engine_version(engine, card, builds, tiny_llama):
    from dataclasses import replace

    folder = model_folder(card)
    assert variant_key(folder, "gguf-f16", engine) == builds["gguf-f16"].key
    other = replace(engine, version=engine.version + "-other")
    keys = {variant_key(folder, "gguf-f16", other), variant_key(folder, "gguf-q8_0", engine),
            variant_key(tiny_llama, "gguf-f16", engine), builds["gguf-f16"].key}
    assert len(keys) == 4  # another engine, type or source: never the same entry


def test_qwen2_with_tied_embeddings_converts(engine, tmp_path_factory):
    from tiny_models import build_tiny, session_root

    src = resolve(str(build_tiny("qwen2", session_root(tmp_path_factory) / "tiny-qwen2")))
    b = build_gguf(src, "gguf-q8_0", engine)
    assert _gguf_fields(engine, b.path, ["general.architecture"]) == {"general.architecture": "qwen2"}


def test_known_list_is_a_subset_of_the_converters(engine):
    assert KNOWN_CONVERTIBLE <= converter_architectures(engine.source_dir)


def _config_only(folder, config) -> str:
    folder.mkdir()
    config.save_pretrained(folder)
    return str(folder)


def test_unconvertible_architectures_are_refused_by_name(engine, tmp_path):
    from transformers import BertConfig, OPTConfig

    bert = resolve(_config_only(tmp_path / "bert", BertConfig(architectures=["BertModel"])))
    with pytest.raises(BadInput, match=r"candidates\[0\].*BertModel.*not a text-generation model"):
        check_convertible(bert, "candidates[0]")
    opt = resolve(_config_only(tmp_path / "opt", OPTConfig(architectures=["OPTForCausalLM"])))
    with pytest.raises(BadInput, match=r"converter cannot convert architecture OPTForCausalLM"):
        check_convertible(opt, "candidates[1]", engine)
    with pytest.raises(BadInput, match="OPTForCausalLM"):  # build_gguf refuses it too, before converting
        build_gguf(opt, "gguf-f16", engine)
    check_convertible(resolve("card:llama-5m"), "x")  # accepted
    check_convertible(resolve("card:qwen2.5-0.5b"), "x")
