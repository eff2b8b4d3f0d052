"""Reading JSONL input files, with bad input named by file and line (exit 2, never a traceback)."""
from __future__ import annotations

import json
from pathlib import Path

from llmbench.errors import BadInput


def read_jsonl_lines(path: str | Path, what: str = "file") -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; BadInput naming `what`, file and line on any fault."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{what} {str(path)!r} does not exist")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise BadInput(f"{what} {str(path)!r} is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"{what} {str(path)!r}: cannot read ({exc.strerror})") from None
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
