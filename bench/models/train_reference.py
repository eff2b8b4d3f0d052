"""Train the shipped reference model: a small Llama on Tiny Shakespeare, deterministic from a seed.

`python -m llmbench.models.train_reference --data ../shared/data/text/tinyshakespeare.txt` rebuilds
profiles/reference/shakespeare-4m/ (weights, config, tokenizer, model card, training.json). It
lives in the package beside the tokenizer's builder (`python -m llmbench.models.tokenizer`) for
the same reason: whoever has the package can rebuild what the package ships, and the tests run the
same code the weights came from.

Determinism: one seed seeds the weights and the batch order (a torch.Generator), deterministic
algorithms are on, and the thread count is fixed and recorded (a different count may sum floats in
another order, and so change the last bits).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from llmbench.models.reference import REFERENCE_NAME, reference_dir

HELD_OUT_SHARE = 0.1  # the last 10% of the text (from a line start) is never trained on


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights, recorded in training.json and the model card."""

    seed: int = 0
    threads: int = 1  # 2 threads on a shared 2-core machine spend their time waiting at barriers
    steps: int = 400
    batch: int = 8
    block: int = 256
    lr: float = 2e-3
    warmup: int = 40
    min_lr_share: float = 0.1
    weight_decay: float = 0.1
    hidden: int = 256
    intermediate: int = 768  # a multiple of 256, so llama.cpp's k-quants apply to every matrix
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    eval_every: int = 100


def model_config(r: Recipe):
    """The LlamaConfig of the reference model (the project tokenizer's ids: 0 bos/eos, 1 pad)."""
    from transformers import LlamaConfig

    from llmbench.models.tokenizer import VOCAB_SIZE

    return LlamaConfig(vocab_size=VOCAB_SIZE, hidden_size=r.hidden, intermediate_size=r.intermediate,
                       num_hidden_layers=r.layers, num_attention_heads=r.heads, num_key_value_heads=r.kv_heads,
                       max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
                       pad_token_id=1, rms_norm_eps=1e-5, rope_theta=10000.0, torch_dtype="float32")


def split_text(text: str, held_out_share: float = HELD_OUT_SHARE) -> tuple[str, str]:
    """(train, held-out): the held-out part is the text's tail, starting at a line start."""
    cut = text.index("\n", int(len(text) * (1 - held_out_share))) + 1
    return text[:cut], text[cut:]


def _lr(r: Recipe, step: int) -> float:
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    done = (step - r.warmup) / max(1, r.steps - r.warmup)
    return r.lr * (r.min_lr_share + (1 - r.min_lr_share) * 0.5 * (1 + math.cos(math.pi * done)))


def held_out_loss(model, ids, block: int) -> float:
    """Mean next-token loss (nats) over the held-out ids, in non-overlapping windows of `block`."""
    import torch

    n = (len(ids) - 1) // block
    x = torch.tensor(ids[: n * block + 1])
    inputs, targets = x[:-1].view(n, block), x[1:].view(n, block)
    total = 0.0
    model.eval()
    with torch.no_grad():
        for i in range(0, n, 16):
            logits = model(input_ids=inputs[i:i + 16]).logits
            total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets[i:i + 16].flatten(),
                                                       reduction="sum").item()
    model.train()
    return total / (n * block)


def train(text: str, r: Recipe, log=print):
    """(model, curve, figures): train from the recipe; deterministic for a given text, recipe and torch."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(r.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(text, r, log)
    finally:  # the caller's process (a test session, say) keeps its own settings
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(text: str, r: Recipe, log):
    import torch
    from transformers import LlamaForCausalLM

    from llmbench.models.tokenizer import load_shipped_tokenizer

    torch.manual_seed(r.seed)
    tok = load_shipped_tokenizer()
    train_text, held_text = split_text(text)
    train_ids = torch.tensor(tok(train_text)["input_ids"])
    held_ids = tok(held_text)["input_ids"]
    model = LlamaForCausalLM(model_config(r))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay}, {"params": other, "weight_decay": 0.0}],
                            lr=r.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(r.seed)
    curve, recent, t0, cpu0 = [], [], time.perf_counter(), time.process_time()
    for step in range(r.steps):
        for g in opt.param_groups:
            g["lr"] = _lr(r, step)
        starts = torch.randint(0, len(train_ids) - r.block - 1, (r.batch,), generator=gen)
        x = torch.stack([train_ids[s:s + r.block + 1] for s in starts.tolist()])
        loss = _loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        recent.append(loss.item())
        last = step + 1 == r.steps
        if (step + 1) % r.eval_every == 0 or last:
            point = {"step": step + 1, "train_loss": round(sum(recent) / len(recent), 4),
                     "held_out_loss": round(held_out_loss(model, held_ids, r.block), 4),
                     "seconds": round(time.perf_counter() - t0, 1)}
            curve.append(point)
            recent = []
            log(f"step {point['step']}: train {point['train_loss']:.3f}, held-out {point['held_out_loss']:.3f} "
                f"({point['seconds']:.0f} s)")
    figures = {"train_tokens": len(train_ids), "held_out_tokens": len(held_ids),
               "tokens_seen": r.steps * r.batch * r.block, "epochs": round(r.steps * r.batch * r.block / len(train_ids), 2),
               "held_out_loss": curve[-1]["held_out_loss"], "held_out_ppl": round(math.exp(curve[-1]["held_out_loss"]), 2),
               "train_seconds": round(time.perf_counter() - t0, 1),
               "train_cpu_seconds": round(time.process_time() - cpu0, 1),  # wall time on a shared machine says little
               "parameters": sum(p.numel() for p in model.parameters())}
    return model, curve, figures


def _loss(model, x):
    """Next-token cross-entropy of a batch of windows (inputs x[:, :-1], targets x[:, 1:])."""
    import torch

    logits = model(input_ids=x[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())


def save(model, out: Path, r: Recipe, curve: list[dict], figures: dict, data: Path, data_sha: str) -> None:
    """Weights (safetensors), config, tokenizer, training.json and the model card into `out`."""
    from llmbench.models.model_card import write_card
    from llmbench.models.tokenizer import load_shipped_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = 1
    model.save_pretrained(out, safe_serialization=True)
    load_shipped_tokenizer().save_pretrained(out)
    import torch

    info = {"name": REFERENCE_NAME, "recipe": asdict(r), "data": {"file": data.name, "sha256": data_sha,
            "held_out": f"last {HELD_OUT_SHARE:.0%} of the characters, from a line start"},
            "figures": figures, "curve": curve,
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "torch": torch.__version__, "threads": r.threads}}
    (out / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    write_card(out, info)


def main(argv: list[str] | None = None) -> None:
    """Command line: train and write the reference folder (`--steps` for a short trial)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/text/tinyshakespeare.txt"))
    p.add_argument("--out", type=Path, default=None, help="default: the shipped folder")
    p.add_argument("--steps", type=int, default=Recipe.steps)
    p.add_argument("--seed", type=int, default=Recipe.seed)
    p.add_argument("--threads", type=int, default=Recipe.threads)
    a = p.parse_args(argv)
    raw = a.data.read_bytes()
    r = Recipe(seed=a.seed, steps=a.steps, threads=a.threads)
    model, curve, figures = train(raw.decode("utf-8"), r)
    out = a.out or reference_dir()
    save(model, out, r, curve, figures, a.data, hashlib.sha256(raw).hexdigest())
    print(out)


if __name__ == "__main__":
    main()
