"""Counting tokens in the tokenizer of the model that will receive the prompt.

llmlingua reports GPT-3.5 token counts whatever the target is; a saving is only real in the
tokens the target model is billed or timed by, so every count llmbench reports goes through here.
"""
from __future__ import annotations

from typing import Any, Callable

TokenCounter = Callable[[str], int]


def token_counter(tokenizer: Any) -> TokenCounter:
    """A function text -> token count for a transformers tokenizer, a tiktoken Encoding, or a callable.

    Special tokens (BOS/EOS) are not counted: the count is of the prompt's own text, the part
    that compression can shrink.
    """
    encode = getattr(tokenizer, "encode", None)
    if encode is not None:
        try:
            encode("a", add_special_tokens=False)
        except TypeError:
            # tiktoken: no add_special_tokens; treat "<|endoftext|>" in a prompt as plain text.
            return lambda text: len(encode(text, disallowed_special=()))
        return lambda text: len(encode(text, add_special_tokens=False))
    if callable(tokenizer):
        return lambda text: int(tokenizer(text))
    raise TypeError(f"cannot count tokens with {type(tokenizer).__name__}: give a tokenizer or a callable")


def load_tokenizer(model: str, where: str = "--target") -> Any:
    """The tokenizer of a `model:` string (folder, hub id or card:NAME), or `tiktoken:ENCODING` for
    an API model (offline, only cl100k_base is at hand); BadInput when it cannot load."""
    from transformers import AutoTokenizer

    from llmbench.errors import BadInput
    from llmbench.models.source import resolve

    if model.startswith("tiktoken:"):
        return _tiktoken(model[len("tiktoken:") :].strip(), where)

    path = resolve(model, where=where).path()
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise BadInput(f"{where}: cannot load a tokenizer from {model!r} ({type(exc).__name__})") from None


def _tiktoken(name: str, where: str) -> Any:
    import tiktoken

    from llmbench.errors import BadInput
    from llmbench.optimizers.compress.offline import seed_tiktoken

    seed_tiktoken()
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # unknown name (ValueError) or a download that cannot happen offline
        raise BadInput(f"{where}: cannot load tiktoken encoding {name!r} ({type(exc).__name__})") from None
