"""Per-token keep rates in the window format llmlingua's iterative compressor consumes.

llmlingua scores a context in windows of `iterative_size` tokens and, in its structured mode,
takes for each window a list of runs `(n_tokens, keep_rate)`; a run at rate 1.0 is kept whole.
Its own `token_segment` derives those runs by decoding every token to count characters, which
breaks (IndexError) when a byte-level BPE splits one multi-byte character over several tokens.
Here the runs come from the tokenizer's character offsets instead, which are exact for any text.
"""
from __future__ import annotations

import math

WINDOW = 200  # llmlingua's own iterative_size: tokens scored per forward pass

Runs = list[tuple[int, float]]


def window_size(n_tokens: int, window: int = WINDOW) -> int:
    """A window of at most `window` tokens that tiles n_tokens, leaving fewer tokens than windows over.

    llmlingua stops before a window that would run past the end, so with its fixed 200 the last
    partial window (up to 199 tokens) was never compressed: a 950-token prompt asked for rate 0.5
    came out at 0.58. The first window is scored from token 1 (token 0 has no perplexity), so it
    is n_tokens - 1 that is tiled.
    """
    windows = max(1, math.ceil((n_tokens - 1) / window))
    return max(1, (n_tokens - 1) // windows)


def token_keep_rates(offsets: list[tuple[int, int]], forced: list[tuple[int, int]], keep: float) -> list[float]:
    """1.0 for each token whose characters touch a forced span (sorted, disjoint), `keep` for the rest."""
    rates = []
    j = 0
    for start, end in offsets:
        end = max(end, start + 1)  # a zero-width token (a byte of a split character) still has a place
        while j < len(forced) and forced[j][1] <= start:
            j += 1
        touches = j < len(forced) and forced[j][0] < end
        rates.append(1.0 if touches else keep)
    return rates


def window_runs(rates: list[float], size: int) -> list[Runs]:
    """Cut per-token rates into windows of `size` tokens, each as runs of equal rate."""
    windows: list[Runs] = []
    for at in range(0, len(rates), size):
        runs: Runs = []
        for rate in rates[at : at + size]:
            if runs and runs[-1][1] == rate:
                runs[-1] = (runs[-1][0] + 1, rate)
            else:
                runs.append((1, rate))
        windows.append(runs)
    return windows
