"""The judge against human labels: a labelled subset (answers with a person's verdict), judged again.

A labels file has one JSON object a line. Reference mode: `answer`, `verdict` (correct /
incorrect / unsupported), and the item: `id` of a golden item (its prompt and reference), or
`question` and `reference` written out. Pairwise mode: `answer_a`, `answer_b`, `verdict` (A / B /
tie) and the item likewise (`reference` optional). A pairwise label is judged in both orders, the
second compared with the label swapped. Reported: agreement (share of parsed verdicts equal to
the label) and Cohen's kappa (scikit-learn) over the parsed verdicts; unparseable ones counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.jsonl import read_jsonl_lines
from llmbench.judge.score import NONE, Tally
from llmbench.judge.verdict import VERDICTS

_SWAP = {"A": "B", "B": "A", "tie": "tie"}


@dataclass(frozen=True)
class Label:
    question: str
    reference: str | None
    answers: tuple[str, ...]  # one (reference mode) or two (A, B)
    verdict: str
    item: str


def read_labels(path: str | Path, mode: str, golden) -> list[Label]:
    """The labels of a file, checked against the mode and the golden set; BadInput naming the line."""
    words = {v.lower(): v for v in VERDICTS[mode]}
    keys = ("answer",) if mode == "reference" else ("answer_a", "answer_b")
    by_id = {i.id: i for i in golden.items}
    out = []
    for no, row in read_jsonl_lines(path, "judge labels"):
        at = f"judge labels {path}:{no}"
        extra = set(row) - {"id", "question", "reference", "verdict", *keys}
        if extra:
            raise BadInput(f"{at}: unknown key(s) {', '.join(sorted(extra))} (a {mode} label has id or question, "
                           f"reference, {', '.join(keys)}, verdict)")
        verdict = words.get(str(row.get("verdict", "")).lower())
        if verdict is None:
            raise BadInput(f"{at}: verdict must be one of {', '.join(VERDICTS[mode])}")
        if not all(isinstance(row.get(k), str) for k in keys):
            raise BadInput(f"{at}: {' and '.join(keys)} must be text")
        item = by_id.get(row["id"]) if "id" in row else None
        if "id" in row and item is None:
            raise BadInput(f"{at}: id {str(row['id'])[:60]!r} is not an item of golden set {golden.name}@{golden.version}")
        question = row.get("question", item.prompt if item else None)
        reference = row.get("reference", item.reference if item else None)
        if not isinstance(question, str) or not question:
            raise BadInput(f"{at}: give the golden item's id or the question")
        if mode == "reference" and not (isinstance(reference, str) and reference):
            raise BadInput(f"{at}: a reference-mode label needs a reference (or the id of a golden item that has one)")
        out.append(Label(question, reference, tuple(row[k] for k in keys), verdict, str(row.get("id", f"line-{no}"))))
    return out


def judge_labels(judge, rubric, labels: list[Label], rows: list) -> dict:
    """Judge every label; agreement and Cohen's kappa against the human verdicts, and the judge's usage."""
    from sklearn.metrics import cohen_kappa_score

    tally = Tally(judge, rubric, rows, labelled="yes")
    human, machine = [], []
    for lab in labels:
        if rubric.mode == "reference":
            asks = [(rubric.render(question=lab.question, answer=lab.answers[0], reference=lab.reference), None, lab.verdict)]
        else:
            ref = lab.reference or NONE
            a, b = lab.answers
            asks = [(rubric.render(question=lab.question, reference=ref, answer_a=a, answer_b=b), "AB", lab.verdict),
                    (rubric.render(question=lab.question, reference=ref, answer_a=b, answer_b=a), "BA", _SWAP[lab.verdict])]
        for prompt, order, want in asks:
            got = tally.one(prompt, lab.item, order)
            if got is not None:
                human.append(want)
                machine.append(got)
    asked = len(labels) * (1 if rubric.mode == "reference" else 2)
    usage = tally.usage()
    kappa = None
    if len(set(human) | set(machine)) > 1:
        kappa = round(float(cohen_kappa_score(human, machine, labels=list(VERDICTS[rubric.mode]))), 6)
    return {"labels": len(labels), "verdicts_asked": asked, "judged": len(human),
            "unparseable": asked - len(human) - usage["failed_calls"],
            "agreement": round(sum(h == m for h, m in zip(human, machine)) / len(human), 6) if human else None,
            "cohen_kappa": kappa,
            **({"kappa_note": "undefined: every verdict and label is the same class"} if human and kappa is None else {}),
            **usage}
