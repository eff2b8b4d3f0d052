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


def train_tiny(folder: Path, steps: int = 150) -> Path:
    """A tiny Llama trained briefly (seeded, about 10 s) on local prose, so that its logits are peaked.

    Random weights give near-flat logits, on which the quality gate rightly refuses to judge; a
    few hundred optimizer steps on the licence texts every Debian has are enough for the gate to
    see quantization error as it would on a real model.
    """
    if (folder / "config.json").is_file():
        return folder
    import glob

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmbench.models.tokenizer import load_shipped_tokenizer

    tok = load_shipped_tokenizer()
    text = "\n".join(Path(f).read_text(errors="ignore") for f in sorted(glob.glob("/usr/share/common-licenses/*"))[:6])
    ids = torch.tensor(tok(text)["input_ids"])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**_COMMON, tie_word_embeddings=False))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    # One thread: the same result on any machine, and no OpenMP pool to stall on a shared one.
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            starts = torch.randint(0, len(ids) - 65, (16,), generator=gen)
            batch = torch.stack([ids[s:s + 64] for s in starts])
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder
