"""report.html: one self-contained file, every plot embedded as a PNG data URI."""
from __future__ import annotations

import base64
import html
import re

from llmbench.report.content import Section

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:13px;color:#555}
.skipped{color:#777;font-style:italic}"""


def _inline(text: str) -> str:
    # The paragraphs use markdown's **bold** only; everything else is escaped.
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def _data_uri(path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(sections: list[Section]) -> str:
    title = html.escape(sections[0].title if sections else "llmbench report")
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{_CSS}</style></head><body>"]
    for i, s in enumerate(sections):
        out.append(f"<h{1 if i == 0 else 2}>{html.escape(s.title)}</h{1 if i == 0 else 2}>")
        for b in s.blocks:
            if b[0] == "p":
                out.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "table":
                out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in b[1]) + "</tr></thead><tbody>")
                out += ["<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in b[2]]
                out.append("</tbody></table>")
            elif b[0] == "plot":
                pl = b[1]
                if pl.path:
                    out.append(f"<figure><img alt=\"{html.escape(pl.title)}\" src=\"{_data_uri(pl.path)}\">"
                               f"<figcaption><strong>{html.escape(pl.title)}</strong>. {html.escape(pl.caption)}</figcaption></figure>")
                else:
                    out.append(f"<p class=\"skipped\"><strong>{html.escape(pl.title)}</strong>: {html.escape(str(pl.skipped))}.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
