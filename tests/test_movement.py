"""Issue 10 on real servers: the movement's plain types, tips by source and values tied to a date, through the
gateway, the projection and the query service; figures compared with the independent reference model."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest

from events.codec import decode_event
from events.localities import Localities
from events.schema import Event
from events.subjects import QUERY_SUBJECT
from infra.streams import EVENTS
from projections.service import Projector
from services.client import OfficeClient
from services.query.app import QueryService
from tests import factories as f
from tests.conftest import Stack
from tests.test_fold_model import PLAIN_SAMPLES, reference

pytestmark = [pytest.mark.servers, pytest.mark.timeout(90)]
TODAY = dt.date(2026, 11, 22)


async def ask(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    reply = await stack.nc.request(QUERY_SUBJECT, msgspec.json.encode(body), timeout=30)
    result: dict[str, Any] = msgspec.json.decode(reply.data)
    return result


async def figures_after(
    stack: Stack, localities: Localities, last: int, ward: str, year: int
) -> dict[str, int]:
    """The query's figures of a ward-year once the projection has folded ``last``."""
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    try:
        reply = await ask(stack, {"ward": ward, "year": year, "min_seq": last, "timeout_ms": 30_000})
    finally:
        await projector.stop()
    assert reply.get("stale") is False, reply
    metrics: dict[str, int] = reply["metrics"]
    return metrics


def expected(docs: list[dict[str, Any]], ward: str, year: int) -> dict[str, int]:
    events: list[Event] = [decode_event(msgspec.json.encode(d), today=TODAY) for d in docs]
    return {
        metric: n
        for (period, w, y, metric), n in reference(events).items()
        if (period, w, y) == ("calendar", ward, year)
    }


def nonzero(metrics: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in metrics.items() if v}


async def test_the_plain_types_are_recorded_counted_corrected_and_retracted(
    stack: Stack, office: OfficeClient, query: QueryService, localities: Localities
) -> None:
    docs = [f.base(tag, **fields) for tag, fields in PLAIN_SAMPLES.items()]
    docs += [
        f.base("commendation.awarded", recipient="individual", authority="district", count=39),
        f.base("campaign.launched", day="2018-08-19"),  # name and participants left out
        f.base("broadcast.aired", medium="radio"),
    ]
    docs.append(
        f.correction(docs[0], count=5, authority="province_police")
    )  # 7 collective → 5, another authority
    docs.append(f.retraction(docs[1]))  # the patrol was entered by mistake
    docs.append(f.correction(docs[2], people=9))
    results = await office.submit(docs)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    got = await figures_after(stack, localities, max(r.seq or 0 for r in results), "01447", 2018)
    want = expected(docs, "01447", 2018)
    assert nonzero(got) == want
    assert got["commendations"] == 44 and got["commendations.collective"] == 5
    assert got["commendations.district"] == 39 and got["commendations.province_police"] == 5
    assert got["patrols_held"] == 0 and got["consultation_people"] == 9
    assert got["campaigns_launched"] == 2 and got["campaign_participants"] == 300
    assert got["broadcasts_aired"] == 2 and got["broadcasts_aired.radio"] == 1


async def test_tips_by_source_follow_corrections_and_retractions(
    stack: Stack, office: OfficeClient, query: QueryService, localities: Localities
) -> None:
    resident, anonymous, institution = f.tip(), f.tip(source="anonymous"), f.tip(source="institution")
    docs = [resident, anonymous, institution, f.assessment(resident), f.assessment(anonymous)]
    moved = f.correction(resident, source="mass_organisation")  # the valuable tip's source was mistyped
    docs += [moved, f.retraction(anonymous), f.assessment(institution)]
    docs.append(
        f.retraction(docs[-1])
    )  # that assessment was a mistake: the institution's tip is not valuable
    later = f.tip(source="resident", channel="vneid", day="2022-07-01")
    docs.append(later)
    results = await office.submit(docs)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    got = await figures_after(stack, localities, max(r.seq or 0 for r in results), "01447", 2018)
    assert (
        nonzero(got)
        == expected(docs, "01447", 2018)
        == {
            "tips_received": 2,
            "tips_received.mass_organisation": 1,
            "tips_received.institution": 1,
            "tips_valuable": 1,
            "tips_valuable.mass_organisation": 1,
        }
    )


async def test_values_tied_to_a_date_are_refused_by_the_gateway_outside_it(
    stack: Stack, office: OfficeClient
) -> None:
    early_vneid = f.tip(channel="vneid", day="2022-06-30")
    late_district = f.base(
        "commendation.awarded", day="2025-07-01", recipient="collective", authority="district", count=1
    )
    ok_tip = f.tip(channel="phone", day="2022-06-30")
    copy_to_vneid = f.correction(ok_tip, channel="vneid")
    results = await office.submit(
        [early_vneid, late_district, ok_tip, copy_to_vneid, f.tip(channel="vneid", day="2022-07-01")]
    )
    refused = [(r.error.code, r.error.path) for r in results if r.error is not None]
    assert refused == [
        ("invalid", "$.channel"),
        ("invalid", "$.authority"),
        ("invalid", "$.corrected.channel"),
    ]
    assert [r.ok for r in results] == [False, False, True, False, True]
    assert results[0].error is not None and "2022-07-01" in results[0].error.message
    info = await stack.js.stream_info(EVENTS)
    assert info.state.messages == 2  # nothing of the refused ones was stored


def cases(*tips: dict[str, Any], ward: str = "01447", **fields: Any) -> dict[str, Any]:
    values = {"category": "social_order", "cases": 1, "offenders": 2, **fields}
    return f.base("cases.cleared", ward, tip_ids=[t["tip_id"] for t in tips], **values)


async def test_cases_cleared_count_each_tip_once_and_name_only_recorded_tips_of_their_ward(
    stack: Stack, office: OfficeClient, query: QueryService, localities: Localities
) -> None:
    a, b, elsewhere, gone = f.tip(), f.tip(day="2018-12-31"), f.tip(ward="01456"), f.tip()
    first = await office.submit([a, b, elsewhere, gone, f.retraction(gone)])
    assert all(r.ok for r in first)
    one, two = cases(a, b, rings_dismantled=1, category="drugs"), cases(a)
    fresh = f.tip()  # received in the same request as the case naming it: the case waits for it
    accepted = [one, two, fresh, cases(fresh)]
    refused = [
        cases(elsewhere),  # a tip of another ward
        cases(f.tip()),  # a tip never recorded
        cases(gone),  # a retracted tip
        {**cases(a), "tip_ids": [a["tip_id"], a["tip_id"]]},  # named twice
        f.correction(two, tip_ids=[a["tip_id"], str(f.new_id())]),  # the copy names an unknown tip
    ]
    results = await office.submit([*accepted, *refused])
    assert [r.ok for r in results] == [True] * 4 + [False] * 5, [r.error for r in results]
    paths = [(r.error.code, r.error.path) for r in results if r.error is not None]
    assert paths == [
        ("invalid", "$.tip_ids[0]"),
        ("invalid", "$.tip_ids[0]"),
        ("invalid", "$.tip_ids[0]"),
        ("invalid", "$.tip_ids[1]"),
        ("invalid", "$.corrected.tip_ids[1]"),
    ]
    # then: the first case retracted (a still leads, through the second), the second corrected to name b only
    later = [f.retraction(one), f.correction(two, tip_ids=[b["tip_id"]], offenders=5)]
    last = await office.submit(later)
    assert all(r.ok for r in last), [r.error for r in last]
    docs = [a, b, elsewhere, gone, f.retraction(gone), *accepted, *later]
    got = await figures_after(stack, localities, max(r.seq or 0 for r in last), "01447", 2018)
    want = expected(docs, "01447", 2018)
    assert nonzero(got) == want
    assert got["tips_leading_to_cases"] == 2 == want["tips_leading_to_cases"]  # b (corrected case), fresh
    assert got["cases_cleared"] == 2 and got["offenders.social_order"] == 7 and got["rings_dismantled"] == 0
