"""Build the reference model's golden set (profiles/golden/shakespeare.jsonl) from the text it learned.

`python -m llmbench.models.reference_golden --data ../shared/data/text/tinyshakespeare.txt`

Two kinds of item:
- "held-out": passages from the held-out tail, prompt only: perplexity, KL and top-1 agreement are
  measured on text the model never saw.
- "phrase": the start of a speech from the training text, cut before the last word of a clause
  (the word before a comma, full stop, ...) when that word is one of the most frequent such words;
  the reference is that word ("good my" -> "lord").
  Candidates are taken evenly through the training text; the first KEEP that the trained fp32 model
  completes right are kept (a golden set of answers the reference model gets right, so that every
  miss of a variant is damage), and the header says what share of the candidates it got right.
  (Naming the next speaker of a dialogue was tried first: a model this small names the same
  frequent speaker every time, so nothing there tells a good variant from a damaged one.)
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from llmbench.models.reference import reference_dir
from llmbench.models.train_reference import split_text

KEEP = 24
# Only the most frequent clause-final words ("lord", "you", "sir", ...): a model of a few million
# parameters trained for minutes completes almost no rarer word (0 of 320 evenly taken candidates; 10 of 320 among the frequent ones).
COMMON_WORDS = 20
HELD_OUT_ITEMS = 8
VERSION = "1.0.0"
_SPEAKER = re.compile(r"^([A-Z][A-Za-z' ]{1,30}):\n")
_CLAUSE_END = re.compile(r" ([A-Za-z']+)(?=[,.;:!?])")
STOPS = [",", ".", ";", ":", "!", "?", "\n"]


def speeches(text: str) -> list[tuple[str, str]]:
    """(speaker, whole block) for each blank-line-separated block that starts with `NAME:`."""
    out = []
    for block in text.split("\n\n"):
        m = _SPEAKER.match(block)
        if m:
            out.append((m.group(1), block))
    return out


def phrase_candidates(text: str, max_chars: int = 400, common: int = COMMON_WORDS) -> list[dict]:
    """(prompt, reference) for each clause-final word among the `common` most frequent ones whose
    speech, up to it, fits in max_chars."""
    counts = Counter(m.group(1) for m in _CLAUSE_END.finditer(text))
    frequent = {w for w, _ in counts.most_common(common)}
    out = []
    for m in _CLAUSE_END.finditer(text):
        if m.group(1) not in frequent:
            continue
        start = text.rfind("\n\n", 0, m.start()) + 2
        prompt = text[start:m.start()]
        if _SPEAKER.match(prompt) and 40 <= len(prompt) <= max_chars:
            out.append({"prompt": prompt, "reference": m.group(1)})
    return out


def held_out_passages(held: str, n: int = HELD_OUT_ITEMS) -> list[str]:
    """n speeches of 150-400 characters, evenly spaced through the held-out text."""
    blocks = [b for _, b in speeches(held) if 150 <= len(b) <= 400]
    step = max(1, len(blocks) // n)
    return blocks[::step][:n]


def greedy_answers(model, tok, prompts: list[str], max_new_tokens: int = 4) -> list[str]:
    """The model's greedy continuation of each prompt, cut at the golden items' stop strings."""
    import torch

    from llmbench.quality import cut_at_stop

    tok.padding_side = "left"
    answers = []
    for i in range(0, len(prompts), 16):
        batch = tok(prompts[i:i + 16], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=1)
        for row in out[:, batch["input_ids"].shape[1]:]:
            answers.append(cut_at_stop(tok.decode(row, skip_special_tokens=True), STOPS))
    return answers


def build(text: str, model_dir: Path, keep: int = KEEP, candidates: int = 960) -> list[dict]:
    """The golden file's lines: header, held-out passages, then phrase items the model gets right."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmbench.quality import answer_scores

    train, held = split_text(text)
    cands = phrase_candidates(train)
    cands = cands[:: max(1, len(cands) // candidates)][:candidates]
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    answers = greedy_answers(model, tok, [c["prompt"] for c in cands])
    right = [c for c, a in zip(cands, answers) if answer_scores([a], [c["reference"]])["exact_match"] == 1.0]
    items = [{"id": f"held-out-{n}", "prompt": p, "difficulty": "held-out"} for n, p in enumerate(held_out_passages(held))]
    kept = right[:keep]
    items += [{"id": f"phrase-{n}", "prompt": c["prompt"], "reference": c["reference"], "difficulty": "phrase",
               "stop": STOPS} for n, c in enumerate(kept)]
    about = (f"The shipped reference model's golden set ({model_dir.name}): {len(items) - len(kept)} passages of "
             "the held-out tail of Tiny Shakespeare (prompt only: perplexity, KL, top-1 agreement), and "
             f"{len(kept)} speeches from its training text cut before a clause's last word, which is the reference "
             f"(one of the {COMMON_WORDS} most frequent clause-final words). "
             f"They are the first it completed right of {len(cands)} candidates taken evenly through the training "
             f"text (it completed {len(right)} right, {len(right) / max(1, len(cands)):.0%}): the reference's "
             "exact-match here is 1.0 by construction, so each variant's miss is damage. "
             "Built by `python -m llmbench.models.reference_golden`.")
    return [{"golden": {"name": "shakespeare", "version": VERSION, "about": about}}] + items


def main(argv: list[str] | None = None) -> None:
    """Command line: write profiles/golden/shakespeare.jsonl (or --out)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/text/tinyshakespeare.txt"))
    p.add_argument("--model", type=Path, default=None, help="default: the shipped reference folder")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    from llmbench.golden import default_golden_path

    lines = build(a.data.read_text(encoding="utf-8"), a.model or reference_dir())
    out = a.out or default_golden_path().with_name("shakespeare.jsonl")
    out.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    print(f"{out}: {lines[0]['golden']['about']}")


if __name__ == "__main__":
    main()
