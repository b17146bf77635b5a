"""The statistics projection against the real nats-server and PostgreSQL: figures, halting, redeliveries.

Also the helpers the other projection tests share (publishing straight to ANTQ_EVENTS, running a runner to a
sequence through injected crashes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import msgspec
import pytest
from nats.aio.client import Client

from events.codec import encode_recorded
from events.localities import Localities
from events.schema import Event, Locality, Recorded, TipAssessed, ward_of
from events.subjects import event_subject
from infra.streams import EVENTS
from projections import store
from projections.metrics import BASE_METRICS
from projections.runner import AlreadyRunning, RunnerConfig, StatsRunner
from projections.service import Projector
from services.client import OfficeClient
from tests import factories as f
from tests.conftest import Stack
from tests.servers import wait_for
from tests.test_fold_model import OFFICE, Figures

pytestmark = pytest.mark.servers


class InjectedCrash(Exception):
    """Raised by a test hook to stop a runner at a chosen point, as a crash would."""


async def publish_events(
    nc: Client, localities: Localities, events: Sequence[Event], *, msg_ids: bool = True
) -> int:
    """Publish straight to ANTQ_EVENTS as the gateway would (subject, Recorded, Nats-Msg-Id); the last seq."""

    async def one(event: Event) -> int:
        ward = localities.ward(ward_of(event))
        assert ward is not None
        headers = {"Nats-Expected-Stream": EVENTS}
        if msg_ids:
            headers["Nats-Msg-Id"] = str(event.event_id)
        reply = await nc.request(
            event_subject(event, ward.province),
            encode_recorded(Recorded(office=OFFICE, event=event)),
            timeout=10,
            headers=headers,
        )
        ack = msgspec.json.decode(reply.data)
        assert "error" not in ack, ack
        return int(ack["seq"])

    last = 0
    for start in range(0, len(events), 500):
        seqs = await asyncio.gather(*(one(e) for e in events[start : start + 500]))
        last = max(last, *seqs) if seqs else last
    return last


async def figures(database_url: str, copy: int = 1) -> Figures:
    conn = await asyncpg.connect(database_url)
    try:
        return await store.all_figures(conn, copy)
    finally:
        await conn.close()


async def checkpoint(database_url: str, copy: int = 1) -> store.Checkpoint:
    conn = await asyncpg.connect(database_url)
    try:
        return await store.read_checkpoint(conn, copy)
    finally:
        await conn.close()


async def run_until(
    nc: Client,
    config: RunnerConfig,
    last_seq: int,
    *,
    timeout: float = 30.0,
) -> StatsRunner:
    """Run a runner until its checkpoint reaches ``last_seq``; an injected crash ends it early (re-raised)."""
    stop = asyncio.Event()
    runner = StatsRunner(nc, config)
    task = asyncio.create_task(runner.run(stop))

    async def reached() -> bool:
        return task.done() or runner.seq >= last_seq

    try:
        await wait_for(reached, timeout=timeout, what=f"the runner to reach seq {last_seq}")
        await runner.publisher_idle()
    finally:
        stop.set()
        await task
    return runner


async def run_through_crashes(
    nc: Client, config: RunnerConfig, last_seq: int, *, max_restarts: int = 50
) -> tuple[StatsRunner, int]:
    """Restart after each injected crash until the checkpoint reaches ``last_seq``; (runner, crashes)."""
    for crashes in range(max_restarts):
        try:
            runner = await run_until(nc, config, last_seq)
        except InjectedCrash:
            continue
        return runner, crashes
    raise AssertionError("too many crashes")


def as_event(doc: dict[str, Any]) -> Event:
    """A factory document as the validated event the gateway would store."""
    event: Event = msgspec.json.decode(msgspec.json.encode(doc), type=Event)
    return event


def local(ward: str = "01447") -> Locality:
    return Locality(ward=ward)


async def test_projector_folds_gateway_events_into_read_stats(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    tips = [f.tip(day="2018-03-01") for _ in range(5)] + [f.tip(day="2018-12-20")]
    docs = [
        *tips,
        *(f.assessment(t, valuable=True) for t in tips[:4]),
        f.assessment(tips[0], valuable=False),
        f.session(level="commune", attendance=40),
        f.session(level="hamlet", attendance=35, day="2018-12-15"),
        f.pledge(signatures=12, signer="household"),
        f.mediation(outcome="successful"),
        f.mediation(outcome="referred"),
        f.weapons(
            items=[{"kind": "homemade_firearm", "quantity": 1}, {"kind": "ammunition", "quantity": 30}]
        ),
        f.weapons(ward="01273", items=[{"kind": "support_tool", "quantity": 6}]),
    ]
    results = await office.submit(docs)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    bad_session = f.session(attendance=1000)
    results += await office.submit([bad_session])
    results += await office.submit([f.retraction(bad_session), f.retraction(tips[1])])
    last = max(r.seq or 0 for r in results)

    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    try:
        conn = await asyncpg.connect(stack.database_url)
        try:

            async def caught_up() -> store.StatsSnapshot | None:
                snap = await store.read_stats(conn, wards=["01447"], year=2018, period="calendar")
                return snap if snap.as_of_seq >= last else None

            ward = await wait_for(caught_up, what="the projection to catch up")
            assert ward.stale is False and ward.as_of_seq == last
            assert ward.metrics == {
                **dict.fromkeys(BASE_METRICS, 0),
                "tips_received": 5,  # 6 received, one retracted
                "tips_valuable": 2,  # tips 2 and 3; tip 0 re-assessed not valuable, tip 1 retracted
                "tips_received.resident": 5,  # by the tip's source (issue 10)
                "tips_valuable.resident": 2,
                "sessions_held": 2,
                "session_attendance": 75,
                "pledge_signatures": 12,
                "mediations_concluded": 2,
                "mediations_successful": 1,
                "weapons_surrendered": 1,
                "ammunition_surrendered": 30,
                "pledge_signatures.household": 12,
                "session_attendance.commune": 40,
                "session_attendance.hamlet": 35,
                "sessions_held.commune": 1,
                "sessions_held.hamlet": 1,
                "weapons_surrendered.homemade_firearm": 1,
            }
            reporting = await store.read_stats(conn, wards=["01447"], year=2019, period="reporting")
            assert reporting.metrics["tips_received"] == 1 and reporting.metrics["sessions_held"] == 1
            assert "pledge_signatures.household" not in reporting.metrics  # zero breakdowns are left out
            province = await store.read_province_stats(conn, province="04", year=2018, period="calendar")
            summed = await store.read_stats(
                conn, wards=localities.wards_of("04"), year=2018, period="calendar"
            )
            assert province == summed
            assert province.metrics["weapons_surrendered"] == 7
            assert province.metrics["weapons_surrendered.support_tool"] == 6
            empty = await store.read_stats(conn, wards=["01279"], year=2018, period="calendar")
            assert set(empty.metrics) == set(BASE_METRICS) and not any(empty.metrics.values())
        finally:
            await conn.close()
    finally:
        await projector.stop()


async def test_an_event_the_fold_cannot_apply_halts_the_projection(
    stack: Stack, localities: Localities, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = [as_event(f.session(attendance=10)) for _ in range(3)]
    stray = TipAssessed(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2018, 5, 1),
        locality=local(),
        tip_id=uuid.uuid4(),
        valuable=True,
    )
    after = [as_event(f.session(attendance=10)) for _ in range(2)]
    bad_seq = await publish_events(stack.nc, localities, [*sessions, stray])
    last = await publish_events(stack.nc, localities, after)

    stop = asyncio.Event()
    runner = StatsRunner(
        stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities, batch=10)
    )
    await asyncio.wait_for(runner.run(stop), timeout=20)  # returns by itself: halted

    assert runner.halted is not None and "UnknownTip" in runner.halted
    assert any(r.levelname == "ERROR" and "HALTED" in r.getMessage() for r in caplog.records)
    cp = await checkpoint(stack.database_url)
    assert cp.seq == bad_seq - 1 < last and cp.halted == runner.halted
    conn = await asyncpg.connect(stack.database_url)
    try:
        snap = await store.read_stats(conn, wards=["01447"], year=2018, period="calendar")
    finally:
        await conn.close()
    assert snap.stale is True and snap.as_of_seq == bad_seq - 1
    assert snap.metrics["sessions_held"] == 3  # the events before it are in, none after it
    info = await stack.js.consumer_info(EVENTS, runner.durable)
    assert info.ack_floor.stream_seq < bad_seq  # never acknowledged

    # a restart halts again on the same event: never skipped
    again = StatsRunner(stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities))
    await asyncio.wait_for(again.run(asyncio.Event()), timeout=20)
    assert again.halted is not None and (await checkpoint(stack.database_url)).seq == bad_seq - 1


async def test_redeliveries_at_or_below_the_checkpoint_are_skipped(
    stack: Stack, localities: Localities
) -> None:
    events = [as_event(f.pledge(signatures=2)) for _ in range(30)]
    last = await publish_events(stack.nc, localities, events)

    async def crash_before_the_last_ack(point: str, seq: int) -> None:
        if point == "after_commit" and seq == last:
            raise InjectedCrash

    base = RunnerConfig(database_url=stack.database_url, localities=localities, batch=10, ack_wait=0.5)
    with pytest.raises(InjectedCrash):
        await run_until(stack.nc, replace(base, hook=crash_before_the_last_ack), last)
    assert (await checkpoint(stack.database_url)).seq == last

    # The durable still holds seqs 21..30 unacked: the server redelivers them after ack_wait.
    stop = asyncio.Event()
    runner = StatsRunner(stack.nc, replace(base, keep_consumer=True))
    task = asyncio.create_task(runner.run(stop))
    try:

        async def skipped() -> bool:
            return runner.stats.redelivered_skipped >= 10 or task.done()

        await wait_for(skipped, timeout=15, what="the redelivered batch")
    finally:
        stop.set()
        await task
    assert runner.stats.redelivered_skipped == 10 and runner.stats.events == 0
    info = await stack.js.consumer_info(EVENTS, runner.durable)
    assert info.ack_floor.stream_seq == last and info.num_ack_pending == 0  # acked, not folded again
    got = await figures(stack.database_url)
    assert got[("calendar", "01447", 2018, "pledge_signatures")] == 60


async def test_a_second_runner_on_the_same_copy_is_refused(stack: Stack, localities: Localities) -> None:
    first = Projector(nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities)
    await first.start()
    try:
        second = Projector(
            nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
        )
        with pytest.raises(AlreadyRunning):
            await second.start()
        await second.stop()
    finally:
        await first.stop()
