"""The report's figures as CSV, in the columns of ``antq audit replay --format csv``: the unit in the span and
in the previous span, then each ward below it in the span."""

from __future__ import annotations

import csv
import io

from services.report.document import Document
from services.report.span import Span

COLUMNS = ("place", "year", "period", "metric", "value", "as_of_seq")


def _when(span: Span) -> str:
    return str(span.last) if span.single else f"{span.first}-{span.last}"


def write(doc: Document) -> bytes:
    f = doc.figures
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180 line ends, as `antq audit replay --format csv`
    writer.writerow(COLUMNS)
    blocks = [(f.unit.code, f.span, f.current), (f.unit.code, f.span.previous(), f.previous)]
    blocks += [(w.code, f.span, w.metrics) for w in f.wards]
    for place, span, metrics in blocks:
        for metric, value in metrics.items():
            writer.writerow([place, _when(span), span.period, metric, value, f.as_of_seq])
    return out.getvalue().encode()
