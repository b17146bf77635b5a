"""Issue 9, part 3: figures that carry across years (stocks), on real servers.

A model set up in 2012 and never dissolved stands at the end of 2012, 2013, … up to the current year; it stops
standing in the year it is dissolved. Checked through the gateway (one standing end per entity), the live
projection and the query (one year, a range of years, both kinds of year), the update feed (an update for every
later ward-year a change touches, and a subscriber's latest update per ward-year equal to the query), replay,
verify and a rebuild. The figures are also compared with the independent reference
(``tests/test_fold_model.reference``), which asks what stands on each year's last day.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from events.localities import Localities
from infra.streams import UPDATES
from projections import store
from projections.rebuild import Rebuild
from projections.service import Projector
from services.audit.replay import ReplayScope, replay
from services.audit.verify import verify
from services.client import OfficeClient
from tests import factories as f
from tests.conftest import Stack
from tests.servers import settle, wait_for
from tests.test_corrections import live_and_replayed, ok, refused

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]

THIS_YEAR = store.this_year()


async def ask(
    conn: asyncpg.Connection, year: int, *, first: int | None = None, period: str = "calendar"
) -> dict[str, int]:
    snap = await store.read_stats(conn, wards=["01447"], year=year, from_year=first, period=period)
    return snap.metrics


async def test_a_model_stands_in_every_year_from_its_setting_up_until_its_dissolution(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    model = f.model(day="2012-08-20", level="province", kind="security_council", points=4, teams=2)
    ok(await office.submit([model, f.model(day="2012-12-20", kind="dan_van_kheo")]))
    ok(await office.submit([f.model_update(model, points=7, day="2015-03-01")]))
    gone = f.dissolution(model, day="2019-07-01")
    ok(await office.submit_one(gone))
    live = await live_and_replayed(stack, localities)
    assert live  # and equal to the reference (checked inside)
    conn = await asyncpg.connect(stack.database_url)
    try:
        for year in range(2011, 2021):
            m = await ask(conn, year)
            standing = 2012 <= year < 2019
            assert m["models_active"] == int(standing), year
            assert m.get("models_active.province", 0) == int(standing)
            assert m.get("models_active.security_council", 0) == int(standing)
            assert m["model_points"] == (0 if not standing else 4 if year < 2015 else 7), year
            assert m["model_teams"] == (2 if standing else 0)
            # the dân vận khéo model counts in its own breakdown only, in every year from 2012
            assert m.get("models_active.dan_van_kheo", 0) == int(year >= 2012)
            assert m["models_established"] == int(year == 2012)  # a flow: its year only
            assert m["models_dissolved"] == int(year == 2019)
        # the reporting year: 20 December 2012 lies in reporting year 2013
        assert (await ask(conn, 2012, period="reporting")).get("models_active.dan_van_kheo", 0) == 0
        assert (await ask(conn, 2013, period="reporting")).get("models_active.dan_van_kheo", 0) == 1
        # a range: flows summed over it, stocks as they stand at its end
        m = await ask(conn, 2019, first=2012)
        assert (m["models_established"], m["models_dissolved"], m["models_active"]) == (1, 1, 0)
        m = await ask(conn, 2017, first=2014)
        assert (m["models_established"], m["models_active"], m["model_points"]) == (0, 1, 7)
        # the current year: still standing for the one never dissolved
        assert (await ask(conn, THIS_YEAR)).get("models_active.dan_van_kheo", 0) == 1
    finally:
        await conn.close()


async def test_retraction_and_correction_of_stock_events_are_exact(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    model = f.model(day="2014-05-01", points=3)
    person = f.youth(day="2016-02-01")
    ok(await office.submit([model, person]))
    gone = f.dissolution(model, day="2016-01-01")
    released = f.release(person, day="2018-01-01")
    ok(await office.submit([gone, released]))
    # the dissolution was dated wrongly: corrected to 2017; then the release is retracted: the person stands again
    fixed = f.correction(gone, occurred_on="2017-06-30")
    ok(await office.submit([fixed, f.retraction(released)]))
    # a late record of an update before the end counts; one dated after the end is refused
    refused(await office.submit_one(f.model_update(model, day="2017-06-30")), "conflict", "$.model_id")
    update = f.model_update(model, points=9, day="2015-01-01")
    ok(await office.submit_one(update))
    # the model's setting up is corrected to 2013 and the update retracted
    ok(await office.submit([f.correction(model, occurred_on="2013-01-01", points=5), f.retraction(update)]))
    live = await live_and_replayed(stack, localities)
    conn = await asyncpg.connect(stack.database_url)
    try:
        for year in range(2012, 2020):
            m = await ask(conn, year)
            assert m["models_active"] == int(2013 <= year < 2017), year
            assert m["model_points"] == (5 if 2013 <= year < 2017 else 0), year
            assert m["youth_under_management"] == int(year >= 2016), year
            assert m["youth_enrolled"] == int(year == 2016)
    finally:
        await conn.close()
    assert live


async def test_the_gateway_lets_one_end_stand_and_refuses_updates_of_an_ended_model(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    model = f.model(day="2015-01-01")
    ok(await office.submit_one(model))
    gone = f.dissolution(model, day="2016-01-01")
    ok(await office.submit_one(gone))
    assert (await office.submit_one(gone)).duplicate  # a retry is the same event, never counted twice
    refused(await office.submit_one(f.dissolution(model)), "conflict", "$.model_id")
    refused(await office.submit_one(f.model_update(model, points=3)), "conflict", "$.model_id")
    # a correction of the dissolution keeps it dissolved, from the corrected day
    ok(await office.submit_one(fixed := f.correction(gone, occurred_on="2016-02-01")))
    refused(
        await office.submit_one(f.model_update(model, points=3, day="2016-02-01")), "conflict", "$.model_id"
    )
    ok(
        await office.submit_one(f.model_update(model, points=2, day="2016-01-15"))
    )  # before the end: a late record
    # retracting it (its latest version): the model stands again, and may be updated and dissolved again
    ok(await office.submit_one(f.retraction(fixed)))
    ok(await office.submit_one(f.retraction(gone)))
    ok(await office.submit([f.model_update(model, points=3), f.dissolution(model, day="2020-01-01")]))
    # unknown model, another ward's model, a person released twice
    refused(
        await office.submit_one(f.dissolution({**model, "model_id": str(uuid.uuid4())})),
        "invalid",
        "$.model_id",
    )
    elsewhere = {**f.dissolution(model), "locality": {"scheme": "gso-2025", "ward": "01456"}}
    refused(await office.submit_one(elsewhere), "invalid", "$.locality.ward")
    person = f.youth()
    ok(await office.submit([person, f.release(person)]))
    refused(await office.submit_one(f.release(person)), "conflict", "$.person_ref")
    await live_and_replayed(stack, localities)


async def test_a_change_to_an_old_year_updates_every_later_ward_year_and_subscribers_hold_the_query(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    conn = await asyncpg.connect(stack.database_url)
    try:
        model = f.model(day="2012-03-01", points=2)
        steps: list[Any] = [
            [model, f.session(day="2013-05-05")],
            [f.model_update(model, points=6, day="2016-01-01")],
            [f.dissolution(model, day="2020-06-01")],
            [f.retraction(model)],
        ]
        for docs in steps:
            results = await office.submit(docs)
            ok(results)
            last = max(r.seq or 0 for r in results)

            async def caught_up(last: int = last) -> bool:
                return (
                    await store.read_stats(conn, wards=["01447"], year=2012, period="calendar")
                ).as_of_seq >= last

            await wait_for(caught_up, what="the projection")
        assert projector.runner is not None
        await projector.runner.publisher_idle()
        sub = await stack.js.pull_subscribe(
            "antq.updates.stats.04.01447.*",
            durable="stocks-01447",
            stream=UPDATES,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT),
        )
        latest: dict[int, dict[str, int]] = {}
        years_per_step: list[set[int]] = []
        while (await stack.js.consumer_info(UPDATES, "stocks-01447")).num_pending > 0:
            for msg in await sub.fetch(200, timeout=2):
                body = msgspec.json.decode(msg.data)
                latest[body["year"]] = body["metrics"]
                years_per_step.append({body["year"]})
                await msg.ack()
        # the first step touched 2012 (the model) and 2013 (the session), and the stock every year up to now
        assert set(latest) == set(range(2012, THIS_YEAR + 1))
        for year in range(2012, THIS_YEAR + 1):
            assert latest[year] == await ask(conn, year), year
        assert all(latest[y]["models_active"] == 0 for y in latest)  # its setting up retracted
    finally:
        await conn.close()
        await projector.stop()


async def test_replay_verify_and_rebuild_agree_on_stocks(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    model = f.model(day="2014-01-01", teams=3)
    person = f.youth(day="2015-12-20")
    ok(await office.submit([model, person, f.model_update(model, teams=1, day="2017-01-01")]))
    last = max(r.seq or 0 for r in await office.submit([f.release(person, day="2018-12-16")]))
    live = await live_and_replayed(stack, localities)
    conn = await asyncpg.connect(stack.database_url)
    try:
        verification = await verify(stack.nc, conn, localities)
        assert verification.ok, (verification.differences[:5], verification.problems)
        # as of a business date: the update of 2017 had not occurred by 2016-06-30
        scope = ReplayScope(ward="01447", as_of_occurred=dt.date(2016, 6, 30))
        cut = await replay(stack.nc, scope, localities, child_process=False)
        assert cut.replay.metrics(wards=["01447"], year=2016, period="calendar")["model_teams"] == 3
        assert (
            cut.replay.metrics(wards=["01447"], year=2016, period="calendar")["youth_under_management"] == 1
        )
        # as known on an instant before the release was stored: the person still stands
        before = ReplayScope(ward="01447", stop_seq=last - 1)
        early = await replay(stack.nc, before, localities, child_process=False)
        assert (
            early.replay.metrics(wards=["01447"], year=2019, period="calendar")["youth_under_management"] == 1
        )
        # reporting year: released on 16 December 2018, so no longer standing at the end of reporting year 2019
        full = await replay(stack.nc, ReplayScope(ward="01447"), localities, child_process=False)
        metrics = full.replay.metrics
        assert metrics(wards=["01447"], year=2018, period="reporting")["youth_under_management"] == 1
        assert metrics(wards=["01447"], year=2019, period="reporting")["youth_under_management"] == 0
        assert metrics(wards=["01447"], year=2019, period="calendar", from_year=2014)["model_teams"] == 1
        assert set(range(2014, THIS_YEAR + 1)) <= set(full.replay.years("calendar", THIS_YEAR))
        for year in range(2013, THIS_YEAR + 1):
            assert metrics(wards=["01447"], year=year, period="calendar") == await ask(conn, year)

        # a stock row altered by hand: verify finds it, and a rebuild restores it and publishes every later year
        await conn.execute(
            "UPDATE stats SET value = 0 WHERE copy = 1 AND ward = '01447' AND year = 2014 AND metric = 'model_teams'"
        )
        assert not (await verify(stack.nc, conn, localities)).ok
        projector = Projector(
            nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
        )
        await projector.start()
        updates: dict[int, dict[str, int]] = {}

        async def on_update(msg: Msg) -> None:
            body = msgspec.json.decode(msg.data)
            updates[body["year"]] = body["metrics"]

        sub = await stack.nc.subscribe("antq.updates.stats.04.01447.*", cb=on_update)
        await settle(stack.nc)  # the server has the SUB before the projector's connection publishes
        try:
            report = await Rebuild(stack.nc, stack.database_url, localities=localities).run()

            async def republished() -> bool:
                return set(range(2014, THIS_YEAR + 1)) <= set(updates)

            await wait_for(republished, what="updates of every year from 2014")
            assert all(
                updates[y]["model_teams"] == (3 if y < 2017 else 1) for y in range(2014, THIS_YEAR + 1)
            )
            assert await store.all_figures(conn, report.new_copy) == live
        finally:
            await sub.unsubscribe()
            await projector.stop()
    finally:
        await conn.close()
