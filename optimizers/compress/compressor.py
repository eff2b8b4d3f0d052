"""LLMLingua's PromptCompressor driven by a local causal LM, with counts in the target's tokenizer.

What this adds to llmlingua 0.2.2's `compress_prompt`:
- it runs offline on the pinned transformers (offline.py);
- `rate` and `target_tokens` mean what they say in the target model's tokens (`_Plan`);
- `force_tokens` work with the perplexity compressor (forced.py);
- the last partial window is compressed too (`windows.window_size`).
"""
from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from llmbench.optimizers.compress.counting import token_counter
from llmbench.optimizers.compress.forced import forced_spans, split_at
from llmbench.optimizers.compress.prompts import Prompt, as_prompt
from llmbench.optimizers.compress.windows import Runs, token_keep_rates, window_runs, window_size

DEFAULT_MODEL = "card:llama-5m"  # the embedded default's small card
MIN_KEEP = 0.02  # never ask llmlingua to drop everything: it needs something to rank per window


@dataclass
class CompressionResult:
    """One compressed prompt, counted in the target model's tokenizer.

    `latency_ms` is the compressor's own time for this prompt (all passes, model load excluded);
    `goal_tokens` what was asked for; `passes` how many llmlingua calls it took (0: nothing to do).
    """

    origin_tokens: int
    compressed_tokens: int
    latency_ms: float
    compressed_prompt: str
    goal_tokens: int
    passes: int

    @property
    def ratio(self) -> float:
        """Original tokens / compressed tokens (2.0 means half as many)."""
        return self.origin_tokens / max(self.compressed_tokens, 1)

    @property
    def tokens_saved(self) -> int:
        return self.origin_tokens - self.compressed_tokens

    @property
    def tokens_per_s(self) -> float | None:
        """Compressor throughput in original prompt tokens per second."""
        return self.origin_tokens / (self.latency_ms / 1000) if self.latency_ms > 0 else None

    def as_dict(self, with_text: bool = True) -> dict:
        """Plain JSON-ready fields, derived ones included."""
        d = asdict(self)
        if not with_text:
            d.pop("compressed_prompt")
        d.update(
            ratio=round(self.ratio, 3),
            rate=round(self.compressed_tokens / max(self.origin_tokens, 1), 4),
            tokens_saved=self.tokens_saved,
            latency_ms=round(self.latency_ms, 2),
            tokens_per_s=None if self.tokens_per_s is None else round(self.tokens_per_s, 1),
        )
        return d


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # llmlingua passes `torch_dtype=`, which transformers 4.57 warns about on every load.
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


@contextlib.contextmanager
def _given_windows(pc: Any, runs: list[Runs]) -> Iterator[None]:
    # llmlingua asks this method for the per-window runs of its structured mode; for one call,
    # answer with runs computed from exact token offsets (windows.py says why).
    pc.get_structured_dynamic_compression_ratio = lambda *args, **kwargs: runs
    try:
        yield
    finally:
        del pc.get_structured_dynamic_compression_ratio


@functools.lru_cache(maxsize=2)
def load_prompt_compressor(model_path: str, device: str = "cpu") -> tuple[Any, float]:
    """A warmed-up PromptCompressor for a local causal LM folder, and its load time in ms.

    Cached per (folder, device), so a run that compresses at several rates loads it once.
    """
    from llmbench.optimizers.compress.offline import install_cache_adapter, seed_tiktoken

    start = time.perf_counter()
    seed_tiktoken()
    from llmlingua import PromptCompressor

    with _quiet_transformers():
        # trust_remote_code=False: llmlingua defaults it to True, which would run code from the folder.
        pc = PromptCompressor(model_name=model_path, device_map=device, model_config={"trust_remote_code": False})
    install_cache_adapter(pc)
    pc.model.eval()
    # One short call outside any measurement: the first forward pays one-off allocation costs.
    pc.compress_prompt(["Warm up the compressor once before timing it."], rate=0.5, use_context_level_filter=False)
    return pc, (time.perf_counter() - start) * 1000


class Compressor:
    """Compresses prompts with a local causal LM; counts in `target_tokenizer` (default: the compressor's).

    tolerance / max_passes: when the delivered size misses the goal by more than `tolerance`
    (relative), compress again with a corrected keep rate, up to `max_passes` calls in all; the
    reported latency includes every pass. Not thread-safe: instances for one folder share one
    PromptCompressor.
    """

    def __init__(
        self,
        model_path: str,
        target_tokenizer: Any = None,
        device: str = "cpu",
        tolerance: float = 0.15,
        max_passes: int = 2,
    ):
        self.model_path = model_path
        self.pc, self.load_ms = load_prompt_compressor(model_path, device)
        self.tokenizer = self.pc.tokenizer
        self.count = token_counter(target_tokenizer if target_tokenizer is not None else self.tokenizer)
        self.tolerance = tolerance
        self.max_passes = max(1, max_passes)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _offsets(self, text: str) -> list[tuple[int, int]] | None:
        """Character span of each compressor token (None for a slow tokenizer, which has none)."""
        if not getattr(self.tokenizer, "is_fast", False):
            return None
        return [tuple(o) for o in self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True).offset_mapping]

    def _normalize(self, text: str) -> str:
        # llmlingua's own segment path checks segments against the decoded tokens.
        once = self.tokenizer.decode(self._ids(text))
        if self.tokenizer.decode(self._ids(once)) != once:
            raise ValueError(f"the compressor's tokenizer ({self.model_path}) does not round-trip this prompt")
        return once

    def compress(
        self,
        prompt: Prompt | str,
        rate: float | None = None,
        target_tokens: int | None = None,
        force_tokens: Iterable[str] = (),
    ) -> CompressionResult:
        """Compress to `rate` x the original tokens, or to `target_tokens`, keeping `force_tokens`.

        Both are measured over the whole prompt (instruction + context + question) in the target
        tokenizer; only the context is compressed.
        """
        if (rate is None) == (target_tokens is None):
            raise ValueError("give exactly one of rate or target_tokens")
        if rate is not None and not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        if target_tokens is not None and target_tokens < 1:
            raise ValueError(f"target_tokens must be at least 1, got {target_tokens}")
        p = as_prompt(prompt)
        offsets = self._offsets(p.context)
        if offsets is None:
            p = Prompt(self._normalize(p.context), p.instruction, p.question)
        original = p.text()
        origin = self.count(original)
        goal = max(1, round(rate * origin)) if rate is not None else int(target_tokens)
        spans = forced_spans(p.context, force_tokens)
        if offsets is not None:
            forced = sum(r == 1.0 for r in token_keep_rates(offsets, spans, 0.0))
            context_tokens = len(offsets)
        else:
            forced = sum(len(self._ids(s)) for s, inside in split_at(p.context, spans) if inside)
            context_tokens = len(self._ids(p.context))
        plan = _Plan(
            fixed=origin - self.count(p.context),
            context_tokens=context_tokens,
            forced_tokens=forced,
            per_target=context_tokens / max(self.count(p.context), 1),
        )
        if goal >= origin or plan.free_tokens <= 0:
            return CompressionResult(origin, origin, 0.0, original, goal, passes=0)

        keep = plan.keep_rate(goal)
        best: tuple[str, int] | None = None
        elapsed = 0.0
        passes = 0
        while passes < self.max_passes:
            passes += 1
            start = time.perf_counter()
            text = self._run(p, keep, context_tokens, offsets, spans)
            elapsed += time.perf_counter() - start
            got = self.count(text)
            if best is None or abs(got - goal) < abs(best[1] - goal):
                best = (text, got)
            if abs(got / goal - 1) <= self.tolerance:
                break
            corrected = plan.corrected(keep, got, goal)
            if corrected == keep:
                break
            keep = corrected
        return CompressionResult(origin, best[1], elapsed * 1000, best[0], goal, passes)

    def _run(self, p: Prompt, keep: float, context_tokens: int, offsets, spans) -> str:
        # llmlingua's structured mode (context_segs) takes a keep rate per run of tokens; forced
        # tokens get 1.0. The context-level filter only applies to lists of several contexts.
        size = window_size(context_tokens)
        args = dict(instruction=p.instruction, question=p.question, rate=keep, iterative_size=size,
                    use_context_level_filter=False)
        if offsets is not None:
            runs = window_runs(token_keep_rates(offsets, spans, keep), size)
            with _given_windows(self.pc, runs):
                res = self.pc.compress_prompt([p.context], context_segs=[[p.context]], context_segs_rate=[[keep]],
                                              context_segs_compress=[[True]], **args)
            return res["compressed_prompt"]
        # A slow tokenizer has no offsets: let llmlingua cut the segments itself.
        segments = split_at(p.context, spans)
        try:
            res = self.pc.compress_prompt(
                [p.context],
                context_segs=[[s for s, _ in segments]],
                context_segs_rate=[[1.0 if inside else keep for _, inside in segments]],
                context_segs_compress=[[not inside for _, inside in segments]],
                **args,
            )
        except (AssertionError, IndexError) as exc:
            raise ValueError(f"llmlingua could not segment this prompt with {self.model_path}'s tokenizer ({exc!r})") from None
        return res["compressed_prompt"]


@dataclass(frozen=True)
class _Plan:
    """How a goal in target tokens becomes llmlingua's per-token keep rate.

    llmlingua keeps the instruction, question and forced tokens whole and keeps `keep` of the
    other context tokens, counted in the compressor's tokenizer; `per_target` converts between the
    two tokenizers on this very context.
    """

    fixed: int  # target tokens outside the context (instruction, question, separators)
    context_tokens: int  # context, compressor tokens
    forced_tokens: int  # forced tokens, compressor tokens
    per_target: float  # compressor tokens per target token

    @property
    def free_tokens(self) -> int:
        return self.context_tokens - self.forced_tokens

    def keep_rate(self, goal: int) -> float:
        free_goal = (goal - self.fixed) * self.per_target - self.forced_tokens
        return _clamp(free_goal / self.free_tokens)

    def corrected(self, keep: float, got: int, goal: int) -> float:
        """Scale the compressible part by how far the last pass missed (in target tokens)."""
        kept_whole = self.fixed + self.forced_tokens / self.per_target
        if got - kept_whole <= 0:
            return keep
        return _clamp(keep * max(goal - kept_whole, 0) / (got - kept_whole))


def _clamp(keep: float) -> float:
    return min(1.0, max(MIN_KEEP, keep))
