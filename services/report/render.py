"""One entry point for every format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from services.report import html, markdown, pdf, table_csv, xlsx
from services.report.document import Document
from services.report.errors import UnknownFormat

WRITERS: Final[dict[str, Callable[[Document], bytes]]] = {
    "md": markdown.write,
    "html": html.write,
    "pdf": pdf.write,
    "xlsx": xlsx.write,
    "csv": table_csv.write,
}
BINARY: Final = frozenset({"pdf", "xlsx"})


def render(doc: Document, fmt: str) -> bytes:
    writer = WRITERS.get(fmt)
    if writer is None:
        raise UnknownFormat(f"--format {fmt!r}: give one of {', '.join(WRITERS)}")
    return writer(doc)
