"""A small Markdown renderer: summary.md as an HTML page of the report."""

from __future__ import annotations

import html
import re


def markdown_html(text: str, title: str = "Evaluation summary") -> str:
    """A standalone HTML page of the Markdown that ``musicsep aggregate`` and
    ``musicsep summary`` write: headings, paragraphs, bullet lists, pipe
    tables (with their alignment) and inline code."""

    def inline(s: str) -> str:
        s = html.escape(s.strip(), quote=False)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    body, paragraph, items = [], [], []

    def flush():
        if paragraph:
            body.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            flush()
            level = len(heading.group(1))
            body.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif line.lstrip().startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            i -= 1
            header, rows, align = cells(block[0]), block[1:], []
            if rows and re.fullmatch(r"[\s|:\-]+", rows[0]):
                align = ["right" if c.endswith(":") and not c.startswith(":") else
                         "center" if c.startswith(":") and c.endswith(":") else "left" for c in cells(rows[0])]
                rows = rows[1:]

            def style(k):
                return f' style="text-align:{align[k]}"' if k < len(align) and align[k] != "left" else ""

            out = ["<table>", "<thead><tr>" + "".join(f"<th{style(k)}>{inline(c)}</th>"
                                                      for k, c in enumerate(header)) + "</tr></thead>", "<tbody>"]
            for row in rows:
                out.append("<tr>" + "".join(f"<td{style(k)}>{inline(c)}</td>" for k, c in enumerate(cells(row)))
                           + "</tr>")
            out.append("</tbody></table>")
            body.append("\n".join(out))
        elif re.match(r"^\s*[-*]\s+", line):
            if paragraph:
                flush()
            items.append(re.sub(r"^\s*[-*]\s+", "", line))
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
        i += 1
    flush()
    style = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:14px;margin:1.2em;"
             "color:#222}table{border-collapse:collapse;margin:0.6em 0 1.4em}th,td{border:1px solid #ccc;"
             "padding:3px 9px}th{background:#f0f0f0}tbody tr:nth-child(even){background:#fafafa}"
             "code{background:#f3f3f3;padding:0 3px}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.4em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
