"""The report's Vietnamese forms without servers: numbers, dates, names, and a sentence only for figures
present (``services/report/vietnamese.py``)."""

from __future__ import annotations

import pytest

from events.localities import Localities
from projections.metrics import complete
from services.report import vietnamese as vi
from services.report.errors import BadSpan, UnknownUnit, UnsupportedUnit
from services.report.span import Span
from services.report.unit import Unit, names_of


def test_numbers_and_dates_are_written_the_vietnamese_way() -> None:
    assert [vi.number(n) for n in (0, 7, 1546, 45_000, 1_234_567, -1546)] == [
        "0",
        "7",
        "1.546",
        "45.000",
        "1.234.567",
        "-1.546",
    ]
    assert [vi.change(n) for n in (12, 0, -3, 5558)] == ["+12", "0", "-3", "+5.558"]
    assert [vi.count(n) for n in (1, 6, 10, 1546)] == ["01", "06", "10", "1.546"]
    assert vi.span_dates(Span(first=2018, last=2018, period="reporting")) == "15/12/2017 – 14/12/2018"
    assert vi.span_dates(Span(first=2014, last=2019)) == "01/01/2014 – 31/12/2019"
    assert vi.span_title(Span(first=2014, last=2019)) == "Giai đoạn 2014–2019"
    assert Span(first=2018, last=2018).previous() == Span(first=2017, last=2017)
    assert Span(first=2014, last=2019, period="reporting").previous() == Span(
        first=2008, last=2013, period="reporting"
    )
    with pytest.raises(BadSpan):
        Span(first=2019, last=2014)


def test_units_carry_their_official_names_and_pre_reform_units_are_asked_as_recorded() -> None:
    localities = Localities.load()
    ward = names_of(Unit(kind="ward", code="01447"), localities)
    assert vi.unit_title(ward) == "Xã Trà Lĩnh, tỉnh Cao Bằng"
    assert vi.unit_in_text(ward) == "xã Trà Lĩnh, tỉnh Cao Bằng"
    province = names_of(Unit(kind="province", code="04"), localities)
    assert vi.unit_title(province) == "Tỉnh Cao Bằng" and ("01447", "Xã Trà Lĩnh") in province.wards
    with pytest.raises(UnknownUnit, match="ward 99999"):
        names_of(Unit(kind="ward", code="99999"), localities)
    district = Unit(scheme="gso-pre2025", kind="district", code="046")
    assert district.cli_flags() == "--scheme gso-pre2025 --district 046"
    assert district.query_place() == {"scheme": "gso-pre2025", "district": "046"}
    assert vi.unit_title(names_of(district, localities)) == "Huyện Trà Lĩnh, tỉnh Cao Bằng"
    assert district.sub_place("01471") == {"scheme": "gso-pre2025", "commune": "01471"}
    with pytest.raises(UnsupportedUnit, match="2025 unit"):
        Unit(scheme="gso-pre2025", kind="ward", code="01447").query_place()


def test_a_sentence_only_for_the_figures_present() -> None:
    names = names_of(Unit(kind="ward", code="01447"), Localities.load())
    unit, span = Unit(kind="ward", code="01447"), Span(first=2018, last=2018)
    only_tips = vi.paragraphs(unit, names, span, complete({"tips_received": 5}))
    assert only_tips == [
        "Trong năm 2018, quần chúng nhân dân trên địa bàn xã Trà Lĩnh, tỉnh Cao Bằng cung cấp cho cơ quan "
        "Công an 5 tin."
    ]
    nothing = vi.paragraphs(unit, names, span, complete({}))
    assert nothing == [
        "Trong năm 2018, chưa có số liệu nào được ghi nhận trên địa bàn xã Trà Lĩnh, tỉnh Cao Bằng."
    ]
    weapons = vi.paragraphs(
        unit,
        names,
        span,
        complete({"weapons_surrendered": 3, "weapons_surrendered.air_gun": 3, "ammunition_surrendered": 120}),
    )
    assert weapons[0].endswith("nhân dân tự giác giao nộp 03 súng hơi và 120 viên đạn.")
