"""The report as PDF (fpdf2, pure Python), in DejaVu Sans embedded as a TrueType subset: every Vietnamese
letter is a glyph of the font (no substitution), and the PDF's text extracts back to the same characters
(``tests/test_report.py`` checks it with pypdf)."""

from __future__ import annotations

import os
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos
from fpdf.fonts import FontFace

from services.report.document import Document, Table, cell_text
from services.report.errors import ReportError

FONT_ENV = "ANTQ_REPORT_FONT_DIR"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
FONT = "DejaVuSans.ttf"
FONT_BOLD = "DejaVuSans-Bold.ttf"


class FontMissing(ReportError):
    """The TrueType font with Vietnamese glyphs is not installed."""


def font_dir() -> Path:
    given = os.environ.get(FONT_ENV)
    for d in ([Path(given)] if given else []) + list(FONT_DIRS):
        if (d / FONT).is_file() and (d / FONT_BOLD).is_file():
            return d
    raise FontMissing(
        f"the PDF needs the DejaVu fonts ({FONT}, {FONT_BOLD}), found in none of "
        f"{', '.join(str(d) for d in FONT_DIRS)}: install the Debian package fonts-dejavu-core "
        f"(`make venv` does), or set {FONT_ENV} to a directory holding them"
    )


def _table(pdf: FPDF, table: Table, size: float) -> None:
    pdf.set_font("DejaVu", "B", 10)
    pdf.multi_cell(0, 6, table.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("DejaVu", "", size)
    wide = len(table.headers) > 6
    widths = (40, 12, *([15] * (len(table.headers) - 2))) if wide else (68, 62, 20, 20, 20)
    aligns = tuple(Align.L if kind == "text" else Align.R for kind in table.kinds)
    with pdf.table(
        col_widths=widths,
        text_align=aligns,
        line_height=size * 0.5,
        first_row_as_headings=True,
        repeat_headings=0,  # once: the text extracted from the PDF is then the document's text in order
        headings_style=FontFace(emphasis="BOLD", fill_color=(238, 238, 238)),
    ) as grid:
        head = grid.row()
        for header in table.headers:
            head.cell(header)
        for values in table.rows:
            row = grid.row()
            for value, kind in zip(values, table.kinds, strict=True):
                row.cell(cell_text(value, kind))
    if table.note:
        pdf.set_font("DejaVu", "", 8)
        pdf.multi_cell(0, 4.5, table.note, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)


def write(doc: Document) -> bytes:
    fonts = font_dir()
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_creator("antq report")
    pdf.set_title(doc.title)
    pdf.set_lang("vi")
    pdf.add_font("DejaVu", "", str(fonts / FONT))
    pdf.add_font("DejaVu", "B", str(fonts / FONT_BOLD))
    pdf.set_margins(10, 12, 10)
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 14)
    pdf.multi_cell(0, 7, doc.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("DejaVu", "B", 11)
    pdf.multi_cell(0, 7, doc.subtitle, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.set_font("DejaVu", "", 10)
    for paragraph in doc.paragraphs:
        pdf.multi_cell(0, 5.5, paragraph, align=Align.J, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)
    for table in doc.tables:
        _table(pdf, table, 7 if len(table.headers) > 6 else 8.5)
    pdf.set_font("DejaVu", "B", 11)
    pdf.multi_cell(0, 7, doc.provenance_title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for name, value in doc.provenance:
        pdf.set_font("DejaVu", "B", 8.5)
        pdf.multi_cell(0, 4.5, name, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("DejaVu", "", 8.5)
        pdf.multi_cell(0, 4.5, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
