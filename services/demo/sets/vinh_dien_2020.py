"""``vinh-dien-2020``: Phường Vĩnh Điện (Thị xã Điện Bàn, Quảng Nam), the years up to 21 August 2020 (Cổng
thông tin Điện Bàn, 21 August 2020), the pre-2025 commune 20551 over 2016-2020.

"Trong những năm qua" is read as 2016 to the article's date: every event lies from January 2016 to 20 August
2020. The sessions are held in the residential blocks (khối phố), the campaigns at Trường THCS Quang Trung, the
legal consultations by the ward's Farmers' Association club "Nông dân với pháp luật". The 21 street-warden
teams (Tổ bảo vệ dân phố, before Law 30/2023) and 5 mediation teams were set up before and stand in 2020.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from events.localities import Localities
from services.demo.framework import DemoSet, Document, Ids, Row, legacy, split, spread

ids = Ids("b3e6a0f4-7d29-4c18-95a3-0e8c4f1d2b76")
WARD, DISTRICT, PROVINCE = "20551", "507", "49"
FIRST, LAST = dt.date(2016, 1, 11), dt.date(2020, 8, 20)
SCHOOL = "Trường THCS Quang Trung"


def _event(etype: str, key: object, day: str, **fields: object) -> Document:
    return {
        "type": etype,
        "event_id": ids(etype, key),
        "occurred_on": day,
        "locality": legacy(WARD, DISTRICT, PROVINCE),
        **fields,
    }


def events(localities: Localities) -> Iterator[Document]:
    sessions = 124  # "trên 120 buổi ... khoảng trên 4.600 lượt người"
    for i, people in enumerate(split(4_650, sessions)):
        topics = (["crime_prevention", "drugs"], ["traffic_safety"], ["fire_prevention", "weapons"])[i % 3]
        if dt.date.fromisoformat(spread(FIRST, LAST, i, sessions)).year == 2020:
            topics = [*topics, "epidemic"]
        yield _event(
            "session.held", i, spread(FIRST, LAST, i, sessions), level="hamlet", hamlet=f"Khối phố {1 + i % 21}",
            topics=topics, attendance=people,
        )  # fmt: skip
    campaigns = 22  # "trên 20 đợt phát động với hàng ngàn học sinh, giáo viên"
    for i in range(campaigns):
        yield _event(
            "campaign.launched", i, spread(FIRST, LAST, i, campaigns), name="Phát động phong trào toàn dân bảo vệ "
            "ANTQ", participants=120 + 5 * (i % 7), note=SCHOOL,
        )  # fmt: skip
    for i in range(21):  # "21 Tổ bảo vệ dân phố"
        yield _event(
            "model.established", f"warden-{i}", spread(dt.date(2009, 5, 4), dt.date(2015, 10, 1), i, 21),
            model_id=ids("model", "warden", i), name="Tổ bảo vệ dân phố", level="hamlet", kind="street_warden_team",
            hamlet=f"Khối phố {1 + i}", teams=1,
        )  # fmt: skip
    for i in range(5):  # "5 Tổ hòa giải"
        yield _event(
            "model.established", f"mediation-{i}", spread(dt.date(2011, 3, 1), dt.date(2017, 6, 1), i, 5),
            model_id=ids("model", "mediation", i), name="Tổ hòa giải", level="hamlet", kind="mediation_team", teams=1,
        )  # fmt: skip
    consultations = 53  # "trên 50 lượt tư vấn pháp luật cho khoảng trên 200 hội viên, nông dân"
    for i, people in enumerate(split(206, consultations)):
        yield _event(
            "consultation.held", i, spread(FIRST, LAST, i, consultations), people=people,
            note="CLB Nông dân với pháp luật",
        )  # fmt: skip


SET = DemoSet(
    name="vinh-dien-2020",
    title="Phường Vĩnh Điện (Điện Bàn, Quảng Nam), 2016 – 21/08/2020 — pre-2025 commune 20551",
    office="ca-da-nang",
    query={"scheme": "gso-pre2025", "commune": WARD, "from_year": 2016, "to_year": 2020},
    source="Công an phường Vĩnh Điện với Phong trào Toàn dân bảo vệ an ninh tổ quốc, 21/08/2020",
    events=events,
    rows=(
        Row(figure="sessions_held", article=120, word="over", said="trên"),
        Row(figure="session_attendance", article=4600, word="over", said="trên"),
        Row(figure="campaigns_launched", article=20, word="over", said="trên"),
        Row(figure="models_active.street_warden_team", article=21),
        Row(figure="models_active.mediation_team", article=5),
        Row(figure="consultations_held", article=50, word="over", said="trên"),
        Row(figure="consultation_people", article=200, word="about"),
    ),
    notes=(
        "the article's place is now Phường Điện Bàn (Đà Nẵng, 2025 ward 20551): the office is ca-da-nang",
    ),
)
