"""Reading a user's input file as text: a missing or unreadable file is bad input, named once."""
from __future__ import annotations

from pathlib import Path

from llmbench.errors import BadInput


def read_input_text(path: str | Path, what: str, encoding: str = "utf-8") -> str:
    """The file's text; BadInput naming `what` and the path when it is missing or not readable text."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{what} {str(p)!r} does not exist or is not a file")
    try:
        return p.read_text(encoding=encoding)
    except (UnicodeDecodeError, OSError) as exc:
        raise BadInput(f"{what} {str(p)!r} is not readable UTF-8 text ({type(exc).__name__})") from None
