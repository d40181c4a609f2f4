"""A self-contained HTML report: tables and PNG figures embedded as data URIs."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from difftm.io.atomic import atomic_output


@dataclass
class Section:
    """One report section: a heading, paragraphs, key/value rows and figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)
    #: tables with a header row: ``(column names, rows of cells)``
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td{padding:.2em .8em;border-bottom:1px solid #eee}
td:first-child{color:#555}figure{display:inline-block;margin:.5em;vertical-align:top}
table.grid td,table.grid th{border:1px solid #ddd;padding:.2em .5em;text-align:right}
table.grid td:first-child{text-align:left;color:#222}th{background:#f4f4f4}
img{max-width:520px;border:1px solid #ddd}figcaption{font-size:.9em;color:#555;max-width:520px}
"""


def write_report(path: Path, title: str, sections: list[Section], overwrite: bool = True) -> Path:
    """Write a single-file HTML report (figures embedded) atomically; return its path."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts.extend(f"<p>{html.escape(p)}</p>" for p in sec.paragraphs)
        if sec.rows:
            parts.append("<table>")
            parts.extend(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                         for k, v in sec.rows)
            parts.append("</table>")
        for header, body in sec.tables:
            parts.append("<table class='grid'><tr>" + "".join(
                f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                         for row in body)
            parts.append("</table>")
        for fig_path, caption in sec.figures:
            data = base64.b64encode(Path(fig_path).read_bytes()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}' "
                         f"alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}"
                         "</figcaption></figure>")
    parts.append("</body></html>")
    with atomic_output(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text("".join(parts), encoding="utf-8")
    return Path(path)
