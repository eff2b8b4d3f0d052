"""The `quality.judge` block checked when the config is read, before anything loads or measures.

Paths (rubric file, labels, a candidate folder) are made absolute against the config's folder,
like every path in a config; the rubric, the labels and the price are read now, so that a fault
is one line and exit 2, not a failed stage after the measurements.
"""
from __future__ import annotations

import os
from pathlib import Path

from llmbench.errors import BadInput


def _absolute(base: Path, value: str | Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(os.path.abspath(base / p))


def judge_model(candidate: str, candidates: list) -> str:
    """The model string of a judge `candidate:`: a run candidate's (by name), else the value itself."""
    for cand in candidates:
        label = cand.label if hasattr(cand, "label") else (cand.get("name") or cand.get("model"))
        if label == candidate:
            model = cand.model if hasattr(cand, "model") else cand.get("model")
            if model is None:
                raise BadInput(f"quality.judge.candidate {candidate!r} is an endpoint candidate: "
                               "give its endpoint as quality.judge.endpoint")
            return str(model)
    return candidate


def check_judge(config, base: Path, source: str) -> None:
    """Resolve and read everything a judge block names; BadInput `SOURCE: quality.judge.KEY: why`."""
    q = config.quality
    judge = q.judge if q is not None and q.enabled else None
    if judge is None:
        return
    from llmbench.judge.rubric import is_path, load_rubric

    def fail(key: str, exc: BadInput) -> BadInput:
        return BadInput(f"{source}: quality.judge.{key}: {exc}")

    if judge.rubric is not None and is_path(judge.rubric):
        judge.rubric = str(_absolute(base, judge.rubric))
    try:
        load_rubric(judge.rubric, judge.mode)
    except BadInput as exc:
        raise fail("rubric", exc) from None
    if judge.labels is not None:
        from llmbench.golden import load_golden
        from llmbench.judge.labels import read_labels

        judge.labels = _absolute(base, judge.labels)
        try:
            read_labels(judge.labels, judge.mode, load_golden(q.golden_set))
        except BadInput as exc:
            raise fail("labels", exc) from None
    if judge.candidate is not None:
        model = judge_model(judge.candidate, config.candidates)
        if model == judge.candidate and not model.startswith("card:"):
            local = _absolute(base, model)
            if model.startswith(("./", "../", "~", "/")) or local.exists():
                judge.candidate = model = str(local)
        from llmbench.models.source import resolve

        try:
            source_ = resolve(model, where="quality.judge.candidate")
        except BadInput as exc:
            raise BadInput(f"{source}: {exc}") from None
        if source_.kind == "hub":
            raise BadInput(f"{source}: quality.judge.candidate {model!r}: a judge runs from a local folder or a card")
    else:
        from llmbench.judge.client import endpoint_price
        from llmbench.served.probe import auth_headers

        try:
            auth_headers(judge.endpoint, "quality.judge.endpoint")
            endpoint_price(judge.price)
        except BadInput as exc:
            raise BadInput(f"{source}: {exc}") from None
