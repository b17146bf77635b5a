"""The sessions, tips and weapons of Trà Lĩnh district (Cao Bằng), 2018, as the article reports them (the
``tra-linh-2018`` demo set, ``services/demo/sets/tra_linh_2018.py``, adds the models and the standard).

The district was merged away in 2020 and its communes went to three 2025 wards. Each event is recorded as the
district recorded it in 2018: in the pre-reform scheme, ``{"scheme": "gso-pre2025", "commune": <2018 code>,
"district": "046", "province": "04"}``; the gateway resolves it on ``occurred_on`` (``events/data/lineage.tsv``)
to the 2025 ward it is stored and counted under, and the read model also keeps it under district 046 as
recorded, so the pre-reform query ``{"scheme": "gso-pre2025", "district": "046", "year": 2018}`` answers the
district's table without any mapping. Event ids are deterministic (uuid5), so publishing the set twice counts
nothing twice.
The set also shows the correction workflow: a session entered with the wrong attendance is retracted and
entered again, and a tip first judged of no value is re-assessed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

from events.localities import Localities

NAMESPACE = uuid.UUID("0b1c6f8e-46a2-4f57-8c1e-3a0d2b9e7c21")
"""Ids of the set recorded in 2018 codes (the earlier set, in 2025 wards, used 5b7f2c64-…: a stack holding it
keeps it, and this set's ids do not collide with it)."""
DISTRICT = "046"  # Huyện Trà Lĩnh (legacy code)
PROVINCE = "04"  # Tỉnh Cao Bằng (legacy code; also 04 after the reform)
YEAR = 2018
# The district's ten communes in 2018 (legacy codes; events/data/lineage.tsv maps them to 2025 wards).
COMMUNES_2018 = ("01447", "01450", "01453", "01456", "01459", "01462", "01465", "01468", "01471", "01474")

# What the article reports for 2018 (../shared/DOMAIN.md), by our metric names.
ARTICLE: dict[str, int] = {
    "sessions_held.commune": 38,
    "session_attendance.commune": 1546,
    "sessions_held.hamlet": 156,
    "session_attendance.hamlet": 5558,
    "sessions_held": 38 + 156,
    "session_attendance": 1546 + 5558,
    "tips_received": 312,
    "tips_valuable": 270,
    "weapons_surrendered.homemade_firearm": 1,
    "weapons_surrendered.support_tool": 6,
    "weapons_surrendered": 7,
}


def _id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(map(str, parts))))


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _day(i: int, n: int) -> str:
    """Spread n events over 2018 (1 Jan .. 14 Dec, so the calendar and reporting years agree)."""
    return (dt.date(YEAR, 1, 2) + dt.timedelta(days=(i * 346) // max(n, 1))).isoformat()


class DemoSet:
    def __init__(self, localities: Localities) -> None:
        self._wards = list(localities.district_wards(DISTRICT))
        self._localities = localities

    def commune_wards(self) -> list[tuple[str, str]]:
        """(2018 commune code, the 2025 ward it resolves to in 2018) for each 2018 commune of the district."""
        day = dt.date(YEAR, 6, 30)
        return [(code, self._localities.resolve_legacy(code, day).ward) for code in COMMUNES_2018]

    def district_wards(self) -> list[str]:
        return self._wards

    @staticmethod
    def district_query(**more: Any) -> dict[str, Any]:
        """The pre-reform query of the district's table (exact, as recorded: no mapping)."""
        return {"scheme": "gso-pre2025", "district": DISTRICT, "year": YEAR, **more}

    def events(self) -> Iterator[dict[str, Any]]:
        communes = self.commune_wards()
        n = len(communes)

        def base(
            kind: str, key: str, i: int, total: int, commune: tuple[str, str], **fields: Any
        ) -> dict[str, Any]:
            code, _ = commune
            doc = {
                "type": kind,
                "event_id": _id(kind, key),
                "occurred_on": _day(i, total),
                "locality": {
                    "scheme": "gso-pre2025",
                    "commune": code,
                    "district": DISTRICT,
                    "province": PROVINCE,
                },
                "note": "huyện Trà Lĩnh",
            }
            doc.update(fields)
            return doc

        for level, count, attendance in (("commune", 38, 1546), ("hamlet", 156, 5558)):
            for i, people in enumerate(_split(attendance, count)):
                commune = communes[i % n]
                topics = ["law", "drugs"] if i % 2 else ["crime_prevention"]
                hamlet = {"hamlet": f"Xóm {1 + i % 12}"} if level == "hamlet" else {}
                yield base(
                    "session.held",
                    f"{level}-{i}",
                    i,
                    count,
                    commune,
                    level=level,
                    topics=topics,
                    attendance=people,
                    **hamlet,
                )
        # a correction: entered with a typo, retracted, entered again (net effect: nothing)
        typo = base(
            "session.held", "typo", 5, 10, communes[0], level="commune", topics=["law"], attendance=4600
        )
        yield typo
        yield base(
            "entry.retracted",
            "typo-retraction",
            5,
            10,
            communes[0],
            target_event_id=typo["event_id"],
            reason="attendance typed with an extra digit; entered again",
        )

        tips = 312
        for i in range(tips):
            commune = communes[i % n]
            tip_id = _id("tip", i)
            channel = ("in_person", "phone", "hotline", "letter")[i % 4]
            category = ("security_order", "drugs", "border_security", "crime", "social_evils")[i % 5]
            tip = base(
                "tip.received",
                f"tip-{i}",
                i,
                tips,
                commune,
                tip_id=tip_id,
                channel=channel,
                category=category,
                source="resident",
            )
            yield tip
            valuable = i < 270
            if i in (3, 7):  # first judged of no value, then re-assessed after verification
                yield base(
                    "tip.assessed", f"assess-{i}-first", i, tips, commune, tip_id=tip_id, valuable=False
                )
            yield base("tip.assessed", f"assess-{i}", i, tips, commune, tip_id=tip_id, valuable=valuable)

        yield base(
            "weapons.surrendered",
            "weapons-1",
            100,
            346,
            communes[2],
            items=[{"kind": "homemade_firearm", "quantity": 1}],
        )
        yield base(
            "weapons.surrendered",
            "weapons-2",
            200,
            346,
            communes[5],
            items=[{"kind": "support_tool", "quantity": 6}],
        )
