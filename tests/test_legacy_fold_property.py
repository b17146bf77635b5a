"""Issue 9, part 4: the pre-2025 mapping through the fold, against an independent oracle.

The oracle reads ``events/data/lineage.tsv`` and ``legacy_2025.tsv`` itself with the csv module and applies the
rule as the issue states it (lineage rows decide the dates they cover, else the list of 30 June 2025; after
2025-06-30 invalid; district/province must agree; a given ward must be a successor; a split commune without one
goes to its default ward, approximate). It never calls ``events.localities`` nor ``projections.places``.
Cases: split, merged away, unknown, dated before a unit existed or after it ended, codes valid in one scheme
only; each event folded (and some retracted) must count exactly under the oracle's ward, ``~`` part and units.
"""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from collections import Counter
from importlib.resources import files
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.codec import encode_recorded
from events.errors import EventError
from events.localities import Localities
from events.schema import (
    EntryCorrected,
    EntryRetracted,
    Event,
    LegacyLocality,
    Locality,
    Recorded,
    SessionHeld,
    TipAssessed,
    TipReceived,
)
from events.stored import Foreign, StoredRecords, UnknownEventType
from projections.fold_state import by_period
from projections.folds import fold
from projections.places import Place, legacy_place

EVE = dt.date(2025, 6, 30)


def _read(name: str) -> list[dict[str, str]]:
    text = files("events.data").joinpath(name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))


LINEAGE = _read("lineage.tsv")
LIST = _read("legacy_2025.tsv")
WARDS_2025 = {r["ward"] for r in _read("wards_2025.tsv")}

# communes of the articles and their neighbours: renamed and moved (01447), merged away (01450, 01459), a code
# another unit took over (01468), moved to another district (01474), split (06886), old Bắc Ninh 27 (09457), a code
# of no scheme (99999); ONLY_2025: 2025 ward codes that were never a pre-2025 commune code
COMMUNES = ["01447", "01450", "01453", "01459", "01462", "01468", "01471", "01474", "06886", "09457", "99999"]
ONLY_2025 = sorted(WARDS_2025 - {r["legacy_ward"] for r in LIST} - {r["old_ward"] for r in LINEAGE})[:2]
DISTRICTS = ["046", "047", "049", "199", "263", None]
PROVINCES = ["04", "22", "24", "27", None]
GIVEN_WARDS = [None, None, "06886", "06970", "06799", "01447", "01456"]


def _day(value: str) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def oracle(commune: str, day: dt.date, district: str | None, province: str | None, ward: str | None) -> Any:
    """``("refused", code)`` or ``(ward, approximate, commune, district, province)`` by the issue's rule."""
    if day > EVE:
        return ("refused", "invalid")
    covering = [
        r
        for r in LINEAGE
        if r["old_ward"] == commune
        and (_day(r["valid_from"]) or dt.date.min) <= day <= (_day(r["valid_to"]) or dt.date.max)
    ]
    if covering:
        rows = [(r["old_district"], r["old_province"], r["ward"], r["is_default"] == "1") for r in covering]
    else:
        rows = [
            (r["legacy_district"], r["legacy_province"], r["ward"], r["is_default"] == "1")
            for r in LIST
            if r["legacy_ward"] == commune
        ]
    if not rows:
        return ("refused", "unknown_locality")
    the_district, the_province = rows[0][0], rows[0][1]
    if district is not None and district != the_district:
        return ("refused", "unknown_locality")
    if province is not None and province != the_province:
        return ("refused", "unknown_locality")
    successors = {w for _, _, w, _ in rows}
    default = next(w for _, _, w, d in rows if d)
    if ward is not None:
        if ward not in successors:
            return ("refused", "invalid")
        return (ward, False, commune, the_district, the_province)
    return (default, len(successors) > 1, commune, the_district, the_province)


def year_keys(day: dt.date) -> tuple[int, int]:
    return day.year, day.year + 1 if (day.month, day.day) >= (12, 15) else day.year


localities_strategy = st.tuples(
    st.sampled_from(COMMUNES + ONLY_2025),
    st.dates(dt.date(2012, 1, 1), dt.date(2025, 12, 31)),
    st.sampled_from(DISTRICTS),
    st.sampled_from(PROVINCES),
    st.sampled_from(GIVEN_WARDS),
)


@pytest.fixture(scope="module")
def loc() -> Localities:
    return Localities.load()


@settings(max_examples=400, deadline=None)
@given(case=localities_strategy)
def test_resolution_agrees_with_the_oracle(loc: Localities, case: tuple[Any, ...]) -> None:
    commune, day, district, province, ward = case
    expected = oracle(commune, day, district, province, ward)
    if expected[0] == "refused":
        with pytest.raises(EventError) as refused:
            loc.resolve_legacy(commune, day, district=district, province=province, ward=ward)
        assert refused.value.code == expected[1]
        return
    found = loc.resolve_legacy(commune, day, district=district, province=province, ward=ward)
    assert (found.ward, found.approximate, found.commune, found.district, found.province) == expected


@settings(max_examples=150, deadline=None)
@given(
    cases=st.lists(
        st.tuples(localities_strategy, st.integers(1, 500), st.booleans()), min_size=1, max_size=25
    )
)
def test_the_fold_counts_each_event_under_the_oracles_ward_and_recorded_units(
    cases: list[tuple[tuple[Any, ...], int, bool]],
) -> None:
    records: list[tuple[int, Recorded]] = []
    expected: Counter[tuple[str, str, int, str]] = Counter()
    seq = 0
    for (commune, day, district, province, ward), attendance, retract in cases:
        place = oracle(commune, day, district, province, ward)
        if place[0] == "refused":
            continue  # the gateway refuses it (checked above): it never reaches the fold
        resolved, approximate, unit_commune, unit_district, unit_province = place
        locality = LegacyLocality(commune=commune, district=district, province=province, ward=ward)
        event = SessionHeld(
            event_id=uuid.uuid4(),
            occurred_on=day,
            locality=locality,
            level="hamlet",
            topics=("law",),
            attendance=attendance,
        )
        seq += 1
        records.append((seq, Recorded(office="o", event=event)))
        if retract:
            seq += 1
            retraction = EntryRetracted(
                event_id=uuid.uuid4(),
                occurred_on=dt.date(2026, 1, 2),
                locality=LegacyLocality(commune=commune) if day <= EVE else locality,
                target_event_id=event.event_id,
                reason="test",
            )
            records.append((seq, Recorded(office="o", event=retraction)))
            continue
        calendar, reporting = year_keys(day)
        keys = [resolved, f"pre2025:commune:{unit_commune}", f"pre2025:district:{unit_district}"]
        keys.append(f"pre2025:province:{unit_province}")
        for key in keys:
            expected["calendar", key, calendar, "session_attendance"] += attendance
            expected["reporting", key, reporting, "session_attendance"] += attendance
        if approximate:
            expected["calendar", resolved, calendar, "~session_attendance"] += attendance
            expected["reporting", resolved, reporting, "~session_attendance"] += attendance
    _, deltas = fold({}, records)
    got = {
        k: v for k, v in by_period(deltas).items() if k[3] in ("session_attendance", "~session_attendance")
    }
    assert got == {k: v for k, v in expected.items() if v}


@settings(max_examples=150, deadline=None)
@given(
    cases=st.lists(
        st.tuples(
            localities_strategy, st.dates(dt.date(2012, 1, 1), dt.date(2025, 6, 30)), st.integers(1, 99)
        ),
        min_size=1,
        max_size=20,
    )
)
def test_a_correction_moves_a_pre2025_entry_to_where_its_copys_date_resolves(
    cases: list[tuple[tuple[Any, ...], dt.date, int]],
) -> None:
    """A corrected copy keeps the locality and may change the date: the original's contribution goes, the copy's
    comes where the oracle resolves the copy's date (the gateway refuses a copy whose date does not resolve)."""
    records: list[tuple[int, Recorded]] = []
    expected: Counter[tuple[str, str, int, str]] = Counter()
    seq = 0
    for (commune, day, district, province, ward), new_day, attendance in cases:
        before, after = (
            oracle(commune, day, district, province, ward),
            oracle(commune, new_day, district, province, ward),
        )
        if before[0] == "refused" or after[0] == "refused":
            continue
        locality = LegacyLocality(commune=commune, district=district, province=province, ward=ward)
        original = SessionHeld(
            event_id=uuid.uuid4(),
            occurred_on=day,
            locality=locality,
            level="commune",
            topics=("law",),
            attendance=1,
        )
        copy = SessionHeld(
            event_id=uuid.uuid4(),
            occurred_on=new_day,
            locality=locality,
            level="commune",
            topics=("law",),
            attendance=attendance,
        )
        correction = EntryCorrected(
            event_id=uuid.uuid4(),
            occurred_on=dt.date(2026, 1, 2),
            locality=locality,
            target_event_id=original.event_id,
            corrected=copy,
            reason="test",
        )
        for event in (original, correction):
            seq += 1
            records.append((seq, Recorded(office="o", event=event)))
        resolved, approximate, unit_commune, unit_district, unit_province = after
        calendar, reporting = year_keys(new_day)
        keys = [resolved, f"pre2025:commune:{unit_commune}", f"pre2025:district:{unit_district}"]
        keys.append(f"pre2025:province:{unit_province}")
        if approximate:
            keys.append("~" + resolved)
        for key in keys:
            ward_key, metric = (
                (key[1:], "~session_attendance") if key.startswith("~") else (key, "session_attendance")
            )
            expected["calendar", ward_key, calendar, metric] += attendance
            expected["reporting", ward_key, reporting, metric] += attendance
    _, deltas = fold({}, records)
    got = {
        k: v for k, v in by_period(deltas).items() if k[3] in ("session_attendance", "~session_attendance")
    }
    assert got == {k: v for k, v in expected.items() if v}


def test_a_stored_event_the_corrected_mapping_no_longer_resolves_is_still_placed() -> None:
    """As if lineage had been corrected after the gateway accepted it: 01471 given with district 046 on a date
    when it was in 047. The fold places it by the commune on that date (never sets it aside, never halts)."""
    place = legacy_place(LegacyLocality(commune="01471", district="046"), dt.date(2021, 1, 1))
    assert place == Place(
        "01447", ("pre2025:commune:01471", "pre2025:district:047", "pre2025:province:04"), False
    )
    gone = legacy_place(
        LegacyLocality(commune="01450", ward="01456"), dt.date(2021, 1, 1)
    )  # merged away then
    assert gone == Place("01456", ("pre2025:commune:01450",), False)
    assert legacy_place(LegacyLocality(commune="99999"), dt.date(2018, 1, 1)) is None  # the fold halts on it


def test_readers_accept_a_pre2025_record_on_any_successor_ward_and_set_it_aside_elsewhere(
    loc: Localities,
) -> None:
    stored = StoredRecords(loc)
    event = SessionHeld(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2018, 5, 1),
        locality=LegacyLocality(commune="06886"),  # Hải Lạng: 06886 (default), 06799, 06970
        level="commune",
        topics=("law",),
        attendance=1,
    )
    data = encode_recorded(Recorded(office="o", event=event))
    for ward in ("06886", "06799", "06970"):  # a later mapping may resolve it to any of them
        assert isinstance(stored.read(1, f"antq.events.22.{ward}.session", data), Recorded)
    for subject in (
        "antq.events.22.06862.session",
        "antq.events.04.06886.session",
        "antq.events.22.06886.pledge",
    ):
        assert isinstance(stored.read(1, subject, data), Foreign), subject
    given = encode_recorded(
        Recorded(
            office="o",
            event=msgspec.structs.replace(event, locality=LegacyLocality(commune="06886", ward="06970")),
        )
    )
    assert isinstance(stored.read(1, "antq.events.22.06970.session", given), Recorded)
    assert isinstance(stored.read(1, "antq.events.22.06886.session", given), Foreign)


def test_a_pre2025_tip_corrected_across_the_merger_moves_district_and_back_when_the_correction_is_retracted() -> (
    None
):
    place = LegacyLocality(commune="01471")  # Cao Chương: district 046 until 2020-02-29, then 047
    tip_id = uuid.uuid4()
    received = TipReceived(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2020, 2, 20),
        locality=place,
        tip_id=tip_id,
        channel="phone",
        category="drugs",
        source="resident",
    )
    assessed = TipAssessed(
        event_id=uuid.uuid4(), occurred_on=dt.date(2020, 2, 21), locality=place, tip_id=tip_id, valuable=True
    )
    copy = msgspec.structs.replace(received, event_id=uuid.uuid4(), occurred_on=dt.date(2020, 3, 5))
    correction = EntryCorrected(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2026, 1, 2),
        locality=place,
        target_event_id=received.event_id,
        corrected=copy,
        reason="date",
    )
    undo = EntryRetracted(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2026, 1, 3),
        locality=Locality(ward="01447"),
        target_event_id=correction.event_id,
        reason="the first date was right",
    )
    events: list[Event] = [received, assessed, correction, undo]
    records = [(i + 1, Recorded(office="o", event=e)) for i, e in enumerate(events)]

    def tips(n: int) -> dict[str, int]:
        _, deltas = fold({}, records[:n])
        return {
            f"{ward}/{metric}": v
            for (period, ward, _year, metric), v in by_period(deltas).items()
            if period == "calendar" and metric in ("tips_received", "tips_valuable")
        }

    in_046 = {
        f"{w}/{m}": 1
        for w in ("01447", "pre2025:commune:01471", "pre2025:district:046", "pre2025:province:04")
        for m in ("tips_received", "tips_valuable")
    }
    assert tips(2) == in_046
    assert tips(3) == {k.replace(":046", ":047"): v for k, v in in_046.items()}
    assert tips(4) == in_046


def test_a_record_in_a_locality_scheme_this_reader_does_not_know_halts_it(loc: Localities) -> None:
    """Like an unknown type or field: a scheme added later (as ``gso-pre2025`` was) means a newer gateway wrote
    the record, so a reader halts instead of setting an honest record aside (deploy readers first)."""
    doc = {
        "office": "o",
        "event": {
            "type": "session.held",
            "event_id": str(uuid.uuid4()),
            "occurred_on": "2018-01-01",
            "locality": {"scheme": "gso-2030", "unit": "1"},
            "level": "commune",
            "topics": ["law"],
            "attendance": 1,
        },
    }
    with pytest.raises(UnknownEventType):
        StoredRecords(loc).read(7, "antq.events.04.01447.session", msgspec.json.encode(doc))
