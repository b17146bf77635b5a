"""The report as an XLSX workbook (XlsxWriter): sheets of figures, breakdowns, wards and provenance; every
number is a number cell (formatted #,##0 so that a Vietnamese locale shows 1.546)."""

from __future__ import annotations

import io
from typing import Any

import xlsxwriter

from services.report.document import Document, Table


def _sheet(book: Any, name: str, title: str, headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    sheet = book.add_worksheet(name[:31])
    bold = book.add_format({"bold": True})
    head = book.add_format({"bold": True, "bg_color": "#EEEEEE", "border": 1, "text_wrap": True})
    num = book.add_format({"num_format": "#,##0"})
    sheet.write_string(0, 0, title, bold)
    for col, header in enumerate(headers):
        sheet.write_string(2, col, header, head)
    for r, row in enumerate(rows, start=3):
        for col, value in enumerate(row):
            if isinstance(value, int):
                sheet.write_number(r, col, value, num)
            else:
                sheet.write_string(r, col, str(value))
    sheet.set_column(0, 0, 48)
    sheet.set_column(1, 1, 28)
    sheet.set_column(2, max(2, len(headers) - 1), 12)
    sheet.freeze_panes(3, 0)


def _split(table: Table) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Base metrics, and breakdowns (``<metric>.<value>``) with the metric and the value in columns."""
    bases, parts = [], []
    for row in table.rows:
        label, name = str(row[0]), str(row[1])
        base, _, part = name.partition(".")
        if part:
            parts.append((label.removeprefix("– "), base, part, *row[2:]))
        else:
            bases.append(row)
    return bases, parts


def write(doc: Document) -> bytes:
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    figures, *others = doc.tables
    bases, parts = _split(figures)
    heading = f"{doc.title} — {doc.subtitle}"
    _sheet(book, "Chỉ tiêu", heading, figures.headers, bases)
    _sheet(
        book,
        "Phân tổ",
        f"Phân tổ các chỉ tiêu — {doc.subtitle}",
        ("Phân tổ", "Chỉ tiêu", "Mã phân tổ", *figures.headers[2:]),
        parts,
    )
    for table in others:
        _sheet(book, table.name, table.title, table.headers, list(table.rows))
    p = doc.provenance_data
    rows: list[tuple[Any, ...]] = [(name, value) for name, value in doc.provenance]
    rows[1] = (rows[1][0], p.as_of_seq)
    rows[2] = (rows[2][0], p.fold_version)
    _sheet(book, "Nguồn gốc", doc.provenance_title, ("Mục", "Giá trị"), rows)
    book.close()
    return out.getvalue()
