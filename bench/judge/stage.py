"""The judge in the quality stage: a `judge` block per variant in quality.json, its cost in the run's.

Runs after the gate (bench/quality_stage.py), on the answers the gate kept per variant
(quality.json `candidates.<name>.answers`). Writes:
- quality.json: `candidates.<name>.variants.<variant>.judge` (figures, tokens, cost, rubric) and a
  top-level `judge` (rubric identity, the judge model, its labels check, totals);
- judge.jsonl: every verdict with its rubric name and version, item, order, raw answer, tokens;
- summary.json: `judge_cost_usd` and `judge_tokens` (the run's cost beyond its measured requests:
  summary rows price requests; the judge is what the run spent on evaluating them).
"""
from __future__ import annotations

import json
import time

from llmbench.errors import BadInput


def judge_doc(doc: dict, judge, rubric, rows: list, log=lambda s: None) -> dict:
    """Judge every candidate's answers in a quality.json document (in place); the top-level judge block."""
    from llmbench.golden import load_golden
    from llmbench.judge.score import judge_pairwise, judge_reference

    golden = load_golden(doc["golden"]["path"])
    if golden.sha256 != doc["golden"]["sha256"]:
        raise BadInput(f"golden set {golden.path} changed since the gate read it (sha256 differs)")
    for label, cand in doc["candidates"].items():
        answers, ref_name = cand.get("answers") or {}, cand.get("reference_variant")
        for variant, given in answers.items():
            where = {"model": label, "variant": variant}
            if rubric.mode == "reference":
                block = judge_reference(judge, rubric, golden.items, given, rows, **where)
            elif variant == ref_name:
                continue  # pairwise: every other variant against this one
            else:
                block = judge_pairwise(judge, rubric, golden.items, given, answers[ref_name], rows, **where)
                block["against"] = ref_name
            cand["variants"][variant]["judge"] = block
            log(f"{label} {variant}: judged ({block['judged']} verdicts, {block['unparseable']} unparseable)")
    return {"rubric": rubric.identity(), "judge": judge.source, "mode": rubric.mode, "golden": doc["golden"]["name"]}


def _labels(cfg, judge, rubric, rows: list, golden_path) -> dict | None:
    if cfg.labels is None:
        return None
    from llmbench.golden import load_golden
    from llmbench.judge.labels import judge_labels, read_labels

    return {"file": str(cfg.labels), **judge_labels(judge, rubric, read_labels(cfg.labels, rubric.mode, load_golden(golden_path)), rows)}


def run_judge(run_dir, meta: dict, log=lambda s: None) -> dict | None:
    """Judge a run folder's quality.json with the config's `quality.judge`; the top-level block (None: no judge)."""
    from llmbench.judge.client import build_judge
    from llmbench.judge.rubric import load_rubric
    from llmbench.judge.setup import judge_model
    from llmbench.quality import quality_config
    from llmbench.results import write_atomic, write_json

    cfg = quality_config(meta)
    if not cfg.enabled or cfg.judge is None:
        return None
    path = run_dir.path / "quality.json"
    doc = json.loads(path.read_text())
    jc = cfg.judge
    rubric = load_rubric(jc.rubric, jc.mode)
    folder = None
    if jc.candidate is not None:
        from llmbench.models.source import resolve

        folder = resolve(judge_model(jc.candidate, meta["config"]["candidates"]), "quality.judge.candidate").path()
    hw = meta["hardware_profile"]
    t = time.perf_counter()
    judge = build_judge(jc, folder, hw["usd_per_hour"] * hw.get("devices", 1))
    rows: list[dict] = []
    block = judge_doc(doc, judge, rubric, rows, log)
    block["labels"] = _labels(jc, judge, rubric, rows, doc["golden"]["path"])
    block["total"] = judge.describe()
    block["seconds"] = round(time.perf_counter() - t, 3)  # loading the judge included; its cost counts judging only
    block["cost_in"] = "quality.json judge.total.cost_usd and summary.json judge_cost_usd"
    doc["judge"] = block
    write_json(path, doc)
    write_atomic(run_dir.path / "judge.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return block


def judge_stage(run_dir, meta: dict, summary: dict, console) -> None:
    """After the gate: the judge's blocks in quality.json, its cost and tokens in summary.json."""
    from llmbench.summary import write_summary

    block = run_judge(run_dir, meta, log=lambda s: console.print(f"  judge {s}"))
    if block is None:
        return
    total = block["total"]
    summary["judge_cost_usd"] = total["cost_usd"]
    summary["judge_tokens"] = {"prompt": total["prompt_tokens"], "output": total["output_tokens"]}
    write_summary(run_dir, summary)
    cost = "not known" if total["cost_usd"] is None else f"${total['cost_usd']:.6f}"
    console.print(f"judge ({block['rubric']['name']}@{block['rubric']['version']}, {block['judge']}): "
                  f"{total['calls']} calls, {total['prompt_tokens']}+{total['output_tokens']} tokens, {cost}")
