"""An interaction log as a run's workload: its prompts, output lengths and arrival times, no conversion step.

Each usable record becomes one request, oldest first (by timestamp): the prompt text where the log
kept it (tokenised by the candidate's own tokenizer), otherwise random tokens of the logged prompt
length (the gateway hashes prompts unless told to keep them); the logged output length (a failed
request logged 0 tokens: it gets the median of the successful ones, so it is still sent); and its
arrival time, relative to the first request, for the `replay` scenario.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmbench.config import MAX_TOKENS, Workload
from llmbench.errors import BadInput
from llmbench.monitor.log_read import InteractionLog, read_log

WHAT = "workload.log"


@dataclass(frozen=True)
class LogRequest:
    """One request of the log as the run will send it."""

    text: str | None
    prompt_tokens: int
    output_tokens: int
    arrival_s: float


def _read(workload: Workload) -> InteractionLog:
    assert workload.log is not None
    return read_log(workload.log, WHAT)


def log_requests(workload: Workload, log: InteractionLog | None = None) -> list[LogRequest]:
    """The log's requests in arrival order, at most `workload.requests`; BadInput for an unusable log."""
    log = log or _read(workload)
    ok_outputs = [r.output_tokens for r in log.records if r.ok and r.output_tokens > 0]  # the whole log's
    recs = sorted(log.records, key=lambda r: r.timestamp)[: workload.requests]
    fallback = int(np.median(ok_outputs)) if ok_outputs else 1
    t0 = recs[0].timestamp
    out = []
    for r in recs:
        prompt = max(1, min(r.prompt_tokens, MAX_TOKENS))
        output = r.output_tokens if r.output_tokens > 0 else fallback
        out.append(LogRequest(r.prompt if r.prompt else None, prompt, max(1, min(output, MAX_TOKENS)), r.timestamp - t0))
    return out


def log_identity(workload: Workload) -> dict | None:
    """Name, sha256 of its files, requests taken and lines skipped, for run.json (None without a log)."""
    if workload.log is None:
        return None
    log = _read(workload)
    digest = hashlib.sha256()
    for f in log.files:
        digest.update(f.read_bytes())
    reqs = log_requests(workload, log)
    return {"name": Path(log.path).name, "kind": "interaction log", "path": log.path, "files": [str(f) for f in log.files],
            "sha256": digest.hexdigest(), "requests": len(reqs), "with_text": sum(r.text is not None for r in reqs),
            "span_s": reqs[-1].arrival_s, "skipped_lines": log.skipped, "first_bad_line": log.first_bad}


def validate_log(workload: Workload, replay: bool = False) -> None:
    """Read the log before anything loads: BadInput when nothing is usable, one warning line for skipped lines."""
    log = _read(workload)
    if log.warning():
        print(log.warning(), file=sys.stderr)
    reqs = log_requests(workload, log)
    if replay and (len(reqs) < 2 or reqs[-1].arrival_s <= 0):
        raise BadInput(f"{WHAT} {workload.log}: scenario 'replay' needs arrivals spread over time; "
                       f"the {len(reqs)} request(s) taken all have one timestamp")


def arrival_offsets(prompts: list) -> list[float] | None:
    """Each prompt's logged arrival (seconds after the first), or None when any prompt has none."""
    offsets = [getattr(p, "arrival_s", None) for p in prompts]
    return None if not offsets or any(o is None for o in offsets) else [float(o) for o in offsets]
