"""Read what `cache simulate` replays: labelled pairs, a JSONL of prompts, or a run's requests.jsonl.

Every problem is reported as a BadInput naming the file and the line, so the command line can
print one clear line and exit 2.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.jsonl import read_jsonl_lines

TEXT_FIELDS = ("prompt", "text", "input", "query", "question")


@dataclass
class PairsLog:
    """Labelled pairs: every text_a is cached, then every text_b is looked up."""

    path: str
    texts_a: list[str]
    texts_b: list[str]
    labels: list[int]


@dataclass
class PromptLog:
    """Prompts in arrival order, with token counts and costs where the log has them."""

    path: str
    kind: str  # "requests" (a run's records) or "prompts"
    prompts: list[str]
    prompt_tokens: list[int | None] = field(default_factory=list)
    output_tokens: list[int | None] = field(default_factory=list)
    costs: list[float | None] = field(default_factory=list)


def _text_of(rec: dict) -> str | None:
    for key in TEXT_FIELDS:
        if isinstance(rec.get(key), str):
            return rec[key]
    msgs = rec.get("messages")
    if isinstance(msgs, list) and msgs and all(isinstance(m, dict) for m in msgs):
        return "\n".join(str(m.get("content", "")) for m in msgs)
    return None


def _number(rec: dict, key: str, where: str, kind=float):
    v = rec.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise BadInput(f"{where}: field {key!r} must be a non-negative number, got {v!r}")
    return kind(v)


def read_records(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL log.

    An interaction log (whole request records: the gateway's, or a run's requests.jsonl) is read as
    `llmbench drift` reads it: with its rotated files, lines that are not records skipped and counted.
    """
    from llmbench.monitor.log_read import looks_like_records, read_log as read_interactions

    if looks_like_records(path):
        log = read_interactions(path, "log")
        if log.warning():
            print(log.warning(), file=sys.stderr)
        return [(int(where.rsplit(":", 1)[1]), rec.model_dump()) for where, rec in zip(log.lines, log.records)]
    return read_jsonl_lines(path, "log")


def read_log(path: str | Path) -> PairsLog | PromptLog:
    """Read a log, telling its kind from its first record."""
    records = read_records(path)
    first = records[0][1]
    if "text_a" in first or "text_b" in first:
        return _pairs(str(path), records)
    return _prompts(str(path), records)


def _pairs(path: str, records: list[tuple[int, dict]]) -> PairsLog:
    a, b, labels = [], [], []
    for no, rec in records:
        where = f"{path}:{no}"
        if not isinstance(rec.get("text_a"), str) or not isinstance(rec.get("text_b"), str):
            raise BadInput(f"{where}: a pairs file needs string fields text_a and text_b")
        label = rec.get("label")
        if isinstance(label, bool) or label not in (0, 1):
            raise BadInput(f"{where}: field 'label' must be 0 or 1, got {label!r}")
        a.append(rec["text_a"])
        b.append(rec["text_b"])
        labels.append(int(label))
    return PairsLog(path, a, b, labels)


def _prompts(path: str, records: list[tuple[int, dict]]) -> PromptLog:
    is_requests = any(k in records[0][1] for k in ("prompt_tokens", "output_tokens", "ttft_ms", "e2el_ms"))
    log = PromptLog(path, "requests" if is_requests else "prompts", [])
    for no, rec in records:
        where = f"{path}:{no}"
        text = _text_of(rec)
        if text is None and is_requests:
            kept = "only each prompt's sha256 (prompt_sha256)" if rec.get("prompt_sha256") else "no prompt text"
            raise BadInput(f"{where}: this run's records hold {kept}, and a cache can only be simulated on the "
                           "text itself (to embed it and compare meanings): run again with "
                           "'workload: {record_prompts: true}' in the config to keep the text in requests.jsonl (a gateway "
                           "log: record_prompts: true under callback_settings.llmbench_gateway_log), "
                           f"or give a log with one of the fields {', '.join(TEXT_FIELDS)} or messages")
        if text is None:
            raise BadInput(f"{where}: no prompt text: expected one of the fields "
                           f"{', '.join(TEXT_FIELDS)} or messages")
        log.prompts.append(text)
        log.prompt_tokens.append(_number(rec, "prompt_tokens", where, int))
        log.output_tokens.append(_number(rec, "output_tokens", where, int))
        log.costs.append(_number(rec, "cost", where, float))
    return log
