"""The report as a document: title, paragraphs, tables and the provenance block. Every writer renders this one
value, so all formats say the same; ``plain_text`` is the text in the order the writers lay it out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import msgspec

from events.catalogue import stock_metrics
from projections.metrics import BASE_METRICS
from services.report import vietnamese as vi
from services.report.figures import Figures
from services.report.provenance import Provenance

ColumnKind = Literal["text", "number", "change"]
Cell = str | int


class Table(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    """A short name (a spreadsheet's sheet)."""
    title: str
    headers: tuple[str, ...]
    kinds: tuple[ColumnKind, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str | None = None


class Document(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    subtitle: str
    paragraphs: tuple[str, ...]
    tables: tuple[Table, ...]
    provenance_title: str
    provenance: tuple[tuple[str, str], ...]
    provenance_data: Provenance
    figures: Figures


def cell_text(value: Cell, kind: ColumnKind) -> str:
    if isinstance(value, str):
        return value
    return vi.change(value) if kind == "change" else vi.number(value)


STOCK_NOTE = (
    "(*) số tại thời điểm cuối kỳ (tồn tại đến ngày cuối cùng của kỳ báo cáo), không phải số phát sinh."
)


APPROXIMATE_NOTE = (
    " (≈ N) trong số đó N là số ước tính: ghi nhận theo xã cũ (trước 1/7/2025) đã chia cho nhiều xã, phường mới mà"
    " không nêu xã, phường mới, nên được tính vào đơn vị mặc định."
)


def _ordered_metrics(*replies: dict[str, int]) -> list[str]:
    """Each base metric followed by its breakdowns present in any of the replies (known ones in label order)."""
    out: list[str] = []
    present = {name for reply in replies for name in reply}
    for base in BASE_METRICS:
        out.append(base)
        known = list(vi.BREAKDOWN_LABELS.get(base, {}))
        parts = sorted(
            (name.partition(".")[2] for name in present if name.startswith(base + ".")),
            key=lambda p: (known.index(p) if p in known else len(known), p),
        )
        out += [f"{base}.{p}" for p in parts]
    out += sorted(name for name in present if name not in out)
    return out


def figures_table(f: Figures) -> Table:
    stocks = stock_metrics()
    rows = []
    for name in _ordered_metrics(f.current, f.previous):
        now, before = f.current.get(name, 0), f.previous.get(name, 0)
        text = vi.label(name) + (" (*)" if name in stocks else "")
        if f.approximate.get(name):
            text += f" (≈ {vi.number(f.approximate[name])})"
        rows.append((text, name, now, before, now - before))
    span, previous = f.span, f.span.previous()
    return Table(
        name="Chỉ tiêu",
        title="Bảng 1. Số liệu và so sánh với cùng kỳ",
        headers=("Chỉ tiêu", "Mã", vi.span_short(span), vi.span_short(previous), "Tăng/giảm"),
        kinds=("text", "text", "number", "number", "change"),
        rows=tuple(rows),
        note=STOCK_NOTE + (APPROXIMATE_NOTE if f.approximate else ""),
    )


def wards_table(f: Figures) -> Table:
    rows: list[tuple[Cell, ...]] = [
        (w.name, w.code, *(w.metrics.get(metric, 0) for metric in vi.WARD_COLUMNS)) for w in f.wards
    ]
    total: tuple[Cell, ...] = (
        "Tổng cộng",
        f.unit.code,
        *(f.current.get(metric, 0) for metric in vi.WARD_COLUMNS),
    )
    number: ColumnKind = "number"
    numbers = (number,) * len(vi.WARD_COLUMNS)
    return Table(
        name="Xã, phường",
        title=f"Bảng 2. Các xã, phường, đặc khu trực thuộc ({vi.span_short(f.span)})",
        headers=("Đơn vị", "Mã", *(vi.WARD_HEADERS[m] for m in vi.WARD_COLUMNS)),
        kinds=("text", "text", *numbers),
        rows=(*rows, total),
        note="Cột “Mô hình” và “TTN quản lý”: số tại thời điểm cuối kỳ (*).",
    )


def provenance_rows(p: Provenance) -> tuple[tuple[str, str], ...]:
    source = (
        "bảng đọc (read model) qua dịch vụ truy vấn"
        if p.source == "read_model"
        else "tính lại từ nhật ký sự kiện ANTQ_EVENTS (không dùng PostgreSQL)"
    )
    rows = [
        ("Nguồn số liệu", source + (" — DỮ LIỆU CÓ THỂ CHƯA CẬP NHẬT (stale)" if p.stale else "")),
        ("Số thứ tự sự kiện (as_of_seq)", str(p.as_of_seq)),
        ("Phiên bản phép gộp (fold version)", str(p.fold_version)),
    ]
    if p.seal is not None:
        s = p.seal
        rows += [
            ("Dấu niêm phong mới nhất", f"số {s.number}, sự kiện {s.first_seq}–{s.last_seq}"),
            ("Mã băm (digest)", s.digest),
            ("Thời điểm niêm phong", s.sealed_at.isoformat()),
            ("Sự kiện chưa được niêm phong", str(s.unsealed)),
        ]
    else:
        rows.append(("Dấu niêm phong", p.seal_note or "không có"))
    rows += [
        ("Tính lại từ nhật ký", p.replay_command),
        ("Kiểm tra dấu niêm phong", p.seals_command),
    ]
    return tuple(rows)


def build(f: Figures, p: Provenance) -> Document:
    tables = [figures_table(f)]
    if f.wards:
        tables.append(wards_table(f))
    return Document(
        title=f"Báo cáo kết quả phong trào Toàn dân bảo vệ an ninh Tổ quốc — {vi.unit_title(f.names)}",
        subtitle=f"{vi.span_title(f.span)} ({vi.span_dates(f.span)})",
        paragraphs=tuple(vi.paragraphs(f.unit, f.names, f.span, f.current)),
        tables=tuple(tables),
        provenance_title="Nguồn gốc số liệu",
        provenance=provenance_rows(p),
        provenance_data=p,
        figures=f,
    )


def pieces(doc: Document) -> Iterator[str]:
    """Every piece of text in the order the writers lay it out."""
    yield doc.title
    yield doc.subtitle
    yield from doc.paragraphs
    for table in doc.tables:
        yield table.title
        yield from table.headers
        for row in table.rows:
            yield from (cell_text(v, k) for v, k in zip(row, table.kinds, strict=True))
        if table.note:
            yield table.note
    yield doc.provenance_title
    for name, value in doc.provenance:
        yield name
        yield value


def plain_text(doc: Document) -> str:
    return "\n".join(pieces(doc))
