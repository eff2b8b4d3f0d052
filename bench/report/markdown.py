"""report.md: the sections as GitHub-flavoured markdown, plots linked from plots/."""
from __future__ import annotations

from pathlib import Path

from llmbench.report.content import Section


def _cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def render_markdown(sections: list[Section], base: Path) -> str:
    out: list[str] = []
    for i, s in enumerate(sections):
        out.append(f"{'#' if i == 0 else '##'} {s.title}\n")
        for b in s.blocks:
            if b[0] == "p":
                out.append(b[1] + "\n")
            elif b[0] == "table":
                headers, rows = b[1], b[2]
                out.append("| " + " | ".join(map(_cell, headers)) + " |")
                out.append("|" + "---|" * len(headers))
                out += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
                out.append("")
            elif b[0] == "plot":
                pl = b[1]
                if pl.path:
                    out.append(f"**{pl.title}**\n\n![{pl.title}]({pl.path.relative_to(base).as_posix()})\n\n{pl.caption}\n")
                else:
                    out.append(f"**{pl.title}**: {pl.skipped}.\n")
    return "\n".join(out).rstrip() + "\n"
