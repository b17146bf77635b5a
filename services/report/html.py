"""The report as one self-contained HTML file: inline style, no script, nothing fetched from elsewhere."""

from __future__ import annotations

from html import escape

from services.report.document import Document, cell_text

STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1a1a1a; line-height: 1.5; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; } h3 { font-size: 1rem; }
p { text-align: justify; }
table { border-collapse: collapse; margin: 0.5rem 0 0.25rem; font-size: 0.9rem; }
th, td { border: 1px solid #999; padding: 0.2rem 0.5rem; vertical-align: top; }
th { background: #eee; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.code { color: #666; font-family: monospace; font-size: 0.8rem; }
.note { font-size: 0.85rem; color: #555; } dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dt { font-weight: bold; } dd { margin: 0; overflow-wrap: anywhere; } code { font-size: 0.85rem; }
"""


def write(doc: Document) -> bytes:
    out = [
        "<!DOCTYPE html>",
        '<html lang="vi"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(doc.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(doc.title)}</h1>",
        f"<p><strong>{escape(doc.subtitle)}</strong></p>",
    ]
    out += [f"<p>{escape(p)}</p>" for p in doc.paragraphs]
    for table in doc.tables:
        out.append(f"<h3>{escape(table.title)}</h3><table><thead><tr>")
        out += [f"<th>{escape(h)}</th>" for h in table.headers]
        out.append("</tr></thead><tbody>")
        for row in table.rows:
            cells = []
            for i, (value, kind) in enumerate(zip(row, table.kinds, strict=True)):
                css = "n" if kind != "text" else "code" if i == 1 else ""
                attr = f' class="{css}"' if css else ""
                cells.append(f"<td{attr}>{escape(cell_text(value, kind))}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        if table.note:
            out.append(f'<p class="note">{escape(table.note)}</p>')
    out.append(f"<h2>{escape(doc.provenance_title)}</h2><dl>")
    for name, value in doc.provenance:
        shown = f"<code>{escape(value)}</code>" if value.startswith("antq ") else escape(value)
        out.append(f"<dt>{escape(name)}</dt><dd>{shown}</dd>")
    out.append("</dl></body></html>")
    return ("\n".join(out) + "\n").encode()
