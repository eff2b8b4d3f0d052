"""Scoring answers with a judge: against references (reference mode) or two variants pairwise.

Reference mode: each answer to a golden item with a reference gets one verdict, correct /
incorrect / unsupported. accuracy = correct / parsed verdicts; hallucination_rate = unsupported /
parsed verdicts (the share of answers the judge marks as not supported by the reference); both
with a Wilson 95% interval. Pairwise: each item's two answers are judged in both orders (the
variant as A, then as B); a verdict names the winning answer, not the position.
position_agreement = pairs whose two verdicts name the same winner (or both a tie) / pairs with
both verdicts parsed; first_position_share = share of parsed non-tie verdicts that chose A
(0.5 for a judge without position bias). win_rate = the variant's wins / parsed verdicts;
not_worse_rate = (wins + ties) / parsed verdicts, with a Wilson 95% interval.
Unparseable verdicts and failed calls are counted and left out of every share (never guessed).
"""
from __future__ import annotations

from collections import Counter

from llmbench.feedback import wilson
from llmbench.judge.verdict import VERDICTS, parse_verdict

NONE = "(none)"  # what a rubric's {reference} says where the golden item has none


def _share(n: int, d: int) -> float | None:
    return round(n / d, 6) if d else None


def _ci(n: int, d: int) -> list[float] | None:
    ci = wilson(n, d)
    return [round(x, 6) for x in ci] if ci else None


class Tally:
    """A judge's usage over one block of judgements (tokens, seconds, calls) and the rows it wrote."""

    def __init__(self, judge, rubric, rows: list, **where: str):
        self.judge, self.rubric, self.rows, self.where = judge, rubric, rows, where
        self.start = dict(judge.stats)

    def one(self, prompt: str, item: str, order: str | None = None) -> str | None:
        """Ask once; record the verdict row (rubric name and version with it); the parsed verdict."""
        answer, p_tok, o_tok = self.judge.ask(prompt)
        verdict = parse_verdict(self.rubric.mode, answer) if answer is not None else None
        self.rows.append({**self.where, "item": item, "order": order, "verdict": verdict,
                          "status": "failed" if answer is None else "ok" if verdict else "unparseable",
                          "raw": (answer or "")[:80], "rubric": self.rubric.name, "rubric_version": self.rubric.version,
                          "prompt_tokens": p_tok, "output_tokens": o_tok})
        return verdict

    def usage(self) -> dict:
        """Tokens, seconds and cost spent since this tally began."""
        d = {k: self.judge.stats[k] - self.start[k] for k in self.start}
        cost = self.judge.cost(d["prompt_tokens"], d["output_tokens"], d["seconds"])
        return {"prompt_tokens": d["prompt_tokens"], "output_tokens": d["output_tokens"], "calls": d["calls"],
                "failed_calls": d["failed_calls"], "seconds": round(d["seconds"], 3),
                "cost_usd": None if cost is None else round(cost, 9)}


def reference_figures(verdicts: list[str | None], failed: int = 0) -> dict:
    """Counts, accuracy and hallucination rate (each with a Wilson 95% CI) of reference-mode verdicts."""
    counts = Counter(v for v in verdicts if v)
    parsed = sum(counts.values())
    return {"verdicts": {v: counts.get(v, 0) for v in VERDICTS["reference"]}, "judged": parsed,
            "unparseable": len(verdicts) - parsed - failed, "failed_calls": failed,
            "accuracy": _share(counts["correct"], parsed), "accuracy_ci95": _ci(counts["correct"], parsed),
            "hallucination_rate": _share(counts["unsupported"], parsed),
            "hallucination_rate_ci95": _ci(counts["unsupported"], parsed)}


def winner(verdict: str | None, order: str) -> str | None:
    """Which answer a pairwise verdict chose: 'variant', 'reference' or 'tie' (order 'AB': the variant is A)."""
    if verdict is None or verdict == "tie":
        return verdict
    return "variant" if (verdict == "A") == (order == "AB") else "reference"


def pairwise_figures(pairs: list[tuple[str | None, str | None]], failed: int = 0) -> dict:
    """Figures of pairwise verdicts, one (verdict with the variant as A, verdict with it as B) per item."""
    outcomes = Counter()
    first = chosen = both = agree = 0
    for ab, ba in pairs:
        for verdict, order in ((ab, "AB"), (ba, "BA")):
            w = winner(verdict, order)
            if w:
                outcomes[w] += 1
            if verdict in ("A", "B"):
                chosen += 1
                first += verdict == "A"
        if ab is not None and ba is not None:
            both += 1
            agree += winner(ab, "AB") == winner(ba, "BA")
    parsed = sum(outcomes.values())
    wins, ties = outcomes["variant"], outcomes["tie"]
    return {"verdicts": {"variant": wins, "reference": outcomes["reference"], "tie": ties}, "pairs": len(pairs),
            "judged": parsed, "unparseable": 2 * len(pairs) - parsed - failed, "failed_calls": failed,
            "win_rate": _share(wins, parsed), "not_worse_rate": _share(wins + ties, parsed),
            "not_worse_rate_ci95": _ci(wins + ties, parsed),
            "position_agreement": _share(agree, both), "pairs_judged_both_orders": both,
            "first_position_share": _share(first, chosen)}


def judge_reference(judge, rubric, items: list, answers: list[str], rows: list, **where: str) -> dict:
    """One verdict per answer to an item with a reference; the figures and the judge's usage."""
    tally = Tally(judge, rubric, rows, **where)
    verdicts = []
    for item, answer in zip(items, answers):
        if item.reference:
            verdicts.append(tally.one(rubric.render(question=item.prompt, answer=answer, reference=item.reference), item.id))
    usage = tally.usage()
    return {"mode": "reference", "rubric": rubric.tag, **reference_figures(verdicts, usage["failed_calls"]), **usage}


def judge_pairwise(judge, rubric, items: list, answers: list[str], reference_answers: list[str], rows: list,
                   **where: str) -> dict:
    """Each item's two answers judged in both orders; the figures and the judge's usage."""
    tally = Tally(judge, rubric, rows, **where)
    pairs = []
    for item, mine, theirs in zip(items, answers, reference_answers):
        ref = item.reference or NONE
        ab = tally.one(rubric.render(question=item.prompt, reference=ref, answer_a=mine, answer_b=theirs), item.id, "AB")
        ba = tally.one(rubric.render(question=item.prompt, reference=ref, answer_a=theirs, answer_b=mine), item.id, "BA")
        pairs.append((ab, ba))
    usage = tally.usage()
    return {"mode": "pairwise", "rubric": rubric.tag, **pairwise_figures(pairs, usage["failed_calls"]), **usage}
