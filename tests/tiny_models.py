"""Tiny Llama- and Qwen2-style models for the variant tests, built once per test session.

Not a test module: test_quantize*.py, test_onnx_backend.py and test_quality.py import it. Models
are written deterministically (seeded) into a folder shared by the session, so the variant cache
(conftest.py points LLMBENCH_CACHE at one folder per session) hits across modules and each export
happens once.
"""
from __future__ import annotations

import os
from pathlib import Path

ARCHS = ("llama", "qwen2")
_COMMON = dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=256, bos_token_id=0, eos_token_id=0, pad_token_id=1)


def build_tiny(arch: str, folder: Path) -> Path:
    """A random-weight model of architecture `arch` with the shipped tokenizer, in `folder` (reused if there)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from llmbench.models.tokenizer import load_shipped_tokenizer

    torch.manual_seed(0)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**_COMMON, tie_word_embeddings=False))
    elif arch == "qwen2":
        # Qwen2 ties its embeddings (as Qwen2.5-0.5B does) and has q/k/v biases: both shapes the export must handle.
        model = Qwen2ForCausalLM(Qwen2Config(**_COMMON, tie_word_embeddings=True))
    else:
        raise ValueError(arch)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    load_shipped_tokenizer().save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder


def session_root(tmp_path_factory) -> Path:
    """One folder for the whole session (pytest's base temp), shared by every module that asks."""
    root = tmp_path_factory.getbasetemp() / "llmbench-variants"
    root.mkdir(exist_ok=True)
    return root


def tiny_sources(tmp_path_factory) -> dict:
    """{arch: ModelSource} of both tiny models."""
    from llmbench.models.source import resolve

    root = session_root(tmp_path_factory)
    return {arch: resolve(str(build_tiny(arch, root / f"tiny-{arch}"))) for arch in ARCHS}
