"""``gia-binh-2014-2019``: Huyện Gia Bình (old Bắc Ninh 27), agencies, enterprises and schools, 1 January 2014 to
8 October 2019 (Báo Bắc Ninh, 8 October 2019), one range query over the district's years.

The BCĐ 138 of the district (seat: Thị trấn Gia Bình, 09454) records its own facts there (pledges it organised,
commendations); sessions, tips and cases are recorded in the communes of the institutions concerned. Each
agency, enterprise and school registers for "An toàn về ANTT" in the first quarter and is assessed in December:
"hàng năm có trung bình gần 300 lượt cơ quan, doanh nghiệp, nhà trường đạt tiêu chuẩn" is checked year by year
for the assessed years 2014-2018 (2019's assessment came at the end of that year, after the article).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from events.localities import Localities
from services.demo.framework import DemoSet, Document, Ids, Row, legacy, split, spread

ids = Ids("e1a4c7d2-8b3f-4e05-a96c-2d7f0b5e1c38")
DISTRICT, PROVINCE = "263", "27"
SEAT = "09454"  # Thị trấn Gia Bình
COMMUNES = (
    "09454", "09457", "09460", "09463", "09466", "09469", "09472",
    "09475", "09478", "09481", "09484", "09487", "09490", "09493",
)  # fmt: skip
FIRST, LAST = dt.date(2014, 1, 6), dt.date(2019, 10, 7)
ASSESSED_YEARS = (2014, 2015, 2016, 2017, 2018)
# (unit kind, units registered each year, of which achieving the standard) — together 295 and 287..292 a year
UNITS = (("agency", 78), ("enterprise", 142), ("school", 75))
SHORT = (1, 2, 4, 1, 3)  # how many units of a kind fall short of the standard, rotating over kinds and years


def _event(etype: str, key: object, day: str, commune: str, **fields: object) -> Document:
    return {
        "type": etype,
        "event_id": ids(etype, key),
        "occurred_on": day,
        "locality": legacy(commune, DISTRICT, PROVINCE),
        "note": "huyện Gia Bình: cơ quan, doanh nghiệp, nhà trường",
        **fields,
    }


def _day(i: int, n: int) -> str:
    return spread(FIRST, LAST, i, n)


def events(localities: Localities) -> Iterator[Document]:
    sessions = 96  # "gần 100 buổi"
    for i, people in enumerate(split(45_000, sessions)):
        topics = (["law", "school_violence"], ["drugs", "crime_prevention"], ["traffic_safety", "law"])[i % 3]
        yield _event(
            "session.held", f"s{i}", _day(i, sessions), COMMUNES[i % 14], level="institution", topics=topics,
            attendance=people,
        )  # fmt: skip
    pledges = 24  # each school year's start and the year's mid-point: "hơn 12 nghìn lượt người"
    for i, signatures in enumerate(split(12_180, pledges)):
        yield _event(
            "pledge.signed", f"p{i}", _day(i, pledges), SEAT, signer="individual", signatures=signatures
        )
    tips, valuable = 470, 457
    for i in range(tips):
        commune, day = COMMUNES[i % 14], _day(i, tips)
        tip_id = ids("tip", i)
        category = ("security_order", "crime", "drugs", "social_evils")[i % 4]
        channel = ("in_person", "phone", "hotline", "letter")[i % 4]
        yield _event(
            "tip.received", f"t{i}", day, commune, tip_id=tip_id, channel=channel, category=category,
            source="institution",
        )  # fmt: skip
        yield _event("tip.assessed", f"a{i}", day, commune, tip_id=tip_id, valuable=i < valuable)
    for i in range(15):  # "xử lý, giải quyết 15 vụ gây rối trật tự công cộng"
        yield _event(
            "cases.cleared", f"pd{i}", _day(7 * i + 3, 110), COMMUNES[(3 * i) % 14], category="public_disorder",
            cases=1, offenders=2,
        )  # fmt: skip
    for i, offenders in enumerate(split(44, 36)):  # "điều tra, khám phá 36 vụ, với 44 đối tượng"
        yield _event(
            "cases.cleared", f"so{i}", _day(3 * i + 1, 110), COMMUNES[(5 * i) % 14], category="social_order",
            cases=1, offenders=offenders,
        )  # fmt: skip
    awards = (  # (recipient, authority, count) by year, 2014-2019: 7 collectives, 39 individuals
        ("collective", "district", 1), ("individual", "district", 5), ("individual", "province_police", 2),
        ("collective", "district", 1), ("individual", "district", 6),
        ("collective", "province_police", 1), ("individual", "district", 6), ("individual", "ministry", 1),
        ("collective", "district", 2), ("individual", "district", 7),
        ("collective", "ministry", 1), ("individual", "province_police", 3), ("individual", "district", 5),
        ("collective", "district", 1), ("individual", "district", 4),
    )  # fmt: skip
    for i, (recipient, authority, count) in enumerate(awards):
        yield _event(
            "commendation.awarded", f"c{i}", _day(i, len(awards)), SEAT, recipient=recipient,
            authority=authority, count=count,
        )  # fmt: skip
    for y, year in enumerate(ASSESSED_YEARS):
        n = 0
        for k, (kind, units) in enumerate(UNITS):
            short = SHORT[(y + k) % len(SHORT)]
            for u in range(units):
                commune, unit_id = COMMUNES[(u + k) % 14], ids("unit", kind, u)
                registered = spread(dt.date(year, 1, 10), dt.date(year, 3, 25), n, 295)
                assessed = spread(dt.date(year, 12, 5), dt.date(year, 12, 14), n, 295)
                common = {"unit_id": unit_id, "unit_kind": kind, "year": year}
                yield _event("safety.registered", f"r{year}-{kind}-{u}", registered, commune, **common)
                yield _event(
                    "safety.assessed", f"x{year}-{kind}-{u}", assessed, commune, achieved=u >= short, **common
                )
                n += 1


QUERY = {"scheme": "gso-pre2025", "district": DISTRICT, "from_year": 2014, "to_year": 2019}
INSTITUTIONS = tuple(f"safety_achieved.{kind}" for kind, _ in UNITS)

SET = DemoSet(
    name="gia-binh-2014-2019",
    title="Huyện Gia Bình (Bắc Ninh), 1/2014 – 8/10/2019 — pre-2025 district 263, one query over 2014-2019",
    office="ca-bac-ninh",
    query=QUERY,
    source="Báo Bắc Ninh, 08/10/2019: Gia Bình triển khai hiệu quả phong trào toàn dân bảo vệ ANTQ trong cơ quan, "
    "doanh nghiệp, nhà trường",
    events=events,
    rows=(
        Row(figure="sessions_held", article=100, word="nearly"),
        Row(figure="session_attendance", article=45_000),
        Row(figure="pledge_signatures", article=12_000, word="over"),
        Row(figure="tips_valuable.institution", article=457),
        Row(figure="cases_cleared.public_disorder", article=15),
        Row(figure="cases_cleared.social_order", article=36),
        Row(figure="offenders.social_order", article=44),
        Row(figure="commendations.collective", article=7),
        Row(figure="commendations.individual", article=39),
        *(
            Row(
                figure=f"safety_achieved.agency+enterprise+school {year}",
                article=300,
                word="nearly",
                metrics=INSTITUTIONS,
                query={"scheme": "gso-pre2025", "district": DISTRICT, "year": year},
            )
            for year in ASSESSED_YEARS
        ),
    ),
    notes=(
        "tips from agencies, enterprises and schools: source institution (470 received, 457 of value)",
        "each year 295 institutions register and are assessed in December; 2019's assessment followed the article",
    ),
)
