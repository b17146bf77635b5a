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

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.errors import EventError
from events.localities import Localities
from events.schema import EntryRetracted, LegacyLocality, Recorded, SessionHeld
from projections.folds import by_period, fold

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
