"""The report's judge table: one row per judged variant (read from quality.json)."""
from __future__ import annotations

import json
from pathlib import Path


def _pct(v, ci=None) -> str:
    if v is None:
        return "-"
    return f"{v:.0%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")


def judge_table(run_dir: Path) -> tuple[str, list[str], list[list]] | None:
    """(a sentence, headers, rows) for the report, or None when the run has no judge block."""
    try:
        doc = json.loads((Path(run_dir) / "quality.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    top = doc.get("judge") if isinstance(doc, dict) else None
    if not isinstance(top, dict):
        return None
    rows = []
    for model, cand in (doc.get("candidates") or {}).items():
        for variant, q in (cand.get("variants") or {}).items():
            j = q.get("judge")
            if not j:
                continue
            score = (_pct(j.get("accuracy"), j.get("accuracy_ci95")) if j["mode"] == "reference"
                     else _pct(j.get("not_worse_rate"), j.get("not_worse_rate_ci95")))
            rows.append([model, variant, j["judged"], j["unparseable"], score, _pct(j.get("hallucination_rate")),
                         _pct(j.get("position_agreement")), f"{j['prompt_tokens']}+{j['output_tokens']}",
                         "-" if j.get("cost_usd") is None else f"${j['cost_usd']:.6f}"])
    total, rub, labels = top.get("total") or {}, top.get("rubric") or {}, top.get("labels")
    cost = "not known" if total.get("cost_usd") is None else f"${total['cost_usd']:.6f}"
    text = (f"Judge: {top.get('judge')}, rubric {rub.get('name')}@{rub.get('version')} ({top.get('mode')} mode; "
            + ("accuracy = correct / parsed verdicts" if top.get("mode") == "reference" else
               "score = not worse than the reference variant, each pair judged in both orders")
            + f"). Its own cost, added to the run's: {cost} ({total.get('prompt_tokens')}+{total.get('output_tokens')} tokens).")
    if labels:
        kappa = labels.get("cohen_kappa")
        text += (f" Against {labels['labels']} human labels: agreement {_pct(labels.get('agreement'))}, Cohen's kappa "
                 f"{('undefined' if labels.get('judged') else 'none (no verdict parsed)') if kappa is None else f'{kappa:.2f}'}, "
                 f"{labels['unparseable']} unparseable.")
    head = ["model", "variant", "verdicts", "unparseable", "accuracy [95% CI]" if top.get("mode") == "reference" else
            "not worse [95% CI]", "hallucination", "position agreement", "judge tokens", "judge cost"]
    return text, head, rows
