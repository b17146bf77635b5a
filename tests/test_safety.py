"""Issue 10: the "An toàn về ANTT" standard (safety.registered / safety.assessed) on real servers.

A unit registers once per year (``conflict`` otherwise); an assessment needs its registration (``invalid``
otherwise); a later assessment supersedes; a registration is dated in its year, an assessment in its year or
before 1 April of the next. Figures count in the standard's ``year`` for both kinds of year, and equal the
independent reference (``tests/test_fold_model.reference``) through retraction and correction.
"""

from __future__ import annotations

import asyncpg
import pytest

from events.localities import Localities
from projections import store
from services.client import OfficeClient
from tests import factories as f
from tests.conftest import Stack
from tests.test_corrections import live_and_replayed, ok, refused

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]


async def test_a_unit_registers_once_a_year_and_its_latest_assessment_counts_in_that_year(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    school = f.registration(unit_kind="school", year=2018)
    agency = f.registration(unit_kind="agency", year=2018)
    ok(await office.submit([school, agency]))
    # once per unit and year; the same unit may register for another year
    refused(
        await office.submit_one({**f.registration(year=2018), "unit_id": school["unit_id"]}),
        "conflict",
        "$.unit_id",
    )
    ok(
        await office.submit_one(
            {**f.registration(unit_kind="school", year=2019), "unit_id": school["unit_id"]}
        )
    )
    # an assessment needs its registration
    stray = f.safety_assessment({**school, "unit_id": f.new_id()})
    refused(await office.submit_one(stray), "invalid", "$.unit_id")
    # dated in its year, or before 1 April of the next
    refused(
        await office.submit_one(f.safety_assessment(school, day="2019-04-01")), "invalid", "$.occurred_on"
    )
    refused(await office.submit_one(f.registration(year=2018, day="2019-01-02")), "invalid", "$.occurred_on")
    # not achieved in December, then achieved on re-assessment in March: the latest counts, in 2018
    ok(await office.submit_one(f.safety_assessment(school, achieved=False, day="2018-12-20")))
    ok(await office.submit_one(f.safety_assessment(school, achieved=True, day="2019-03-15")))
    ok(await office.submit_one(f.safety_assessment(agency, achieved=True, day="2018-12-16")))
    live = await live_and_replayed(stack, localities)
    conn = await asyncpg.connect(stack.database_url)
    try:
        for period in ("calendar", "reporting"):  # 16 December counts in the standard's year, not the next
            m = (await store.read_stats(conn, wards=["01447"], year=2018, period=period)).metrics
            assert (m["safety_registered"], m["safety_achieved"]) == (2, 2), period
            assert m["safety_achieved.school"] == 1 and m["safety_achieved.agency"] == 1
            m = (await store.read_stats(conn, wards=["01447"], year=2019, period=period)).metrics
            assert (m["safety_registered"], m["safety_achieved"]) == (1, 0), period
    finally:
        await conn.close()
    assert live


async def test_retraction_and_correction_of_the_standard_are_exact(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    unit = f.registration(unit_kind="commune", year=2017)
    ok(await office.submit_one(unit))
    passed = f.safety_assessment(unit, achieved=True, day="2017-12-20")
    ok(await office.submit_one(passed))
    # the assessment was wrong: corrected to not achieved; then the correction is retracted: achieved again
    fix = f.correction(passed, achieved=False)
    ok(await office.submit_one(fix))
    ok(await office.submit_one(f.retraction(fix)))
    # a correction keeps the unit and year
    refused(
        await office.submit_one(f.correction(unit, year=2018, occurred_on="2018-02-01")),
        "invalid",
        "$.corrected.unit_id",
    )
    ok(await office.submit_one(school := f.correction(unit, unit_kind="school")))
    # an assessment repeats the kind the unit stands registered with (the corrected one)
    refused(await office.submit_one(f.safety_assessment(unit, day="2017-12-28")), "invalid", "$.unit_kind")
    ok(await office.submit_one(f.safety_assessment({**unit, "unit_kind": "school"}, day="2017-12-29")))
    live = await live_and_replayed(stack, localities)
    assert live[("calendar", "01447", 2017, "safety_achieved.school")] == 1
    assert ("calendar", "01447", 2017, "safety_achieved.commune") not in live
    # the registration retracted (its latest version, then the original that stood again): its assessments
    # no longer count, and the unit may register again
    ok(await office.submit_one(f.retraction(school)))
    ok(await office.submit_one(f.retraction(unit)))
    refused(await office.submit_one(f.safety_assessment(unit, day="2017-12-30")), "invalid", "$.unit_id")
    ok(await office.submit_one({**f.registration(year=2017), "unit_id": unit["unit_id"]}))
    live = await live_and_replayed(stack, localities)
    assert live.get(("calendar", "01447", 2017, "safety_achieved"), 0) == 0
    assert live[("calendar", "01447", 2017, "safety_registered")] == 1
