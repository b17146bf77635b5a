"""``thanh-hoa-2024``: tỉnh Thanh Hóa, 2024 (Báo Thanh Hóa, January 2025), the pre-2025 province 38.

Provincial facts (provincial models, the provincial police's quarterly figures of cases cleared) are recorded at
the provincial seat (Phường Lam Sơn, Thành phố Thanh Hóa, 14773), district models at a commune of their
district, commune and hamlet models and the at-risk youth in their communes. What stands at the end of 2024: 146
self-management models (two street-warden teams dissolved on 1 July 2024 when Law 30/2023 took effect, and 12
"Tổ bảo vệ ANTT" set up after it, among them) and, apart from them, 50 "Dân vận khéo" models; 2,581 young people
under management (enrolled in 2023 and 2024, 30 released in 2024), each under a random ``person_ref``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from events.localities import Localities
from services.demo.framework import DemoSet, Document, Ids, Row, legacy, split, spread

ids = Ids("72b0d5e9-3c1f-4a86-8e47-b6d9f2a0c514")
PROVINCE = "38"
SEAT = "14773"  # Phường Lam Sơn, Thành phố Thanh Hóa
YEAR = 2024
ON = dt.date(YEAR, 6, 30)
MODELS = 146  # standing at the end of 2024, "Dân vận khéo" apart
COMMUNE_KINDS = (
    "self_managed_team",
    "inter_household",
    "civil_defence_team",
    "mediation_team",
    "drug_free_area",
)
NAMES = {
    "self_managed_team": "Tổ tự quản về ANTT",
    "inter_household": "Mô hình liên gia tự quản",
    "civil_defence_team": "Đội dân phòng",
    "mediation_team": "Tổ hòa giải",
    "drug_free_area": "Mô hình khu dân cư không có ma túy",
    "street_warden_team": "Tổ bảo vệ dân phố",
    "security_order_team": "Tổ bảo vệ ANTT",
    "security_council": "Hội đồng bảo vệ ANTT",
    "other": "Mô hình tự quản về ANTT",
    "dan_van_kheo": "Mô hình Dân vận khéo",
}


def communes_by_district(localities: Localities) -> dict[str, list[str]]:
    """The province's communes of 2024 that went whole into one 2025 ward, by their district."""
    out: dict[str, list[str]] = {}
    for code in sorted(localities.legacy_units(province=PROVINCE)):
        unit = localities.legacy_commune(code, ON)
        if unit is None or len(localities.successors(code)) != 1:
            continue
        out.setdefault(unit.district, []).append(code)
    return out


def _event(etype: str, key: object, day: str, commune: str, district: str, **fields: object) -> Document:
    return {
        "type": etype,
        "event_id": ids(etype, key),
        "occurred_on": day,
        "locality": legacy(commune, district, PROVINCE),
        **fields,
    }


def _model(key: str, day: str, place: tuple[str, str], level: str, kind: str) -> Document:
    return _event(
        "model.established",
        key,
        day,
        *place,
        model_id=ids("model", key),
        name=NAMES[kind],
        level=level,
        kind=kind,
    )


def events(localities: Localities) -> Iterator[Document]:
    by_district = communes_by_district(localities)
    districts = sorted(by_district)
    communes = [(c, d) for d in districts for c in by_district[d]]
    seat = (SEAT, "380")
    for i in range(6):
        yield _model(
            f"p{i}", spread(dt.date(2015, 3, 1), dt.date(2023, 9, 1), i, 6), seat, "province", "other"
        )
    for i, district in enumerate(districts):
        day = spread(dt.date(2016, 2, 1), dt.date(2024, 5, 1), i, len(districts))
        yield _model(
            f"d{district}", day, (by_district[district][0], district), "district", "self_managed_team"
        )
    standing = MODELS - 6 - len(districts) - 12  # commune models: the rest of the 146 that stand
    step = len(communes) // standing
    for i in range(standing):
        kind = COMMUNE_KINDS[i % len(COMMUNE_KINDS)]
        day = spread(dt.date(2019, 1, 10), dt.date(2024, 6, 20), i, standing)
        yield _model(f"c{i}", day, communes[i * step], "commune", kind)
    for i in range(2):  # street wardens until Law 30/2023 (1 July 2024), then "Tổ bảo vệ ANTT"
        place = communes[1 + i * step]
        yield _model(f"w{i}", f"2018-0{3 + i}-12", place, "hamlet", "street_warden_team")
        yield _event("model.dissolved", f"w{i}", "2024-07-01", *place, model_id=ids("model", f"w{i}"))
    for i in range(12):
        day = spread(dt.date(2024, 7, 5), dt.date(2024, 11, 29), i, 12)
        yield _model(f"t{i}", day, communes[2 + i * step], "hamlet", "security_order_team")
    for i in range(50):
        day = spread(dt.date(2020, 4, 1), dt.date(2024, 10, 15), i, 50)
        yield _model(f"dvk{i}", day, communes[3 + i * step], "commune", "dan_van_kheo")
    quarters = ("2024-03-29", "2024-06-28", "2024-09-27", "2024-12-13")
    for category, cases, offenders, rings in (("social_order", 1164, 2428, 0), ("drugs", 638, 1812, 46)):
        for q, (c, o, r) in enumerate(
            zip(split(cases, 4), split(offenders, 4), split(rings, 4), strict=True)
        ):
            yield _event(
                "cases.cleared", f"{category}-{q}", quarters[q], *seat, category=category, cases=c, offenders=o,
                rings_dismantled=r, note="Công an tỉnh Thanh Hóa: kết quả quý",
            )  # fmt: skip
    enrolled = ((2023, 900), (2024, 1711))  # 2,611 enrolled, 30 of 2023's released in 2024: 2,581 stand
    n = 0
    for year, people in enrolled:
        for i in range(people):
            place = communes[n % len(communes)]
            day = spread(dt.date(year, 1, 8), dt.date(year, 12, 10), i, people)
            yield _event("youth.enrolled", f"y{n}", day, *place, person_ref=ids("person", n))
            if n < 30:
                released = spread(dt.date(2024, 2, 1), dt.date(2024, 11, 30), n, 30)
                yield _event("youth.released", f"r{n}", released, *place, person_ref=ids("person", n))
            n += 1


SET = DemoSet(
    name="thanh-hoa-2024",
    title="Tỉnh Thanh Hóa, 2024 — pre-2025 province 38",
    office="ca-thanh-hoa",
    query={"scheme": "gso-pre2025", "province": PROVINCE, "year": YEAR},
    source="Báo Thanh Hóa, 01/2025: Phát huy sức mạnh toàn dân bảo vệ an ninh, trật tự",
    events=events,
    rows=(
        Row(figure="models_active", article=MODELS),
        Row(figure="models_active.dan_van_kheo", article=50),
        Row(figure="cases_cleared.social_order", article=1164),
        Row(figure="offenders.social_order", article=2428),
        Row(figure="cases_cleared.drugs", article=638),
        Row(figure="offenders.drugs", article=1812),
        Row(figure="rings_dismantled.drugs", article=46),
        Row(figure="youth_under_management", article=2566, word="over"),
    ),
    notes=(
        "'Dân vận khéo' models count in models_active.dan_van_kheo only, never in models_active",
        "cases cleared: the provincial police's quarterly figures, recorded at the provincial seat",
    ),
)
