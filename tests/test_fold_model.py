"""An independent reference of the statistics, recomputed from the surviving events, and event histories.

The reference is written separately from projections/folds.py on purpose (no imports from projections): it
first resolves every entry to the version that stands (an entry is a stack of versions: the original, then each
correction's copy; retracting the top correction pops it, retracting the original drops the entry), then counts
the versions that stand, in the order their entries were first recorded. Tests compare the fold and the PostgreSQL figures
with it. The tests in this file check the reference itself on hand-made cases.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from hypothesis import strategies as st

from events.schema import (
    BroadcastAired,
    CampaignLaunched,
    CasesCleared,
    CommendationAwarded,
    ConsultationHeld,
    EntryCorrected,
    EntryRetracted,
    Event,
    Locality,
    MediationConcluded,
    ModelDissolved,
    ModelEstablished,
    ModelUpdated,
    PatrolHeld,
    PledgeSigned,
    Recorded,
    SafetyAssessed,
    SafetyRegistered,
    SessionHeld,
    TipAssessed,
    TipReceived,
    TipSource,
    WeaponItem,
    WeaponKind,
    WeaponsSurrendered,
    YouthEnrolled,
    YouthReleased,
    ward_of,
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
LIFE_DAYS = (dt.date(2016, 3, 1), *DAYS, dt.date(2021, 7, 1))
"""Days of models and youth: stocks are seen across more years."""
OFFICE = "ca-cao-bang"
LEVELS = ("province", "commune", "hamlet")
MODEL_KINDS = ("self_managed_team", "security_council", "dan_van_kheo")


# --- issue 10: the movement's plain types. Per type: a sample (the documents of tests/test_unknown_fields.py,
# tests/test_catalogue.py and tests/test_contract.py), the values histories draw, and what the reference counts
# (``count_plain``, written apart from the catalogue's figures).

PLAIN_SAMPLES: dict[str, dict[str, Any]] = {
    "commendation.awarded": {"recipient": "collective", "authority": "province", "count": 7},
    "patrol.held": {"participants": 12},
    "consultation.held": {"people": 4},
    "broadcast.aired": {"medium": "loudspeaker", "minutes": 15},
    "campaign.launched": {"name": "Ngày hội toàn dân bảo vệ ANTQ", "participants": 300},
    "cases.cleared": {"category": "drugs", "cases": 2, "offenders": 3, "rings_dismantled": 1},
}
PLAIN_FIELDS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "commendation.awarded": st.fixed_dictionaries(
        {
            "recipient": st.sampled_from(("collective", "individual")),
            "authority": st.sampled_from(
                ("state", "ministry", "province_police", "province", "district", "commune")
            ),
            "count": st.integers(1, 40),
        }
    ),
    "patrol.held": st.fixed_dictionaries({"participants": st.integers(1, 60)}),
    "consultation.held": st.fixed_dictionaries({"people": st.integers(1, 90)}),
    "broadcast.aired": st.fixed_dictionaries(
        {"medium": st.sampled_from(("radio", "loudspeaker", "television", "online"))},
        optional={"minutes": st.integers(1, 120)},
    ),
    "campaign.launched": st.fixed_dictionaries(
        {}, optional={"name": st.just("Ngày hội 19/8"), "participants": st.integers(0, 500)}
    ),
    "cases.cleared": st.fixed_dictionaries(  # tip_ids: drawn by ``histories`` from the tips of the ward
        {
            "category": st.sampled_from(("social_order", "drugs", "public_disorder", "other")),
            "cases": st.integers(1, 20),
            "offenders": st.integers(0, 40),
        },
        optional={"rings_dismantled": st.integers(0, 3)},
    ),
}


def count_plain(e: Event, count: Callable[[Event, str, int], None]) -> bool:
    """What the reference counts for a plain type of issue 10; False for any other type."""
    if isinstance(e, CommendationAwarded):
        for metric in ("commendations", f"commendations.{e.recipient}", f"commendations.{e.authority}"):
            count(e, metric, e.count)
    elif isinstance(e, PatrolHeld):
        count(e, "patrols_held", 1)
        count(e, "patrol_participants", e.participants)
    elif isinstance(e, ConsultationHeld):
        count(e, "consultations_held", 1)
        count(e, "consultation_people", e.people)
    elif isinstance(e, BroadcastAired):
        count(e, "broadcasts_aired", 1)
        count(e, f"broadcasts_aired.{e.medium}", 1)
    elif isinstance(e, CampaignLaunched):
        count(e, "campaigns_launched", 1)
        count(e, "campaign_participants", e.participants or 0)
    elif isinstance(e, CasesCleared):  # its tips: ``leading_tips``
        for metric, n in (
            ("cases_cleared", e.cases),
            ("offenders", e.offenders),
            ("rings_dismantled", e.rings_dismantled),
        ):
            count(e, metric, n)
            count(e, f"{metric}.{e.category}", n)
    else:
        return False
    return True


def plain_event(tag: str, eid: uuid.UUID, day: dt.date, ward: str, fields: dict[str, Any]) -> Event:
    doc = {
        "type": tag,
        "event_id": str(eid),
        "occurred_on": day.isoformat(),
        "locality": {"scheme": "gso-2025", "ward": ward},
    }
    event: Event = msgspec.convert({**doc, **fields}, Event)
    return event


def leading_tips(events: Sequence[Event], alive: list[tuple[uuid.UUID, Event]]) -> set[uuid.UUID]:
    """The tip entries a standing version of a cases.cleared names: a tip id in a version means the tip received
    last with that id before the version was recorded (the case's own event, or the correction that made the
    version), when it is of the case's ward. Each tip once, however many cases name it."""
    introduced: dict[uuid.UUID, int] = {}  # a version's event id -> where in the log it was recorded
    for i, e in enumerate(events):
        if isinstance(e, EntryCorrected):
            introduced[e.corrected.event_id] = i
        elif not isinstance(e, EntryRetracted):
            introduced[e.event_id] = i
    leading: set[uuid.UUID] = set()
    for _, version in alive:
        if isinstance(version, CasesCleared):
            at = introduced[version.event_id]
            for tip_id in version.tip_ids:
                receipts = [e for e in events[:at] if isinstance(e, TipReceived) and e.tip_id == tip_id]
                if receipts and receipts[-1].locality.ward == version.locality.ward:
                    leading.add(receipts[-1].event_id)
    return leading


# --- end of issue 10's plain types


def standing(events: Sequence[Event]) -> list[tuple[uuid.UUID, Event]]:
    """(entry, the version of it that stands), in the order the entries were first recorded. An entry is named
    by its original's event_id."""
    versions: dict[uuid.UUID, list[tuple[uuid.UUID, Event]]] = {}  # entry (original id) -> its versions
    entry_of: dict[uuid.UUID, uuid.UUID] = {}  # a version's id (original or correction) -> its entry
    for e in events:
        if isinstance(e, EntryCorrected):
            entry = entry_of[e.target_event_id]
            assert versions[entry][-1][0] == e.target_event_id, "a correction targets the latest version"
            versions[entry].append((e.event_id, e.corrected))
            entry_of[e.event_id] = entry
        elif isinstance(e, EntryRetracted):
            entry = entry_of[e.target_event_id]
            assert versions[entry][-1][0] == e.target_event_id, "a retraction targets the latest version"
            versions[entry].pop()  # the original popped: the entry is gone
        else:
            versions[e.event_id] = [(e.event_id, e)]
            entry_of[e.event_id] = e.event_id
    return [(entry, stack[-1][1]) for entry, stack in versions.items() if stack]


def tip_owners(events: Sequence[Event]) -> dict[uuid.UUID, uuid.UUID]:
    """Each assessment entry's tip entry: the tip.received recorded last before it with its tip_id (a retracted
    tip's id may be received again: a new tip, which the earlier assessments do not speak about)."""
    received: dict[uuid.UUID, uuid.UUID] = {}
    owner: dict[uuid.UUID, uuid.UUID] = {}
    for e in events:
        if isinstance(e, TipReceived):
            received[e.tip_id] = e.event_id
        elif isinstance(e, TipAssessed) and e.tip_id in received:
            owner[e.event_id] = received[e.tip_id]
    return owner


def reference(events: Sequence[Event]) -> Figures:
    """Non-zero figures keyed (period, ward, year, metric), from the versions that stand."""
    alive = standing(events)
    owner = tip_owners(events)
    figures: Counter[tuple[str, str, int, str]] = Counter()

    def count(event: Event, metric: str, amount: int) -> None:
        day = event.occurred_on
        reporting = day.year + 1 if (day.month, day.day) >= (12, 15) else day.year
        figures["calendar", ward_of(event), day.year, metric] += amount
        figures["reporting", ward_of(event), reporting, metric] += amount

    leading = leading_tips(events, alive)
    latest: dict[uuid.UUID, bool] = {}  # tip entry -> its latest standing assessment
    for entry, e in alive:
        if isinstance(e, TipAssessed) and entry in owner:
            latest[owner[entry]] = e.valuable
    for entry, e in alive:
        if isinstance(e, TipReceived):  # by the source of the version that stands
            count(e, "tips_received", 1)
            count(e, f"tips_received.{e.source}", 1)
            if latest.get(entry):
                count(e, "tips_valuable", 1)
                count(e, f"tips_valuable.{e.source}", 1)
            if entry in leading:
                count(e, "tips_leading_to_cases", 1)
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
        elif count_plain(e, count):
            pass
        elif isinstance(e, WeaponsSurrendered):
            for item in e.items:
                if item.kind == "ammunition":
                    count(e, "ammunition_surrendered", item.quantity)
                else:
                    count(e, "weapons_surrendered", item.quantity)
                    count(e, f"weapons_surrendered.{item.kind}", item.quantity)
    for key, value in safety_reference(alive).items():
        figures[key] += value
    for key, value in lifecycle_reference(alive).items():
        figures[key] += value
    return {k: v for k, v in figures.items() if v}


STOCK_YEARS = range(2000, 2031)


def published(expected: Figures, ward: str, year: int, stocks: frozenset[str]) -> dict[str, int]:
    """What a query (or the latest update) of a ward's calendar year answers, from stored figures: its flows of
    that year, and its stocks as they stand at the year's end (the sum of their changes up to it)."""
    out: dict[str, int] = {}
    for (period, w, y, metric), value in expected.items():
        if period == "calendar" and w == ward and (y == year or (metric in stocks and y < year)):
            out[metric] = out.get(metric, 0) + value
    return {k: v for k, v in out.items() if v}


def _year_ends(period: str) -> list[tuple[int, dt.date]]:
    """Each year of a period with its last day: 31 December, or 14 December for a reporting year."""
    last = (12, 31) if period == "calendar" else (12, 14)
    return [(y, dt.date(y, *last)) for y in STOCK_YEARS]


def _period_year(period: str, day: dt.date) -> int:
    return day.year + 1 if period == "reporting" and (day.month, day.day) >= (12, 15) else day.year


UNIT_IDS = tuple(uuid.UUID(int=(7 << 100) + n) for n in range(3))
UNIT_KINDS = ("commune", "agency", "school")


def _assessment_days(year: int) -> tuple[dt.date, ...]:
    """Days an assessment of ``year`` may carry: in the year, or before 1 April of the next."""
    return (dt.date(year, 6, 1), dt.date(year, 12, 20), dt.date(year + 1, 3, 31))


def safety_reference(alive: Sequence[tuple[uuid.UUID, Event]]) -> Counter[tuple[str, str, int, str]]:
    """The "An toàn về ANTT" standard: each standing registration counts in its ``year`` (calendar and
    reporting alike), by its unit kind; achieved when its latest standing assessment (by date, then as
    recorded), recorded after it for the same unit and year, says so."""
    figures: Counter[tuple[str, str, int, str]] = Counter()
    for order, (_, reg) in enumerate(alive):
        if not isinstance(reg, SafetyRegistered):
            continue
        later = [
            (e.occurred_on, n, e)
            for n, (_, e) in enumerate(alive)
            if n > order and isinstance(e, SafetyAssessed) and (e.unit_id, e.year) == (reg.unit_id, reg.year)
        ]
        latest = max(later, key=lambda a: (a[0], a[1]))[2] if later else None
        ward = str(getattr(reg.locality, "ward", ""))  # the histories record in 2025 wards
        for period in ("calendar", "reporting"):
            for metric in ("safety_registered", f"safety_registered.{reg.unit_kind}"):
                figures[period, ward, reg.year, metric] += 1
            if isinstance(latest, SafetyAssessed) and latest.achieved:
                for metric in ("safety_achieved", f"safety_achieved.{reg.unit_kind}"):
                    figures[period, ward, reg.year, metric] += 1
    return figures


def lifecycle_reference(alive: Sequence[tuple[uuid.UUID, Event]]) -> Counter[tuple[str, str, int, str]]:
    """Models and youth under management, from the standing versions: flows in the year of their day, and
    stocks found by asking, for each year's last day, what stands then; stored as each year's change (what
    stands at a year's end minus what stood at the previous one's), as the read model stores them.

    A model's updates and end are those recorded with its model_id after its (standing) establishment; an
    update or end dated before the establishment takes effect on the establishment's day; the first end (by
    day, then by record order) ends it, and updates after it do not count."""
    figures: Counter[tuple[str, str, int, str]] = Counter()
    created: dict[uuid.UUID, tuple[int, Event]] = {}  # entity id -> (record order, its creation)
    later: dict[uuid.UUID, list[tuple[int, Event]]] = {}
    for order, (_, e) in enumerate(alive):
        if isinstance(e, ModelEstablished | YouthEnrolled):
            created[_entity(e)] = (order, e)
            later[_entity(e)] = []
    for order, (_, e) in enumerate(alive):
        owner = (
            created.get(_entity(e)) if isinstance(e, ModelUpdated | ModelDissolved | YouthReleased) else None
        )
        if owner is not None and owner[0] < order:
            later[_entity(e)].append((order, e))
    for ident, (_, first) in created.items():
        start = first.occurred_on
        marks = sorted(later[ident], key=lambda m: (max(m[1].occurred_on, start), m[0]))
        end = next(
            (max(e.occurred_on, start) for _, e in marks if isinstance(e, ModelDissolved | YouthReleased)),
            None,
        )
        ward = ward_of(first)
        for period in ("calendar", "reporting"):
            # flows
            for metric in _flow_names(first, "created"):
                figures[period, ward, _period_year(period, start), metric] += 1
            if end is not None:
                for metric in _flow_names(first, "ended"):
                    figures[period, ward, _period_year(period, end), metric] += 1
            # stocks: what stands at each year's end, then stored as changes
            before: dict[str, int] = {}
            for year, last_day in _year_ends(period):
                now = _stands(first, marks, start, end, last_day)
                for metric in now.keys() | before.keys():
                    change = now.get(metric, 0) - before.get(metric, 0)
                    if change:
                        figures[period, ward, year, metric] += change
                before = now
    return figures


def _entity(e: Event) -> uuid.UUID:
    return e.model_id if isinstance(e, ModelEstablished | ModelUpdated | ModelDissolved) else e.person_ref  # type: ignore[union-attr]


def _flow_names(first: Event, when: str) -> list[str]:
    if isinstance(first, YouthEnrolled):
        return ["youth_enrolled"] if when == "created" else []
    assert isinstance(first, ModelEstablished)
    metric = "models_established" if when == "created" else "models_dissolved"
    if first.kind == "dan_van_kheo":
        return [f"{metric}.dan_van_kheo"]
    return [metric, f"{metric}.{first.level}", f"{metric}.{first.kind}"]


def _stands(
    first: Event, marks: list[tuple[int, Event]], start: dt.date, end: dt.date | None, last_day: dt.date
) -> dict[str, int]:
    """The stocks an entity holds on ``last_day``."""
    if start > last_day or (end is not None and end <= last_day):
        return {}
    if isinstance(first, YouthEnrolled):
        return {"youth_under_management": 1}
    assert isinstance(first, ModelEstablished)
    if first.kind == "dan_van_kheo":
        return {"models_active.dan_van_kheo": 1}
    points, teams = first.points or 0, first.teams or 0
    for _, e in marks:
        if isinstance(e, ModelUpdated) and max(e.occurred_on, start) <= last_day:
            points = e.points if e.points is not None else points
            teams = e.teams if e.teams is not None else teams
    out = {"models_active": 1, f"models_active.{first.level}": 1, f"models_active.{first.kind}": 1}
    if points:
        out["model_points"] = points
    if teams:
        out["model_teams"] = teams
    return out


KINDS = (
    "tip",
    "tip",
    "assess",
    "assess",
    "assess",
    "retract",
    "retract",
    "correct",
    "correct",
    "again",
    "session",
    "pledge",
    "mediation",
    "weapons",
    "plain",
    "plain",
    "cases",
    "cases",
    "model",
    "model",
    "update",
    "dissolve",
    "youth",
    "release",
    "register",
    "register",
    "assess_unit",
    "assess_unit",
)


SOURCES: st.SearchStrategy[TipSource] = st.sampled_from(
    ("resident", "institution", "mass_organisation", "anonymous")
)


def _tips_of_ward(draw: st.DrawFn, tips: dict[uuid.UUID, TipReceived], ward: str) -> list[str]:
    """Some tip ids of a ward (the latest receipt of each id there, retracted or not), each at most once."""
    here = sorted(str(t) for t, received in tips.items() if received.locality.ward == ward)
    return draw(st.lists(st.sampled_from(here), unique=True, max_size=3)) if here else []


def _copy_of(
    draw: st.DrawFn, current: Event, eid: uuid.UUID, tips: dict[uuid.UUID, TipReceived] | None = None
) -> Event:
    """A corrected copy of ``current``: same type, entity and locality, its own id, other values drawn."""
    day = draw(st.sampled_from(DAYS))
    ward = current.locality.ward or ""  # histories here hold 2025 wards only
    if isinstance(current, CasesCleared):
        fields = {**draw(PLAIN_FIELDS["cases.cleared"]), "tip_ids": _tips_of_ward(draw, tips or {}, ward)}
        return plain_event("cases.cleared", eid, day, ward, fields)
    if isinstance(current, TipReceived):
        return msgspec.structs.replace(
            current, event_id=eid, occurred_on=day, channel="hotline", source=draw(SOURCES)
        )
    if isinstance(current, TipAssessed):
        return msgspec.structs.replace(current, event_id=eid, valuable=draw(st.booleans()))
    if isinstance(current, SessionHeld):
        return msgspec.structs.replace(
            current,
            event_id=eid,
            occurred_on=day,
            level=draw(st.sampled_from(("commune", "hamlet", "institution"))),
            attendance=draw(st.integers(0, 500)),
        )
    if isinstance(current, PledgeSigned):
        return msgspec.structs.replace(
            current, event_id=eid, occurred_on=day, signatures=draw(st.integers(1, 300))
        )
    if isinstance(current, MediationConcluded):
        outcome = draw(st.sampled_from(("successful", "unsuccessful", "referred")))
        return msgspec.structs.replace(current, event_id=eid, occurred_on=day, outcome=outcome)
    tag = str(type(current).__struct_config__.tag)
    if tag in PLAIN_FIELDS:
        return plain_event(tag, eid, day, ward, draw(PLAIN_FIELDS[tag]))
    if isinstance(current, ModelEstablished):
        return msgspec.structs.replace(
            current,
            event_id=eid,
            occurred_on=draw(st.sampled_from(LIFE_DAYS)),
            level=draw(st.sampled_from(LEVELS)),
            kind=draw(st.sampled_from(MODEL_KINDS)),
            points=draw(st.none() | st.integers(0, 9)),
        )
    if isinstance(current, ModelUpdated):
        return msgspec.structs.replace(
            current,
            event_id=eid,
            occurred_on=draw(st.sampled_from(LIFE_DAYS)),
            points=draw(st.none() | st.integers(0, 9)),
            teams=draw(st.none() | st.integers(0, 9)),
        )
    if isinstance(current, SafetyRegistered):
        return msgspec.structs.replace(
            current,
            event_id=eid,
            occurred_on=dt.date(current.year, 2, 1),
            unit_kind=draw(st.sampled_from(UNIT_KINDS)),
        )
    if isinstance(current, SafetyAssessed):
        return msgspec.structs.replace(
            current,
            event_id=eid,
            occurred_on=draw(st.sampled_from(_assessment_days(current.year))),
            achieved=draw(st.booleans()),
        )
    if isinstance(current, ModelDissolved | YouthEnrolled | YouthReleased):
        return msgspec.structs.replace(current, event_id=eid, occurred_on=draw(st.sampled_from(LIFE_DAYS)))
    assert isinstance(current, WeaponsSurrendered)
    items = (WeaponItem(kind="ammunition", quantity=draw(st.integers(1, 50))), *current.items[:1])
    return msgspec.structs.replace(current, event_id=eid, occurred_on=day, items=items)


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40) -> list[Event]:
    """Event histories the gateway would accept: assessments of known tips in the tip's ward, retractions and
    corrections of the latest version of an entry (each version ended at most once, unless the correction that
    ended it was retracted) in the target's ward, fresh tip and case ids."""
    ids = (uuid.UUID(int=(draw(st.integers(0, 2**32)) << 64) + n) for n in itertools.count(1))
    events: list[Event] = []
    tips: dict[uuid.UUID, TipReceived] = {}  # each tip id: its latest tip.received (whose ward it keeps)
    retractable: list[Event] = []  # the latest version of every entry still standing
    replaced: dict[uuid.UUID, Event] = {}  # a correction's id -> the version it replaced
    freed: list[uuid.UUID] = []  # tip ids whose tip.received was retracted: they may be received again
    # models and people under management that stand (their creation not retracted), and those ended
    entities: dict[uuid.UUID, Event] = {}
    units: dict[uuid.UUID, SafetyRegistered] = {}  # registrations that stand, by standard (unit and year)
    ended: set[uuid.UUID] = set()
    for _ in range(draw(st.integers(0, max_size))):
        kind = draw(st.sampled_from(KINDS))
        ward = draw(st.sampled_from(WARDS))
        eid, day = next(ids), draw(st.sampled_from(DAYS))
        event: Event
        if kind == "assess" and tips:
            tip = draw(st.sampled_from(sorted(tips.values(), key=lambda t: t.event_id)))
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
            if isinstance(target, EntryCorrected):  # the version it replaced stands again
                retractable.append(replaced.pop(target.event_id))
            elif isinstance(target, TipReceived):
                freed.append(target.tip_id)
            elif isinstance(target, SafetyRegistered):
                units.pop(target.standard, None)  # freed: the unit may register for that year again
            elif isinstance(target, ModelEstablished | YouthEnrolled):
                entities.pop(_entity(target), None)  # gone: nothing more is recorded of it
            elif isinstance(target, ModelDissolved | YouthReleased):
                ended.discard(_entity(target))  # it stands again
        elif kind == "correct" and retractable:
            target = retractable.pop(draw(st.integers(0, len(retractable) - 1)))
            current = target.corrected if isinstance(target, EntryCorrected) else target
            event = EntryCorrected(
                event_id=eid,
                occurred_on=day,
                locality=target.locality,
                target_event_id=target.event_id,
                corrected=_copy_of(draw, current, next(ids), tips),  # type: ignore[arg-type]
                reason="miscounted",
            )
            replaced[eid] = target
        elif kind == "again" and freed:
            event = TipReceived(
                event_id=eid,
                occurred_on=day,
                locality=Locality(ward=ward),
                tip_id=freed.pop(draw(st.integers(0, len(freed) - 1))),
                channel="letter",
                category="crime",
                source=draw(SOURCES),
            )
            tips[event.tip_id] = event
        elif kind in ("update", "dissolve", "release") and (
            open_ones := sorted(
                (
                    e
                    for i, e in entities.items()
                    if i not in ended and isinstance(e, ModelEstablished) != (kind == "release")
                ),
                key=lambda e: e.event_id,
            )
        ):
            owner = draw(st.sampled_from(open_ones))
            ident, day = _entity(owner), draw(st.sampled_from(LIFE_DAYS))
            if kind == "update":
                event = ModelUpdated(
                    event_id=eid,
                    occurred_on=day,
                    locality=owner.locality,
                    model_id=ident,
                    points=draw(st.none() | st.integers(0, 9)),
                    teams=draw(st.none() | st.integers(0, 9)),
                )
            elif kind == "dissolve":
                event = ModelDissolved(event_id=eid, occurred_on=day, locality=owner.locality, model_id=ident)
                ended.add(ident)
            else:
                event = YouthReleased(
                    event_id=eid, occurred_on=day, locality=owner.locality, person_ref=ident
                )
                ended.add(ident)
        elif kind == "model":
            event = ModelEstablished(
                event_id=eid,
                occurred_on=draw(st.sampled_from(LIFE_DAYS)),
                locality=Locality(ward=ward),
                model_id=next(ids),
                name="Tổ tự quản",
                level=draw(st.sampled_from(LEVELS)),
                kind=draw(st.sampled_from(MODEL_KINDS)),
                points=draw(st.none() | st.integers(0, 9)),
                teams=draw(st.none() | st.integers(0, 9)),
            )
            entities[event.model_id] = event
        elif kind == "register":
            year = draw(st.sampled_from((2017, 2018, 2019)))
            event = SafetyRegistered(
                event_id=eid,
                occurred_on=dt.date(year, draw(st.sampled_from((1, 3, 12))), 10),
                locality=Locality(ward=ward),
                unit_id=draw(st.sampled_from(UNIT_IDS)),
                unit_kind=draw(st.sampled_from(UNIT_KINDS)),
                year=year,
            )
            if event.standard in units:  # once per unit and year: the gateway refuses a second one
                continue
            units[event.standard] = event
        elif kind == "assess_unit" and units:
            reg = draw(st.sampled_from(sorted(units.values(), key=lambda r: r.event_id)))
            event = SafetyAssessed(
                event_id=eid,
                occurred_on=draw(st.sampled_from(_assessment_days(reg.year))),
                locality=reg.locality,
                unit_id=reg.unit_id,
                unit_kind=reg.unit_kind,
                year=reg.year,
                achieved=draw(st.booleans()),
            )
        elif kind == "youth":
            event = YouthEnrolled(
                event_id=eid,
                occurred_on=draw(st.sampled_from(LIFE_DAYS)),
                locality=Locality(ward=ward),
                person_ref=next(ids),
            )
            entities[event.person_ref] = event
        elif kind == "session":
            event = SessionHeld(
                event_id=eid,
                occurred_on=day,
                locality=Locality(ward=ward),
                level=draw(st.sampled_from(("commune", "hamlet", "institution"))),
                topics=("law",),
                attendance=draw(st.integers(0, 500)),
            )
        elif kind == "pledge":
            event = PledgeSigned(
                event_id=eid,
                occurred_on=day,
                locality=Locality(ward=ward),
                signer=draw(st.sampled_from(("household", "individual", "institution"))),
                signatures=draw(st.integers(1, 300)),
            )
        elif kind == "mediation":
            event = MediationConcluded(
                event_id=eid,
                occurred_on=day,
                locality=Locality(ward=ward),
                case_id=next(ids),
                outcome=draw(st.sampled_from(("successful", "unsuccessful", "referred"))),
                dispute="land",
            )
        elif kind == "cases":
            fields = {**draw(PLAIN_FIELDS["cases.cleared"]), "tip_ids": _tips_of_ward(draw, tips, ward)}
            event = plain_event("cases.cleared", eid, day, ward, fields)
        elif kind == "plain":
            tag = draw(st.sampled_from(sorted(PLAIN_FIELDS)))
            event = plain_event(tag, eid, day, ward, draw(PLAIN_FIELDS[tag]))
        elif kind == "weapons":
            kinds: st.SearchStrategy[WeaponKind] = st.sampled_from(
                ("military_firearm", "homemade_firearm", "ammunition", "support_tool", "other")
            )
            event = WeaponsSurrendered(
                event_id=eid,
                occurred_on=day,
                locality=Locality(ward=ward),
                items=tuple(
                    WeaponItem(kind=k, quantity=q)
                    for k, q in draw(st.lists(st.tuples(kinds, st.integers(1, 50)), min_size=1, max_size=3))
                ),
            )
        else:
            event = TipReceived(
                event_id=eid,
                occurred_on=day,
                locality=Locality(ward=ward),
                tip_id=next(ids),
                channel="phone",
                category="drugs",
                source=draw(SOURCES),
            )
            tips[event.tip_id] = event
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
        locality=Locality(ward=ward),
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
        (period, "01447", year, metric): 1
        for period, year in (("calendar", 2018), ("reporting", 2019))
        for metric in ("tips_received", "tips_valuable", "tips_received.resident", "tips_valuable.resident")
    }


def test_reference_counts_a_tip_by_the_source_of_its_standing_version() -> None:
    tip = _tip()
    yes = _assess(tip, True)
    moved = _correct(tip, msgspec.structs.replace(tip, event_id=uuid.uuid4(), source="institution"))
    figures = reference([tip, yes, moved])
    assert figures[("calendar", "01447", 2018, "tips_valuable.institution")] == 1
    assert ("calendar", "01447", 2018, "tips_received.resident") not in figures
    assert reference([tip, yes, moved, _retract(moved)]) == reference([tip, yes])


def test_reference_falls_back_to_the_previous_assessment_and_drops_a_retracted_tip() -> None:
    tip, other = _tip(), _tip()
    yes, no = _assess(tip, True), _assess(tip, False)
    assert reference([tip, yes, no, _retract(no)])[("calendar", "01447", 2018, "tips_valuable")] == 1
    assert reference([other, _assess(other, True), _retract(other)]) == {}


def _correct(target: Event, copy: Event) -> EntryCorrected:
    return EntryCorrected(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2019, 3, 3),
        locality=target.locality,
        target_event_id=target.event_id,
        corrected=copy,  # type: ignore[arg-type]
        reason="miscounted",
    )


def test_reference_counts_the_standing_version_of_a_corrected_entry() -> None:
    session = SessionHeld(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2018, 12, 31),
        locality=Locality(ward="01447"),
        level="commune",
        topics=("law",),
        attendance=40,
    )
    moved = msgspec.structs.replace(
        session, event_id=uuid.uuid4(), occurred_on=dt.date(2019, 1, 2), attendance=4
    )
    first = _correct(session, moved)
    assert reference([session, first])[("calendar", "01447", 2019, "session_attendance")] == 4
    assert ("calendar", "01447", 2018, "session_attendance") not in reference([session, first])
    # retracting the correction: the original stands again; retracting it then: nothing
    back: list[Event] = [session, first, _retract(first)]
    assert reference(back) == reference([session])
    assert reference([*back, _retract(session)]) == {}


def test_reference_keeps_a_corrected_assessment_in_its_place() -> None:
    tip = _tip()
    yes, no = _assess(tip, True), _assess(tip, False)
    fixed = _correct(yes, msgspec.structs.replace(yes, event_id=uuid.uuid4(), valuable=False))
    assert ("calendar", "01447", 2018, "tips_valuable") not in reference([tip, yes, no, fixed])
    # the earlier assessment, corrected to valuable, is still not the latest
    fixed_no = _correct(no, msgspec.structs.replace(no, event_id=uuid.uuid4(), valuable=True))
    assert reference([tip, yes, no, fixed_no])[("calendar", "01447", 2018, "tips_valuable")] == 1


def test_reference_counts_a_tip_received_again_after_its_retraction_as_a_new_tip() -> None:
    tip = _tip()
    old = _assess(tip, True)
    again = msgspec.structs.replace(tip, event_id=uuid.uuid4(), occurred_on=dt.date(2019, 2, 1))
    figures = reference([tip, old, _retract(tip), again])
    assert figures == {
        ("calendar", "01447", 2019, "tips_received"): 1,
        ("reporting", "01447", 2019, "tips_received"): 1,
        ("calendar", "01447", 2019, "tips_received.resident"): 1,
        ("reporting", "01447", 2019, "tips_received.resident"): 1,
    }
    assert (
        reference([tip, old, _retract(tip), again, _assess(again, True)])[
            ("calendar", "01447", 2019, "tips_valuable")
        ]
        == 1
    )


def test_reference_counts_the_plain_types_of_issue_10() -> None:
    loc = "01447"
    day = dt.date(2019, 8, 19)
    events = [plain_event(tag, uuid.uuid4(), day, loc, fields) for tag, fields in PLAIN_SAMPLES.items()]
    no_participants = plain_event("campaign.launched", uuid.uuid4(), day, loc, {})
    figures = reference([*events, no_participants, _retract(events[1])])
    calendar = {metric: n for (period, _, _, metric), n in figures.items() if period == "calendar"}
    assert calendar == {
        "commendations": 7,
        "commendations.collective": 7,
        "commendations.province": 7,
        "consultations_held": 1,
        "consultation_people": 4,
        "broadcasts_aired": 1,
        "broadcasts_aired.loudspeaker": 1,
        "campaigns_launched": 2,
        "campaign_participants": 300,
        "cases_cleared": 2,
        "cases_cleared.drugs": 2,
        "offenders": 3,
        "offenders.drugs": 3,
        "rings_dismantled": 1,
        "rings_dismantled.drugs": 1,
    }


def _cases(*tips: TipReceived, ward: str = "01447", day: str = "2019-04-01", **fields: Any) -> CasesCleared:
    values = {**PLAIN_SAMPLES["cases.cleared"], **fields, "tip_ids": [str(t.tip_id) for t in tips]}
    event = plain_event("cases.cleared", uuid.uuid4(), dt.date.fromisoformat(day), ward, values)
    assert isinstance(event, CasesCleared)
    return event


def _leading(events: Sequence[Event]) -> dict[tuple[str, int], int]:
    return {
        (ward, year): n
        for (period, ward, year, metric), n in reference(events).items()
        if period == "calendar" and metric == "tips_leading_to_cases"
    }


def test_reference_counts_each_tip_leading_to_cases_once_in_its_own_year() -> None:
    a, b = _tip("2018-05-10"), _tip("2018-12-31")
    one, two = _cases(a, b), _cases(a, day="2020-01-02")
    assert _leading([a, b, one, two]) == {("01447", 2018): 2}  # a named twice counts once
    assert _leading([a, b, one, two, _retract(one)]) == {("01447", 2018): 1}  # a still, by the second case
    assert _leading([a, b, one, two, _retract(a)]) == {("01447", 2018): 1}  # a retracted: b only
    fixed = _correct(one, msgspec.structs.replace(one, event_id=uuid.uuid4(), tip_ids=()))
    assert _leading([a, b, one, fixed]) == {}
    assert _leading([a, b, one, fixed, _retract(fixed)]) == {("01447", 2018): 2}  # the original stands again


def test_reference_keeps_a_case_with_the_tip_it_named_when_that_id_is_received_again() -> None:
    a = _tip("2018-05-10")
    case = _cases(a)
    again = msgspec.structs.replace(a, event_id=uuid.uuid4(), occurred_on=dt.date(2019, 2, 1))
    assert _leading([a, case, _retract(a), again]) == {}  # the case named the retracted tip
    named_again = _correct(case, msgspec.structs.replace(case, event_id=uuid.uuid4()))
    assert _leading([a, case, _retract(a), again, named_again]) == {("01447", 2019): 1}
    assert _leading([a, case, _retract(a), again, named_again, _retract(named_again)]) == {}
    elsewhere = msgspec.structs.replace(again, locality=Locality(ward="01273"))
    assert _leading([a, _retract(a), elsewhere, _cases(a)]) == {}  # another ward's tip: not this case's
