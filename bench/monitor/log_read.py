"""Reading an interaction log: the gateway's (or a run's) request records, one JSON object a line.

A log may be one file or a rotated set as `logging.handlers.RotatingFileHandler` leaves it
(`x.jsonl` the newest, `x.jsonl.1` the one before, `x.jsonl.2` older still, ...): naming `x.jsonl`
reads the whole set, oldest first. A production log is written by a process that can be killed
mid-line or share its file with something else, so a line that is not a request record is skipped,
counted, and the first one named; a log with no usable line at all is bad input (exit 2).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from llmbench.errors import BadInput
from llmbench.files import read_input_text
from llmbench.records import RequestRecord

_ROTATED = re.compile(r"^\.(\d+)$")


@dataclass
class InteractionLog:
    """The usable records of a log (in file order, oldest file first) and what was skipped."""

    path: str
    files: list[Path]
    records: list[RequestRecord]
    skipped: int = 0
    first_bad: str | None = None  # "FILE:LINE (why)" of the first skipped line
    lines: list[str] = field(default_factory=list)  # "FILE:LINE" of each record, for messages

    def warning(self) -> str | None:
        """One line saying what was skipped (None when every line was a record)."""
        if not self.skipped:
            return None
        return (f"warning: {self.skipped} line(s) of {self.path} are not request records and were skipped; "
                f"the first: {self.first_bad}")


def log_files(path: str | Path) -> list[Path]:
    """The file and its rotated predecessors (`path.1`, `path.2`, ...), oldest first."""
    p = Path(path)
    older = []
    if p.parent.is_dir():
        for sib in p.parent.iterdir():
            if sib.name.startswith(p.name):
                m = _ROTATED.match(sib.name[len(p.name):])
                if m and sib.is_file():
                    older.append((int(m.group(1)), sib))
    # RotatingFileHandler: the higher the number, the older the file.
    return [f for _, f in sorted(older, reverse=True)] + [p]


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        if err.get("type", "").startswith("json"):
            return "not valid JSON"
        loc = ".".join(str(x) for x in err.get("loc", ())) or "the line"
        return f"{loc}: {err.get('msg', 'invalid')}"[:120]
    return type(exc).__name__


def looks_like_records(path: str | Path) -> bool:
    """Whether the file's first non-blank line is a whole request record (an interaction log)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        RequestRecord.model_validate_json(first)
    except (OSError, UnicodeDecodeError, ValidationError, ValueError):
        return False
    return True


def read_log(path: str | Path, what: str = "interaction log") -> InteractionLog:
    """Every usable record of the log at `path` (and its rotated set); BadInput when there is none."""
    files = log_files(path)
    if not Path(path).is_file():
        raise BadInput(f"{what} {str(path)!r} does not exist or is not a file")
    log = InteractionLog(str(path), files, [])
    for f in files:
        text = read_input_text(f, what)
        for no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = RequestRecord.model_validate_json(line)
            except (ValidationError, ValueError) as exc:
                log.skipped += 1
                if log.first_bad is None:
                    log.first_bad = f"{f}:{no} ({_why(exc)})"
                continue
            log.records.append(rec)
            log.lines.append(f"{f}:{no}")
    if not log.records:
        shown = " + ".join(str(f) for f in files)
        if log.skipped:
            raise BadInput(f"{what} {shown}: no usable request record ({log.skipped} line(s) skipped; "
                           f"the first: {log.first_bad})")
        raise BadInput(f"{what} {shown} is empty")
    return log
