"""``tra-linh-2018``: Huyện Trà Lĩnh (Cao Bằng), 2018 (Báo Cao Bằng, 24 June 2019).

The sessions, tips and weapons of ``services/demo/tra_linh_2018.py`` (unchanged), plus what the article counts
beyond them: the self-management models standing at the end of 2018 (10 security councils, one per commune,
and 123 self-managed teams, one per hamlet, all set up before 2018; the inter-household model set up in 2018 in
Lũng Tung hamlet of Xuân Nội; the drug-free commune model of Cô Mười, Quang Vinh and Lưu Ngọc) and the ten
communes registered for the "An toàn về ANTT" standard in the first quarter of 2018. Every event is in the
communes' 2018 codes; the query is the pre-reform district's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from events.localities import Localities
from services.demo import tra_linh_2018 as base
from services.demo.framework import DemoSet, Document, Ids, Row, legacy, split, spread

ids = Ids("9d3f1c2a-5e64-4b7d-9a0e-7c21b8f4d613")
XUAN_NOI, CO_MUOI, QUANG_VINH, LUU_NGOC = "01462", "01450", "01459", "01468"
HAMLET_TEAMS = 123


def _event(etype: str, key: object, day: str, commune: str, **fields: object) -> Document:
    return {
        "type": etype,
        "event_id": ids(etype, key),
        "occurred_on": day,
        "locality": legacy(commune, base.DISTRICT, base.PROVINCE),
        "note": "huyện Trà Lĩnh",
        **fields,
    }


def _model(key: str, day: str, commune: str, name: str, level: str, kind: str, **more: object) -> Document:
    return _event(
        "model.established",
        key,
        day,
        commune,
        model_id=ids("model", key),
        name=name,
        level=level,
        kind=kind,
        **more,
    )


def events(localities: Localities) -> Iterator[Document]:
    yield from base.DemoSet(localities).events()
    communes = base.COMMUNES_2018
    for i, commune in enumerate(communes):  # one security council per commune, set up 2012-2016
        day = spread(dt.date(2012, 3, 1), dt.date(2016, 9, 30), i, len(communes))
        yield _model(
            f"council-{commune}", day, commune, "Hội đồng bảo vệ ANTT xã", "commune", "security_council"
        )
    per_commune = split(HAMLET_TEAMS, len(communes))
    n = 0
    for commune, hamlets in zip(communes, per_commune, strict=True):  # one team per hamlet, set up 2013-2017
        for h in range(1, hamlets + 1):
            day = spread(dt.date(2013, 1, 15), dt.date(2017, 11, 30), n, HAMLET_TEAMS)
            yield _model(
                f"team-{commune}-{h}",
                day,
                commune,
                f"Tổ tự quản về ANTT xóm {h}",
                "hamlet",
                "self_managed_team",
                hamlet=f"Xóm {h}",
                teams=1,
            )
            n += 1
    yield _model(
        "inter-household-lung-tung",
        "2018-05-16",
        XUAN_NOI,
        "Mô hình liên gia tự quản xóm Lũng Tung",
        "hamlet",
        "inter_household",
        hamlet="Lũng Tung",
    )
    for i, commune in enumerate((CO_MUOI, QUANG_VINH, LUU_NGOC)):
        yield _model(
            f"drug-free-{commune}",
            f"2018-0{4 + i}-10",
            commune,
            "Mô hình xã không có tệ nạn ma túy",
            "commune",
            "drug_free_area",
        )
    for i, commune in enumerate(communes):  # "10/10 xã, thị trấn đăng ký": in the first quarter
        yield _event(
            "safety.registered",
            f"safety-{commune}",
            spread(dt.date(2018, 1, 15), dt.date(2018, 3, 20), i, len(communes)),
            commune,
            unit_id=ids("safety-unit", commune),
            unit_kind="commune",
            year=2018,
        )


SET = DemoSet(
    name="tra-linh-2018",
    title=f"Huyện Trà Lĩnh (Cao Bằng), {base.YEAR} — pre-2025 district {base.DISTRICT}, as recorded in 2018 codes",
    office="bcd-tra-linh-cu",
    query={"scheme": "gso-pre2025", "district": base.DISTRICT, "year": base.YEAR},
    source="Báo Cao Bằng, 24/06/2019: Hiệu quả từ phong trào Toàn dân bảo vệ an ninh Tổ quốc ở huyện Trà Lĩnh",
    events=events,
    rows=(
        Row(figure="sessions_held.commune", article=38),
        Row(figure="session_attendance.commune", article=1546),
        Row(figure="sessions_held.hamlet", article=156),
        Row(figure="session_attendance.hamlet", article=5558),
        Row(figure="tips_received", article=312),
        Row(figure="tips_valuable", article=270),
        Row(figure="weapons_surrendered.homemade_firearm", article=1),
        Row(figure="weapons_surrendered.support_tool", article=6),
        Row(figure="safety_registered.commune", article=10),
        Row(figure="models_active.security_council", article=10),
        Row(figure="models_active.self_managed_team", article=123),
        Row(figure="models_established.inter_household", article=1),
        Row(figure="models_active.drug_free_area", article=3),
    ),
    notes=(
        "a session entered with a typo is retracted and entered again; two tips are re-assessed",
        "the security councils and hamlet teams were set up before 2018: they stand at its end (stocks)",
    ),
)
