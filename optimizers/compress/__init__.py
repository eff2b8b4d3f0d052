"""Prompt compression with LLMLingua, measured in the target model's tokens and time.

- offline.py: tiktoken seeding and the KV-cache adapter that llmlingua 0.2.2 needs here
- compressor.py: `Compressor` (rate / target tokens, forced tokens, instruction-context-question)
- windows.py, forced.py: per-token keep rates in llmlingua's window format; forced text
- counting.py: token counts in the target model's tokenizer
- prompts.py: the prompts file (text or JSONL)
- measure.py: what compression saves in a run, net of the compressor's own cost
"""
from llmbench.optimizers.compress.compressor import DEFAULT_MODEL, CompressionResult, Compressor
from llmbench.optimizers.compress.prompts import Prompt, load_prompts

__all__ = ["DEFAULT_MODEL", "CompressionResult", "Compressor", "Prompt", "load_prompts"]
