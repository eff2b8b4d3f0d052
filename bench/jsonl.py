"""Reading JSONL input files, with bad input named by file and line (exit 2, never a traceback)."""
from __future__ import annotations

import json
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.files import read_input_text


def read_jsonl_lines(path: str | Path, what: str = "file") -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; BadInput naming `what`, file and line on any fault."""
    lines = read_input_text(path, what).splitlines()
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{what} {path}:{no}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise BadInput(f"{what} {path}:{no}: each line must be a JSON object")
        out.append((no, rec))
    if not out:
        raise BadInput(f"{what} {str(path)!r} is empty")
    return out
