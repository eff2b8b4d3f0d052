"""The quality gate for a variant that runs behind a server (llama.cpp's GGUF variants).

A server gives its greedy output token by token (llama-server's `/completion` with token-id
prompts and `return_tokens`), but no teacher-forced logits over a whole text: top-1 agreement,
KL and perplexity would need one request per position with the full distribution. So a served
variant is judged on what the server can show exactly: greedy agreement with the reference's
token ids (and answer scores on the greedy text). The figures it cannot have are listed in
`not_measured` with the reason, and the gate decides on the measured checks alone.
"""
from __future__ import annotations

import time

from llmbench.quality import Encoded, Outputs, answer_scores, cut_at_eos, cut_at_stop, eos_ids, greedy_agreement

NOT_MEASURED_WHY = ("the server returns no teacher-forced logits (llama-server gives greedy tokens and "
                    "top-n probabilities of generated tokens only)")
TEACHER_FORCED = ("top1_agreement", "kl_mean", "ppl", "ppl_delta")


def is_served(backend) -> bool:
    """Whether a loaded backend runs its variant behind a server (no in-process logits)."""
    return bool(getattr(backend, "served", False))


def collect_greedy(backend, tokenizer, enc: Encoded, max_new_tokens: int,
                   stops: list[tuple[str, ...]] | None = None) -> Outputs:
    """Greedy outputs of a served variant through its own server; no logits (None).

    The backend's `greedy_ids(prompts, n)` returns each prompt's greedy token ids (ending at EOS
    when the server stopped there, as the in-process backends' outputs are cut).
    """
    t = time.perf_counter()
    raw = backend.greedy_ids(enc.prompts, max_new_tokens)
    eos = eos_ids(tokenizer, backend)
    greedy = [cut_at_eos(ids, eos) for ids in raw]
    stops = stops or [()] * len(greedy)
    answers = [cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), st) for ids, st in zip(greedy, stops)]
    return Outputs(greedy, None, answers, time.perf_counter() - t)


def compare_greedy(ref: Outputs, var: Outputs, references: list[str | None], labels: list[str | None]) -> dict:
    """Greedy agreement, exact sequences and answer scores of a served variant against the reference."""
    agree, exact = greedy_agreement(ref.greedy, var.greedy)
    figs: dict = {"greedy_agreement": agree, "greedy_exact": exact}
    scores = answer_scores(var.answers, references)
    if scores:
        figs |= scores
    groups: dict[str, list[int]] = {}
    for row, label in enumerate(labels):
        if label:
            groups.setdefault(label, []).append(row)
    if groups:
        figs["by_difficulty"] = {
            label: {"greedy_agreement": round(greedy_agreement([ref.greedy[r] for r in rows],
                                                               [var.greedy[r] for r in rows])[0], 6), "n": len(rows)}
            for label, rows in groups.items()}
    figs["not_measured"] = {k: NOT_MEASURED_WHY for k in TEACHER_FORCED}
    figs["measured_through"] = "llama-server /completion (greedy, token ids)"
    return figs
