"""Issue 9, part 5: ``entry.corrected`` through the real gateway, the live projection and replay.

A correction replaces the latest version of an entry (the original, or its last correction) by a copy of the
same type, entity and locality; retracting a correction makes the version it replaced stand again. Figures are
checked three ways: the live projection (PostgreSQL), the in-memory replay, and the independent reference
(``tests/test_fold_model.reference``) over the events the log holds.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest

from events.codec import decode_event, decode_recorded
from events.errors import EventError
from events.localities import Localities
from events.schema import Event
from events.stored import StoredRecords
from infra.streams import EVENTS
from projections.runner import RunnerConfig
from services.audit.replay import ReplayScope, replay
from services.client import OfficeClient
from services.gateway.app import Gateway
from services.gateway.catch_up import catch_up
from services.gateway.index import EventIndex
from tests import factories as f
from tests.conftest import Stack
from tests.test_fold_model import Figures, reference
from tests.test_projection import figures, run_until
from tests.test_unknown_fields import TODAY

pytestmark = [pytest.mark.servers, pytest.mark.timeout(90)]


async def logged(stack: Stack) -> list[tuple[str, Event]]:
    """Every stored event in order, with its subject."""
    info = await stack.js.stream_info(EVENTS)
    out = []
    for seq in range(1, info.state.last_seq + 1):
        msg = await stack.js.get_msg(EVENTS, seq)
        out.append((msg.subject or "", decode_recorded(msg.data or b"").event))
    return out


async def live_and_replayed(stack: Stack, localities: Localities) -> Figures:
    """The live projection's figures, after checking replay and the reference agree with them."""
    events = [e for _, e in await logged(stack)]
    config = RunnerConfig(database_url=stack.database_url, localities=localities)
    await run_until(stack.nc, config, len(events))
    live = await figures(stack.database_url)
    replayed = await replay(stack.nc, ReplayScope(), localities, child_process=False)
    assert replayed.replay.figures == live
    assert reference(events) == live
    return live


def ok(results: Any) -> None:
    results = results if isinstance(results, list) else [results]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]


def refused(result: Any, code: str, path: str) -> None:
    assert not result.ok and result.error is not None, result
    assert (result.error.code, result.error.path) == (code, path), result.error.message


def at(figs: Figures, year: int, metric: str, ward: str = "01447") -> int:
    return figs.get(("calendar", ward, year, metric), 0)


async def test_correcting_a_sessions_attendance_replaces_its_figures_and_keeps_both(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    session = f.session(attendance=400, level="commune")
    other = f.session(attendance=10, level="hamlet")
    fix = f.correction(session, attendance=40, level="hamlet")
    ok(await office.submit([session, other]))
    result = await office.submit_one(fix)
    ok(result)
    assert result.version is None
    log = await logged(stack)
    assert [str(e.event_id) for _, e in log] == [session["event_id"], other["event_id"], fix["event_id"]]
    assert log[2][0] == f"antq.events.04.01447.retraction.{session['event_id']}"
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2018, "session_attendance") == 50
    assert at(figs, 2018, "sessions_held.hamlet") == 2 and at(figs, 2018, "sessions_held.commune") == 0
    # a retry is a duplicate
    again = await office.submit_one(fix)
    assert again.ok and again.duplicate and again.seq == result.seq


async def test_a_correction_moves_the_figures_across_a_year_boundary(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    pledge = f.pledge(day="2018-12-31", signatures=7)
    ok(await office.submit_one(pledge))
    ok(await office.submit_one(f.correction(pledge, occurred_on="2019-01-02")))
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2018, "pledge_signatures") == 0 and at(figs, 2019, "pledge_signatures") == 7


async def test_correct_twice_the_second_targets_the_first_correction(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    session = f.session(attendance=400)
    first = f.correction(session, attendance=40)
    ok(await office.submit([session, first]))
    # the original is superseded: correcting (or retracting) it is a conflict naming the latest version
    stale = f.correction(session, attendance=41)
    result = await office.submit_one(stale)
    refused(result, "conflict", "$.target_event_id")
    assert first["event_id"] in (result.error.message if result.error else "")
    refused(await office.submit_one(f.retraction(session)), "conflict", "$.target_event_id")
    second = f.correction(first, attendance=42)
    ok(await office.submit_one(second))
    refused(await office.submit_one(f.correction(first, attendance=43)), "conflict", "$.target_event_id")
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2018, "session_attendance") == 42
    assert len(await logged(stack)) == 3


async def test_two_concurrent_corrections_of_one_version_cannot_both_land(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    session = f.session(attendance=400)
    ok(await office.submit_one(session))
    fixes = [f.correction(session, attendance=n) for n in range(1, 9)]
    other = OfficeClient(stack.nc, "ca-cao-bang", timeout=20)
    results = await asyncio.gather(
        *(c.submit_one(fix) for c, fix in zip([office, other] * 4, fixes, strict=True))
    )
    won = [r for r in results if r.ok]
    assert len(won) == 1
    assert all(r.error is not None and r.error.code == "conflict" for r in results if not r.ok)
    figs = await live_and_replayed(stack, localities)
    winner = next(fix for fix in fixes if fix["event_id"] == won[0].event_id)
    assert at(figs, 2018, "session_attendance") == winner["corrected"]["attendance"]


async def test_retracting_a_correction_makes_the_original_stand_again(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    weapons = f.weapons(items=[{"kind": "air_gun", "quantity": 3}])
    fix = f.correction(weapons, items=[{"kind": "explosive", "quantity": 5}], occurred_on="2019-03-01")
    ok(await office.submit([weapons, fix]))
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2019, "weapons_surrendered.explosive") == 5 and at(figs, 2018, "weapons_surrendered") == 0
    undo = f.retraction(fix)
    ok(await office.submit_one(undo))
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2018, "weapons_surrendered.air_gun") == 3 and at(figs, 2019, "weapons_surrendered") == 0
    # the correction is gone for good; the original is the latest version again: it can be corrected or retracted
    refused(await office.submit_one(f.retraction(fix)), "conflict", "$.target_event_id")
    refused(await office.submit_one(f.correction(fix)), "conflict", "$.target_event_id")
    of_retraction = {**f.correction(weapons), "target_event_id": undo["event_id"]}
    refused(await office.submit_one(of_retraction), "conflict", "$.target_event_id")  # a retraction stays
    ok(await office.submit_one(f.retraction(weapons)))
    assert await live_and_replayed(stack, localities) == {}


async def test_correcting_a_tip_assessment_changes_tips_valuable(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    tip = f.tip(day="2018-12-31")
    assessed = f.assessment(tip, valuable=True)
    ok(await office.submit([tip, assessed]))
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2018, "tips_valuable") == 1
    not_valuable = f.correction(assessed, valuable=False)
    ok(await office.submit_one(not_valuable))
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2018, "tips_valuable") == 0 and at(figs, 2018, "tips_received") == 1
    # a corrected tip.received moves the tip (and its valuable flag) to its new day
    ok(await office.submit_one(f.correction(not_valuable, valuable=True)))
    ok(await office.submit_one(f.correction(tip, occurred_on="2019-01-05")))
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2018, "tips_received") == 0
    assert at(figs, 2019, "tips_received") == 1 and at(figs, 2019, "tips_valuable") == 1


async def test_type_entity_and_locality_stay_fixed(
    stack: Stack, office: OfficeClient, gateway: Gateway
) -> None:
    session, tip, case = f.session(), f.tip(), f.mediation()
    assessed = f.assessment(tip)
    ok(await office.submit([session, tip, assessed, case]))
    as_pledge = f.correction(session)
    as_pledge["corrected"] = {**f.pledge(), "event_id": f.new_id()}
    refused(await office.submit_one(as_pledge), "invalid", "$.corrected.type")
    refused(
        await office.submit_one(f.correction(assessed, tip_id=f.new_id())), "invalid", "$.corrected.tip_id"
    )
    refused(await office.submit_one(f.correction(case, case_id=f.new_id())), "invalid", "$.corrected.case_id")
    elsewhere = {"scheme": "gso-2025", "ward": "01273"}
    refused(
        await office.submit_one(f.correction(session, locality=elsewhere)), "invalid", "$.corrected.locality"
    )
    moved = f.correction(session, locality=elsewhere)
    moved["locality"] = elsewhere  # the whole correction in another ward than its target
    refused(await office.submit_one(moved), "invalid", "$.locality.ward")
    # its own event_id: not the target's, not one already in the log
    refused(
        await office.submit_one(f.correction(session, event_id=session["event_id"])),
        "invalid",
        "$.corrected.event_id",
    )
    refused(
        await office.submit_one(f.correction(session, event_id=tip["event_id"])),
        "id_reused",
        "$.corrected.event_id",
    )
    refused(await office.submit_one(f.correction(f.session())), "unknown_target", "$.target_event_id")
    assert len(await logged(stack)) == 4


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"colour": "red"}, "$.corrected.colour"),
        ({"attendence": 3}, "$.corrected.attendence"),
        ({"locality": {"scheme": "gso-2025", "ward": "01447", "x": 1}}, "$.corrected.locality.x"),
        ({"event_id": "00000000-0000-0000-0000-000000000000"}, "$.corrected.event_id"),
        ({"occurred_on": "2027-01-01"}, "$.corrected.occurred_on"),
        ({"hamlet": "a\u0000b"}, "$.corrected.hamlet"),
        ({"type": "entry.retracted"}, "$.corrected.type"),
        ({"attendance": -1}, "$.corrected.attendance"),
    ],
)
async def test_the_corrected_event_is_validated_like_any_event(
    stack: Stack, office: OfficeClient, change: dict[str, Any], path: str
) -> None:
    session = f.session()
    ok(await office.submit_one(session))
    doc = f.correction(session, **change)
    refused(await office.submit_one(doc), "invalid", path)
    # the same refusal without servers: decode_event alone
    with pytest.raises(EventError) as caught:
        decode_event(msgspec.json.encode(doc), today=TODAY)
    assert (caught.value.code, caught.value.path) == ("invalid", path)


async def test_retracting_the_event_that_created_an_entity_frees_its_id(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    tip = f.tip(day="2018-03-01")
    case = f.mediation(outcome="successful")
    ok(await office.submit([tip, f.assessment(tip, valuable=True), case]))
    refused(await office.submit_one(f.tip(tip_id=tip["tip_id"])), "conflict", "$.tip_id")
    ok(await office.submit([f.retraction(tip), f.retraction(case)]))
    # the tip is gone: it cannot be assessed; its id can be received again (a new tip), in its ward or another
    refused(await office.submit_one(f.assessment(tip)), "invalid", "$.tip_id")
    again = f.tip(tip_id=tip["tip_id"], day="2019-04-01")
    received = await office.submit_one(again)
    ok(received)
    assert received.version == received.seq
    assessed = await office.submit_one(f.assessment(again, valuable=False, expected_version=received.seq))
    ok(assessed)
    refused(await office.submit_one(f.tip(tip_id=tip["tip_id"])), "conflict", "$.tip_id")
    ok(await office.submit_one(f.mediation(case_id=case["case_id"], outcome="referred", ward="01273")))
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2018, "tips_received") == 0 and at(figs, 2018, "tips_valuable") == 0
    assert at(figs, 2019, "tips_received") == 1 and at(figs, 2019, "tips_valuable") == 0
    assert at(figs, 2018, "mediations_concluded", ward="01273") == 1
    assert at(figs, 2018, "mediations_successful") == 0

    # an index rebuilt from the log (catch-up from seq 0) holds the same claims: released, then claimed again
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2)
    try:
        before = {r["entity"]: r["event_id"] for r in await pool.fetch("SELECT * FROM entity_claims")}
        await pool.execute(
            "DELETE FROM entity_claims; DELETE FROM event_index; UPDATE event_index_checkpoint SET seq = 0"
        )
        await catch_up(stack.js, EventIndex(pool), StoredRecords(localities))
        after = {r["entity"]: r["event_id"] for r in await pool.fetch("SELECT * FROM entity_claims")}
    finally:
        await pool.close()
    assert after == before
    assert before[f"tip:{tip['tip_id']}"] == uuid.UUID(again["event_id"])


async def test_one_request_is_processed_as_if_its_events_came_one_by_one(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    session = f.session(attendance=400)
    fix = f.correction(session, attendance=40)
    ok(await office.submit([session, fix]))
    # retracting the correction lets the original be corrected again, in the same request
    ok(await office.submit([f.retraction(fix), f.correction(session, attendance=44)]))
    figs = await live_and_replayed(stack, localities)
    assert at(figs, 2018, "session_attendance") == 44


def test_a_corrected_assessment_carries_no_expected_version() -> None:
    doc = f.correction(f.assessment(f.tip()), expected_version=3)
    with pytest.raises(EventError) as caught:
        decode_event(msgspec.json.encode(doc), today=TODAY)
    assert (caught.value.code, caught.value.path) == ("invalid", "$.corrected.expected_version")
