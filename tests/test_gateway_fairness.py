"""One office never harms another: a conflict costs the same reads whatever the entity's history, a flooding
office is held to its rate while others are served, and one office cannot fill ANTQ_REJECTED with its bodies.

Costs are counted (NATS reads, index catch-ups), never timed; the rate limit runs on the injected clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from events.codec import decode_event, encode_recorded, vietnam_today
from events.intake import IntakeResult, RejectedRecord, decode_results
from events.localities import Localities
from events.schema import Recorded, ward_of
from events.stored import StoredRecords
from events.subjects import event_subject
from infra.db import create_pool
from infra.stream_reader import read_stream
from infra.streams import EVENTS, REJECTED
from services.client import OfficeClient
from services.gateway.app import Gateway
from services.gateway.catch_up import catch_up
from services.gateway.index import EventIndex
from services.gateway.offices import OfficeRegistry
from services.gateway.pipeline import IntakePipeline
from services.gateway.publisher import IntakePublisher
from tests import factories as f
from tests.conftest import OFFICES_TOML, FixedClock, Stack, gateway_config, wait_until_answering
from tests.servers import wait_for

pytestmark = pytest.mark.servers

OFFICE = "ca-cao-bang"


class CountingJetStream:
    """The pipeline's JetStream reads, counted."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.reads: Counter[str] = Counter()

    async def get_msg(self, *args: Any, **kwargs: Any) -> RawStreamMsg:
        self.reads["get_msg"] += 1
        return await self._js.get_msg(*args, **kwargs)

    async def get_last_msg(self, *args: Any, **kwargs: Any) -> RawStreamMsg:
        self.reads["get_last_msg"] += 1
        return await self._js.get_last_msg(*args, **kwargs)


@dataclass
class Harness:
    """An intake pipeline on the test stack, called directly, with its reads and catch-ups counted."""

    pipeline: IntakePipeline
    js: CountingJetStream
    index: EventIndex
    catch_ups: int = 0

    async def send(self, docs: list[dict[str, Any]]) -> list[IntakeResult]:
        reply = decode_results(await self.pipeline.handle(OFFICE, msgspec.json.encode(docs)))
        assert isinstance(reply, list)
        return reply


@pytest.fixture
async def harness(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> AsyncIterator[Harness]:
    pool = await create_pool(stack.database_url, max_size=4)
    publisher = IntakePublisher(stack.nc)
    index = EventIndex(pool)
    counting = CountingJetStream(stack.js)
    holder: list[Harness] = []

    async def counted_catch_up() -> int:
        holder[0].catch_ups += 1
        return await catch_up(stack.js, index, StoredRecords(Localities.load()))

    pipeline = IntakePipeline(
        cast(JetStreamContext, counting),
        publisher,
        index,
        localities,
        OfficeRegistry.load(offices_file, localities),
        clock,
        catch_up=counted_catch_up,
    )
    holder.append(Harness(pipeline, counting, index))
    try:
        yield holder[0]
    finally:
        await publisher.stop()
        await pool.close()


def subject_of(doc: dict[str, Any], clock: FixedClock, localities: Localities) -> str:
    event = decode_event(msgspec.json.encode(doc), today=vietnam_today(clock.now))
    ward = localities.ward(ward_of(event))
    assert ward is not None
    return event_subject(event, ward.province)


async def publish_directly(
    stack: Stack, docs: list[dict[str, Any]], clock: FixedClock, localities: Localities
) -> int:
    """Store events as the gateway would (same bytes and headers), without the gateway; return the last seq."""
    seq = 0
    today = vietnam_today(clock.now)
    for doc in docs:
        event = decode_event(msgspec.json.encode(doc), today=today)
        headers = {"Nats-Msg-Id": doc["event_id"], "Nats-Expected-Stream": EVENTS}
        data = encode_recorded(Recorded(office=OFFICE, event=event))
        ack = await stack.js.publish(subject_of(doc, clock, localities), data, headers=headers)
        seq = ack.seq
    return seq


async def tip_with_history(
    stack: Stack, harness: Harness, clock: FixedClock, localities: Localities, assessments: int
) -> tuple[dict[str, Any], int]:
    """A tip (indexed) followed by ``assessments`` assessments of it (not indexed); return the tip and the
    version it was received at."""
    tip = f.tip()
    tip_seq = await publish_directly(stack, [tip], clock, localities)
    await catch_up(stack.js, harness.index, StoredRecords(Localities.load()))
    history = [f.assessment(tip, valuable=bool(i % 2)) for i in range(assessments)]
    await publish_directly(stack, history, clock, localities)
    return tip, tip_seq


def conflicts(results: list[IntakeResult], n: int) -> None:
    assert len(results) == n
    for result in results:
        assert not result.ok and result.error is not None, result
        assert result.error.code == "conflict" and result.error.path == "$.expected_version", result


@pytest.mark.timeout(240)
async def test_a_conflict_costs_the_same_reads_whatever_the_entity_history(
    stack: Stack, harness: Harness, clock: FixedClock, localities: Localities
) -> None:
    """Today's gateway walks the tip's subject message by message to tell a retry from a conflict: 3,000
    assessments made one conflict 3,000 reads, and a few batches of them kept every worker busy."""
    short, short_version = await tip_with_history(stack, harness, clock, localities, 10)
    long, long_version = await tip_with_history(stack, harness, clock, localities, 3000)
    await catch_up(
        stack.js, harness.index, StoredRecords(Localities.load())
    )  # indexed, as the gateway's rows and catch-up leave them

    costs = []
    for tip, version in [(short, short_version), (long, long_version)]:
        harness.js.reads.clear()
        stale = [f.assessment(tip, expected_version=version) for _ in range(25)]
        conflicts(await harness.send(stale), 25)
        costs.append(dict(harness.js.reads))
    assert costs[0] == costs[1] == {"get_last_msg": 25}  # one read per conflict, 10 or 3,000 events before
    assert harness.catch_ups == 0


@pytest.mark.timeout(240)
async def test_rows_beyond_the_index_checkpoint_cost_one_shared_catch_up(
    stack: Stack, harness: Harness, clock: FixedClock, localities: Localities
) -> None:
    """History the index has not caught up with (rows lost, or written live while the checkpoint lags): the
    first conflict catches the index up once; the next ones read nothing more."""
    tip, version = await tip_with_history(stack, harness, clock, localities, 3000)
    conflicts(await harness.send([f.assessment(tip, expected_version=version) for _ in range(25)]), 25)
    assert harness.catch_ups == 1
    assert harness.js.reads == {"get_last_msg": 25}
    conflicts(await harness.send([f.assessment(tip, expected_version=version) for _ in range(25)]), 25)
    assert harness.catch_ups == 1
    assert harness.js.reads == {"get_last_msg": 50}


@pytest.mark.timeout(120)
async def test_a_lost_index_row_behind_later_events_is_still_a_duplicate(
    stack: Stack, harness: Harness, clock: FixedClock, localities: Localities
) -> None:
    """A retry of an assessment whose index row was lost, with other assessments after it on the subject:
    JetStream answers 'wrong last sequence' (its subject check comes before its dedup); the gateway catches
    the index up instead of scanning, and answers with the original seq."""
    tip, version = await tip_with_history(stack, harness, clock, localities, 0)
    retried = f.assessment(tip, expected_version=version)
    [first] = await harness.send([retried])
    assert first.ok and first.seq is not None and not first.duplicate
    await publish_directly(stack, [f.assessment(tip) for _ in range(50)], clock, localities)
    conn = await asyncpg.connect(stack.database_url)
    try:  # the crash between the ack and the index insert: the row was never written
        deleted = await conn.execute(
            "DELETE FROM event_index WHERE event_id = $1", uuid.UUID(retried["event_id"])
        )
    finally:
        await conn.close()
    assert deleted == "DELETE 1"
    harness.js.reads.clear()
    [again] = await harness.send([retried])
    assert again.ok and again.duplicate and again.seq == first.seq, again
    assert harness.catch_ups == 1
    assert harness.js.reads == {"get_last_msg": 1}
    assert (await stack.js.stream_info(EVENTS)).state.messages == 2 + 50


# --- the rate limit -------------------------------------------------------------------------------------

RATED_OFFICES = (
    "rate = { events_per_second = 10, burst = 50 }\n"
    + "".join(f'\n[[office]]\nid = "office-{i}"\njurisdiction = ["province:04"]\n' for i in range(3))
    + '\n[[office]]\nid = "fast"\njurisdiction = ["province:04"]\nrate = { events_per_second = 1000, burst = 2000 }\n'
)


@pytest.fixture
async def rated_gateway(
    stack: Stack, tmp_path: Path, clock: FixedClock, localities: Localities
) -> AsyncIterator[Gateway]:
    path = tmp_path / "offices.toml"
    path.write_text(RATED_OFFICES, encoding="utf-8")
    gw = Gateway(gateway_config(stack, path, clock, localities))
    async with gw.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        yield gw


def limited(result: IntakeResult) -> int:
    assert not result.ok and result.error is not None, result
    assert result.error.code == "unavailable" and result.error.retry_after_ms is not None, result
    return result.error.retry_after_ms


async def count(stack: Stack, stream: str = EVENTS) -> int:
    return int((await stack.js.stream_info(stream)).state.messages)


@pytest.mark.timeout(120)
async def test_a_flooding_office_is_held_to_its_rate_while_another_is_served(
    stack: Stack, rated_gateway: Gateway, clock: FixedClock
) -> None:
    flooder = OfficeClient(stack.nc, "office-1", timeout=20)
    quiet = OfficeClient(stack.nc, "office-2", timeout=20)
    flood = [[f.session(attendance=i) for _ in range(20)] for i in range(5)]  # 100 events, burst 50
    quiet_events = [f.pledge() for _ in range(5)]
    replies = [await flooder.submit(batch) for batch in flood[:2]]  # 40 of the 50
    third = await flooder.submit(flood[2])  # 10 more fit, 10 are beyond the budget
    quiet_replies = [await quiet.submit_one(doc) for doc in quiet_events]  # meanwhile, another office
    replies += [third, *[await flooder.submit(batch) for batch in flood[3:]]]

    flat = [r for reply in replies for r in reply]
    assert all(r.ok for r in flat[:50]), flat[:50]
    waits = [limited(r) for r in flat[50:]]
    assert [r.event_id for r in flat] == [d["event_id"] for batch in flood for d in batch]
    # at 10 events/s the bucket holds 10 more after 1 s, 20 after 2 s: the office is told when to come back
    assert waits[:10] == [1000] * 10 and waits[10:] == [2000] * 40
    assert all(r.ok and not r.duplicate for r in quiet_replies), quiet_replies
    assert await count(stack) == 50 + 5
    assert rated_gateway.counters.rate_limited == 50
    assert await rejected_records(stack) == []  # events beyond the rate are not examined, and not kept

    clock.now += dt.timedelta(seconds=1)  # the bucket refills: 10 events/s
    again = await flooder.submit(flood[2][10:])
    assert all(r.ok and not r.duplicate for r in again), again
    assert limited((await flooder.submit([f.session()]))[0]) == 100
    # and at the same time: ten flooding requests in flight beside the other office's five
    flooding = [asyncio.ensure_future(flooder.submit([f.session() for _ in range(20)])) for _ in range(10)]
    served = [asyncio.ensure_future(quiet.submit_one(f.pledge())) for _ in range(5)]
    assert all(r.ok and not r.duplicate for r in await asyncio.gather(*served))
    assert all(limited(r) > 0 for reply in await asyncio.gather(*flooding) for r in reply)
    assert await count(stack) == 50 + 5 + 10 + 5
    fast = await OfficeClient(stack.nc, "fast", timeout=20).submit([f.session() for _ in range(500)])
    assert all(r.ok for r in fast)  # an office's own rate replaces the default


# --- the ANTQ_REJECTED quota ----------------------------------------------------------------------------

QUOTA_OFFICES = (
    "rejected_quota_bytes = 3000\n"
    + OFFICES_TOML
    + '\n[[office]]\nid = "roomy"\nname = "Roomy"\njurisdiction = ["province:04"]\n'
    "rejected_quota_bytes = 1000000\n"
)


async def rejected_records(stack: Stack) -> list[RejectedRecord]:
    out: list[RejectedRecord] = []
    async for batch in read_stream(stack.js, REJECTED):
        out.extend(msgspec.json.decode(m.data, type=RejectedRecord) for m in batch)
    return [rec for rec in out if rec.office != "_probe"]


@pytest.mark.timeout(120)
async def test_beyond_its_quota_an_office_refusals_are_kept_without_their_body(
    stack: Stack, tmp_path: Path, clock: FixedClock, localities: Localities
) -> None:
    path = tmp_path / "offices.toml"
    path.write_text(QUOTA_OFFICES, encoding="utf-8")
    bad = [msgspec.json.encode({**f.session(), "attendance": -1, "note": "x" * 800}) for _ in range(6)]
    assert all(1000 < len(b) < 1050 for b in bad)  # two fit in 3,000 bytes, the third does not
    roomy_bad = msgspec.json.encode({**f.session(), "attendance": -2})

    config = gateway_config(stack, path, clock, localities)
    for round_no in range(2):  # a restart in between: the count is in PostgreSQL
        gw = Gateway(config)
        async with gw.app:
            await wait_until_answering(stack.nc, "antq.intake._probe")
            office = OfficeClient(stack.nc, OFFICE, timeout=20)
            reply = await office.send_raw(b"[" + b",".join(bad[:3] if round_no == 0 else bad[3:]) + b"]")
            assert isinstance(reply, list) and all(r.error and r.error.code == "invalid" for r in reply)
            await OfficeClient(stack.nc, "roomy", timeout=20).send_raw(roomy_bad)
            assert gw.counters.rejected_raw_dropped == (1 if round_no == 0 else 3)

    records = await rejected_records(stack)
    mine = [rec for rec in records if rec.office == OFFICE]
    assert [rec.over_quota for rec in mine] == [False, False, True, True, True, True]
    for rec, body in zip(mine, bad, strict=True):
        assert rec.error.code == "invalid" and rec.size == len(body)  # still recorded, and said why
        assert rec.raw == (b"" if rec.over_quota else body) and rec.truncated == rec.over_quota
    roomy = [rec for rec in records if rec.office == "roomy"]
    assert [(rec.over_quota, rec.raw) for rec in roomy] == [(False, roomy_bad)] * 2  # others keep theirs

    clock.now += dt.timedelta(days=1)  # a new UTC day: a new quota
    gw = Gateway(config)
    async with gw.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        await OfficeClient(stack.nc, OFFICE, timeout=20).send_raw(bad[0])
    last = (await rejected_records(stack))[-1]
    assert last.office == OFFICE and not last.over_quota and last.raw == bad[0]


# --- one office's requests cannot hold every worker ---------------------------------------------------


@pytest.mark.timeout(120)
async def test_an_office_with_many_stuck_requests_leaves_workers_for_another(
    stack: Stack, gateway: Gateway
) -> None:
    """Office A's 40 requests are stuck (their tips' claims wait on a lock held here); office B is answered
    meanwhile. Before, four of A's requests held the four workers and B waited for all of them."""
    tips = [f.tip() for _ in range(40)]
    blocker = await asyncpg.connect(stack.database_url)
    transaction = blocker.transaction()
    await transaction.start()
    try:
        await blocker.executemany(
            "INSERT INTO entity_claims (entity, event_id, ward, subject) VALUES ($1, $2, '01447', 'x')",
            [(f"tip:{tip['tip_id']}", uuid.uuid4()) for tip in tips],
        )
        flooder = OfficeClient(stack.nc, "office-1", timeout=60)
        stuck = [asyncio.ensure_future(flooder.submit_one(tip)) for tip in tips]

        async def turned_away() -> list[IntakeResult] | None:
            done = [task.result() for task in stuck if task.done()]
            return done if len(done) == 8 else None

        busy = await wait_for(turned_away, timeout=30, what="8 of office A's requests to be turned away")
        assert {limited(r) for r in busy} == {100}  # 32 admitted (2 running, 30 waiting), the rest: retry
        quiet = await OfficeClient(stack.nc, "office-2", timeout=20).submit_one(f.session())
        assert quiet.ok and not quiet.duplicate, quiet  # answered while A's requests are still stuck
        assert sum(task.done() for task in stuck) == 8
    finally:
        await transaction.rollback()
        await blocker.close()
    results = await asyncio.gather(*stuck)
    assert sum(r.ok and not r.duplicate for r in results) == 32
    assert gateway.counters.office_busy == 8
