"""Run llama.cpp's HF-to-GGUF converter, accepting GPT-2-style byte-level BPE tokenizers it does not know.

Run as a script in a subprocess (never imported by llmbench itself):
    python convert_main.py SOURCE_TREE MODEL_DIR --outtype f16 --outfile OUT.gguf

The converter names a BPE tokenizer's pre-tokenizer by hashing how it splits a fixed text and
refuses a hash it has not seen ("BPE pre-tokenizer was not recognized"). A tokenizer trained
locally, like the one llmbench ships for its architecture cards, has an unseen hash even though
its pre-tokenizer is exactly GPT-2's (`ByteLevel` with GPT-2's regex). For such a tokenizer, and
only for it, this wrapper answers "gpt-2", which is what llama.cpp must apply; any other unknown
tokenizer is still refused as the converter would.
"""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path


def _gpt2_style(model_dir: Path) -> bool:
    """Whether tokenizer.json's pre-tokenizer is a lone ByteLevel with GPT-2's regex."""
    try:
        pre = json.loads((model_dir / "tokenizer.json").read_text()).get("pre_tokenizer") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return pre.get("type") == "ByteLevel" and pre.get("use_regex", True) is True


def main() -> None:
    tree = Path(sys.argv[1]).resolve()
    rest = sys.argv[2:]
    sys.path[:0] = [str(tree), str(tree / "gguf-py")]  # the converter's own gguf, never an installed one

    import conversion.base as base

    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if _gpt2_style(Path(self.dir_model)):
                base.logger.info("unrecognised BPE pre-tokenizer is GPT-2's ByteLevel: using 'gpt-2'")
                return "gpt-2"
            raise

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    script = tree / "convert_hf_to_gguf.py"
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
