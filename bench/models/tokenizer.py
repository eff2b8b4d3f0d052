"""The tokenizer shipped for architecture cards, and how it was built.

Cards carry no tokenizer of their own (a real model's tokenizer is megabytes and licensed
separately), so every card gets this 4,096-entry byte-level BPE. Speed does not depend on which
token ids flow through a model, only on how many, so any tokenizer of a plausible vocabulary size
gives faithful timings. `python -m llmbench.models.tokenizer` rebuilds the shipped file.
"""
from __future__ import annotations

import glob
import os
from importlib import resources
from pathlib import Path

from transformers import PreTrainedTokenizerFast

VOCAB_SIZE = 4096
SPECIAL_TOKENS = ["<|endoftext|>", "<pad>"]


def shipped_tokenizer_file() -> Path:
    """Path of the tokenizer.json shipped under profiles/tokenizer/."""
    return Path(str(resources.files("llmbench.profiles") / "tokenizer" / "tokenizer.json"))


def load_shipped_tokenizer() -> PreTrainedTokenizerFast:
    """The shipped tokenizer wrapped for transformers (no token_type_ids: generate() refuses them)."""
    return PreTrainedTokenizerFast(
        tokenizer_file=str(shipped_tokenizer_file()),
        bos_token=SPECIAL_TOKENS[0],
        eos_token=SPECIAL_TOKENS[0],
        pad_token=SPECIAL_TOKENS[1],
        model_input_names=["input_ids", "attention_mask"],
    )


def _training_files() -> list[str]:
    # Plain English prose and Python source that every Debian/CPython install has.
    files = sorted(glob.glob("/usr/share/common-licenses/*"))
    files += sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:80]
    return [f for f in files if os.path.isfile(f)]


def build(out: Path) -> None:
    """Train the byte-level BPE deterministically on local text and write tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(_training_files(), trainer)
    tok.save(str(out))


if __name__ == "__main__":
    build(shipped_tokenizer_file())
    print(shipped_tokenizer_file())
