"""``quang-ninh-2012``: tỉnh Quảng Ninh, the models standing on 20 August 2012 (Báo Quảng Ninh, 20 August 2012).

"Hiện toàn tỉnh có 91 mô hình tự quản về ANTT, trong đó 5 mô hình cấp tỉnh, 25 cấp huyện, 61 cấp xã": the models
were set up over the years before (2006 to August 2012), none dissolved, so what stands on 20 August 2012 also
stands at the end of 2012 (a stock). Provincial models are recorded at the provincial seat (Phường Hồng Hà, Hạ
Long), district models at a commune of their district's town, commune models in their communes: pre-2025 codes,
from the list of 30 June 2025 (communes of Hoành Bồ, part of Hạ Long only since 2019, and communes later split
are left out, so that every locality names its unit as it stood in 2012).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from events.localities import Localities
from services.demo.framework import DemoSet, Document, Ids, Row, legacy, spread

ids = Ids("4c8e2b71-0f3a-4d59-b6e2-19a7d5c3e840")
PROVINCE = "22"
PROVINCIAL_SEAT = "06697"  # Phường Hồng Hà, Thành phố Hạ Long
HOANH_BO = frozenset(f"{code:05d}" for code in range(7030, 7067, 3))  # Huyện Hoành Bồ (204) until 2019
ON = dt.date(2012, 8, 20)
KINDS = ("self_managed_team", "inter_household", "security_council", "civil_defence_team", "mediation_team")
NAMES = {
    "self_managed_team": "Tổ tự quản về ANTT",
    "inter_household": "Mô hình liên gia tự quản",
    "security_council": "Hội đồng bảo vệ ANTT",
    "civil_defence_team": "Đội dân phòng",
    "mediation_team": "Tổ hòa giải",
}

LEVELS = {"province": "cấp tỉnh", "district": "cấp huyện", "commune": "cấp xã"}


def communes_by_district(localities: Localities) -> dict[str, list[str]]:
    """The province's communes of 2012 that went whole into one 2025 ward, by their district."""
    out: dict[str, list[str]] = {}
    for code in sorted(localities.legacy_units(province=PROVINCE)):
        unit = localities.legacy_commune(code, ON)
        if code in HOANH_BO or unit is None or len(localities.successors(code)) != 1:
            continue
        out.setdefault(unit.district, []).append(code)
    return out


def events(localities: Localities) -> Iterator[Document]:
    by_district = communes_by_district(localities)
    places: list[tuple[str, str, str]] = [("province", PROVINCIAL_SEAT, "193")] * 5
    districts = sorted(by_district)
    for i in range(25):  # two per district, the last district one
        district = districts[i % len(districts)]
        places.append(("district", by_district[district][0], district))
    communes = [(c, d) for d in districts for c in by_district[d][1:]]
    step = len(communes) / 61
    places += [("commune", communes[int(i * step)][0], communes[int(i * step)][1]) for i in range(61)]
    first, last = dt.date(2006, 3, 1), dt.date(2012, 8, 15)
    for i, (level, commune, district) in enumerate(places):
        kind = KINDS[i % len(KINDS)]
        yield {
            "type": "model.established",
            "event_id": ids("event", i),
            "occurred_on": spread(first, last, i, len(places)),
            "locality": legacy(commune, district, PROVINCE),
            "model_id": ids("model", i),
            "name": f"{NAMES[kind]} {LEVELS[level]}",
            "level": level,
            "kind": kind,
            "note": "mô hình tự quản về ANTT, tỉnh Quảng Ninh",
        }


SET = DemoSet(
    name="quang-ninh-2012",
    title="Tỉnh Quảng Ninh, 2012 — pre-2025 province 22: the models standing (on 20 August 2012 and at year end)",
    office="ca-quang-ninh",
    query={"scheme": "gso-pre2025", "province": PROVINCE, "year": 2012},
    source="Báo Quảng Ninh, 20/08/2012: Giải pháp nâng cao hiệu quả phong trào toàn dân bảo vệ ANTQ",
    events=events,
    rows=(
        Row(figure="models_active", article=91),
        Row(figure="models_active.province", article=5),
        Row(figure="models_active.district", article=25),
        Row(figure="models_active.commune", article=61),
    ),
    notes=("91 models set up from 2006 to August 2012, none dissolved: they stand at the end of 2012",),
)
