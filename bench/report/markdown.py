"""report.md: the sections as GitHub-flavoured markdown, plots linked from plots/.

Every piece of text is escaped (candidate names, error messages and file names are user text): the
only markup in the result is the report's own, headings, tables, links and the paragraphs' **bold**.
"""
from __future__ import annotations

import re
from pathlib import Path

from llmbench.report.content import Section

# Characters that start markup in CommonMark/GFM (emphasis, code, links, HTML, tables, strike,
# entities, math on GitHub); a backslash makes each literal.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&$#!{}])")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def escape(text: object) -> str:
    """Plain text as markdown that renders as the same text, on one line."""
    return _SPECIAL.sub(r"\\\1", str(text)).replace("\r", " ").replace("\n", " ")


def _inline(text: str) -> str:
    # The paragraphs use **bold** only, as html.py reads them; everything else is literal.
    out, at = [], 0
    for m in _BOLD.finditer(text):
        out.append(escape(text[at:m.start()]) + f"**{escape(m.group(1))}**")
        at = m.end()
    return "".join(out) + escape(text[at:])


def render_markdown(sections: list[Section], base: Path) -> str:
    """The report as markdown text; plot images are linked relative to `base` (the run folder)."""
    out: list[str] = []
    for i, s in enumerate(sections):
        out.append(f"{'#' if i == 0 else '##'} {escape(s.title)}\n")
        for b in s.blocks:
            if b[0] == "p":
                out.append(_inline(b[1]) + "\n")
            elif b[0] == "table":
                headers, rows = b[1], b[2]
                out.append("| " + " | ".join(map(escape, headers)) + " |")
                out.append("|" + "---|" * len(headers))
                out += ["| " + " | ".join(map(escape, r)) + " |" for r in rows]
                out.append("")
            elif b[0] == "plot":
                pl = b[1]
                if pl.path:
                    out.append(f"**{escape(pl.title)}**\n\n![{escape(pl.title)}]({pl.path.relative_to(base).as_posix()})\n\n{escape(pl.caption)}\n")
                else:
                    out.append(f"**{escape(pl.title)}**: {escape(pl.skipped)}.\n")
    return "\n".join(out).rstrip() + "\n"
