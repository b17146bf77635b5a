"""An independent reference of the statistics, recomputed from the surviving events, and event histories.

The reference is written separately from projections/folds.py on purpose (no imports from projections): it
first drops retracted entries, then counts what is left. Tests compare the fold and the PostgreSQL figures
with it. The tests in this file check the reference itself on hand-made cases.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import Counter
from collections.abc import Sequence

from hypothesis import strategies as st

from events.schema import (
    EntryRetracted,
    Event,
    Locality,
    MediationConcluded,
    PledgeSigned,
    Recorded,
    SessionHeld,
    TipAssessed,
    TipReceived,
    WeaponItem,
    WeaponKind,
    WeaponsSurrendered,
)

Figures = dict[tuple[str, str, int, str], int]

WARDS = ("01447", "01273", "07210")  # two in Cao Bằng (04), one in Bắc Ninh (24)
DAYS = tuple(
    dt.date.fromisoformat(d)
    for d in (
        "2018-06-01",
        "2018-12-14",
        "2018-12-15",
        "2018-12-31",
        "2019-01-01",
        "2019-12-14",
        "2019-12-15",
    )
)
OFFICE = "ca-cao-bang"


def reference(events: Sequence[Event]) -> Figures:
    """Non-zero figures keyed (period, ward, year, metric), from the events that survive retraction."""
    retracted = {e.target_event_id for e in events if isinstance(e, EntryRetracted)}
    alive = [e for e in events if not isinstance(e, EntryRetracted) and e.event_id not in retracted]
    figures: Counter[tuple[str, str, int, str]] = Counter()

    def count(event: Event, metric: str, amount: int) -> None:
        day = event.occurred_on
        reporting = day.year + 1 if (day.month, day.day) >= (12, 15) else day.year
        figures["calendar", event.locality.ward, day.year, metric] += amount
        figures["reporting", event.locality.ward, reporting, metric] += amount

    latest: dict[uuid.UUID, bool] = {}
    for e in alive:
        if isinstance(e, TipAssessed):
            latest[e.tip_id] = e.valuable
    for e in alive:
        if isinstance(e, TipReceived):
            count(e, "tips_received", 1)
            if latest.get(e.tip_id):
                count(e, "tips_valuable", 1)
        elif isinstance(e, SessionHeld):
            for metric in ("sessions_held", f"sessions_held.{e.level}"):
                count(e, metric, 1)
            for metric in ("session_attendance", f"session_attendance.{e.level}"):
                count(e, metric, e.attendance)
        elif isinstance(e, PledgeSigned):
            count(e, "pledge_signatures", e.signatures)
            count(e, f"pledge_signatures.{e.signer}", e.signatures)
        elif isinstance(e, MediationConcluded):
            count(e, "mediations_concluded", 1)
            count(e, "mediations_successful", int(e.outcome == "successful"))
        elif isinstance(e, WeaponsSurrendered):
            for item in e.items:
                if item.kind == "ammunition":
                    count(e, "ammunition_surrendered", item.quantity)
                else:
                    count(e, "weapons_surrendered", item.quantity)
                    count(e, f"weapons_surrendered.{item.kind}", item.quantity)
    return {k: v for k, v in figures.items() if v}


KINDS = (
    "tip",
    "tip",
    "assess",
    "assess",
    "assess",
    "retract",
    "retract",
    "session",
    "pledge",
    "mediation",
    "weapons",
)


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40) -> list[Event]:
    """Event histories the gateway would accept: assessments of known tips in the tip's ward, retractions of
    earlier non-retraction events (each at most once) in the target's ward, fresh tip and case ids."""
    ids = (uuid.UUID(int=(draw(st.integers(0, 2**32)) << 64) + n) for n in itertools.count(1))
    events: list[Event] = []
    tips: list[TipReceived] = []
    retractable: list[Event] = []
    for _ in range(draw(st.integers(0, max_size))):
        kind = draw(st.sampled_from(KINDS))
        ward = draw(st.sampled_from(WARDS))
        eid, day = next(ids), draw(st.sampled_from(DAYS))
        event: Event
        if kind == "assess" and tips:
            tip = draw(st.sampled_from(tips))
            event = TipAssessed(
                event_id=eid,
                occurred_on=day,
                locality=tip.locality,
                tip_id=tip.tip_id,
                valuable=draw(st.booleans()),
            )
        elif kind == "retract" and retractable:
            target = retractable.pop(draw(st.integers(0, len(retractable) - 1)))
            event = EntryRetracted(
                event_id=eid,
                occurred_on=day,
                locality=target.locality,
                target_event_id=target.event_id,
                reason="entered twice",
            )
        elif kind == "session":
            event = SessionHeld(
                event_id=eid,
                occurred_on=day,
                locality=Locality(scheme="gso-2025", ward=ward),
                level=draw(st.sampled_from(("commune", "hamlet", "institution"))),
                topics=("law",),
                attendance=draw(st.integers(0, 500)),
            )
        elif kind == "pledge":
            event = PledgeSigned(
                event_id=eid,
                occurred_on=day,
                locality=Locality(scheme="gso-2025", ward=ward),
                signer=draw(st.sampled_from(("household", "individual", "institution"))),
                signatures=draw(st.integers(1, 300)),
            )
        elif kind == "mediation":
            event = MediationConcluded(
                event_id=eid,
                occurred_on=day,
                locality=Locality(scheme="gso-2025", ward=ward),
                case_id=next(ids),
                outcome=draw(st.sampled_from(("successful", "unsuccessful", "referred"))),
                dispute="land",
            )
        elif kind == "weapons":
            kinds: st.SearchStrategy[WeaponKind] = st.sampled_from(
                ("military_firearm", "homemade_firearm", "ammunition", "support_tool", "other")
            )
            event = WeaponsSurrendered(
                event_id=eid,
                occurred_on=day,
                locality=Locality(scheme="gso-2025", ward=ward),
                items=tuple(
                    WeaponItem(kind=k, quantity=q)
                    for k, q in draw(st.lists(st.tuples(kinds, st.integers(1, 50)), min_size=1, max_size=3))
                ),
            )
        else:
            event = TipReceived(
                event_id=eid,
                occurred_on=day,
                locality=Locality(scheme="gso-2025", ward=ward),
                tip_id=next(ids),
                channel="phone",
                category="drugs",
                source="resident",
            )
            tips.append(event)
        if not isinstance(event, EntryRetracted):
            retractable.append(event)
        events.append(event)
    return events


def recorded(events: Sequence[Event]) -> list[tuple[int, Recorded]]:
    """Events as the stream holds them: (seq, Recorded) from seq 1."""
    return [(seq, Recorded(office=OFFICE, event=e)) for seq, e in enumerate(events, start=1)]


# --- the reference itself, on hand-made cases


def _tip(day: str = "2018-05-10", ward: str = "01447") -> TipReceived:
    return TipReceived(
        event_id=uuid.uuid4(),
        occurred_on=dt.date.fromisoformat(day),
        locality=Locality(scheme="gso-2025", ward=ward),
        tip_id=uuid.uuid4(),
        channel="phone",
        category="drugs",
        source="resident",
    )


def _assess(tip: TipReceived, valuable: bool) -> TipAssessed:
    return TipAssessed(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2019, 3, 1),
        locality=tip.locality,
        tip_id=tip.tip_id,
        valuable=valuable,
    )


def _retract(target: Event) -> EntryRetracted:
    return EntryRetracted(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2019, 3, 2),
        locality=target.locality,
        target_event_id=target.event_id,
        reason="mistake",
    )


def test_reference_counts_a_valuable_tip_in_the_year_it_was_received() -> None:
    tip = _tip("2018-12-15")
    figures = reference([tip, _assess(tip, True)])
    assert figures == {
        ("calendar", "01447", 2018, "tips_received"): 1,
        ("calendar", "01447", 2018, "tips_valuable"): 1,
        ("reporting", "01447", 2019, "tips_received"): 1,
        ("reporting", "01447", 2019, "tips_valuable"): 1,
    }


def test_reference_falls_back_to_the_previous_assessment_and_drops_a_retracted_tip() -> None:
    tip, other = _tip(), _tip()
    yes, no = _assess(tip, True), _assess(tip, False)
    assert reference([tip, yes, no, _retract(no)])[("calendar", "01447", 2018, "tips_valuable")] == 1
    assert reference([other, _assess(other, True), _retract(other)]) == {}
