"""The reference model's card: README.md (recipe, data hash, loss curve, perplexity) and loss.png."""
from __future__ import annotations

import math
from pathlib import Path


def plot_curve(curve: list[dict], out: Path) -> None:
    """A small PNG of train and held-out loss per step."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the card is written by a script
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3), dpi=80)
    steps = [p["step"] for p in curve]
    ax.plot(steps, [p["train_loss"] for p in curve], marker="o", label="train (mean since last point)")
    ax.plot(steps, [p["held_out_loss"] for p in curve], marker="s", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, metadata={"Software": None})  # no version string: the same curve gives the same file
    plt.close(fig)


def write_card(folder: Path, info: dict) -> None:
    """README.md and loss.png beside the weights, from training.json's content."""
    r, f, d, m = info["recipe"], info["figures"], info["data"], info["machine"]
    cpu = f" ({f['train_cpu_seconds']:.0f} s of CPU)" if "train_cpu_seconds" in f else ""
    plot_curve(info["curve"], folder / "loss.png")
    rows = "\n".join(f"| {p['step']} | {p['train_loss']:.3f} | {p['held_out_loss']:.3f} | "
                     f"{math.exp(p['held_out_loss']):.1f} | {p['seconds']:.0f} |" for p in info["curve"])
    text = f"""# {info['name']}: llmbench's trained reference model

A Llama-style causal LM ({f['parameters']:,} parameters, {r['layers']} layers, hidden {r['hidden']},
MLP {r['intermediate']}, {r['heads']} heads / {r['kv_heads']} KV heads, tied embeddings, fp32) with the
project's 4,096-token byte-level BPE tokenizer, trained from scratch by
`python -m llmbench.models.train_reference` on Tiny Shakespeare. It exists so that the quality
gate decides something real: its variants' perplexity, KL and greedy agreement are measured on
trained weights, unlike the random-weight architecture cards. It writes Shakespeare-like text,
badly; it knows nothing else.

Loads with `LlamaForCausalLM.from_pretrained(folder)` / `AutoModelForCausalLM` (safetensors, no
remote code).

## Data
- `{d['file']}`, sha256 `{d['sha256']}` (karpathy/char-rnn; the text is public domain)
- held out: {d['held_out']}: {f['held_out_tokens']:,} tokens; trained on the other {f['train_tokens']:,}
- Shakespeare only: with about {f['tokens_seen'] / 1e6:.1f}M training tokens in the budget, a model this
  small learns one register; QQP questions or GSM8K prompts would take capacity from the text the
  golden set (`profiles/golden/shakespeare.jsonl`) asks about and teach nothing it can get right.

## Recipe
seed {r['seed']}, {r['threads']} torch threads, deterministic algorithms on; {r['steps']} steps of
{r['batch']} random windows of {r['block']} tokens ({f['tokens_seen']:,} tokens, {f['epochs']} epochs);
AdamW (betas 0.9/0.95, weight decay {r['weight_decay']} on matrices), peak lr {r['lr']}, {r['warmup']} warm-up
steps, cosine to {r['min_lr_share']:.0%} of the peak, gradient clipping at 1.0.

## Results
Held-out loss {f['held_out_loss']:.3f} nats/token, **perplexity {f['held_out_ppl']:.1f}** (a random-weight
model of this vocabulary sits near 4,096). Training took {f['train_seconds']:.0f} s{cpu} on {m['processor']},
{m['platform']}, torch {m['torch']}, {m['threads']} threads.

| step | train loss | held-out loss | held-out ppl | seconds |
|---:|---:|---:|---:|---:|
{rows}

![loss curve](loss.png)

Every figure here comes from `training.json`, written by the same run as the weights.
"""
    (folder / "README.md").write_text(text)
