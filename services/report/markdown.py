"""The report as Markdown (the default: printed on standard output)."""

from __future__ import annotations

from services.report.document import Document, Table, cell_text


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def table_md(table: Table) -> list[str]:
    align = ["---:" if kind != "text" else "---" for kind in table.kinds]
    lines = [f"### {table.title}", "", "| " + " | ".join(map(_escape, table.headers)) + " |"]
    lines.append("| " + " | ".join(align) + " |")
    for row in table.rows:
        cells = [_escape(cell_text(v, k)) for v, k in zip(row, table.kinds, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", table.note]
    return [*lines, ""]


def write(doc: Document) -> bytes:
    lines = [f"# {doc.title}", "", f"**{doc.subtitle}**", ""]
    for paragraph in doc.paragraphs:
        lines += [paragraph, ""]
    for table in doc.tables:
        lines += table_md(table)
    lines += [f"## {doc.provenance_title}", ""]
    for name, value in doc.provenance:
        shown = f"`{value}`" if value.startswith("antq ") else _escape(value)
        lines.append(f"- {name}: {shown}")
    return ("\n".join(lines) + "\n").encode()
